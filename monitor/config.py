"""Configuration: the YAML format of DESIGN.md, validated with pydantic.

Unknown keys are errors; every error names the YAML line it comes from.
Each area has its own section model; cross-field checks are small named functions.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from monitor.errors import ConfigError

ID_RE = r"^[a-z0-9][a-z0-9_-]{0,62}$"
Id = Annotated[str, Field(pattern=ID_RE, description="lower-case id: letters, digits, '-' and '_'")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Point = tuple[Annotated[float, Field(ge=0.0, le=1.0)], Annotated[float, Field(ge=0.0, le=1.0)]]
Polygon = Annotated[list[Point], Field(min_length=3, description="normalised 0..1 image points")]

RuleName = Literal["antistatic", "storage"]
RULE_ZONES: dict[str, tuple[str, ...]] = {
    "antistatic": ("discharge_post", "filling_area"),
    "storage": ("storage",),
}


ClassName = Literal["person", "cylinder"]
Severity = Literal["info", "warning", "critical"]


def _class_map(m: dict[ClassName, list[int]]) -> dict[ClassName, list[int]]:
    return m


def _ack_times(m: dict[Severity, float]) -> dict[Severity, float]:
    return m


class DetectorConfig(Strict):
    weights: str = Field("models/lpg-sim/best.pt", description="ultralytics-loadable weights")
    classes: dict[Literal["person", "cylinder"], list[Annotated[int, Field(ge=0)]]] = Field(
        default_factory=lambda: _class_map({"person": [0], "cylinder": [1]}),
        description="model class ids mapped to our classes",
    )
    imgsz: int = Field(640, ge=32, le=1920, description="model input size; lpg-sim serves 640x360 frames at 640")
    backend: Literal["torch", "onnx", "openvino"] = "openvino"
    confidence: float = Field(0.35, gt=0.0, lt=1.0)
    batch: int = Field(8, ge=1, le=64, description="frames from many cameras per inference call")
    tracker: Literal["bytetrack", "botsort"] = "bytetrack"
    export_dir: str | None = Field(
        None, description="where OpenVINO/ONNX exports of .pt weights are cached; default: beside the weights"
    )


class DetectorOverride(Strict):
    weights: str | None = None
    classes: dict[Literal["person", "cylinder"], list[Annotated[int, Field(ge=0)]]] | None = None
    imgsz: int | None = Field(None, ge=32, le=1920)
    backend: Literal["torch", "onnx", "openvino"] | None = None
    confidence: float | None = Field(None, gt=0.0, lt=1.0)


# A camera whose only rule is storage is analysed at this rate unless its ``detect.fps`` is
# given: its count is smoothed over ``rules.storage.window_s`` (10 s) and must hold for
# ``hold_s`` (60 s) before anything is raised, so 5 frames a second would buy nothing but
# load (bench/detectors.py measures the count and the decisions at both rates).
STORAGE_ONLY_FPS = 1.0


class DetectSettings(Strict):
    fps: float = Field(5.0, gt=0.0, le=30.0, description="frames analysed per second (a camera whose only rule "
                       "is storage: 1 unless given)")
    motion_threshold: float = Field(0.004, ge=0.0, le=1.0, description="share of changed pixels")
    forced_every_s: float = Field(2.0, gt=0.0, description="analyse a still scene at least this often")


class CameraConfig(Strict):
    id: Id
    url: str = Field(description="RTSP URL of the main stream (recorded)")
    detect_url: str | None = Field(None, description="RTSP sub-stream for detection; default: url")
    name: str | None = None
    detect: DetectSettings = Field(default_factory=DetectSettings)
    zones: dict[Id, Polygon] = Field(default_factory=dict)
    rules: list[RuleName] = Field(default_factory=list)
    detector: DetectorOverride | None = None

    @field_validator("url", "detect_url")
    @classmethod
    def _url_scheme(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^(rtsp|rtsps|file|http|https)://", v) and not v.startswith("/"):
            raise ValueError("must be an rtsp://, rtsps://, http(s):// or file:// URL or an absolute path")
        return v

    @model_validator(mode="after")
    def _rules_have_zones(self) -> CameraConfig:
        check_rule_zones(self)
        if self.rules == ["storage"] and "fps" not in self.detect.model_fields_set:
            return self.model_copy(update={"detect": self.detect.model_copy(update={"fps": STORAGE_ONLY_FPS})})
        return self


def check_rule_zones(cam: CameraConfig) -> None:
    for i, rule in enumerate(cam.rules):
        missing = [z for z in RULE_ZONES[rule] if z not in cam.zones]
        if missing:
            raise ValueError(
                f"@rules.{i}: camera {cam.id}: rule {rule!r} needs zone(s) {', '.join(missing)}; "
                f"zones given: {', '.join(sorted(cam.zones)) or 'none'}"
            )
    if len(set(cam.rules)) != len(cam.rules):
        raise ValueError(f"camera {cam.id}: a rule is listed twice")


class ScaleConfig(Strict):
    id: Id
    gun: Id


class SiteConfig(Strict):
    id: Id
    kind: Literal["station", "outlet"]
    name: str | None = None
    district: str | None = None
    location: tuple[Annotated[float, Field(ge=-180, le=180)], Annotated[float, Field(ge=-90, le=90)]] | None = None
    storage_capacity: int = Field(ge=0, description="licensed number of cylinders on site")
    guns: list[Id] = Field(default_factory=list)
    scales: list[ScaleConfig] = Field(default_factory=list)
    cameras: list[CameraConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _guns_and_scales(self) -> SiteConfig:
        check_site_devices(self)
        return self


def check_site_devices(site: SiteConfig) -> None:
    if site.kind == "outlet" and (site.guns or site.scales):
        raise ValueError(f"site {site.id}: an outlet has no filling guns or scales")
    dup = _duplicates(site.guns)
    if dup:
        raise ValueError(f"site {site.id}: gun id(s) repeated: {', '.join(dup)}")
    dup = _duplicates(s.id for s in site.scales)
    if dup:
        raise ValueError(f"site {site.id}: scale id(s) repeated: {', '.join(dup)}")
    for i, s in enumerate(site.scales):
        if s.gun not in site.guns:
            raise ValueError(f"@scales.{i}.gun: site {site.id}: scale {s.id} names gun {s.gun!r}, not in guns {site.guns}")


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    public_rate_per_min: int = Field(60, ge=1, description="public cylinder look-ups per client per minute")
    secure_cookies: bool = Field(False, description="set Secure on cookies (behind TLS)")
    allowed_origins: list[str] = Field(default_factory=list, description="extra Origins allowed on the WebSocket")
    advertise_url: str | None = Field(
        None, pattern=r"^https?://", description="how other processes reach this one (a video worker: the API "
        "process relays its cameras' pictures from it); default http://<host, or this machine's name>:<port>")


class DatabaseConfig(Strict):
    url: str = Field("postgresql://postgres@127.0.0.1:5432/monitor", description="libpq URL")
    pool_min: int = Field(1, ge=1)
    pool_max: int = Field(10, ge=1)


class MqttConfig(Strict):
    url: str = Field("mqtt://127.0.0.1:1883", description="mqtt:// or mqtts:// URL")
    prefix: str = Field("lpg", pattern=r"^[A-Za-z0-9_/-]+$")
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    client_id: str | None = None


class MediaConfig(Strict):
    dir: str = "var/media"
    max_age_days: float = Field(30.0, gt=0)
    max_bytes: int = Field(20 * 1024**3, gt=0)
    preroll_s: float = Field(10.0, ge=0, le=60)
    postroll_s: float = Field(10.0, ge=0, le=60)
    ring_s: float = Field(30.0, ge=5, le=300)
    # video (monitor/video): camera connections, snapshots, the live relay
    open_timeout_s: float = Field(3.0, gt=0, le=60, description="RTSP connect/describe time limit")
    read_timeout_s: float = Field(1.0, gt=0, le=30, description="no data this long ends a connection")
    stall_s: float = Field(3.0, gt=0, le=60, description="packets but no decodable picture this long: reconnect")
    reconnect_initial_s: float = Field(0.5, gt=0, le=60, description="first reconnect delay (doubles, jittered)")
    reconnect_cap_s: float = Field(3.0, gt=0, le=300, description="longest reconnect delay")
    snapshot_max_age_s: float = Field(0.5, ge=0, le=60, description="a cached JPEG this young is served as is")
    snapshot_quality: int = Field(80, ge=10, le=100, description="JPEG quality of snapshots")
    live_queue_frames: int = Field(50, ge=2, le=1000, description="per live viewer; a slow one skips to a keyframe")
    mjpeg_fps: float = Field(5.0, gt=0, le=30, description="frame rate of the MJPEG fallback")
    retention_every_s: float = Field(300.0, gt=0, description="how often the media folder is pruned")
    # video workers on several machines (``--role video``): camera leases in PostgreSQL
    lease_ttl_s: float = Field(8.0, ge=2, le=120, description="a worker that stops renewing loses its cameras "
                               "after this long (then another takes them over)")
    lease_renew_s: float = Field(2.0, gt=0, le=60, description="how often a worker renews its leases and claims")
    max_cameras: int | None = Field(
        None, ge=1, description="the most cameras one video worker (--role video) analyses; size it from the "
        "detectors bench (docs/operations.md). Cameras beyond every worker's capacity are left unassigned "
        "and reported (monitor_video_cameras_unassigned), never silently half-analysed. Default: no limit")

    @model_validator(mode="after")
    def _lease_times(self) -> MediaConfig:
        if self.lease_renew_s * 2 > self.lease_ttl_s:
            raise ValueError(f"lease_renew_s ({self.lease_renew_s:g}) must be at most half of lease_ttl_s "
                             f"({self.lease_ttl_s:g}): a lease must survive one missed renewal")
        return self


class AntistaticRuleConfig(Strict):
    dwell_s: float = Field(3.0, gt=0, description="time at the discharge post that counts")
    reid_gap_s: float = Field(2.0, ge=0, description="a track lost this long may be re-identified")
    reid_dist: float = Field(0.12, gt=0, le=1, description="normalised distance for re-identification")


class StorageRuleConfig(Strict):
    window_s: float = Field(10.0, gt=0, description="smoothing window for the count")
    quantile: float = Field(
        0.75, ge=0.0, le=1.0,
        description="the window's count is this quantile of its frames' counts (0.5: the median; higher "
                    "leans against cylinders hidden behind people, which only ever lower a frame's count; "
                    "0.75 chosen on simulated clips of tuning seeds, see models/lpg-sim/README.md)",
    )
    hold_s: float = Field(60.0, ge=0, description="over (or back under) capacity this long")


class CorrelationConfig(Strict):
    prefill_window_s: float = Field(600.0, gt=0, description="a pre-fill scan counts this long")
    postfill_window_s: float = Field(900.0, gt=0, description="post-fill check due within this")
    overfill_tolerance_kg: float = Field(0.5, ge=0)
    stock_hold_s: float = Field(120.0, ge=0)
    silent_after_s: float = Field(120.0, gt=0, description="a device silent this long is reported")
    clock_skew_s: float = Field(120.0, ge=0, description="how far in the future a timestamp may be")
    # The series' ingest and fill segmentation (monitor/series) live in this section too.
    spool_dir: str = Field("var/spool/series", description="on-disk spool for scans and readings while the DB is away")
    spool_max_bytes: int = Field(1024**3, ge=1024, description="the spool refuses (503 / no MQTT ack) beyond this")
    readings_retention_days: float = Field(90.0, ge=1, description="raw scale readings kept this long")
    max_gross_kg: float = Field(150.0, gt=0, le=1000, description="a scale reading above this is impossible")
    load_min_kg: float = Field(3.0, gt=0, description="a scale load at least this heavy is a cylinder")
    fill_min_kg: float = Field(0.5, gt=0, description="weight gained that makes a fill (with or without gun signal)")
    lift_grace_s: float = Field(20.0, ge=0, description="a cylinder lifted mid-fill and back within this continues it")
    tare_match_kg: float = Field(2.0, ge=0, description="a scan matches a fill without a code if tares agree this well")
    sweep_every_s: float = Field(5.0, gt=0, le=300, description="how often the time-window rules are swept")


class RulesConfig(Strict):
    antistatic: AntistaticRuleConfig = Field(default_factory=AntistaticRuleConfig)
    storage: StorageRuleConfig = Field(default_factory=StorageRuleConfig)
    correlation: CorrelationConfig = Field(default_factory=CorrelationConfig)


class AlertRuleConfig(Strict):
    """Per-rule overrides of the alert policy; unset fields take the section's defaults."""

    raise_hold_s: float | None = Field(None, ge=0, description="the finding must persist this long to raise")
    clear_hold_s: float | None = Field(None, ge=0, description="cleared this long before a condition resolves")
    ack_timeout_s: float | None = Field(None, gt=0, description="escalate when not acknowledged within this")
    latched: bool | None = Field(None, description="stay open until a supervisor closes, even when cleared")


