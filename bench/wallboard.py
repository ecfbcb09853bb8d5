"""Wallboard benchmark: what the wall costs the server.

    .venv/bin/python -m bench.wallboard                 # full (200 tiles, 20 s phases)
    BENCH_QUICK=1 .venv/bin/python -m bench.wallboard   # under a minute (60 tiles, 4 s phases)

The real service runs in a process of its own (so its CPU can be read from /proc) against
the machine's PostgreSQL (a fresh database, dropped afterwards) and MQTT broker, with the
Haikou cameras served by the real GStreamer RTSP server (one small simulated station scene
looped on every path, 320x180 at 5 fps) and no detection rules (the wall's cost, not the
detectors'). Browsers are stood in for by aiohttp clients in this process, and by worker
processes for the WebSocket fan-out.

Phases, each measuring the service's CPU (share of one core) and the bytes per second the
clients receive:

- ``idle``: the cameras ingesting, nobody watching: the floor the others are read against.
- ``wall_snapshots``: a wall of N tiles, each refreshing its snapshot every 2 s (the
  wall's default), from one browser (6 connections, as HTTP/1.1 browsers have);
  baseline ``wall_mjpeg``: the same N tiles as MJPEG streams (the naive live wall).
- ``live_mse``: 10 focused live viewers on the live relay (fragmented MP4 over a
  WebSocket, H.264 passed through); baseline ``live_mjpeg``: the same 10 as MJPEG.
- ``fanout``: 1,000 events/s on a hub topic to 50 WebSocket clients: latency from
  publish to receipt (p50/p95/p99) and delivery, first with every client reading
  (baseline), then with one client that never reads (stalled): the others' latency must
  stay as it was, and the stalled one is dropped-and-counted, then cut off.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import multiprocessing as mp
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import machine, summary_ms

ROOT = Path(__file__).resolve().parent.parent
QUICK = os.environ.get("BENCH_QUICK") == "1"
T0 = time.monotonic()
ONLY_FANOUT = os.environ.get("BENCH_ONLY") == "fanout"  # rerun the fan-out alone (no cameras)
OUT = ROOT / "bench" / "results" / "wallboard.json"
PG = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MQTT = os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883")
PASSWORD = "bench-wall-pass-1"
TILES = 30 if QUICK else 200
PHASE_S = 2.5 if QUICK else 20.0
LIVE_VIEWERS = 10
WALL_FPS = 2.0
FANOUT_CLIENTS = 50
FANOUT_RATE = 1000
FANOUT_WORKERS = 5
REFRESH_S = 2.0  # the wall's default snapshot refresh (monitor/web/overview.py)
# What an alert event carries (monitor/alerts/model.py alert_json): events of a realistic size.
ALERT_LIKE: dict[str, Any] = {
    "id": 123456, "rule": "antistatic_during_fill", "severity": "critical", "state": "open", "site": "st-01",
    "source": "st-01-entry", "subject": "track-4711", "first_seen": "2024-05-01T06:00:00+00:00",
    "last_seen": "2024-05-01T06:00:03+00:00", "count": 3, "summary": "进入充装区前未在静电释放桩停留（停留 0.4 秒）",
    "reason": None, "latched": True, "escalation": 0, "escalated_at": None, "opened_at": "2024-05-01T06:00:00+00:00",
    "condition_active": True, "cleared_at": None, "acked_at": None, "acked_by": None, "ack_note": None,
    "reminded_at": None, "resolved_at": None, "closed_at": None, "closed_by": None, "disposition": None,
    "close_note": None, "silenced": False, "rev": 1, "incident": 123456,
}
EVENT_BYTES = len(json.dumps({"topic": "counts", "type": "bench", "seq": 1000, "t": 1.7e9, "alert": ALERT_LIKE},
                             ensure_ascii=False).encode())
TICK = os.sysconf("SC_CLK_TCK")


def ms(xs: list[float]) -> dict[str, Any]:
    """Seconds in, milliseconds out: the shared summary less its mean (wallboard.json has none)."""
    return {k: v for k, v in summary_ms(xs).items() if k != "mean"}


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (its threads included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


# --- the service in its own process ---------------------------------------------------------


def serve(config_path: str, roles: str = "api,video,control") -> None:
    """``python -m bench.wallboard --serve CONFIG [ROLES]``: the real app plus one bench-only
    route that publishes events on the hub at a given rate (the stand-in for alerts, guns,
    cameras)."""
    from aiohttp import web

    from monitor.app import build_app
    from monitor.config import load_config
    from monitor.web.keys import HUB

    cfg = load_config(config_path)
    app = build_app(cfg, roles=frozenset(roles.split(",")))
    publishing: set[asyncio.Task[None]] = set()

    async def publish(request: web.Request) -> web.Response:
        rate = float(request.query.get("rate", "1000"))
        seconds = float(request.query.get("seconds", "5"))
        hub = request.app[HUB]

        async def run() -> None:
            t0 = time.monotonic()
            n = 0
            while (elapsed := time.monotonic() - t0) < seconds:
                due = int(elapsed * rate)
                while n < due:
                    hub.publish("counts", {"type": "bench", "seq": n, "t": time.time(), "alert": ALERT_LIKE})
                    n += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(run())
        publishing.add(task)
        task.add_done_callback(publishing.discard)
        return web.json_response({"ok": True})

    lags: list[float] = []

    async def lag_monitor(app: web.Application) -> Any:
        """How late the event loop wakes a 10 ms timer: a stalled loop drops every client's events."""

        async def run() -> None:
            while True:
                t = time.monotonic()
                await asyncio.sleep(0.01)
                lags.append(time.monotonic() - t - 0.01)
                del lags[:-20000]

        task = asyncio.create_task(run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def hub_stats(request: web.Request) -> web.Response:
        hub = request.app[HUB]
        loop_lag = ms(lags) if lags else None
        if request.query.get("reset"):
            lags.clear()
        return web.json_response({"clients": [{"dropped": c.dropped, "sent": c.sent, "queued": c.queue.qsize()}
                                              for c in hub.clients], "loop_lag_ms": loop_lag})

    app.cleanup_ctx.append(lag_monitor)

    app.router.add_post("/bench/publish", publish)
    app.router.add_get("/bench/hub", hub_stats)
    web.run_app(app, host="127.0.0.1", port=cfg.server.port, print=None, access_log=None, shutdown_timeout=5)


# --- the city ---------------------------------------------------------------------------


def make_config(db: str, rtsp_port: int, port: int, tiles: int, path: Path) -> list[str]:
    """Haikou's first ``tiles`` cameras, each on its own RTSP path; the rest left out."""
    import yaml

    from monitor.config import load_config

    cfg = load_config(ROOT / "config" / "haikou.yaml")
    data = cfg.model_dump(mode="json")
    data["database"]["url"] = db
    data["mqtt"]["url"] = MQTT
    data["mqtt"]["prefix"] = f"bench{uuid.uuid4().hex[:6]}"
    data["server"]["port"] = port
    data["media"]["dir"] = str(ROOT / "var" / "bench-wall-media")
    names: list[str] = []
    for site in data["sites"]:
        keep = []
        for cam in site["cameras"]:
            if len(names) < tiles:
                cam["url"] = f"rtsp://127.0.0.1:{rtsp_port}/{cam['id']}"
                cam["detect_url"] = None
                cam["rules"] = []
                cam["detector"] = None
                keep.append(cam)
                names.append(cam["id"])
        site["cameras"] = keep
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    return names


async def add_viewer(db: str) -> None:
    import psycopg
    from psycopg.rows import dict_row

    from monitor.store.audit import Actor
    from monitor.store.migrate import migrate_url
    from monitor.web import auth

    await migrate_url(db)
    async with await psycopg.AsyncConnection.connect(db, row_factory=dict_row) as conn:
        await auth.add_user(conn, Actor.system("bench"), "wall", "viewer", PASSWORD)


async def login(base: str, connector_limit: int = 6) -> Any:
    import aiohttp

    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                 connector=aiohttp.TCPConnector(limit=connector_limit))
    r = await http.post(f"{base}/api/v1/login", json={"username": "wall", "password": PASSWORD})
    assert r.status == 200, await r.text()
    return http


