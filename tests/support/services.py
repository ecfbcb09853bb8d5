"""Start (or reuse) PostgreSQL and Mosquitto for a test session; every wait bounded."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import psycopg

from tests.support.net import free_port, port_open, wait_for


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    cands = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return cands[-1] if cands else None


@contextmanager
def postgres_server() -> Iterator[str]:
    """A maintenance URL of a running PostgreSQL: DATABASE_URL's, the machine's, or a private one."""
    env = os.environ.get("DATABASE_URL")
    if env:
        yield env
        return
    if port_open("127.0.0.1", 5432):
        yield "postgresql://postgres@127.0.0.1:5432/postgres"
        return
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        raise RuntimeError("no PostgreSQL reachable and no initdb/pg_ctl installed (apt-get install postgresql)")
    tmp = tempfile.mkdtemp(prefix="monitor-pg-")
    port = free_port()
    user = ["-U", "postgres"]
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the private cluster as 'postgres'
        shutil.chown(tmp, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*run_as, initdb, "-D", tmp + "/data", "-A", "trust", *user], check=True, capture_output=True)
    subprocess.run(
        [*run_as, pg_ctl, "-D", tmp + "/data", "-l", tmp + "/log", "-w", "-t", "30",
         "-o", f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1", "start"],
        check=True, capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", tmp + "/data", "-m", "fast", "-w", "-t", "30", "stop"],
                       capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def with_dbname(url: str, name: str) -> str:
    u = urlparse(url)
    return urlunparse(u._replace(path="/" + name))


@contextmanager
def fresh_database(server_url: str, prefix: str = "monitor_test") -> Iterator[str]:
    """Create a new, empty database; drop it afterwards."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = with_dbname(server_url, "postgres")
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_dbname(server_url, name)
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def city_database(url: str, cfg: Any) -> None:
    """Migrate ``url`` and register ``cfg``'s sites and cameras, as ``monitor migrate`` and a
    service's start do (for tests whose workers or leases need the rows first)."""
    from psycopg.rows import dict_row

    from monitor.store.migrate import migrate_url
    from monitor.store.sites import sync_sites

    await migrate_url(url)
    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
        await sync_sites(conn, cfg)
        await conn.commit()


@contextmanager
def mosquitto_server() -> Iterator[str]:
    """MQTT_URL's broker, the machine's on 1883, or a private Mosquitto on a free port."""
    env = os.environ.get("MQTT_URL")
    if env:
        yield env
        return
    if port_open("127.0.0.1", 1883):
        yield "mqtt://127.0.0.1:1883"
        return
    with private_mosquitto() as (url, _):
        yield url


@contextmanager
def private_mosquitto(port: int | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Mosquitto of our own (which a test may stop and restart)."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        raise RuntimeError("mosquitto not installed (apt-get install mosquitto)")
    port = port or free_port()
    tmp = tempfile.mkdtemp(prefix="monitor-mqtt-")
    os.chmod(tmp, 0o777)  # Mosquitto started as root drops to its own user: it must write here
    conf = Path(tmp) / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
        f"persistence_location {tmp}/\nautosave_interval 1\n"
    )
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: port_open("127.0.0.1", port), 10, f"mosquitto on {port}")
        yield f"mqtt://127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