class AlertsConfig(Strict):
    ack_timeout_s: dict[Literal["info", "warning", "critical"], Annotated[float, Field(gt=0)]] = Field(
        default_factory=lambda: _ack_times({"info": 3600.0, "warning": 600.0, "critical": 120.0}),
        description="escalate an alert not acknowledged within this, by severity",
    )
    remind_after_s: float = Field(3600.0, gt=0, description="remind when acknowledged but not closed")
    clear_hold_s: float = Field(30.0, ge=0, description="a condition cleared this long resolves its alert")
    raise_hold_s: float = Field(0.0, ge=0, description="a finding must persist this long to raise an alert")
    rules: dict[str, AlertRuleConfig] = Field(default_factory=dict, description="per-rule overrides by rule id")
    max_escalation: int = Field(3, ge=1, le=10, description="highest escalation level")
    tick_s: float = Field(1.0, gt=0, le=60, description="how often holds, escalations and reminders are checked")
    batch_max: int = Field(500, ge=1, le=10_000, description="findings written per transaction at most")
    inbox_size: int = Field(20_000, ge=10, description="findings waiting for the database at most")
    evidence_attempts: int = Field(4, ge=1, le=20, description="tries per evidence item")
    evidence_concurrency: int = Field(8, ge=1, le=64, description="evidence items gathered at once")
    evidence_queue: int = Field(256, ge=1, description="evidence items waiting at most (more are dropped, counted)")
    trace_window_s: float = Field(300.0, gt=0, description="scale readings kept each side of a correlated alert")
    load_alarms_per_10min: float = Field(1.0, gt=0, description="operator load guideline (alarms / 10 min)")
    update_event_min_s: float = Field(
        1.0, ge=0, le=60, description="an alert's count going up is announced at most this often (state changes always)"
    )

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, v: dict[str, AlertRuleConfig]) -> dict[str, AlertRuleConfig]:
        check_alert_rules(v)
        return v