# --- phases -------------------------------------------------------------------------------


class Meter:
    def __init__(self, pid: int) -> None:
        self.pid = pid

    async def measure(self, seconds: float, work: Any, warm: float) -> tuple[float, float, Any]:
        """Run ``work(stop_event)``; after ``warm`` s (connections open, streams flowing) the
        service's CPU share over ``seconds``."""
        stop = asyncio.Event()
        task = asyncio.create_task(work(stop))
        await asyncio.sleep(warm)
        c0, t0 = proc_cpu_s(self.pid), time.monotonic()
        await asyncio.sleep(seconds)
        c1, t1 = proc_cpu_s(self.pid), time.monotonic()
        stop.set()
        result = await task
        return (c1 - c0) / (t1 - t0), t1 - t0, result


async def wall_snapshots(base: str, cams: list[str], stop: asyncio.Event, window: list[float]) -> dict[str, Any]:
    """N tiles, each asking for its snapshot every REFRESH_S, spread evenly; one browser (6 connections)."""
    http = await login(base, 6)
    lat: list[float] = []
    got: dict[str, Any] = {"bytes": 0, "ok": 0, "errors": 0}
    why: dict[str, int] = {}
    got["error_kinds"] = why
    sem = asyncio.Semaphore(len(cams))

    async def tile(i: int, cam: str) -> None:
        await asyncio.sleep(REFRESH_S * i / len(cams))
        nxt = time.monotonic()
        while not stop.is_set():
            async with sem:
                t0 = time.monotonic()
                try:
                    async with http.get(f"{base}/api/v1/cameras/{cam}/snapshot.jpg?t={t0}") as r:
                        body = await r.read()
                        if r.status == 200:
                            if window[0] <= time.monotonic() <= window[1]:
                                got["bytes"] += len(body)
                                got["ok"] += 1
                                lat.append(time.monotonic() - t0)
                        else:
                            got["errors"] += 1
                            why[str(r.status)] = why.get(str(r.status), 0) + 1
                except Exception as e:
                    got["errors"] += 1
                    why[type(e).__name__] = why.get(type(e).__name__, 0) + 1
            nxt += REFRESH_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, nxt - time.monotonic()))

    try:
        await asyncio.gather(*(tile(i, c) for i, c in enumerate(cams)))
    finally:
        await http.close()
    return {**got, "latency_ms": ms(lat)}


