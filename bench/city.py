"""The whole city under load: the soak of issue 9, against the real service in its own process(es).

    .venv/bin/python -m bench.city                  # 10 minutes, 50 cameras, 200 readings/s, 20 scans/s
    BENCH_QUICK=1 .venv/bin/python -m bench.city    # the same city for 60 s

Size by environment: ``BENCH_SECONDS`` (600; quick 60), ``BENCH_CAMERAS`` (50),
``BENCH_READINGS_PER_S`` (200), ``BENCH_SCANS_PER_S`` (20), ``BENCH_ROLES`` (the runs, in turn:
``all``: one ``monitor run`` with every role; ``split``: ``--role video`` in a process of its
own beside ``--role api,control``; default ``all,split``), ``BENCH_CLIP_POOL`` (2 rendered
scenes per kind of camera), ``BENCH_WAIT_QUIET`` (seconds to wait for other heavy jobs before
starting; 1200, quick 0), ``BENCH_DRAIN_MAX`` (seconds to wait after the load for the accepted
rows to be stored; 600, quick 120), ``BENCH_MAX_CAMERAS`` (the video worker's
``media.max_cameras`` in the split run: it analyses that many cameras and the rest stay
unassigned; default: no limit), ``BENCH_OUT`` (the result file).

What runs, all on loopback:

- **The service**: ``monitor run`` in processes of its own (their memory and CPU are theirs):
  every role (api, video with the detector, control) in one, or the video role apart.
- **The city**: the example city replicated until it has ``BENCH_CAMERAS`` cameras (3
  stations and 6 outlets a copy; outlets licensed for 12 cylinders), every camera on the
  simulator's GStreamer RTSP server at 8 fps, detection at 5 fps. Cameras of one kind share
  a pool of rendered looping scenes (``CitySim(clip_pool=...)``); each camera's path still
  plays its clip from its own first connection. ``monitor.sim.city.CitySim`` drives the
  stations' scales, gun controllers and apps and plants violations on a schedule (a black
  cylinder, an unscanned fill, an overfill every minute; one outlet camera dropping out).
- **The load** (two more processes): scale readings over MQTT (QoS 1) at
  ``BENCH_READINGS_PER_S`` from 100 scales of 10 load stations (idle readings: the ingest
  and the writer, not the fill rules), and scans over HTTP with a per-station API key at
  ``BENCH_SCANS_PER_S`` (pre-fill then post-fill check pairs of registered cylinders), on
  top of the city's own readings and scans. The broker is a private Mosquitto with the
  centre's settings (``docker/mosquitto/mosquitto.conf``: ``max_queued_messages 1000000``).
- **The wall**: a WebSocket client logged in as a viewer, subscribed like the wallboard
  (``alerts``, ``cameras``, ``guns``, ``counts``, batched). Alert latency is the time an
  alert's ``raised``/``reopened`` event reaches it minus the violation's true time: for
  video violations, the wall time the RTSP server pushed the first frame that shows it
  (the scene's ground truth through ``--push-log``); for correlated ones, the reading that
  broke the rule (the first gun-open reading of an unscanned fill, the first reading over
  the limit of an overfill), the black cylinder's scan, the moment the camera's server
  stopped.

Reported: the service's memory (first-minute vs last-minute median RSS) and CPU; frames
decoded / sampled / gated / handed to the detector / replaced before it took them /
dropped by the model / analysed, per-camera analysed fps; alert latency p50/p95/max and
the sorted latencies per rule and per kind (video, correlated), with the planted
violations that got no alert; rows lost (accepted by a PUBACK or a 2xx, not in the
database after the drain: must be 0), each load reading and scan checked by its key; a
timeline every 15 s (RSS, analysed and decoded fps, the detector queue, the alert inbox,
``/healthz`` time, the database connections). Several runs (``BENCH_ROLES``) go into one
``bench/results/city.json``: a summary of each, then each run in full.
"""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from psycopg.rows import dict_row

from bench.common import fire_paced, idle_reading, machine, pct

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUICK = os.environ.get("BENCH_QUICK") == "1"
SECONDS = float(os.environ.get("BENCH_SECONDS", "60" if QUICK else "600"))
CAMERAS = int(os.environ.get("BENCH_CAMERAS", "50"))
READINGS_PER_S = float(os.environ.get("BENCH_READINGS_PER_S", "200"))
SCANS_PER_S = float(os.environ.get("BENCH_SCANS_PER_S", "20"))
CLIP_POOL = int(os.environ.get("BENCH_CLIP_POOL", "2"))
WAIT_QUIET_S = float(os.environ.get("BENCH_WAIT_QUIET", "0" if QUICK else "1200"))
# each in turn: "all" (one process, every role), "split" (the video role apart from api,control)
ROLES = [r.strip() for r in os.environ.get("BENCH_ROLES", "all,split").split(",") if r.strip()]
OUT = Path(os.environ.get("BENCH_OUT", str(ROOT / "bench" / "results" / "city.json")))
MAX_CAMERAS = int(os.environ["BENCH_MAX_CAMERAS"]) if os.environ.get("BENCH_MAX_CAMERAS") else None
PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
LOAD_SITES, LOAD_SCALES = 10, 10  # load stations, scales each
OUTLET_CAPACITY = 12
FLAKY = "ol-qingnian-store"
WARMUP_S = 10.0  # planted violations this soon after the start are not timed (tracks already in view)
TAIL_S = 15.0  # nor those this close to the end
DRAIN_S = 30.0  # the wall listens this long after the load stops (cameras still streaming)
DRAIN_MAX_S = float(os.environ.get("BENCH_DRAIN_MAX", "120" if QUICK else "600"))  # for the rows' backlog
PASSWORD = "bench city wall"
WORK = ROOT / "var" / "bench-city"
HEAVY = ("bench.detectors", "pytest", "monitor.detectors.train", "tune_clips", "cache_dets")
BROKER_CONF = ("max_queued_messages 1000000\nmax_inflight_messages 1000\nmax_queued_bytes 0\n"
               "set_tcp_nodelay true\n")
TICK = os.sysconf("SC_CLK_TCK")


