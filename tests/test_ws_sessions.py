"""WebSockets end with their session: logout closes them at once; a disabled user, an
expired session or a changed role closes them at the next check (``Hub.revalidate``);
and the wallboard page may not be framed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import psycopg
import pytest
from aiohttp import web
from psycopg.rows import dict_row

from monitor.app import build_app, wait_db_ready
from monitor.store.audit import Actor
from monitor.web import auth
from monitor.web.hub import SESSION_ENDED
from monitor.web.keys import DB, HUB
from tests.conftest import city_config

PASSWORD = "ws-session-pass"


@asynccontextmanager
async def service(db: str, mqtt: str) -> AsyncIterator[tuple[str, web.Application]]:
    cfg = city_config(db, mqtt)
    app = build_app(cfg, roles=frozenset({"api"}))
    runner = web.AppRunner(app, shutdown_timeout=5.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", cfg.server.port).start()
    try:
        await wait_db_ready(app, 30)
        yield f"http://127.0.0.1:{cfg.server.port}", app
    finally:
        await asyncio.wait_for(runner.cleanup(), 15)


async def _user(db: str, name: str, role: str) -> None:
    async with await psycopg.AsyncConnection.connect(db, row_factory=dict_row) as conn:
        cur = await conn.execute("SELECT 1 FROM users WHERE username = %s", (name,))
        if await cur.fetchone() is None:
            await auth.add_user(conn, Actor.system("test"), name, role, PASSWORD)
        else:
            await auth.set_user(conn, Actor.system("test"), name, role=role, disabled=False)


async def _open(http: aiohttp.ClientSession, base: str, name: str) -> tuple[aiohttp.ClientWebSocketResponse, str]:
    r = await http.post(f"{base}/api/v1/login", json={"username": name, "password": PASSWORD})
    assert r.status == 200
    csrf = (await r.json())["csrf"]
    ws = await http.ws_connect(f"{base}/api/v1/ws", origin=base)
    assert (await ws.receive_json(timeout=10))["type"] == "hello"
    return ws, csrf


async def _closed_with(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    while True:
        m = await ws.receive(timeout=10)
        if m.type == aiohttp.WSMsgType.CLOSE:
            return int(m.data)
        if m.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
            return ws.close_code


async def test_logout_closes_the_sessions_sockets(session_db: str, mqtt_url: str) -> None:
    await _user(session_db, "ws-out", "viewer")
    async with service(session_db, mqtt_url) as (base, _app), \
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        ws, csrf = await _open(http, base, "ws-out")
        r = await http.post(f"{base}/api/v1/logout", headers={"X-CSRF-Token": csrf})
        assert r.status == 200
        assert await _closed_with(ws) == SESSION_ENDED


@pytest.mark.parametrize("change", ["disabled", "role", "expired"])
async def test_revalidate_closes_sockets_whose_session_changed(session_db: str, mqtt_url: str, change: str) -> None:
    name = f"ws-{change}"
    await _user(session_db, name, "operator")
    await _user(session_db, "ws-bystander", "operator")
    async with service(session_db, mqtt_url) as (base, app), \
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http, \
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
        ws, _ = await _open(http, base, name)
        ws2, _ = await _open(other, base, "ws-bystander")
        async with app[DB].connection() as conn:
            if change == "disabled":
                await auth.set_user(conn, Actor.system("test"), name, disabled=True)
            elif change == "role":
                await auth.set_user(conn, Actor.system("test"), name, role="viewer")
            else:
                await conn.execute(
                    "UPDATE sessions SET expires_at = now() - interval '1 second' "
                    "WHERE user_id = (SELECT id FROM users WHERE username = %s)", (name,))

        async def check(hashes: list[str]) -> dict[str, str]:
            async with app[DB].connection() as conn:
                return await auth.session_roles(conn, hashes)

        assert await app[HUB].revalidate(check) == 1
        assert await _closed_with(ws) == SESSION_ENDED
        assert not ws2.closed  # the other person's socket stays
        await ws2.close()


async def test_wallboard_page_may_not_be_framed(session_db: str, mqtt_url: str) -> None:
    async with service(session_db, mqtt_url) as (base, _app), aiohttp.ClientSession() as http:
        r = await http.get(f"{base}/")
        assert r.status == 200
        assert r.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