async def mjpeg_streams(base: str, cams: list[str], stop: asyncio.Event, window: list[float]) -> dict[str, Any]:
    """One MJPEG stream per camera (unlimited connections: as many browsers as needed)."""
    http = await login(base, 0)
    got = {"bytes": 0, "errors": 0}

    async def one(cam: str) -> None:
        try:
            async with http.get(f"{base}/api/v1/cameras/{cam}/mjpeg") as r:
                if r.status != 200:
                    got["errors"] += 1
                    return
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        chunk = await asyncio.wait_for(r.content.readany(), 0.5)
                        if window[0] <= time.monotonic() <= window[1]:
                            got["bytes"] += len(chunk)
                        if not chunk:
                            return
        except Exception:
            got["errors"] += 1

    try:
        await asyncio.gather(*(one(c) for c in cams))
    finally:
        await http.close()
    return got


async def live_viewers(base: str, cams: list[str], stop: asyncio.Event, window: list[float]) -> dict[str, Any]:
    """Focused live viewers on the relay: the codec message, then binary fMP4 fragments."""
    http = await login(base, 0)
    got = {"bytes": 0, "fragments": 0, "codec_messages": 0, "errors": 0}

    async def one(cam: str) -> None:
        try:
            async with http.ws_connect(f"{base.replace('http', 'ws')}/api/v1/cameras/{cam}/live", origin=base) as ws:
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        m = await ws.receive(timeout=0.5)
                        if m.type.name == "TEXT":
                            got["codec_messages"] += 1
                        elif m.type.name == "BINARY":
                            if window[0] <= time.monotonic() <= window[1]:
                                got["bytes"] += len(m.data)
                                got["fragments"] += 1
                        else:
                            return
        except Exception:
            got["errors"] += 1

    try:
        await asyncio.gather(*(one(c) for c in cams))
    finally:
        await http.close()
    return got