def check_alert_rules(rules: dict[str, AlertRuleConfig]) -> None:
    from monitor.findings import RULES

    unknown = sorted(set(rules) - set(RULES))
    if unknown:
        raise ValueError(f"unknown rule id(s) {', '.join(unknown)}; known: {', '.join(sorted(RULES))}")


class ControlConfig(Strict):
    confirm_timeout_s: float = Field(10.0, gt=0)
    resend_every_s: float = Field(5.0, gt=0)
    reconcile_every_s: float = Field(30.0, gt=0)
    auto_lock: dict[str, Literal["off", "gun", "station"]] = Field(
        default_factory=dict, description="rule id -> what to lock at once; off by default"
    )
    interlock_workers: int = Field(4, ge=1, le=64, description="authorize requests decided at once")

    @field_validator("auto_lock")
    @classmethod
    def _auto_lock_rules(cls, v: dict[str, str]) -> dict[str, str]:
        from monitor.findings import RULES

        unknown = sorted(set(v) - set(RULES))
        if unknown:
            raise ValueError(f"unknown rule id(s) {', '.join(unknown)}; one of {', '.join(sorted(RULES))}")
        return v


class Config(Strict):
    timezone: str = "Asia/Shanghai"
    server: ServerConfig = Field(default_factory=ServerConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    media: MediaConfig = Field(default_factory=MediaConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    control: ControlConfig = Field(default_factory=ControlConfig)
    sites: list[SiteConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ids_unique(self) -> Config:
        check_unique_ids(self)
        return self

    # -- look-ups -------------------------------------------------------------
    def site(self, site_id: str) -> SiteConfig:
        for s in self.sites:
            if s.id == site_id:
                return s
        raise KeyError(site_id)

    def cameras(self) -> list[tuple[SiteConfig, CameraConfig]]:
        return [(s, c) for s in self.sites for c in s.cameras]

    def camera(self, camera_id: str) -> tuple[SiteConfig, CameraConfig]:
        for s, c in self.cameras():
            if c.id == camera_id:
                return s, c
        raise KeyError(camera_id)

    def detector_for(self, cam: CameraConfig) -> DetectorConfig:
        if cam.detector is None:
            return self.detector
        upd = {k: v for k, v in cam.detector.model_dump().items() if v is not None}
        return self.detector.model_copy(update=upd)

    def summary(self) -> str:
        st = sum(1 for s in self.sites if s.kind == "station")
        ol = sum(1 for s in self.sites if s.kind == "outlet")
        cams = sum(len(s.cameras) for s in self.sites)
        guns = sum(len(s.guns) for s in self.sites)
        scales = sum(len(s.scales) for s in self.sites)
        return (
            f"ok: {len(self.sites)} sites ({st} stations, {ol} outlets), "
            f"{cams} cameras, {guns} guns, {scales} scales"
        )


def _duplicates(items: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    dup: list[str] = []
    for i in items:
        if i in seen and i not in dup:
            dup.append(i)
        seen.add(i)
    return dup


def check_unique_ids(cfg: Config) -> None:
    seen: dict[str, int] = {}
    for i, s in enumerate(cfg.sites):
        if s.id in seen:
            raise ValueError(f"@sites.{i}.id: site id(s) repeated: {s.id} (also sites[{seen[s.id]}])")
        seen[s.id] = i
    cams: dict[str, str] = {}
    for i, s in enumerate(cfg.sites):
        for j, c in enumerate(s.cameras):
            if c.id in cams:
                raise ValueError(
                    f"@sites.{i}.cameras.{j}.id: camera id(s) repeated across the city: {c.id} (also at {cams[c.id]})"
                )
            cams[c.id] = s.id


# ---------------------------------------------------------------------------
# YAML with line numbers


def _compose_with_lines(text: str) -> tuple[Any, dict[tuple[str | int, ...], int]]:
    """Parse YAML, returning the data and a map from each path to its 1-based line."""
    lines: dict[tuple[str | int, ...], int] = {}
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if node is None:
        return {}, lines
    loader = yaml.SafeLoader("")

    def walk(n: yaml.Node, path: tuple[str | int, ...]) -> Any:
        lines.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for k, v in n.value:
                key = loader.construct_object(k, deep=True)
                lines[(*path, key)] = k.start_mark.line + 1
                if key in out:
                    raise ConfigError(f"key {key!r} repeated", line=k.start_mark.line + 1)
                out[key] = walk(v, (*path, key))
            return out
        if isinstance(n, yaml.SequenceNode):
            return [walk(v, (*path, i)) for i, v in enumerate(n.value)]
        return loader.construct_object(n, deep=True)

    return walk(node, ()), lines


def _line_for(loc: tuple[str | int, ...], lines: dict[tuple[str | int, ...], int]) -> int | None:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _loc_text(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def config_errors(text: str, path: str = "<config>") -> tuple[Config | None, list[ConfigError]]:
    """Validate YAML text; return the config or every error with its line."""
    try:
        data, lines = _compose_with_lines(text)
    except ConfigError as e:
        return None, [ConfigError(e.message, path=path, line=e.line)]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(e, "problem", None) or str(e)
        return None, [ConfigError(f"YAML syntax: {problem}", path=path, line=line)]
    if not isinstance(data, dict):
        return None, [ConfigError("the top level must be a mapping", path=path, line=1)]
    try:
        return Config.model_validate(data), []
    except ValidationError as e:
        errs = []
        for err in e.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            msg = msg.removeprefix("Value error, ")
            if msg.startswith("@"):  # a cross-field check names the exact place: "@a.0.b: message"
                where, _, msg = msg[1:].partition(": ")
                loc = loc + tuple(int(p) if p.isdigit() else p for p in where.split("."))
            errs.append(ConfigError(f"{_loc_text(loc)}: {msg}", path=path, line=_line_for(loc, lines)))
        return None, errs


def load_config(path: str | os.PathLike[str]) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror}", path=str(p)) from e
    cfg, errs = config_errors(text, str(p))
    if errs:
        if len(errs) == 1:
            raise errs[0]
        first = errs[0]
        raise ConfigError(
            "\n".join(str(e) for e in errs), path=None, line=first.line
        )
    assert cfg is not None
    return apply_env(cfg)


def apply_env(cfg: Config) -> Config:
    """DATABASE_URL and MQTT_URL, when set, take precedence over the file."""
    upd: dict[str, Any] = {}
    if os.environ.get("DATABASE_URL"):
        upd["database"] = cfg.database.model_copy(update={"url": os.environ["DATABASE_URL"]})
    if os.environ.get("MQTT_URL"):
        upd["mqtt"] = cfg.mqtt.model_copy(update={"url": os.environ["MQTT_URL"]})
    return cfg.model_copy(update=upd) if upd else cfg