def _pct(xs: list[float], q: float) -> float | None:
    return round(pct(xs, q), 3) if xs else None


def summary_s(xs: list[float]) -> dict[str, Any]:
    s = sorted(xs)
    return {"n": len(s), "p50": _pct(s, 0.5), "p95": _pct(s, 0.95), "max": round(s[-1], 3) if s else None,
            "sorted": [round(x, 2) for x in s]}


BUCKETS = (1, 2, 5, 10, 20, 30, 60)


def histogram(xs: list[float]) -> dict[str, int]:
    out: dict[str, int] = {}
    lo = 0.0
    for hi in (*BUCKETS, math.inf):
        out[f"{lo:g}-{hi:g}s" if hi != math.inf else f">{lo:g}s"] = sum(1 for x in xs if lo <= x < hi)
        lo = hi
    return out


# --- processes --------------------------------------------------------------------------------


def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


class Service:
    """One ``monitor run`` process (its roles, its port), its log in WORK/service-<name>.log."""

    def __init__(self, name: str, roles: str, port: int) -> None:
        self.name, self.roles, self.port = name, roles, port
        self.base = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: Any = None

    def start(self, cfg_path: Path, env: dict[str, str]) -> None:
        self.log = open(WORK / f"service-{self.name}.log", "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "monitor"), "run", "--config", str(cfg_path), "--role", self.roles,
             "--port", str(self.port)], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def check(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"the service {self.name} exited; see {WORK / f'service-{self.name}.log'}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.log is not None:
            self.log.close()


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return (sum(v[:8]) - idle) / TICK, sum(v[:8]) / TICK


def heavy_jobs() -> list[str]:
    me = os.getpid()
    out = subprocess.run(["pgrep", "-fa", "|".join(HEAVY)], capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() if ln and int(ln.split()[0]) != me and "pgrep" not in ln]


def wait_quiet(limit_s: float) -> dict[str, Any]:
    """Wait (bounded) for other heavy jobs on this machine to end; say what was still running."""
    t0 = time.monotonic()
    seen = heavy_jobs()
    while seen and time.monotonic() - t0 < limit_s:
        time.sleep(20)
        seen = heavy_jobs()
    return {"waited_s": round(time.monotonic() - t0), "still_running": seen,
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}


class Broker:
    """A private Mosquitto with the centre's queue settings."""

    def __init__(self) -> None:
        from tests.support.net import free_port

        self.port = free_port()
        self.tmp = tempfile.mkdtemp(prefix="bench-city-mqtt-")
        conf = Path(self.tmp) / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n{BROKER_CONF}")
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        from tests.support.net import port_open, wait_for

        wait_for(lambda: port_open("127.0.0.1", self.port), 10, "mosquitto")
        self.url = f"mqtt://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        shutil.rmtree(self.tmp, ignore_errors=True)


# --- the load (other processes) ------------------------------------------------------------------


def _readings_proc(url: str, prefix: str, scales: list[tuple[str, str]], rate: float, seconds: float,
                   out: Any) -> None:
    out.put(asyncio.run(_readings(url, prefix, scales, rate, seconds)))


async def _readings(url: str, prefix: str, scales: list[tuple[str, str]], rate: float,
                    seconds: float) -> dict[str, Any]:
    """Idle readings, round-robin over ``scales``, at ``rate``; QoS 1, a PUBACK counts as accepted."""
    import logging

    import aiomqtt

    logging.getLogger("mqtt").setLevel(logging.ERROR)
    host, port = url.removeprefix("mqtt://").split(":")
    acked: list[tuple[str, str, str]] = []
    failed = 0
    last: dict[tuple[str, str], datetime] = {}
    async with aiomqtt.Client(host, int(port), identifier=f"bench-load-{uuid.uuid4().hex[:8]}",
                              max_inflight_messages=200, logger=logging.getLogger("mqtt")) as c:

        async def one(site: str, scale: str, ts: datetime, body: bytes) -> None:
            nonlocal failed
            try:
                await c.publish(f"{prefix}/{site}/scale/{scale}/reading", body, qos=1, timeout=60)
                acked.append((site, scale, ts.isoformat()))
            except Exception:
                failed += 1

        def reading(i: int) -> Awaitable[None]:
            site, scale = scales[i % len(scales)]
            return one(site, scale, *idle_reading(last, site, scale, i))

        offered, wall = await fire_paced(rate, seconds, reading)
    return {"offered": offered, "acked": acked, "failed": failed, "seconds": round(wall, 1),
            "cpu_s": time.process_time()}


def _scans_proc(base: str, keys: dict[str, str], codes: dict[str, list[str]], rate: float, seconds: float,
                out: Any) -> None:
    out.put(asyncio.run(_scans(base, keys, codes, rate, seconds)))


async def _scans(base: str, keys: dict[str, str], codes: dict[str, list[str]], rate: float,
                 seconds: float) -> dict[str, Any]:
    """Scans at ``rate`` as the apps post them (one a request, retried with the same id on a
    failure): a pre-fill check, then the same cylinder's post-fill check at the next slot of
    its station. A 2xx that says stored (or duplicate of an earlier try) counts as accepted."""
    from monitor.sim.apps import AppSim, scan

    sites = sorted(keys)
    accepted: list[str] = []
    refused: Counter[str] = Counter()
    lat: list[float] = []
    sem = asyncio.Semaphore(32)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as http:
        apps = {s: AppSim(base, keys[s], http) for s in sites}

        async def one(site: str, body: dict[str, Any]) -> None:
            async with sem:
                t = time.perf_counter()
                status, reply = await apps[site].post([body])
                lat.append(time.perf_counter() - t)
            if 200 <= status < 300:
                for r in reply.get("scans", [reply]) if isinstance(reply, dict) else []:
                    if "id" in r and (r.get("stored") or r.get("duplicate")):
                        accepted.append(str(r["id"]))
            else:
                refused[str(status)] += 1

        def posting(i: int) -> Awaitable[None]:
            pair = i // 2
            site = sites[pair % len(sites)]
            code = codes[site][(pair // len(sites)) % len(codes[site])]
            return one(site, scan(code, site, "prefill_check" if i % 2 == 0 else "postfill_check", operator="bench"))

        offered, wall = await fire_paced(rate, seconds, posting)
    return {"offered": offered, "accepted": accepted, "refused": dict(refused), "seconds": round(wall, 1),
            "cpu_s": time.process_time(),
            "request_ms": {"p50": _pct([x * 1000 for x in lat], 0.5), "p95": _pct([x * 1000 for x in lat], 0.95),
                           "max": round(max(lat) * 1000, 1) if lat else None}}


# --- the city ------------------------------------------------------------------------------------


def make_configs(db: str, mqtt: str, rtsp_port: int, flaky_port: int) -> tuple[Any, Any]:
    """(the service's config, the simulated city's part of it): the example city replicated
    until it has CAMERAS cameras, plus the load stations (no cameras, scales only)."""
    from monitor.config import AlertsConfig, ScaleConfig, SiteConfig
    from tests.conftest import city_config

    base = city_config(db, mqtt)
    sites: list[Any] = []
    left, copy = CAMERAS, 1
    while left > 0:
        for s in base.sites:
            if left <= 0:
                break
            sfx = "" if copy == 1 else f"-{copy}"
            cams = []
            for c in s.cameras[:left]:
                cid = c.id + sfx
                port = flaky_port if cid == FLAKY else rtsp_port
                cams.append(c.model_copy(update={"id": cid, "url": f"rtsp://127.0.0.1:{port}/{cid}",
                                                 "detect_url": None}))
            left -= len(cams)
            upd: dict[str, Any] = {"id": s.id + sfx, "cameras": cams}
            if s.kind == "outlet":
                upd["storage_capacity"] = OUTLET_CAPACITY
            if copy > 1 and s.name:
                upd["name"] = f"{s.name} {copy}"
            sites.append(s.model_copy(update=upd))
        copy += 1
    rules = base.rules.model_copy(update={
        "storage": base.rules.storage.model_copy(update={"window_s": 3.0, "hold_s": 5.0}),
        # a spool of its own: the default (var/spool/series) is shared with every other run here,
        # and a service flushes at start what an earlier one left there (into this database)
        "correlation": base.rules.correlation.model_copy(update={"spool_dir": str(WORK / "spool")})})
    city = base.model_copy(update={
        "sites": sites, "rules": rules, "alerts": AlertsConfig(clear_hold_s=2.0),
        "media": base.media.model_copy(update={"dir": str(WORK / "media"), "max_cameras": MAX_CAMERAS}),
        "detector": base.detector.model_copy(update={"weights": str(ROOT / "models" / "lpg-sim" / "best.pt")}),
    })
    load = [SiteConfig(id=f"ld-{i + 1:02d}", kind="station", name=f"load {i + 1}", storage_capacity=400,
                       guns=[f"g{j + 1}" for j in range(LOAD_SCALES)],
                       scales=[ScaleConfig(id=f"s{j + 1}", gun=f"g{j + 1}") for j in range(LOAD_SCALES)])
            for i in range(LOAD_SITES)]
    return city.model_copy(update={"sites": [*sites, *load]}), city


async def prepare_db(db: str, cfg: Any) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Migrations, sites, the wall's login, the load stations' API keys (and cylinder codes)."""
    from monitor.store.audit import Actor
    from monitor.store.migrate import migrate
    from monitor.store.sites import sync_sites
    from monitor.web import auth

    keys: dict[str, str] = {}
    codes: dict[str, list[str]] = {}
    async with await psycopg.AsyncConnection.connect(db, row_factory=dict_row) as conn:
        await migrate(conn)
        await conn.set_autocommit(False)
        await sync_sites(conn, cfg)
        await auth.add_user(conn, Actor.system("bench"), "wall", "viewer", PASSWORD)
        await conn.commit()
        for i, s in enumerate(x for x in cfg.sites if x.id.startswith("ld-")):
            keys[s.id] = await auth.add_api_key(conn, Actor.system("bench"), f"bench-load-{s.id}", s.id)
            codes[s.id] = [f"LD{i + 1:02d}{k:06d}" for k in range(500)]
    return keys, codes


async def add_load_cylinders(db: str, codes: dict[str, list[str]]) -> None:
    """The load stations' cylinders (after the city's registry: CitySim loads its own only
    into a registry smaller than it)."""
    async with await psycopg.AsyncConnection.connect(db) as conn:
        async with conn.cursor() as cur, cur.copy(
                "COPY cylinders (code, owner_site, nominal_kg, tare_kg, manufactured, status) FROM STDIN") as cp:
            for site, cs in codes.items():
                for c in cs:
                    await cp.write_row((c, site, 15, 16.4, date(2021, 1, 1), "in_service"))
        await conn.commit()


def parse_metrics(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def total(m: dict[str, dict[Any, float]], name: str) -> float:
    return sum(m.get(name, {}).values())


def per_label(m: dict[str, dict[Any, float]], name: str, label: str) -> dict[str, float]:
    return {dict(k).get(label, ""): v for k, v in m.get(name, {}).items()}


class Wall:
    """A wallboard's WebSocket: logged in as a viewer, subscribed as the wall does (batched)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.events: list[tuple[float, str, dict[str, Any]]] = []  # (received, change, alert)
        self.frames = 0
        self.overflows = 0
        self.connects = 0
        self.subscribed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            r = await http.post(f"{self.base}/api/v1/login", json={"username": "wall", "password": PASSWORD})
            assert r.status == 200, await r.text()
            while True:
                try:
                    async with http.ws_connect(f"{self.base.replace('http', 'ws')}/api/v1/ws", origin=self.base,
                                               heartbeat=20) as ws:
                        self.connects += 1
                        await ws.receive_json(timeout=10)  # hello
                        await ws.send_json({"op": "subscribe", "topics": ["alerts", "cameras", "guns", "counts"],
                                            "batch": True})
                        async for msg in ws:
                            if msg.type != aiohttp.WSMsgType.TEXT:
                                continue
                            now = time.time()
                            self.frames += 1
                            for line in msg.data.split("\n"):
                                if line.startswith('{"topic": "alerts"'):
                                    ev = json.loads(line)
                                    if ev.get("type") == "alert" and ev.get("change") in ("raised", "reopened"):
                                        self.events.append((now, ev["change"], ev["alert"]))
                                elif line.startswith('{"topic": "subscribed"'):
                                    self.subscribed.set()
                                elif line.startswith('{"topic": "overflow"'):
                                    self.overflows += 1
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.5)

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name="wall")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


