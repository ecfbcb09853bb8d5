"""The simulated city: cameras, scales, gun controllers and apps, with violations on a schedule.

``CitySim`` drives a running monitor service the way a real city would, through the real
contracts only: RTSP cameras (the GStreamer server serving rendered scenes), scales on
MQTT, gun controllers on MQTT (lock shadow and "no scan, no gas"), and the apps' scans
over HTTP with API keys. Most of the time everyone behaves; planted violations happen on
a schedule and each one is written to ``ledger`` (what, where, when), so a test can check
that every planted violation became exactly one alert and nothing else did.

Planted violations:

- ``antistatic_skipped``: in the station-entrance scenes (ground truth from the renderer);
- ``storage_over_capacity``: in the outlet storage scenes (count above the site's capacity);
- ``fill_without_scan``: a fill on a bypassed gun with no pre-fill scan;
- ``overfill``: a fill 1.5 kg over the cylinder's nominal fill;
- ``invalid_cylinder``: a pre-fill scan of an unregistered ("black") cylinder;
- ``device_silent`` / camera offline: a camera whose RTSP server goes away for a while.

Used by ``monitor demo``, the end-to-end test and the soak benchmark. No product module
imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import aiohttp
import psycopg
from psycopg.rows import dict_row

from monitor.config import Config, SiteConfig
from monitor.sim.apps import AppSim, scan
from monitor.sim.guns import Broker, GunFleet
from monitor.sim.scales import FillPlan, ScaleSim, fill_readings
from monitor.sim.scenes import SceneSpec, write_clip

log = logging.getLogger(__name__)
SERVER = Path(__file__).with_name("rtsp_server.py")
ENCODING = "|x264 one slice"  # part of a rendered clip's cache key


@dataclass
class Schedule:
    """When planted violations happen (seconds after the start; then every ``*_every_s``)."""

    fill_gap_s: tuple[float, float] = (20.0, 60.0)
    unscanned_fill_at_s: float = 90.0
    overfill_at_s: float = 150.0
    black_cylinder_at_s: float = 60.0
    camera_dropout_at_s: float = 120.0
    dropout_s: float = 40.0
    repeat_every_s: float = 600.0  # 0: plant each once
    clip_seconds: float = 60.0
    clip_fps: float = 8.0
    fill_rate_kg_s: float = 0.5


@dataclass
class Planted:
    rule: str
    site: str
    source: str
    at: datetime
    subject: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "site": self.site, "source": self.source, "subject": self.subject,
                "at": self.at.isoformat(), **self.details}


class RtspServer:
    """The GStreamer RTSP server as a child process (stoppable and restartable)."""

    def __init__(self, folder: Path, port: int, python: str = "/usr/bin/python3",
                 push_log: Path | None = None) -> None:
        self.folder = folder
        self.port = port
        self.python = python
        self.push_log = push_log  # "name index wall-clock" per access unit pushed (the cameras' clock)
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, timeout_s: float = 20.0) -> None:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        extra = ["--push-log", str(self.push_log)] if self.push_log is not None else []
        self.proc = await asyncio.create_subprocess_exec(
            self.python, str(SERVER), "--port", str(self.port), "--dir", str(self.folder), *extra,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env,
        )
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)
        except TimeoutError:
            line = b""
        if not line.startswith(b"READY"):
            await self.stop()
            raise RuntimeError(f"RTSP server on port {self.port} did not start (is the port taken?)")

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            proc.kill()
            await asyncio.wait_for(proc.wait(), 5)


class CitySim:
    def __init__(
        self, cfg: Config, base_url: str, db_url: str, workdir: Path, *, seed: int = 1,
        schedule: Schedule | None = None, registry_size: int = 3000, flaky_camera: str | None = None,
        rtsp_port: int = 8554, flaky_port: int | None = None, cameras: list[str] | None = None,
        clip_pool: int = 0, push_log: Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.base_url = base_url.rstrip("/")
        self.db_url = db_url
        self.workdir = workdir
        self.rng = random.Random(seed)
        self.seed = seed
        self.schedule = schedule or Schedule()
        self.registry_size = registry_size
        self.flaky_camera = flaky_camera
        self.rtsp_port = rtsp_port
        self.flaky_port = flaky_port
        self.only_cameras = set(cameras) if cameras is not None else None
        # clip_pool > 0: cameras of the same kind (and capacity) share that many rendered scenes
        # (a big city renders a handful, not one per camera); 0: one scene per camera
        self.clip_pool = clip_pool
        self.push_log = push_log
        self.ledger: list[Planted] = []
        self.scene_truth: dict[str, dict[str, Any]] = {}
        self.valid: dict[str, list[tuple[str, float, float]]] = {}  # station -> (code, nominal, tare)
        self.keys: dict[str, str] = {}
        self.servers: list[RtspServer] = []
        self.fleet: GunFleet | None = None
        self.http: aiohttp.ClientSession | None = None
        self.mqtt_pub: Any = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.plants: dict[tuple[str, str], asyncio.Queue[str]] = {}
        self.accepted_ids: set[str] = set()
        self.started_at: datetime | None = None
        self.stats = {"scans_posted": 0, "scans_accepted": 0, "readings": 0, "fills": 0}

    # ------------------------------------------------------------------ preparation

    async def prepare(self) -> None:
        """Registry, API keys and camera clips (cached under ``workdir``)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        await self._registry()
        await self._api_keys()
        await asyncio.to_thread(self._render_cameras)

    async def _registry(self) -> None:
        from monitor.series.registry import ImportReport, load_rows
        from monitor.series.validity import Cylinder, validity
        from monitor.sim.registry import generate
        from monitor.store.audit import Actor

        today = date.today()
        rows = list(generate(self.cfg, self.registry_size, seed=self.seed, today=today))
        for r in rows:
            cyl = Cylinder(*r)  # type: ignore[arg-type]
            if validity(cyl, at=today, fill_site=cyl.owner_site) == "ok":
                self.valid.setdefault(cyl.owner_site, []).append((cyl.code, cyl.nominal_kg, cyl.tare_kg))
        async with await psycopg.AsyncConnection.connect(self.db_url, row_factory=dict_row) as conn:
            cur = await conn.execute("SELECT count(*) AS n FROM cylinders")
            row = await cur.fetchone()
            if row is None or row["n"] < len(rows):
                await load_rows(conn, iter(rows), ImportReport(), actor=Actor.system("sim:city"), source="sim")

    async def _api_keys(self) -> None:
        from monitor.store.audit import Actor
        from monitor.web import auth

        path = self.workdir / "apikeys.json"
        known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        async with await psycopg.AsyncConnection.connect(self.db_url, row_factory=dict_row) as conn:
            for s in self.cfg.sites:
                name = f"sim-app-{s.id}"
                key = known.get(s.id)
                if key is not None and await auth.api_key_principal(conn, key) is not None:
                    self.keys[s.id] = key
                    continue
                await conn.execute("DELETE FROM api_keys WHERE name = %s AND revoked", (name,))
                cur = await conn.execute("SELECT 1 FROM api_keys WHERE name = %s", (name,))
                if await cur.fetchone() is not None:
                    await auth.revoke_api_key(conn, Actor.system("sim:city"), name)
                    name = f"{name}-{int(time.time())}"
                self.keys[s.id] = await auth.add_api_key(conn, Actor.system("sim:city"), name, s.id)
                await conn.commit()
        path.write_text(json.dumps(self.keys))

    def camera_dir(self, flaky: bool = False) -> Path:
        return self.workdir / ("cameras-flaky" if flaky else "cameras")

    def _render_cameras(self) -> None:
        """Render each camera's looping scene once (cached by its spec), two at a time."""
        from concurrent.futures import ProcessPoolExecutor

        sch = self.schedule
        todo: list[tuple[SceneSpec, Path]] = []
        outs: dict[str, Path] = {}
        links: list[tuple[Path, Path]] = []  # (camera's file, the pooled clip it plays)
        pooled: dict[tuple[str, int | None], int] = {}
        for site, cam in self.cfg.cameras():
            if self.only_cameras is not None and cam.id not in self.only_cameras:
                continue
            kind: Literal["station", "outlet"] = (
                "station" if "antistatic" in cam.rules or (site.kind == "station" and "storage" not in cam.rules)
                else "outlet")
            capacity = site.storage_capacity if kind == "outlet" and 1 <= site.storage_capacity <= 60 else None
            folder = self.camera_dir(cam.id == self.flaky_camera)
            folder.mkdir(parents=True, exist_ok=True)
            out = outs[cam.id] = folder / f"{cam.id}.h264"
            if self.clip_pool > 0:
                k = pooled.get((kind, capacity), 0)
                pooled[(kind, capacity)] = k + 1
                name = f"{kind}-{capacity or 'any'}-{k % self.clip_pool}"
                key = f"{self.seed}:pool:{name}"
                clip = self.workdir / "clips" / f"{name}.h264"
                links.append((out, clip))
            else:
                key, clip = f"{self.seed}:{cam.id}", out
                for old in (out, out.with_suffix(".spec"), out.with_suffix(".truth.json")):
                    if old.is_symlink():  # left by a pooled run in this folder
                        old.unlink()
            seed = int(hashlib.sha256(key.encode()).hexdigest()[:6], 16)
            spec = SceneSpec(kind=kind, seed=seed, seconds=sch.clip_seconds, fps=sch.clip_fps, size=(640, 360),
                             capacity=capacity, difficulty=0.2)
            stamp = clip.with_suffix(".spec")
            if (not clip.exists() or not stamp.exists() or stamp.read_text() != repr(spec) + ENCODING) \
                    and (spec, clip) not in todo:
                todo.append((spec, clip))
        if todo:
            log.info("rendering %d camera scene(s) of %.0f s", len(todo), sch.clip_seconds)
            with ProcessPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as pool:
                for (spec, out), _ in zip(todo, pool.map(write_clip, *zip(*todo, strict=True)), strict=True):
                    out.with_suffix(".spec").write_text(repr(spec) + ENCODING)
        for out, clip in links:  # the RTSP server serves each camera's path from its own link
            for suffix in (".h264", ".truth.json"):
                link, target = out.with_suffix(suffix), clip.with_suffix(suffix)
                if link.is_symlink() or link.exists():
                    link.unlink()
                link.symlink_to(os.path.relpath(target, link.parent))
        for cam_id, out in outs.items():
            self.scene_truth[cam_id] = json.loads(out.with_suffix(".truth.json").read_text())

    # ------------------------------------------------------------------ running

    async def start(self) -> None:
        await self.start_cameras()
        await self.start_actors()

    async def start_cameras(self) -> None:
        """The RTSP servers (start them before the service, so cameras come up online)."""
        self.started_at = datetime.now(UTC)
        main = RtspServer(self.camera_dir(), self.rtsp_port, push_log=self.push_log)
        await main.start()
        self.servers.append(main)
        if self.flaky_camera is not None and self.flaky_port is not None:
            flaky = RtspServer(self.camera_dir(True), self.flaky_port, push_log=self.push_log)
            await flaky.start()
            self.servers.append(flaky)
            self._spawn("camera-dropout", self._dropouts(flaky))

    async def start_actors(self) -> None:
        """Gun controllers, scales, apps and the planted violations (the service must be up)."""
        from monitor.mqtt import parse_mqtt_url

        m = self.cfg.mqtt
        broker = Broker(m.url, m.username, m.password, m.ca_file)
        guns = [(s.id, g) for s in self.cfg.sites for g in s.guns]
        self.fleet = GunFleet(broker, m.prefix, guns)
        await self.fleet.start()
        self.http = aiohttp.ClientSession()
        host, port, _ = parse_mqtt_url(m.url)
        import aiomqtt

        self.mqtt_pub = aiomqtt.Client(host, port, username=m.username, password=m.password,
                                       identifier=f"sim-scales-{self.seed}-{os.getpid()}", clean_session=True)
        await self.mqtt_pub.__aenter__()
        for s in self.cfg.sites:
            if s.kind == "station":
                for sc in s.scales:
                    self._spawn(f"scale-{s.id}-{sc.id}", self._station_scale(s, sc.id, sc.gun))
            else:
                self._spawn(f"outlet-{s.id}", self._outlet(s))
        self._spawn("planted", self._planted())

    def _spawn(self, name: str, coro: Any) -> None:
        async def guard() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("simulation task %s crashed", name)

        t = asyncio.get_running_loop().create_task(guard(), name=name)
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    async def stop_actors(self) -> None:
        """Stop the scales, apps, guns and the schedule (the cameras keep streaming)."""
        for t in list(self.tasks):
            t.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=10)
        if self.fleet is not None:
            await self.fleet.stop()
            self.fleet = None
        if self.mqtt_pub is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.mqtt_pub.__aexit__(None, None, None), 5)
            self.mqtt_pub = None
        if self.http is not None:
            await self.http.close()
            self.http = None

    async def stop(self) -> None:
        await self.stop_actors()
        for srv in self.servers:
            await srv.stop()
        self.servers.clear()

    # ------------------------------------------------------------------ the actors

    async def _post(self, site: str, scans: list[dict[str, Any]]) -> dict[str, Any]:
        assert self.http is not None
        app = AppSim(self.base_url, self.keys[site], self.http)
        status, reply = await app.post(scans)
        self.stats["scans_posted"] += len(scans)
        if 200 <= status < 300:
            results = reply.get("scans", [reply]) if isinstance(reply, dict) else []
            # a retried upload is answered "duplicate": what counts is each id accepted once
            self.accepted_ids.update(str(r["id"]) for r in results if r.get("stored") and "id" in r)
            self.stats["scans_accepted"] = len(self.accepted_ids)
        else:
            log.warning("scan upload for %s refused: %s %s", site, status, reply)
        return reply

    async def _publish(self, topic: str, payload: bytes) -> None:
        if self.mqtt_pub is None:  # stopping
            return
        await self.mqtt_pub.publish(topic, payload, qos=1)
        self.stats["readings"] += 1

    async def _fill(self, site: SiteConfig, scale: str, gun: str, *, code: str, nominal: float, tare: float,
                    overfill_kg: float = 0.0, scanned: bool = True, bypass: bool = False,
                    planted: Planted | None = None) -> None:
        assert self.fleet is not None
        controller = self.fleet[(site.id, gun)]
        if scanned:
            await self._post(site.id, [scan(code, site.id, "prefill_check")])
        if not bypass:
            opened, reason = await controller.open(code)
            if not opened:
                log.info("gun %s/%s stays closed for %s: %s", site.id, gun, code, reason)
                return
        plan = FillPlan(cylinder=code, tare_kg=tare, nominal_kg=nominal, start=datetime.now(UTC),
                        rate_kg_s=self.schedule.fill_rate_kg_s, overfill_kg=overfill_kg)
        sim = ScaleSim(self.cfg.mqtt.prefix, site.id, scale, self._publish)
        readings = fill_readings(site.id, scale, plan, rng=self.rng)
        if planted is not None:  # the reading that breaks the rule: the violation's own time
            limit = nominal + self.cfg.rules.correlation.overfill_tolerance_kg
            first = next((r for r in readings if (r.gun_open if planted.rule == "fill_without_scan"
                                                  else r.gross_kg - tare > limit)), None)
            if first is not None:
                planted.details["violation_at"] = first.ts.isoformat()
        await sim.play(readings)
        controller.close_valve()
        self.stats["fills"] += 1
        if scanned:
            await self._post(site.id, [scan(code, site.id, "postfill_check")])

    async def _station_scale(self, site: SiteConfig, scale: str, gun: str) -> None:
        """One scale's life: idle heartbeats, then a fill, again and again. A planted
        violation queued for this scale replaces the next normal fill (one fill at a time)."""
        lo, hi = self.schedule.fill_gap_s
        queue = self.plants.setdefault((site.id, scale), asyncio.Queue())
        sim = ScaleSim(self.cfg.mqtt.prefix, site.id, scale, self._publish)
        first = True
        while True:
            stop = asyncio.Event()
            beat = asyncio.create_task(sim.heartbeat(5.0, stop))
            gap = self.rng.uniform(0, hi) if first else self.rng.uniform(lo, hi)
            first = False
            what: str | None = None
            try:
                with contextlib.suppress(TimeoutError):
                    what = await asyncio.wait_for(queue.get(), gap)
            finally:
                stop.set()
                beat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beat
            if what is not None:
                await self._planted_fill(what, site, scale, gun)
                continue
            if not self.valid.get(site.id):
                continue
            code, nominal, tare = self.rng.choice(self.valid[site.id])
            await self._fill(site, scale, gun, code=code, nominal=nominal, tare=tare)

    async def _planted_fill(self, what: str, site: SiteConfig, scale: str, gun: str) -> None:
        code, nominal, tare = self.rng.choice(self.valid[site.id])
        now = datetime.now(UTC)
        if what == "black":
            black = f"BLK{self.rng.randrange(10**8):08d}"
            self.ledger.append(Planted("invalid_cylinder", site.id, gun, now, black, {"reason": "unregistered"}))
            await self._fill(site, scale, gun, code=black, nominal=15.0, tare=16.0)
        elif what == "unscanned":
            self.ledger.append(p := Planted("fill_without_scan", site.id, scale, now, code))
            await self._fill(site, scale, gun, code=code, nominal=nominal, tare=tare, scanned=False, bypass=True,
                             planted=p)
        else:
            self.ledger.append(p := Planted("overfill", site.id, scale, now, code))
            await self._fill(site, scale, gun, code=code, nominal=nominal, tare=tare, overfill_kg=1.5, planted=p)

    async def _outlet(self, site: SiteConfig) -> None:
        """Receive full cylinders (enough to cover what the camera shows) and deliver some."""
        stations = [s.id for s in self.cfg.sites if s.kind == "station" and self.valid.get(s.id)]
        if not stations:
            return
        stock: list[str] = []
        first = [self.rng.choice(self.valid[self.rng.choice(stations)])[0]
                 for _ in range(site.storage_capacity + 30)]
        for i in range(0, len(first), 50):
            await self._post(site.id, [scan(c, site.id, "outlet_receive") for c in first[i:i + 50]])
        stock += first
        while True:
            await asyncio.sleep(self.rng.uniform(30, 90))
            if stock and self.rng.random() < 0.6:
                c = stock.pop(self.rng.randrange(len(stock)))
                await self._post(site.id, [scan(c, site.id, "deliver")])
            else:
                c = self.rng.choice(self.valid[self.rng.choice(stations)])[0]
                await self._post(site.id, [scan(c, site.id, "outlet_receive")])
                stock.append(c)

    def _station(self, i: int) -> tuple[SiteConfig, str, str] | None:
        stations = [s for s in self.cfg.sites if s.kind == "station" and s.scales and self.valid.get(s.id)]
        if not stations:
            return None
        s = stations[i % len(stations)]
        sc = s.scales[i % len(s.scales)]
        return s, sc.id, sc.gun

    async def _planted(self) -> None:
        """Queue the planted violations on the scales, on the schedule."""
        sch = self.schedule
        events = sorted([
            (sch.black_cylinder_at_s, "black"), (sch.unscanned_fill_at_s, "unscanned"), (sch.overfill_at_s, "overfill"),
        ])
        rnd = 0
        n = 0
        t0 = time.monotonic()
        while True:
            for at, what in events:
                wait = rnd * sch.repeat_every_s + at - (time.monotonic() - t0)
                if wait > 0:
                    await asyncio.sleep(wait)
                pick = self._station(n)
                n += 1
                if pick is None:
                    return
                site, scale, _ = pick
                self.plants.setdefault((site.id, scale), asyncio.Queue()).put_nowait(what)
            if sch.repeat_every_s <= 0:
                return
            rnd += 1

    async def _dropouts(self, server: RtspServer) -> None:
        sch = self.schedule
        assert self.flaky_camera is not None
        site, _ = self.cfg.camera(self.flaky_camera)
        await asyncio.sleep(sch.camera_dropout_at_s)
        while True:
            self.ledger.append(Planted("camera_offline", site.id, self.flaky_camera, datetime.now(UTC)))
            await server.stop()
            await asyncio.sleep(sch.dropout_s)
            await server.start()
            if sch.repeat_every_s <= 0:
                return
            await asyncio.sleep(max(1.0, sch.repeat_every_s - sch.dropout_s))

    # ------------------------------------------------------------------ ground truth

    def video_truth(self, since: datetime, until: datetime,
                    origins: dict[str, list[tuple[datetime, datetime | None]]] | None = None) -> list[Planted]:
        """Planted video violations in [since, until], in wall time.

        A path's clip starts when its first client connects and then loops; ``origins``
        gives, per camera, the spans the service's connection was up (start, end or None):
        each restarts the clip (the server was restarted) and nothing is planted while the
        camera was down. By default one span from ``started_at``."""
        assert self.started_at is not None
        out: list[Planted] = []
        for cam_id, truth in self.scene_truth.items():
            site, _ = self.cfg.camera(cam_id)
            length = float(truth.get("spec", {}).get("seconds", self.schedule.clip_seconds))
            ev = truth.get("events", {})
            spans = sorted((origins or {}).get(cam_id) or [(self.started_at, None)])
            for origin, end in spans:
                stop = until if end is None else min(until, end)
                loops = int((stop - origin).total_seconds() // length) + 1
                for k in range(loops):
                    base = origin.timestamp() + k * length
                    for p in ev.get("people", []):
                        if p.get("violation") and p.get("filling_s") is not None:
                            at = datetime.fromtimestamp(base + float(p["filling_s"]), UTC)
                            if since <= at <= stop:
                                out.append(Planted("antistatic_skipped", site.id, cam_id, at, str(p.get("track"))))
                    if ev.get("capacity") not in (None, site.storage_capacity):
                        continue  # a scene drawn for another capacity (a station's store): not over this one
                    for a, b in ev.get("over_capacity", []):
                        at = datetime.fromtimestamp(base + float(a), UTC)
                        if since <= at <= stop:
                            out.append(Planted("storage_over_capacity", site.id, cam_id, at,
                                               details={"until": datetime.fromtimestamp(base + float(b), UTC)
                                                        .isoformat()}))
        return out

    def video_truth_pushed(self, pushes: dict[str, list[tuple[int, float]]], since: datetime,
                           until: datetime) -> list[Planted]:
        """Planted video violations in [since, until] at the wall time their first frame was
        pushed by the RTSP server (``read_push_log``): exact whatever the connections did
        (a server restarted, a path torn down and resumed). ``details["frame"]``: the frame."""
        out: list[Planted] = []
        for cam_id, truth in self.scene_truth.items():
            site, _ = self.cfg.camera(cam_id)
            fps = float(truth.get("spec", {}).get("fps", self.schedule.clip_fps))
            ev = truth.get("events", {})
            marks: dict[int, list[tuple[str, str | None, int | None]]] = {}  # frame -> (rule, subject, end frame)
            for p in ev.get("people", []):
                if p.get("violation") and p.get("filling_s") is not None:
                    marks.setdefault(math.ceil(float(p["filling_s"]) * fps), []).append(
                        ("antistatic_skipped", str(p.get("track")), None))
            if ev.get("capacity") in (None, site.storage_capacity):
                for a, b in ev.get("over_capacity", []):
                    marks.setdefault(math.ceil(float(a) * fps), []).append(
                        ("storage_over_capacity", None, math.ceil(float(b) * fps)))
            if not marks:
                continue
            for idx, t in pushes.get(cam_id, []):
                for rule, subject, end in marks.get(idx, []):
                    at = datetime.fromtimestamp(t, UTC)
                    if since <= at <= until:
                        d: dict[str, Any] = {"frame": idx}
                        if end is not None:
                            d["until"] = datetime.fromtimestamp(t + (end - idx) / fps, UTC).isoformat()
                        out.append(Planted(rule, site.id, cam_id, at, subject, d))
        return sorted(out, key=lambda p: p.at)


def read_push_log(path: Path) -> dict[str, list[tuple[int, float]]]:
    """The RTSP server's ``--push-log`` ("name index wall-clock" per access unit pushed):
    per camera, (index of the frame in its clip, wall time), in order."""
    out: dict[str, list[tuple[int, float]]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3:
                with contextlib.suppress(ValueError):
                    out.setdefault(parts[0], []).append((int(parts[1]), float(parts[2])))
    return out


def python_with_gi() -> str:
    """The Python that runs the RTSP server (Debian's, with python3-gi)."""
    return "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