# --- WebSocket fan-out ----------------------------------------------------------------------


def _fanout_worker(base: str, n: int, conn: Any) -> None:
    """A process of n readers: log in, subscribe, report ready; then, on command, measure a
    round ("start" ... "report") until "stop"."""
    asyncio.run(_fanout_clients(base, n, conn))


async def _fanout_clients(base: str, n: int, conn: Any) -> None:
    http = await login(base, 0)
    socks = []
    for _ in range(n):
        ws = await http.ws_connect(f"{base.replace('http', 'ws')}/api/v1/ws", origin=base)
        await ws.receive_json(timeout=10)  # hello
        await ws.send_json({"op": "subscribe", "topics": ["counts"], "batch": True})
        socks.append(ws)
    lat: list[float] = []
    got = {"events": 0, "overflows": 0}
    stop = asyncio.Event()

    async def read(ws: Any) -> None:
        while not stop.is_set():
            try:
                m = await ws.receive(timeout=0.5)
            except TimeoutError:
                continue
            if m.type.name != "TEXT":
                return
            now = time.time()
            for line in m.data.split("\n"):  # batched: one JSON event per line
                # Read only the publish time (a full json.loads of every event would make this
                # process, not the server, the thing measured on a 2-core machine).
                i = line.find('"t": ', 0, 80)
                if i >= 0 and '"type": "bench"' in line[:60]:
                    got["events"] += 1
                    lat.append(now - float(line[i + 5:line.index(",", i)]))
                elif '"overflow"' in line[:60]:
                    got["overflows"] += 1

    readers = [asyncio.create_task(read(ws)) for ws in socks]
    conn.send("ready")
    loop = asyncio.get_running_loop()
    while True:
        cmd = await loop.run_in_executor(None, conn.recv)
        if cmd == "start":
            lat.clear()
            got.update(events=0, overflows=0)
        elif cmd == "report":
            conn.send({"lat": list(lat), **got})
        else:
            break
    stop.set()
    await asyncio.gather(*readers)
    for ws in socks:
        await ws.close()
    await http.close()