# --- matching alerts to their causes ---------------------------------------------------------------


def _t(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


def violation_time(p: Any) -> float:
    """When a planted violation happened: the reading that broke the rule where the ledger
    knows it (fills), else the ledger's time (the black cylinder's scan, the server stop)."""
    return _t(p.details.get("violation_at")) or p.at.timestamp()


def match(planted: list[Any], events: list[tuple[float, str, dict[str, Any]]]) -> tuple[
        dict[str, list[float]], dict[str, list[dict[str, Any]]], list[int]]:
    """Each planted violation to at most one alert event (raised or reopened) and back.
    Returns (latencies by rule, missed planted by rule, indexes of the events used)."""
    used: set[int] = set()
    lat: dict[str, list[float]] = {}
    missed: dict[str, list[dict[str, Any]]] = {}

    def take(p: Any, at: float, i: int) -> None:
        used.add(i)
        lat.setdefault(p.rule, []).append(events[i][0] - at)

    # anti-static: one alert per person, matched on its first_seen (the detector's frame time)
    pairs = []
    anti = [p for p in planted if p.rule == "antistatic_skipped"]
    for k, p in enumerate(anti):
        for i, (_, _, a) in enumerate(events):
            if a["rule"] == "antistatic_skipped" and a["source"] == p.source:
                d = abs((_t(a["first_seen"]) or 0.0) - p.at.timestamp())
                if d <= 5.0:
                    pairs.append((d, k, i))
    got: set[int] = set()
    for _, k, i in sorted(pairs):
        if k not in got and i not in used:
            got.add(k)
            take(anti[k], anti[k].at.timestamp(), i)
    for k, p in enumerate(anti):
        if k not in got:
            missed.setdefault(p.rule, []).append(p.as_json())
    # the rest: the first unused event of the same rule and cause after the violation
    for p in sorted((p for p in planted if p.rule != "antistatic_skipped"), key=violation_time):
        at = violation_time(p)
        limit = 60.0 if p.rule == "storage_over_capacity" else 120.0
        for i, (recv, _, a) in enumerate(events):
            if i in used or a["rule"] != p.rule or a["site"] != p.site or not at - 1.0 <= recv <= at + limit:
                continue
            if p.rule in ("storage_over_capacity", "camera_offline") and a["source"] != p.source:
                continue
            if p.rule == "invalid_cylinder" and a["subject"] != p.subject:
                continue
            if p.rule in ("fill_without_scan", "overfill") and (a["source"], a["subject"]) != (p.source, p.subject):
                continue
            take(p, at, i)
            break
        else:
            missed.setdefault(p.rule, []).append(p.as_json())
    return lat, missed, sorted(used)


# --- the run ---------------------------------------------------------------------------------------


async def run(roles: str, quiet: dict[str, Any]) -> dict[str, Any]:
    from monitor.sim.city import CitySim, Schedule, read_push_log
    from tests.support.net import free_port
    from tests.support.services import fresh_database

    if roles not in ("all", "split"):
        raise SystemExit(f"bench.city: BENCH_ROLES: {roles!r} is not all or split")
    WORK.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(WORK / "spool", ignore_errors=True)
    shutil.rmtree(WORK / "media", ignore_errors=True)
    broker = Broker()
    push_log = WORK / "push.log"
    push_log.unlink(missing_ok=True)
    try:
        with fresh_database(PG, prefix="monitor_bench_city") as db:
            rtsp_port, flaky_port = free_port(), free_port()
            cfg, city_cfg = make_configs(db, broker.url, rtsp_port, flaky_port)
            keys, codes = await prepare_db(db, cfg)
            base = f"http://127.0.0.1:{cfg.server.port}"
            sched = Schedule(fill_gap_s=(5.0, 15.0), black_cylinder_at_s=10, unscanned_fill_at_s=25, overfill_at_s=40,
                             camera_dropout_at_s=50, dropout_s=20, repeat_every_s=60, clip_seconds=60, clip_fps=8,
                             fill_rate_kg_s=1.0)
            city = CitySim(city_cfg, base, db, WORK, schedule=sched, registry_size=3000,
                           flaky_camera=FLAKY if any(c.id == FLAKY for _, c in city_cfg.cameras()) else None,
                           rtsp_port=rtsp_port, flaky_port=flaky_port, clip_pool=CLIP_POOL, push_log=push_log)
            t_prep = time.monotonic()
            await city.prepare()
            await add_load_cylinders(db, codes)
            prep_s = time.monotonic() - t_prep
            cfg_path = WORK / "city.yaml"
            import yaml

            cfg_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), allow_unicode=True, sort_keys=False))
            await city.start_cameras()
            env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0",
                   "YOLO_CONFIG_DIR": str(ROOT / "var" / "yolo"), "DATABASE_URL": db, "MQTT_URL": broker.url}
            # one process with every role, or the video role apart (api and control in the other)
            services = ([Service("all", "all", cfg.server.port)] if roles == "all" else
                        [Service("api", "api,control", cfg.server.port), Service("video", "video", free_port())])
            for svc in services:
                await asyncio.to_thread(svc.start, cfg_path, env)
            wall = Wall(base)
            try:
                return await measure(cfg, city, services, wall, broker.url, keys, codes, read_push_log, push_log,
                                     db, quiet, prep_s)
            finally:
                await wall.stop()
                for svc in services:
                    await asyncio.to_thread(svc.stop)
                await city.stop()
    finally:
        broker.stop()


