"""The real service on loopback, and staff logged in to its API (cookie + CSRF).

    async with on_loopback(app, cfg.server.port, ready=lambda: svc.wait_ready(30)) as base:
        async with logged_in(base, db_url, "operator", "al-operator") as op:
            status, body = await op.post("/api/v1/...", {...})
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import psycopg
from aiohttp import web
from psycopg.rows import dict_row

from monitor.store.audit import Actor
from monitor.web import auth

PASSWORD = "correct horse battery"


@asynccontextmanager
async def on_loopback(app: web.Application, port: int,
                      ready: Callable[[], Awaitable[object]] | None = None) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1:``port``; yields its base URL once its database is reachable and
    ``ready`` (the service under test's own readiness) has returned. Every wait bounded."""
    from monitor.app import wait_db_ready

    runner = web.AppRunner(app, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        await wait_db_ready(app, 30)
        if ready is not None:
            await ready()
        yield f"http://127.0.0.1:{port}"
    finally:
        await asyncio.wait_for(runner.cleanup(), 20)


async def ensure_user(db_url: str, name: str, role: str) -> None:
    """A user ``name`` with ``role`` and the password ``PASSWORD``; one already there is kept."""
    async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row) as conn:
        with contextlib.suppress(Exception):
            await auth.add_user(conn, Actor.system("test"), name, role, PASSWORD)


class Staff:
    """A logged-in person talking to the API (cookie + CSRF)."""

    def __init__(self, http: aiohttp.ClientSession, base: str, csrf: str, name: str) -> None:
        self.http, self.base, self.csrf, self.name = http, base, csrf, name

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        headers = {"X-CSRF-Token": self.csrf, **kw.pop("headers", {})}
        r = await self.http.request(method, self.base + path, json=body, headers=headers, **kw)
        ctype = r.headers.get("Content-Type", "")
        return r.status, (await r.json()) if "json" in ctype else await r.read()

    async def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        return await self.call("POST", path, body)

    async def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        r = await self.http.get(self.base + path, **kw)
        ctype = r.headers.get("Content-Type", "")
        return r.status, (await r.json()) if "json" in ctype else await r.read()


@asynccontextmanager
async def logged_in(base: str, db_url: str, role: str, name: str) -> AsyncIterator[Staff]:
    """``name`` (made with ``role`` if new) logged in to the service at ``base``."""
    await ensure_user(db_url, name, role)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        r = await http.post(base + "/api/v1/login", json={"username": name, "password": PASSWORD})
        assert r.status == 200, await r.text()
        yield Staff(http, base, (await r.json())["csrf"], name)
