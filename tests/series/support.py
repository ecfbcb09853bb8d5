"""Helpers for the series' service tests: the real service in-process (its app at hand),
API keys, users, registry rows, an MQTT publisher, and a TCP proxy that can cut the
database away and bring it back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import aiomqtt
import psycopg
from aiohttp import web
from psycopg.rows import dict_row

from monitor.app import build_app, wait_db_ready
from monitor.config import Config
from monitor.findings import Finding
from monitor.store.audit import Actor
from monitor.web import auth
from monitor.web.keys import FINDINGS
from tests.support.net import free_port


@contextlib.asynccontextmanager
async def service(cfg: Config, **kw: Any) -> AsyncIterator[tuple[str, web.Application]]:
    """The real service on loopback, with its application object."""
    app = build_app(cfg, **kw)
    runner = web.AppRunner(app, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", cfg.server.port)
    await site.start()
    try:
        await wait_db_ready(app, 30)
        yield f"http://127.0.0.1:{cfg.server.port}", app
    finally:
        await asyncio.wait_for(runner.cleanup(), 20)


class FindingLog:
    """Subscribes to the app's finding bus; waits (bounded) for a finding that matches."""

    def __init__(self, app: web.Application) -> None:
        self.items: list[Finding] = []
        self.changed = asyncio.Event()
        app[FINDINGS].subscribe(self._on)

    async def _on(self, f: Finding) -> None:
        self.items.append(f)
        self.changed.set()

    def of(self, rule: str, **kw: Any) -> list[Finding]:
        return [f for f in self.items if f.rule == rule and all(getattr(f, k) == v for k, v in kw.items())]

    async def wait(self, rule: str, limit_s: float = 10.0, **kw: Any) -> Finding:
        async with asyncio.timeout(limit_s):
            while True:
                found = self.of(rule, **kw)
                if found:
                    return found[0]
                self.changed.clear()
                await self.changed.wait()


async def api_key(db_url: str, site: str | None) -> str:
    async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row) as conn:
        return await auth.add_api_key(conn, Actor.system("test"), f"app-{uuid.uuid4().hex[:8]}", site)


async def viewer(db_url: str) -> tuple[str, str]:
    name, pw = f"v{uuid.uuid4().hex[:8]}", "correct-horse-battery-9"
    async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row) as conn:
        await auth.add_user(conn, Actor.system("test"), name, "viewer", pw)
    return name, pw


def new_code() -> str:
    return "T" + uuid.uuid4().hex[:15].upper()


async def add_cylinders(db_url: str, rows: list[dict[str, Any]]) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row) as conn:
        for r in rows:
            base = {"valve_code": "V1", "nominal_kg": 15.0, "tare_kg": 16.4, "manufactured": date(2021, 3, 1),
                    "last_inspection": None, "inspection_passed": None, "status": "in_service"}
            base.update(r)
            await conn.execute(
                """INSERT INTO cylinders (code, valve_code, owner_site, nominal_kg, tare_kg, manufactured,
                                          last_inspection, inspection_passed, status)
                   VALUES (%(code)s, %(valve_code)s, %(owner_site)s, %(nominal_kg)s, %(tare_kg)s, %(manufactured)s,
                           %(last_inspection)s, %(inspection_passed)s, %(status)s)""", base)


async def count(db_url: str, sql: str, *args: Any) -> int:
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        cur = await conn.execute(sql, args)  # type: ignore[arg-type]
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


@contextlib.asynccontextmanager
async def publisher(mqtt_url: str) -> AsyncIterator[aiomqtt.Client]:
    host, port = mqtt_url.removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(host, int(port), identifier=f"pub-{uuid.uuid4().hex[:8]}") as c:
        yield c


def reading_payload(ts: str, kg: float, gun: bool = False, cylinder: str | None = None) -> bytes:
    return json.dumps({"ts": ts, "gross_kg": kg, "gun_open": gun, "cylinder": cylinder}).encode()


@dataclass
class CuttableProxy:
    """A TCP proxy to PostgreSQL that a test can cut (the database "goes away") and restore."""

    target: tuple[str, int]
    port: int = field(default_factory=free_port)
    server: asyncio.Server | None = None
    conns: set[asyncio.StreamWriter] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            w.close()

    async def _client(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            sr, sw = await asyncio.open_connection(*self.target)
        except OSError:
            cw.close()
            return
        self.conns |= {cw, sw}
        a = asyncio.ensure_future(self._pipe(cr, sw))
        b = asyncio.ensure_future(self._pipe(sr, cw))
        self.tasks |= {a, b}
        await asyncio.gather(a, b, return_exceptions=True)
        self.tasks -= {a, b}
        self.conns -= {cw, sw}

    async def cut(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.close()
        for w in list(self.conns):
            w.transport.abort()
        self.conns.clear()
        if server is not None:
            await server.wait_closed()

    async def close(self) -> None:
        await self.cut()
        for t in list(self.tasks):
            t.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


async def until(pred: Callable[[], Any], limit_s: float, what: str) -> None:
    """Wait (bounded) until ``pred()`` (or the coroutine it returns) is true."""
    try:
        async with asyncio.timeout(limit_s):
            while True:
                got = pred()
                if asyncio.iscoroutine(got):
                    got = await got
                if got:
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out after {limit_s}s waiting for {what}") from None