async def _until(pred: Any, limit_s: float, step_s: float = 1.0) -> bool:
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if await pred():
            return True
        await asyncio.sleep(step_s)
    return False


async def measure(cfg: Any, city: Any, services: list[Service], wall: Wall, mqtt: str,
                  keys: dict[str, str], codes: dict[str, list[str]], read_push_log: Any, push_log: Path, db: str,
                  quiet: dict[str, Any], prep_s: float) -> dict[str, Any]:
    base = services[0].base  # the API (HTTP, WebSocket, scans)
    video_base = services[-1].base  # the cameras
    # anon: /metrics without the session cookie (no session look-up in the database)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http, \
            aiohttp.ClientSession() as anon:
        async def healthy() -> bool:
            ok = True
            for svc in services:
                svc.check()
                try:
                    async with http.get(f"{svc.base}/healthz") as r:
                        ok = ok and r.status == 200
                except aiohttp.ClientError:
                    ok = False
            return ok

        t_start = time.monotonic()
        if not await _until(healthy, 120):
            raise RuntimeError("the service did not become healthy within 120 s")
        r = await http.post(f"{base}/api/v1/login", json={"username": "wall", "password": PASSWORD})
        assert r.status == 200

        n_cams = len(list(cfg.cameras()))
        cams_seen: list[str] = []

        async def all_online() -> bool:
            async with http.get(f"{video_base}/api/v1/cameras") as r:
                body = await r.json()
            if r.status != 200 or not isinstance(body, dict) or "cameras" not in body:
                cams_seen.append(f"{r.status} {str(body)[:100]}")
                return False
            return sum(1 for c in body["cameras"] if c.get("state") == "online") == n_cams

        online = await _until(all_online, 120, 2.0)
        startup_s = time.monotonic() - t_start
        wall.start()
        await asyncio.wait_for(wall.subscribed.wait(), 30)

        scrape_errors: list[str] = []

        async def metrics() -> dict[str, dict[Any, float]] | None:
            """Every process's /metrics, summed by sample."""
            out: dict[str, dict[Any, float]] = {}
            for svc in services:
                try:
                    async with anon.get(f"{svc.base}/metrics", timeout=aiohttp.ClientTimeout(total=20)) as r:
                        if r.status != 200:
                            scrape_errors.append(f"{svc.name}: {r.status} {(await r.text())[:100]}")
                            return None
                        for name, samples_ in parse_metrics(await r.text()).items():
                            into = out.setdefault(name, {})
                            for k, v in samples_.items():
                                into[k] = into.get(k, 0.0) + v
                except (aiohttp.ClientError, TimeoutError) as e:
                    scrape_errors.append(f"{svc.name}: {type(e).__name__}")
                    return None
            return out

        async def must_metrics() -> dict[str, dict[Any, float]]:
            for _ in range(10):
                m = await metrics()
                if m is not None:
                    return m
                await asyncio.sleep(2)
            raise RuntimeError(f"/metrics did not answer: {scrape_errors[-3:]}")

        async def db_activity() -> dict[str, int]:
            """The service's connections by state (pg_stat_activity), and how many wait on a lock."""
            try:
                async with await psycopg.AsyncConnection.connect(db, autocommit=True) as c:
                    cur = await c.execute(
                        "SELECT coalesce(state, '?'), (wait_event_type = 'Lock'), count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid() GROUP BY 1, 2")
                    out: Counter[str] = Counter()
                    for state, lock, n in await cur.fetchall():
                        out[state] += n
                        if lock:
                            out["waiting_on_lock"] += n
                    return dict(out)
            except psycopg.Error as e:
                return {"error": 1, type(e).__name__: 1}

        scales = [(s.id, sc.id) for s in cfg.sites if s.id.startswith("ld-") for sc in s.scales]
        ctx = mp.get_context("spawn")
        q_read, q_scan = ctx.Queue(), ctx.Queue()
        p_read = ctx.Process(target=_readings_proc, args=(mqtt, cfg.mqtt.prefix, scales, READINGS_PER_S, SECONDS,
                                                          q_read), daemon=True)
        p_scan = ctx.Process(target=_scans_proc, args=(base, keys, codes, SCANS_PER_S, SECONDS, q_scan), daemon=True)
        m0 = await must_metrics()
        p_read.start()
        p_scan.start()
        await city.start_actors()
        t0 = time.time()
        c0 = {svc.name: proc_cpu_s(svc.pid) for svc in services}
        busy0 = machine_busy()
        rtsp_pids = [s.proc.pid for s in city.servers if s.proc is not None]
        r0 = {pid: proc_cpu_s(pid) for pid in rtsp_pids}
        samples: list[tuple[float, float]] = []  # (t, RSS of the service's processes together)
        rss: dict[str, list[tuple[float, float]]] = {svc.name: [] for svc in services}
        health_ms: list[float] = []
        bench_cpu0 = time.process_time()

        async def probe() -> None:
            t = time.perf_counter()
            try:
                async with anon.get(f"{base}/healthz", timeout=aiohttp.ClientTimeout(total=30)) as r:
                    await r.read()
                health_ms.append((time.perf_counter() - t) * 1000)
            except (aiohttp.ClientError, TimeoutError):
                health_ms.append(30_000.0)

        timeline: list[dict[str, Any]] = []
        m_prev, t_prev = m0, t0
        m1: dict[str, dict[Any, float]] | None = None
        while (el := time.time() - t0) < SECONDS:
            await asyncio.sleep(min(5.0, max(0.1, SECONDS - el)))
            for svc in services:
                svc.check()
            await probe()
            el = time.time() - t0
            for svc in services:
                rss[svc.name].append((el, proc_rss_mb(svc.pid)))
            samples.append((el, sum(v[-1][1] for v in rss.values())))
            if len(samples) % 3 == 0 or el >= SECONDS:  # every 15 s
                got = await metrics()
                if got is None:
                    timeline.append({"t_s": round(el), "rss_mb": round(samples[-1][1]), "metrics": scrape_errors[-1],
                                     "db_connections": await db_activity()})
                    continue
                m = got
                dt = time.time() - t_prev
                timeline.append({
                    "t_s": round(el), "rss_mb": round(samples[-1][1]),
                    "analysed_fps": round((total(m, "monitor_detector_frames_total")
                                           - total(m_prev, "monitor_detector_frames_total")) / dt, 1),
                    "decoded_fps": round((total(m, "monitor_camera_frames_decoded_total")
                                          - total(m_prev, "monitor_camera_frames_decoded_total")) / dt, 1),
                    "detector_queue": total(m, "monitor_detector_queue_depth"),
                    "alert_inbox": total(m, "monitor_alert_inbox"),
                    "healthz_ms": round(health_ms[-1]),
                    "db_connections": await db_activity(),
                })
                m_prev, t_prev = m, time.time()
                if m1 is None and el >= 60:
                    m1 = m
        wall_s = time.time() - t0
        jobs_at_end = heavy_jobs()
        cpu = {svc.name: proc_cpu_s(svc.pid) - c0[svc.name] for svc in services}
        bench_cpu = time.process_time() - bench_cpu0
        busy1 = machine_busy()
        rtsp_cpu = sum((proc_cpu_s(pid) if alive(pid) else r0[pid]) - r0[pid] for pid in rtsp_pids)
        m_end = await must_metrics()
        end = datetime.now(UTC)
        await city.stop_actors()
        loads = [await asyncio.to_thread(q.get, True, 180) for q in (q_read, q_scan)]
        for p in (p_read, p_scan):
            await asyncio.to_thread(p.join, 30)
        read_res, scan_res = loads
        ledger = list(city.ledger)
        stats = dict(city.stats)
        city_ids = set(city.accepted_ids)
        acked = {(s, sc, ts) for s, sc, ts in read_res["acked"]}
        load_ids = set(scan_res["accepted"])
        city_sites = [s.id for s in cfg.sites if not s.id.startswith("ld-")]
        async with await psycopg.AsyncConnection.connect(db) as conn:
            async def stored() -> tuple[int, int, set[str]]:
                cur = await conn.execute("SELECT count(*) FROM scale_readings WHERE site_id LIKE 'ld-%%'")
                n_load = (await cur.fetchone() or (0,))[0]
                cur = await conn.execute("SELECT count(*) FROM scale_readings WHERE site_id = ANY(%s)",
                                         (city_sites,))
                n_city = (await cur.fetchone() or (0,))[0]
                cur = await conn.execute("SELECT id FROM scan_ids WHERE id = ANY(%s)", (list(load_ids | city_ids),))
                ids = {r[0] for r in await cur.fetchall()}
                await conn.commit()
                return n_load, n_city, ids

            # The drain: the wall listens at least DRAIN_S for the last violations' alerts, and
            # every accepted row must reach the database (a backlog at the broker or in the
            # writer is late, not lost): wait for it, bounded by DRAIN_MAX_S.
            at_end = await stored()
            backlog_at_end = {"readings": len(acked) + stats["readings"] - at_end[0] - at_end[1],
                              "scans": len((load_ids | city_ids) - at_end[2])}
            t_drain = time.monotonic()
            drain: list[dict[str, Any]] = []
            while True:
                n_load, n_city, ids = await stored()
                el = time.monotonic() - t_drain
                done = n_load >= len(acked) and n_city >= stats["readings"] and ids >= (load_ids | city_ids)
                if (done and el >= DRAIN_S) or el >= DRAIN_MAX_S or any(
                        s.proc is None or s.proc.poll() is not None for s in services):
                    break
                if not drain or el - drain[-1]["t_s"] >= 15:
                    drain.append({"t_s": round(el), "readings_waiting": len(acked) + stats["readings"] - n_load
                                  - n_city, "scans_waiting": len((load_ids | city_ids) - ids)})
                await asyncio.sleep(2)
            all_stored_after_s = round(el, 1) if done else None
            cur = await conn.execute("SELECT site_id, scale_id, ts FROM scale_readings WHERE site_id LIKE 'ld-%%'")
            in_db = {(s, sc, ts.isoformat()) for s, sc, ts in await cur.fetchall()}
            cur = await conn.execute("SELECT rule, site LIKE 'ld-%%', count(*), min(first_seen), max(first_seen) "
                                     "FROM alerts GROUP BY 1, 2 ORDER BY 3 DESC")
            alert_rows = await cur.fetchall()
            cur = await conn.execute("SELECT camera_id FROM camera_leases WHERE worker IS NOT NULL "
                                     "AND expires_at > now() ORDER BY 1")
            leased = [r[0] for r in await cur.fetchall()]
        m_final = await must_metrics()
    pushes = await asyncio.to_thread(read_push_log, push_log)
    since = datetime.fromtimestamp(t0 + WARMUP_S, UTC)
    until = end - timedelta(seconds=TAIL_S)
    video = city.video_truth_pushed(pushes, since, until)
    # a planted fill counts once its violating reading was sent (not a fill cut short by the end)
    correlated = [p for p in ledger if since.timestamp() <= violation_time(p) <= until.timestamp()
                  and (p.rule not in ("overfill", "fill_without_scan") or "violation_at" in p.details)]
    planted = video + correlated
    lat, missed, used = match(planted, wall.events)
    in_window = [e for e in wall.events if t0 + WARMUP_S <= e[0]]
    unmatched = Counter(f"{a['rule']}@{'load' if a['site'].startswith('ld-') else 'city'}"
                        for i, (recv, _, a) in enumerate(wall.events)
                        if i not in used and since.timestamp() <= recv <= until.timestamp())
    video_rules = ("antistatic_skipped", "storage_over_capacity")
    by_kind = {"video": [x for r in video_rules for x in lat.get(r, [])],
               "correlated": [x for r, xs in lat.items() if r not in video_rules for x in xs]}
    planted_n = Counter(p.rule for p in planted)
    # split run with a capacity: the video rules on the cameras a worker held (the others
    # were unassigned on purpose, and said so)
    held = set(leased) if len(services) > 1 else {c.id for _, c in cfg.cameras()}
    missed_keys = {json.dumps(m, sort_keys=True, default=str) for ms in missed.values() for m in ms}
    on_held = {r: {"planted": sum(1 for p in planted if p.rule == r and p.source in held),
                   "alerted": sum(1 for p in planted if p.rule == r and p.source in held
                                  and json.dumps(p.as_json(), sort_keys=True, default=str) not in missed_keys)}
               for r in (*video_rules, "camera_offline")}

    # frames over the soak (from its start to its end)
    def delta(name: str) -> float:
        return total(m_end, name) - total(m0, name)

    # what the cameras' rules ask (a storage-only camera: 1 fps unless configured)
    wanted_fps = sum(c.detect.fps for _, c in cfg.cameras() if c.rules and c.id in held)
    per_cam = per_label(m_end, "monitor_detector_camera_frames_total", "camera")
    per_cam0 = per_label(m0, "monitor_detector_camera_frames_total", "camera")
    cam_fps = sorted((per_cam.get(c.id, 0.0) - per_cam0.get(c.id, 0.0)) / wall_s for _, c in cfg.cameras())
    first_min = [m for t, m in samples if t <= 60] or [samples[0][1]]
    last_min = [m for t, m in samples if t >= wall_s - 60] or [samples[-1][1]]
    load_lost = len(acked - in_db)
    city_scans_lost = len(city_ids - ids)
    load_scans_lost = len(load_ids - ids)
    return {
        "area": "city",
        "quick": QUICK,
        "command": " ".join([*(f"{k}={os.environ[k]}" for k in ("BENCH_QUICK", "BENCH_SECONDS", "BENCH_CAMERAS",
                                                                "BENCH_READINGS_PER_S", "BENCH_SCANS_PER_S",
                                                                "BENCH_CLIP_POOL", "BENCH_ROLES", "BENCH_DRAIN_MAX",
                                                                "BENCH_WAIT_QUIET", "BENCH_MAX_CAMERAS", "BENCH_OUT")
                                   if k in os.environ),
                             ".venv/bin/python -m bench.city"]),
        "machine": machine(note="2 cores shared by the service, the RTSP simulator, PostgreSQL, Mosquitto, the "
                                "load and the city simulator (and, see other_jobs, other engineers' work)",
                           load_avg_at_end=[round(x, 2) for x in os.getloadavg()]),
        "other_jobs": {**quiet, "still_running_at_the_end_of_the_soak": jobs_at_end},
        "setup": {
            "seconds": round(wall_s, 1), "cameras": n_cams,
            "roles": "all" if len(services) == 1 else "split",
            "processes": {svc.name: svc.roles for svc in services}, "camera_fps": 8,
            "detect_fps": sorted({f"{c.detect.fps:g} ({'+'.join(c.rules)})" for _, c in cfg.cameras() if c.rules}),
            "sites": len([s for s in cfg.sites if not s.id.startswith("ld-")]),
            "stations": len([s for s in cfg.sites if s.kind == "station" and not s.id.startswith("ld-")]),
            "outlets": len([s for s in cfg.sites if s.kind == "outlet"]),
            "city_scales": sum(len(s.scales) for s in cfg.sites if not s.id.startswith("ld-")),
            "load_stations": LOAD_SITES, "load_scales": LOAD_SITES * LOAD_SCALES,
            "offered_readings_per_s": READINGS_PER_S, "offered_scans_per_s": SCANS_PER_S,
            "clip_pool": CLIP_POOL, "rendered_scenes": len({p.resolve() for p in (WORK / "cameras").glob("*.h264")}
                                                          | {p.resolve() for p in (WORK / "cameras-flaky").glob("*.h264")}),
            "render_and_registry_s": round(prep_s, 1), "service_startup_to_all_cameras_online_s": round(startup_s, 1),
            "all_cameras_online_at_start": online, "camera_list_errors": cams_seen[-3:],
            "schedule": {"black_cylinder_at_s": 10, "unscanned_fill_at_s": 25, "overfill_at_s": 40,
                         "camera_dropout": f"{FLAKY} at 50 s for 20 s", "repeat_every_s": 60},
            "rules": {"storage": {"window_s": 3.0, "hold_s": 5.0}, "alerts_clear_hold_s": 2.0,
                      "antistatic_dwell_s": cfg.rules.antistatic.dwell_s},
            "broker": BROKER_CONF.strip().split("\n"),
        },
        "figures": {
            "memory_mb": {"first_minute_median": _pct(first_min, 0.5), "last_minute_median": _pct(last_min, 0.5),
                          "growth_mb": round((_pct(last_min, 0.5) or 0) - (_pct(first_min, 0.5) or 0), 1),
                          "max": round(max(m for _, m in samples), 1),
                          **({f"{k}_first_last_minute_median": [_pct([m for t, m in v if t <= 60], 0.5),
                                                                 _pct([m for t, m in v if t >= wall_s - 60], 0.5)]
                              for k, v in rss.items()} if len(rss) > 1 else {})},
            "cpu_cores": {"service": round(sum(cpu.values()) / wall_s, 3),
                          **({f"service_{k}": round(v / wall_s, 3) for k, v in cpu.items()} if len(cpu) > 1 else {}),
                          "rtsp_simulator": round(rtsp_cpu / wall_s, 3),
                          "city_simulator_and_wall": round(bench_cpu / wall_s, 3),
                          "load_publishers": round((read_res["cpu_s"] + scan_res["cpu_s"]) / wall_s, 3),
                          "machine_busy": round((busy1[0] - busy0[0]) / wall_s, 3),
                          "machine_cores": os.cpu_count()},
            "frames": {
                "decoded": delta("monitor_camera_frames_decoded_total"),
                "sampled_to_detect_fps": delta("monitor_camera_frames_sampled_total"),
                "held_back_by_motion_gate": delta("monitor_camera_frames_gated_total"),
                "handed_to_detector": delta("monitor_camera_frames_sent_total"),
                "replaced_before_detector_took_them": delta("monitor_camera_frames_dropped_total"),
                "dropped_by_detector": delta("monitor_detector_dropped_total"),
                "analysed": delta("monitor_detector_frames_total"),
                "wanted_at_detect_fps": round(wanted_fps * wall_s),
                "wanted_fps": wanted_fps,
                "analysed_share_of_wanted": round(delta("monitor_detector_frames_total") / (wanted_fps * wall_s), 3),
                "decode_errors": delta("monitor_camera_decode_errors_total"),
                "reconnects": delta("monitor_camera_reconnects_total"),
                "per_camera_analysed_fps": {"min": _pct(cam_fps, 0), "p50": _pct(cam_fps, 0.5),
                                            "max": _pct(cam_fps, 1.0),
                                            "cameras_at_4_5_fps_or_more": sum(1 for x in cam_fps if x >= 4.5)},
                "first_minute_analysed_fps": (round((total(m1, "monitor_detector_frames_total")
                                                     - total(m0, "monitor_detector_frames_total")) / 60, 1)
                                              if m1 else None),
            },
            "alert_latency_s": {
                "from": "the violation's first frame pushed by the camera (video) or the reading / scan / "
                        "server stop that broke the rule (correlated), to the alert event at the wall",
                "all": {**summary_s(by_kind["video"] + by_kind["correlated"]),
                        "histogram": histogram(by_kind["video"] + by_kind["correlated"])},
                **{k: {**summary_s(v), "histogram": histogram(v)} for k, v in by_kind.items()},
                "by_rule": {r: {"planted": planted_n[r], "alerted": len(lat.get(r, [])), **summary_s(lat.get(r, []))}
                            for r in sorted(planted_n)},
                "missed": {r: {"n": len(v), "first": v[:5]} for r, v in missed.items()},
                "alert_events_at_wall": len(in_window), "events_without_planted_cause": dict(unmatched),
                "camera_rules_on_cameras_a_worker_ran": on_held,
                "wall": {"frames": wall.frames, "overflows": wall.overflows, "connects": wall.connects},
            },
            "rows": {
                "readings": {"load_offered": read_res["offered"], "load_acked": len(acked),
                             "load_failed": read_res["failed"], "load_stored": n_load, "load_lost": load_lost,
                             "load_per_s": round(len(acked) / max(1e-9, read_res["seconds"]), 1),
                             "city_acked": stats["readings"], "city_stored": n_city,
                             "city_lost": max(0, stats["readings"] - n_city),
                             "refused_by_service": total(m_final, "monitor_series_readings_refused_total")},
                "scans": {"load_offered": scan_res["offered"], "load_accepted": len(load_ids),
                          "load_refused": scan_res["refused"], "load_stored": len(load_ids & ids),
                          "load_lost": load_scans_lost,
                          "load_per_s": round(len(load_ids) / max(1e-9, scan_res["seconds"]), 1),
                          "request_ms": scan_res["request_ms"],
                          "city_accepted": len(city_ids), "city_stored": len(city_ids & ids),
                          "city_lost": city_scans_lost},
                "note": "accepted = PUBACK (readings) or a 2xx that says stored (scans); lost = accepted but not "
                        "in the database when the bench stopped, after the drain: a backlog still draining then "
                        "(see drain) is counted as lost here",
                "lost_total": load_lost + max(0, stats["readings"] - n_city) + city_scans_lost + load_scans_lost,
                "not_yet_stored_when_the_load_ended": backlog_at_end,
                "all_stored_s_after_the_load_ended": all_stored_after_s, "drain_limit_s": DRAIN_MAX_S,
                "drain": drain,
            },
            "healthz_ms": {"n": len(health_ms), "p50": _pct(health_ms, 0.5), "p95": _pct(health_ms, 0.95),
                           "max": round(max(health_ms)) if health_ms else None,
                           "what": "GET /healthz every 5 s (the event loop and a pooled SELECT 1)"},
            "metrics_scrape_failures": scrape_errors,
            "timeline": timeline,
            "capacity": {"max_cameras": MAX_CAMERAS, "cameras_leased_at_end": len(leased) if len(services) > 1
                         else None, "unassigned_gauge_at_end": total(m_final, "monitor_video_cameras_unassigned"),
                         "detector_behind_gauge_at_end": total(m_final, "monitor_detector_cameras_behind")},
            "alerts_in_db": {f"{r[0]}@{'load' if r[1] else 'city'}": {
                "n": r[2], "first_seen_s_after_start": [round(r[3].timestamp() - t0), round(r[4].timestamp() - t0)]}
                for r in alert_rows},
        },
        "baseline": {"note": "memory growth is the last minute's median RSS of the service against its first "
                             "minute's in the same run; the earlier run of this bench (10 cameras, 7 scales, the "
                             "service in the bench's process) is in docs/notes/issue-9.md"},
        "time": datetime.now(UTC).isoformat(),
    }