def stalled_client(base: str, cookie: str) -> socket.socket:
    """A WebSocket that subscribes and then never reads (a frozen browser tab): a raw socket
    with a small receive buffer, so the server's writes back up as soon as they can."""
    host, port = base.removeprefix("http://").split(":")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect((host, int(port)))
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    s.sendall((f"GET /api/v1/ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: {base}\r\n"
               f"Cookie: {cookie}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert b" 101 " in head.split(b"\r\n", 1)[0], head
    payload = json.dumps({"op": "subscribe", "topics": ["counts"], "batch": True}).encode()
    mask = secrets.token_bytes(4)
    frame = bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    s.sendall(frame)
    return s


async def fanout(base: str, pid: int, *, rounds: int, seconds: float) -> dict[str, Any]:
    """Rounds alternating: 50 clients reading (baseline), then 49 reading and 1 stalled. The
    49 are the same processes throughout; the 50th is a reader or a stalled socket in this
    process. Alternating rounds put both under the same background load of the machine."""
    import aiohttp

    ctx = mp.get_context("spawn")
    readers = FANOUT_CLIENTS - 1
    sizes = [readers // FANOUT_WORKERS + (1 if i < readers % FANOUT_WORKERS else 0) for i in range(FANOUT_WORKERS)]
    pipes, procs = [], []
    for n in sizes:
        a, b = ctx.Pipe()
        p = ctx.Process(target=_fanout_worker, args=(base, n, b), daemon=True)
        p.start()
        pipes.append(a)
        procs.append(p)
    loop = asyncio.get_running_loop()
    for a in pipes:
        ok = await loop.run_in_executor(None, lambda a=a: a.poll(60))
        assert ok, "a fan-out worker did not get ready"
        a.recv()
    http = await login(base, 0)
    bench = aiohttp.ClientSession()  # the bench-only routes: no session, so no CSRF
    cookie = "; ".join(f"{c.key}={c.value}" for c in http.cookie_jar)
    out: dict[str, list[dict[str, Any]]] = {"baseline": [], "one_stalled": []}
    try:
        for _ in range(rounds):
            for kind in ("baseline", "one_stalled"):
                fiftieth: Any = None
                drain: asyncio.Task[None] | None = None
                if kind == "baseline":
                    fiftieth = await http.ws_connect(f"{base.replace('http', 'ws')}/api/v1/ws", origin=base)
                    await fiftieth.send_json({"op": "subscribe", "topics": ["counts"], "batch": True})

                    async def keep_reading(ws: Any = fiftieth) -> None:
                        async for _m in ws:
                            pass

                    drain = asyncio.create_task(keep_reading())
                else:
                    fiftieth = await asyncio.to_thread(stalled_client, base, cookie)
                await asyncio.sleep(0.3)
                for a in pipes:
                    a.send("start")
                await bench.get(f"{base}/bench/hub", params={"reset": "1"})
                c0, t0 = proc_cpu_s(pid), time.monotonic()
                r = await bench.post(f"{base}/bench/publish", params={"rate": str(FANOUT_RATE), "seconds": str(seconds)})
                assert r.status == 200, await r.text()
                await asyncio.sleep(seconds)
                cpu = (proc_cpu_s(pid) - c0) / (time.monotonic() - t0)
                await asyncio.sleep(1.0)
                hub = await (await bench.get(f"{base}/bench/hub")).json()
                results = []
                for a in pipes:
                    a.send("report")
                for a in pipes:
                    ok = await loop.run_in_executor(None, lambda a=a: a.poll(30))
                    results.append(a.recv() if ok else {"lat": [], "events": 0, "overflows": 0})
                lat = [x for r in results for x in r["lat"]]
                expected = int(FANOUT_RATE * seconds) * readers
                events = sum(r["events"] for r in results)
                drops = sorted((c["dropped"] for c in hub["clients"]), reverse=True)
                out[kind].append({"latency_ms": ms(lat), "delivered_ratio": round(events / expected, 4),
                                  "server_cpu_core_share": round(cpu, 3), "server_loop_lag_ms": hub["loop_lag_ms"],
                                  "overflows_seen_by_readers": sum(r["overflows"] for r in results),
                                  "hub_drops_top": drops[:3], "clients": len(hub["clients"])})
                if kind == "baseline":
                    await fiftieth.close()
                    assert drain is not None
                    await drain
                else:
                    fiftieth.close()
                await asyncio.sleep(0.5)
    finally:
        await http.close()
        await bench.close()
        for a in pipes:
            a.send("stop")
        for p in procs:
            await asyncio.to_thread(p.join, 10)

    def med(kind: str, q: str) -> float:
        return round(statistics.median(r["latency_ms"][q] for r in out[kind]), 2)

    return {
        "clients": FANOUT_CLIENTS, "measured_readers": readers, "rate_per_s": FANOUT_RATE, "event_bytes": EVENT_BYTES,
        "rounds": rounds, "seconds_per_round": seconds,
        "baseline": {"p50_ms_median": med("baseline", "p50"), "p95_ms_median": med("baseline", "p95"),
                     "p99_ms_median": med("baseline", "p99"),
                     "server_cpu_core_share_median": round(statistics.median(
                         r["server_cpu_core_share"] for r in out["baseline"]), 3),
                     "delivered_ratio_min": min(r["delivered_ratio"] for r in out["baseline"])},
        "one_stalled": {"p50_ms_median": med("one_stalled", "p50"), "p95_ms_median": med("one_stalled", "p95"),
                        "p99_ms_median": med("one_stalled", "p99"),
                        "server_cpu_core_share_median": round(statistics.median(
                            r["server_cpu_core_share"] for r in out["one_stalled"]), 3),
                        "delivered_ratio_min": min(r["delivered_ratio"] for r in out["one_stalled"]),
                        "stalled_client_drops": [r["hub_drops_top"][0] if r["hub_drops_top"] else 0
                                                 for r in out["one_stalled"]]},
        "per_round": out,
    }


async def wall_phases(base: str, cams: list[str], pid: int, result: dict[str, Any]) -> None:
    """Every camera online (bounded), then the idle floor and the wall's phases."""
    http = await login(base, 0)
    online = 0
    body: dict[str, Any] = {"cameras": []}
    for _ in range(120 if QUICK else 240):
        body = await (await http.get(f"{base}/api/v1/cameras")).json()
        online = sum(1 for c in body["cameras"] if c["state"] == "online")
        if online == len(cams):
            break
        await asyncio.sleep(0.5)
    states: dict[str, int] = {}
    for c in body["cameras"]:
        k = f"{c['state']}: {c.get('reason')}"
        states[k] = states.get(k, 0) + 1
    await http.close()
    result["cameras_online"] = online
    result["camera_states"] = states
    print(f"{online}/{len(cams)} cameras online after {time.monotonic() - T0:.0f}s", file=sys.stderr)
    meter = Meter(pid)

    async def phase(fn: Any, *args: Any) -> tuple[float, float, Any]:
        warm = 0.5 if QUICK else 2.0
        now = time.monotonic()
        window = [now + warm, now + warm + PHASE_S]  # bytes are counted in the CPU window
        return await meter.measure(PHASE_S, lambda stop: fn(base, *args, stop, window), warm)

    async def idle(_base: str, stop: asyncio.Event, window: list[float]) -> dict[str, Any]:
        await stop.wait()
        return {}

    cpu, dur, _ = await phase(idle)
    result["idle"] = {"cpu_core_share": round(cpu, 4), "seconds": round(dur, 1)}
    print("idle", json.dumps(result["idle"]), file=sys.stderr)
    for name, fn, args in [
        ("wall_snapshots", wall_snapshots, (cams,)),
        ("wall_mjpeg", mjpeg_streams, (cams,)),
        ("live_mse", live_viewers, (cams[:LIVE_VIEWERS],)),
        ("live_mjpeg", mjpeg_streams, (cams[:LIVE_VIEWERS],)),
    ]:
        cpu, dur, got = await phase(fn, *args)
        got = dict(got)
        got["bytes_per_s"] = round(got.pop("bytes") / PHASE_S)
        if "ok" in got:
            got["requests_per_s"] = round(got["ok"] / PHASE_S, 1)
        if "fragments" in got:
            got["fragments_per_s"] = round(got["fragments"] / PHASE_S, 1)
        result[name] = {"cpu_core_share": round(cpu, 4), "cpu_over_idle": round(cpu - result["idle"]["cpu_core_share"], 4),
                        "seconds": round(dur, 1), **got}
        print(name, json.dumps(result[name]), file=sys.stderr)
    result["idle_after"] = None
    if not QUICK:  # again: the floor drifts with the machine's other load
        cpu, dur, _ = await phase(idle)
        result["idle_after"] = {"cpu_core_share": round(cpu, 4), "seconds": round(dur, 1)}
        print("idle_after", json.dumps(result["idle_after"]), file=sys.stderr)


# --- run -------------------------------------------------------------------------------------


async def main() -> dict[str, Any]:
    from tests.support.net import free_port, port_open, wait_for
    from tests.support.rtsp import RtspServer, gst_available, scene_clips
    from tests.support.services import fresh_database

    if not gst_available():
        raise SystemExit("bench.wallboard: needs the GStreamer RTSP server (python3-gi, gst-rtsp-server)")
    clip = scene_clips(ROOT / "var" / "bench-clips", {"wall-320": ("station", 11, 6.0, (320, 180), 5.0)})["wall-320"]
    work = ROOT / "var" / "bench-wallboard"
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {}
    with fresh_database(PG, prefix="bench_wall") as db:
        # The RTSP server first (its port), then the config naming it, then the service.
        cfg_path = work / "city.yaml"
        port = free_port()
        from monitor.config import load_config as _lc

        all_cams = [c.id for _, c in _lc(ROOT / "config" / "haikou.yaml").cameras()][:TILES]
        # The cameras the live viewers watch run at 5 fps; the rest of the wall at WALL_FPS (a
        # tile refreshes every 2 s): the ingest floor is not the wall's cost, and 200 cameras
        # at 5 fps would take this 2-core machine's every cycle before the wall asked anything.
        files: dict[str, Any] = {c: (clip if i < LIVE_VIEWERS else f"{clip}@{WALL_FPS:g}") for i, c in enumerate(all_cams)}
        srv = RtspServer(files=files, log=work / "rtsp.log")
        if not ONLY_FANOUT:
            srv.start()
        try:
            cams = make_config(db, srv.port or 9, port, TILES, cfg_path)
            await add_viewer(db)
            env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0",
                   "YOLO_CONFIG_DIR": str(ROOT / "var" / "yolo"), "DATABASE_URL": "", "MQTT_URL": ""}
            base = f"http://127.0.0.1:{port}"

            def start(roles: str, logname: str) -> tuple[subprocess.Popen[bytes], Any]:
                log = open(work / logname, "wb")
                cmd = [sys.executable, "-m", "bench.wallboard", "--serve", str(cfg_path), roles]
                proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
                wait_for(lambda: port_open("127.0.0.1", port), 60, "the service to listen")
                return proc, log

            def stop(proc: subprocess.Popen[bytes], log: Any) -> None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
                log.close()
                wait_for(lambda: not port_open("127.0.0.1", port), 20, "the service to stop")

            if not ONLY_FANOUT:
                proc, log = await asyncio.to_thread(start, "api,video,control", "service.log")
                try:
                    await wall_phases(base, cams, proc.pid, result)
                finally:
                    await asyncio.to_thread(stop, proc, log)
        finally:
            srv.stop()
        # The fan-out on an api-only process (as a city deploys it: video workers apart), with
        # the cameras and the RTSP server gone, so the hub is what is measured.
        proc, log = await asyncio.to_thread(start, "api", "service-api.log")
        try:
            fan_s = 2.0 if QUICK else 10.0
            rounds = int(os.environ.get("BENCH_FANOUT_ROUNDS", "1" if QUICK else "3"))
            result["fanout"] = await fanout(base, proc.pid, rounds=rounds, seconds=fan_s)
            print("fanout", json.dumps({k: v for k, v in result["fanout"].items() if k != "per_round"}),
                  file=sys.stderr)
        finally:
            await asyncio.to_thread(stop, proc, log)
    return result


def report(r: dict[str, Any], elapsed: float) -> dict[str, Any]:
    snap, mj = r["wall_snapshots"], r["wall_mjpeg"]
    mse, lmj = r["live_mse"], r["live_mjpeg"]
    fan = r["fanout"]

    def ratio(a: float, b: float) -> float | None:
        """None where either figure is at or below zero: inside the idle floor's noise."""
        return round(a / b, 2) if a > 0 and b > 0 else None

    return {
        "area": "wallboard",
        "quick": QUICK,
        "command": ("BENCH_QUICK=1 " if QUICK else "") + ".venv/bin/python -m bench.wallboard",
        "machine": machine(
            load_avg_at_end=os.getloadavg(),
            note="shared machine: other work ran at the same time; read CPU shares against the idle floor"),
        "setup": {"tiles": TILES, "phase_s": PHASE_S, "snapshot_refresh_s": REFRESH_S,
                  "camera_stream": (f"320x180 H.264 over RTSP (GStreamer); the {LIVE_VIEWERS} live cameras at 5 fps, "
                                    f"the other tiles at {WALL_FPS:g} fps; no detection rules"),
                  "browser_connections_per_host": 6, "live_viewers": LIVE_VIEWERS,
                  "fanout": {"clients": FANOUT_CLIENTS, "rate_per_s": FANOUT_RATE, "event_bytes": EVENT_BYTES,
                             "worker_processes": FANOUT_WORKERS, "hub_batching": True,
                             "service": "api role only (no cameras), as deployed with video workers apart"},
                  "cameras_online": r["cameras_online"]},
        "figures": {
            f"wall_{TILES}_tiles_snapshots": {
                "cpu_over_idle": snap["cpu_over_idle"], "cpu_core_share": snap["cpu_core_share"],
                "bytes_per_s": snap["bytes_per_s"], "requests_per_s": snap["requests_per_s"],
                "latency_ms": snap["latency_ms"], "errors": snap["errors"]},
            "live_10_viewers_mse": {"cpu_over_idle": mse["cpu_over_idle"], "bytes_per_s": mse["bytes_per_s"],
                                    "fragments_per_s": mse["fragments_per_s"], "errors": mse["errors"]},
            "fanout_1000_per_s_50_clients_one_stalled": fan["one_stalled"],
        },
        "baselines": {
            "idle_cpu_core_share": r["idle"]["cpu_core_share"],
            "idle_cpu_core_share_after": r["idle_after"]["cpu_core_share"] if r["idle_after"] else None,
            f"wall_{TILES}_tiles_as_mjpeg_streams": {"cpu_over_idle": mj["cpu_over_idle"], "bytes_per_s": mj["bytes_per_s"]},
            "live_10_viewers_mjpeg": {"cpu_over_idle": lmj["cpu_over_idle"], "bytes_per_s": lmj["bytes_per_s"]},
            "fanout_all_50_reading": fan["baseline"],
        },
        "ratios": {
            "wall_bytes_mjpeg_over_snapshots": ratio(mj["bytes_per_s"], snap["bytes_per_s"]),
            "wall_cpu_mjpeg_over_snapshots": ratio(mj["cpu_over_idle"], snap["cpu_over_idle"]),
            "live_bytes_mjpeg_over_mse": ratio(lmj["bytes_per_s"], mse["bytes_per_s"]),
            "live_cpu_mjpeg_over_mse": ratio(lmj["cpu_over_idle"], mse["cpu_over_idle"]),
            "fanout_p95_one_stalled_over_all_reading": ratio(fan["one_stalled"]["p95_ms_median"],
                                                             fan["baseline"]["p95_ms_median"]),
        },
        "phases": r,
        "elapsed_s": round(elapsed, 1),
    }


if __name__ == "__main__":
    if len(sys.argv) in (3, 4) and sys.argv[1] == "--serve":
        serve(*sys.argv[2:])
        sys.exit(0)
    t0 = time.monotonic()
    raw = asyncio.run(main())
    if ONLY_FANOUT:
        print(json.dumps(raw["fanout"], indent=2))
        sys.exit(0)
    out = report(raw, time.monotonic() - t0)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(out, indent=2, ensure_ascii=False))
