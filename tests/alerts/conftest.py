"""Alerts test kit: a migrated template database cloned per test, the engine on an injected
clock, the real service on loopback with its app at hand, and logged-in staff."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from aiohttp import web
from psycopg.rows import dict_row

from monitor.alerts.clock import ManualClock
from monitor.alerts.engine import AlertEngine
from monitor.alerts.service import CLOCK_SERVICE, AlertsService
from monitor.config import Config, load_config
from monitor.findings import Finding
from monitor.store.db import Database
from monitor.web.keys import ALERTS, FINDINGS, SERVICES
from tests.conftest import ROOT, city_config
from tests.support.api import Staff, logged_in, on_loopback
from tests.support.services import with_dbname

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def alerts_template(pg_server: str) -> Iterator[str]:
    """A migrated database used only as the template each test's database is cloned from."""
    name = f"alerts_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = with_dbname(pg_server, "postgres")
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    try:
        from monitor.store.migrate import migrate_url

        asyncio.run(migrate_url(with_dbname(pg_server, name)))
        yield name
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def alerts_db(pg_server: str, alerts_template: str) -> Iterator[str]:
    """A fresh, migrated database of the test's own (cloned from the template: fast)."""
    name = f"alerts_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = with_dbname(pg_server, "postgres")
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}" TEMPLATE "{alerts_template}"')
    try:
        yield with_dbname(pg_server, name)
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def alerts_config(db_url: str, tmp: Path, mqtt: str = "mqtt://127.0.0.1:1883", **alerts: Any) -> Config:
    """The example city, media under ``tmp``, with ``alerts`` overrides."""
    base = city_config(db_url, mqtt) if mqtt else load_config(ROOT / "config" / "example-city.yaml")
    a = base.alerts.model_validate({**base.alerts.model_dump(), **alerts})
    media = base.media.model_copy(update={"dir": str(tmp / "media"), "preroll_s": 2.0, "postroll_s": 1.0})
    return base.model_copy(update={"alerts": a, "media": media,
                                   "database": base.database.model_copy(update={"url": db_url})})


def make_finding(rule: str = "antistatic_skipped", *, site: str = "st-minwang", source: str = "st-minwang-entry",
                 subject: str = "track-1", ts: datetime | None = None, active: bool = True,
                 severity: str | None = None, details: dict[str, Any] | None = None,
                 image: bytes | None = None) -> Finding:
    kw: dict[str, Any] = {}
    if image is not None:
        kw["image"] = image
    return Finding(rule=rule, site=site, source=source, subject=subject, ts=ts or T0, summary=f"{rule} {subject}",
                   active=active, severity=severity,  # type: ignore[arg-type]
                   reason="scrapped" if rule == "invalid_cylinder" else None, details=details or {}, **kw)


@dataclass
class EngineEnv:
    db: Database
    url: str
    cfg: Config
    clock: ManualClock
    engine: AlertEngine
    events: list[dict[str, Any]] = field(default_factory=list)

    async def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return await rows(self.url, sql, *args)

    def kinds(self) -> list[str]:
        return [e["change"] for e in self.events if e.get("type") == "alert"]


@asynccontextmanager
async def engine_env(url: str, tmp: Path, **alerts: Any) -> AsyncIterator[EngineEnv]:
    cfg = alerts_config(url, tmp, mqtt="", **{"update_event_min_s": 0, **alerts})
    db = Database(url, min_size=1, max_size=4)
    await db.open()
    try:
        clock = ManualClock(T0)
        env = EngineEnv(db, url, cfg, clock, AlertEngine(db=db, cfg=cfg, clock=clock))
        env.engine.publish_fn = lambda topic, event: env.events.append(event)
        await env.engine.rebuild()
        yield env
    finally:
        await db.close()


async def rows(db_url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row) as conn:
        cur = await conn.execute(sql.encode(), args)
        return [dict(r) for r in await cur.fetchall()]


@dataclass
class Running:
    base: str
    app: web.Application

    @property
    def svc(self) -> AlertsService:
        return self.app[ALERTS]

    async def submit(self, *fs: Finding) -> None:
        """Hand findings to the service's finding bus and wait (bounded) until they are written."""
        bus = self.app[FINDINGS]
        for f in fs:
            await bus.submit(f)
        await bus.drain(10)
        await self.svc.engine.drain(10)


@asynccontextmanager
async def serve(cfg: Config, *, clock: Any = None, evidence: Any = None,
                roles: frozenset[str] = frozenset({"api", "control", "video"})) -> AsyncIterator[Running]:
    """The real service on loopback with its app at hand; ``clock`` and ``evidence`` injected."""
    from monitor.app import build_app

    app = build_app(cfg, roles=roles, client_id=f"alerts-{uuid.uuid4().hex[:6]}")
    if clock is not None:
        app[SERVICES][CLOCK_SERVICE] = clock
    if evidence is not None:
        app[SERVICES]["evidence"] = evidence
    async with on_loopback(app, cfg.server.port,
                           ready=lambda: asyncio.wait_for(app[ALERTS].engine.ready.wait(), 30)) as base:
        yield Running(base, app)


def staff(base: str, db_url: str, role: str, name: str | None = None) -> AbstractAsyncContextManager[Staff]:
    """``name`` (by default ``al-<role>``) logged in with ``role``."""
    return logged_in(base, db_url, role, name or f"al-{role}")


async def ws_until(ws: aiohttp.ClientWebSocketResponse, pred: Any, timeout_s: float = 10.0) -> dict[str, Any]:
    """The first message satisfying ``pred`` (bounded)."""
    async with asyncio.timeout(timeout_s):
        while True:
            msg = await ws.receive_json()
            if pred(msg):
                return dict(msg)


def later(s: float) -> datetime:
    return T0 + timedelta(seconds=s)
