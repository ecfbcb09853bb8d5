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
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg

from monitor.config import load_config
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


async def _ensure_users(db_url: str) -> None:
    from psycopg.rows import dict_row

    from monitor.store.audit import Actor
    from monitor.store.migrate import migrate
    from monitor.web import auth

    async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row) as conn:
        await migrate(conn)
        await conn.set_autocommit(False)
        for role, pw in DEMO_USERS.items():
            cur = await conn.execute("SELECT 1 FROM users WHERE username = %s", (role,))
            if await cur.fetchone() is None:
                await auth.add_user(conn, Actor.system("demo"), role, role, pw)
                await conn.commit()


def run_demo(args: argparse.Namespace) -> int:
    from monitor.app import run

    cfg = load_config(args.config)
    if os.environ.get("DATABASE_URL"):
        db_url = os.environ["DATABASE_URL"]
    else:
        if not _port_open(5432):
            raise ServiceUnavailable("no PostgreSQL on 127.0.0.1:5432 and DATABASE_URL unset (run scripts/setup.sh services)")
        db_url = _demo_db("postgresql://postgres@127.0.0.1:5432/postgres")
    with _mosquitto() as mqtt_url:
        cfg = cfg.model_copy(update={
            "database": cfg.database.model_copy(update={"url": db_url}),
            "mqtt": cfg.mqtt.model_copy(update={"url": mqtt_url}),
            "server": cfg.server.model_copy(update={"port": args.port}),
        })
        asyncio.run(_ensure_users(db_url))
        banner = [
            "",
            "  monitor demo — 燃气智慧监管 演示城市",
            f"  wallboard:  http://127.0.0.1:{args.port}/",
            f"  database:   {db_url}",
            f"  broker:     {mqtt_url}",
            "  logins (username / password):",
            *[f"    {role:<11} {role} / {pw}" for role, pw in DEMO_USERS.items()],
            "  Ctrl-C stops everything the demo started.",
            "",
        ]
        print("\n".join(banner), flush=True)
        run(cfg, host="127.0.0.1", port=args.port)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    c = sub.add_parser("demo", help="run a small simulated city on this machine")
    c.add_argument("--config", default=str(ROOT / "config" / "example-city.yaml"))
    c.add_argument("--port", type=int, default=8080)
    c.set_defaults(func=run_demo)


