"""``monitor demo``: a small simulated city with everything it needs, on this machine.

Uses DATABASE_URL / MQTT_URL when set; otherwise the machine's PostgreSQL and Mosquitto on
their usual ports, or private ones started here (and stopped on Ctrl-C). Creates a
database ``monitor_demo``, the demo logins, and runs the service with
``config/example-city.yaml``; the simulated city (cameras, scales, gun controllers, apps)
is started beside it when those parts are installed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg

from monitor.config import Config, load_config
from monitor.errors import ServiceUnavailable

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
DEMO_USERS = {
    "viewer": "demo-viewer-1",
    "operator": "demo-operator-1",
    "supervisor": "demo-supervisor-1",
    "admin": "demo-admin-1",
}


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _mosquitto() -> Iterator[str]:
    if os.environ.get("MQTT_URL"):
        yield os.environ["MQTT_URL"]
        return
    if _port_open(1883):
        yield "mqtt://127.0.0.1:1883"
        return
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = _free_port()
    tmp = tempfile.mkdtemp(prefix="monitor-demo-mqtt-")
    conf = Path(tmp) / "m.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if _port_open(port):
                break
            time.sleep(0.05)
        else:
            raise ServiceUnavailable("private Mosquitto did not start")
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)


def _demo_db(server: str) -> str:
    u = urlparse(server)
    admin = urlunparse(u._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as c:
        if c.execute("SELECT 1 FROM pg_database WHERE datname = 'monitor_demo'").fetchone() is None:
            c.execute("CREATE DATABASE monitor_demo")
    return urlunparse(u._replace(path="/monitor_demo"))


async def _ensure_db(db_url: str, cfg: Config) -> None:
    """Migrate, put the city's sites in, and create the demo logins."""
    from psycopg.rows import dict_row

    from monitor.store.audit import Actor
    from monitor.store.migrate import migrate
    from monitor.store.sites import sync_sites
    from monitor.web import auth

    async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row) as conn:
        await migrate(conn)
        await conn.set_autocommit(False)
        await sync_sites(conn, cfg)
        await conn.commit()
        for role, pw in DEMO_USERS.items():
            cur = await conn.execute("SELECT 1 FROM users WHERE username = %s", (role,))
            if await cur.fetchone() is None:
                await auth.add_user(conn, Actor.system("demo"), role, role, pw)
                await conn.commit()


FLAKY_CAMERA = "ol-xinbu-store"


def _demo_config(cfg: Config, db_url: str, mqtt_url: str, port: int, rtsp_port: int, flaky_port: int) -> Config:
    """The city pointed at the demo's services: its cameras on the simulated RTSP servers."""
    sites = []
    for s in cfg.sites:
        cams = [c.model_copy(update={"url": f"rtsp://127.0.0.1:{flaky_port if c.id == FLAKY_CAMERA else rtsp_port}/{c.id}",
                                     "detect_url": None})
                for c in s.cameras]
        sites.append(s.model_copy(update={"cameras": cams}))
    return cfg.model_copy(update={
        "database": cfg.database.model_copy(update={"url": db_url}),
        "mqtt": cfg.mqtt.model_copy(update={"url": mqtt_url}),
        "server": cfg.server.model_copy(update={"port": port, "host": "127.0.0.1"}),
        "sites": sites,
    })


async def _run(cfg: Config, db_url: str, args: argparse.Namespace) -> None:
    from aiohttp import web

    from monitor.app import build_app, wait_db_ready
    from monitor.sim.city import CitySim

    await _ensure_db(db_url, cfg)
    city = CitySim(cfg, f"http://127.0.0.1:{args.port}", db_url, Path(args.workdir), seed=args.seed,
                   flaky_camera=FLAKY_CAMERA if any(c.id == FLAKY_CAMERA for _, c in cfg.cameras()) else None,
                   flaky_port=args.flaky_port, rtsp_port=args.rtsp_port)
    print("  preparing the simulated city (the first run renders the camera scenes: a minute or two)…",
          flush=True)
    await city.prepare()
    await city.start_cameras()
    app = build_app(cfg)
    runner = web.AppRunner(app, shutdown_timeout=8.0, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", args.port).start()
        await wait_db_ready(app, 60)
        await city.start_actors()
        print("\n".join(_banner(args.port, db_url, cfg.mqtt.url)), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        print("  stopping…", flush=True)
    finally:
        await city.stop()
        await asyncio.wait_for(runner.cleanup(), 15)


def _banner(port: int, db_url: str, mqtt_url: str) -> list[str]:
    return [
        "",
        "  monitor demo — 燃气智慧监管 演示城市",
        f"  wallboard:  http://127.0.0.1:{port}/",
        f"  database:   {db_url}",
        f"  broker:     {mqtt_url}",
        "  logins (username / password):",
        *[f"    {role:<11} {role} / {pw}" for role, pw in DEMO_USERS.items()],
        "  planted violations: a black cylinder at 1 min, an unscanned fill at 1.5 min, an overfill at 2.5 min,",
        "  a camera dropping out at 2 min (then every 10 min); skipped discharges and over-full outlets on camera.",
        "  Ctrl-C stops everything the demo started.",
        "",
    ]


def run_demo(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if os.environ.get("DATABASE_URL"):
        db_url = os.environ["DATABASE_URL"]
    else:
        if not _port_open(5432):
            raise ServiceUnavailable("no PostgreSQL on 127.0.0.1:5432 and DATABASE_URL unset (run scripts/setup.sh services)")
        db_url = _demo_db("postgresql://postgres@127.0.0.1:5432/postgres")
    with _mosquitto() as mqtt_url:
        cfg = _demo_config(cfg, db_url, mqtt_url, args.port, args.rtsp_port, args.flaky_port)
        asyncio.run(_run(cfg, db_url, args))
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    c = sub.add_parser("demo", help="run a small simulated city on this machine")
    c.add_argument("--config", default=str(ROOT / "config" / "example-city.yaml"))
    c.add_argument("--port", type=int, default=8080)
    c.add_argument("--rtsp-port", type=int, default=8554, help="the simulated cameras' RTSP server")
    c.add_argument("--flaky-port", type=int, default=8555, help="RTSP server of the camera that drops out")
    c.add_argument("--workdir", default=str(ROOT / "var" / "demo"), help="rendered scenes and keys are kept here")
    c.add_argument("--seed", type=int, default=1)
    c.set_defaults(func=run_demo)


