"""Session-wide test services: a fresh database on a real PostgreSQL and a real Mosquitto."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from monitor.config import Config, load_config
from tests.support.net import free_port
from tests.support.services import fresh_database, mosquitto_server, postgres_server

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")
os.environ.setdefault("YOLO_CONFIG_DIR", str(ROOT / "var" / "yolo"))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def mqtt_url() -> Iterator[str]:
    with mosquitto_server() as url:
        yield url


@pytest.fixture(scope="session")
def session_db(pg_server: str) -> Iterator[str]:
    """One migrated database for the whole session (tests must not depend on its being empty)."""
    with fresh_database(pg_server) as url:
        from monitor.store.migrate import migrate_url

        asyncio.run(migrate_url(url))
        yield url


@pytest.fixture
def fresh_db(pg_server: str) -> Iterator[str]:
    """An empty, unmigrated database of the test's own."""
    with fresh_database(pg_server) as url:
        yield url


@pytest.fixture
async def db_conn(session_db: str) -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
    conn = await psycopg.AsyncConnection.connect(session_db, row_factory=dict_row)
    async with conn:
        yield conn


def city_config(db_url: str, mqtt: str, **overrides: Any) -> Config:
    """The example city pointed at the test services, with a random MQTT prefix."""
    cfg = load_config(ROOT / "config" / "example-city.yaml")
    import uuid

    prefix = f"t{uuid.uuid4().hex[:8]}"
    upd: dict[str, Any] = {
        "database": cfg.database.model_copy(update={"url": db_url}),
        # its own client id: services of concurrent test runs on one broker never kick each other off
        "mqtt": cfg.mqtt.model_copy(update={"url": mqtt, "prefix": prefix, "client_id": f"monitor-{prefix}"}),
        "server": cfg.server.model_copy(update={"port": free_port()}),
    }
    upd.update(overrides)
    return cfg.model_copy(update=upd)


@asynccontextmanager
async def running_service(cfg: Config, **kw: Any) -> AsyncIterator[str]:
    """The real service on loopback; yields its base URL once the database is ready."""
    from aiohttp import web

    from monitor.app import build_app, wait_db_ready

    app = build_app(cfg, **kw)
    runner = web.AppRunner(app, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", cfg.server.port)
    await site.start()
    try:
        await wait_db_ready(app, 30)
        yield f"http://127.0.0.1:{cfg.server.port}"
    finally:
        await asyncio.wait_for(runner.cleanup(), 15)


@pytest.fixture(scope="session")
def timescale_url() -> Iterator[str]:
    """A real TimescaleDB (in WebAssembly) on loopback; one connection at a time."""
    from tests.support.timescale import timescale_server

    with timescale_server() as url:
        yield url