def summary(r: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of one run."""
    f = r["figures"]
    lat = f["alert_latency_s"]
    return {
        "processes": r["setup"]["processes"],
        "memory_growth_mb": f["memory_mb"]["growth_mb"], "service_cpu_cores": f["cpu_cores"]["service"],
        "frames_analysed_share": f["frames"]["analysed_share_of_wanted"],
        "analysed_fps_per_camera_p50": f["frames"]["per_camera_analysed_fps"]["p50"],
        "alert_latency_p95_s": {k: lat[k]["p95"] for k in ("all", "video", "correlated")},
        "alerted_of_planted": {k: f"{v['alerted']}/{v['planted']}" for k, v in lat["by_rule"].items()},
        "rows_lost": f["rows"]["lost_total"],
        "rows_not_stored_when_the_load_ended": f["rows"]["not_yet_stored_when_the_load_ended"],
        "all_stored_s_after_the_load_ended": f["rows"]["all_stored_s_after_the_load_ended"],
        "scan_request_ms_p50": f["rows"]["scans"]["request_ms"]["p50"], "healthz_ms_p50": f["healthz_ms"]["p50"],
    }


def main() -> None:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(ROOT / "var" / "yolo"))
    quiet = wait_quiet(WAIT_QUIET_S)
    runs = []
    for roles in ROLES:
        runs.append(asyncio.run(run(roles, quiet)))
        (WORK / f"result-{roles}.json").write_text(json.dumps(runs[-1], indent=1, ensure_ascii=False, default=str))
        quiet = {"waited_s": 0, "still_running": heavy_jobs(),
                 "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}
    out = runs[0] if len(runs) == 1 else {
        "area": "city", "quick": QUICK, "command": runs[0]["command"], "machine": runs[0]["machine"],
        "summary": {r["setup"]["roles"]: summary(r) for r in runs},
        "runs": runs, "time": datetime.now(UTC).isoformat()}
    text = json.dumps(out, indent=1, ensure_ascii=False, default=str)
    print(text)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text + "\n")


if __name__ == "__main__":
    main()
