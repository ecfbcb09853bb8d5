"""The hub's batched frames (opt-in with ``"batch": true``) on the real service: a burst
arrives whole and in order in fewer frames; a client that did not opt in still gets one
JSON object per frame."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import psycopg
from aiohttp import web
from psycopg.rows import dict_row

from monitor.app import build_app, wait_db_ready
from monitor.store.audit import Actor
from monitor.web import auth
from monitor.web.keys import HUB
from tests.conftest import city_config


async def _frames(ws: aiohttp.ClientWebSocketResponse, want: int) -> list[list[dict[str, object]]]:
    frames: list[list[dict[str, object]]] = []
    got = 0
    while got < want:
        m = await ws.receive(timeout=10)
        assert m.type == aiohttp.WSMsgType.TEXT, m
        events = [json.loads(line) for line in m.data.split("\n")]
        events = [e for e in events if e.get("type") == "burst"]
        if events:
            frames.append(events)
            got += len(events)
    return frames


async def test_batched_and_plain_clients_get_every_event_in_order(session_db: str, mqtt_url: str) -> None:
    cfg = city_config(session_db, mqtt_url)
    async with await psycopg.AsyncConnection.connect(session_db, row_factory=dict_row) as conn:
        cur = await conn.execute("SELECT 1 FROM users WHERE username = 'hub-batch'")
        if await cur.fetchone() is None:
            await auth.add_user(conn, Actor.system("test"), "hub-batch", "viewer", "hub-batch-pass")
    app = build_app(cfg, roles=frozenset({"api"}))
    runner = web.AppRunner(app, shutdown_timeout=5.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", cfg.server.port).start()
    base = f"http://127.0.0.1:{cfg.server.port}"
    try:
        await wait_db_ready(app, 30)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            r = await http.post(f"{base}/api/v1/login", json={"username": "hub-batch", "password": "hub-batch-pass"})
            assert r.status == 200
            socks = []
            for batch in (True, False):
                ws = await http.ws_connect(f"{base}/api/v1/ws", origin=base)
                assert (await ws.receive_json(timeout=10))["type"] == "hello"
                await ws.send_json({"op": "subscribe", "topics": ["counts"], "batch": batch})
                while (await ws.receive_json(timeout=10)).get("type") != "subscribed":
                    pass
                socks.append(ws)
            n = 200  # under the queue's bound: nothing dropped
            for i in range(n):
                app[HUB].publish("counts", {"type": "burst", "seq": i})
            batched, plain = await asyncio.gather(_frames(socks[0], n), _frames(socks[1], n))
            assert [e["seq"] for f in batched for e in f] == list(range(n))
            assert [e["seq"] for f in plain for e in f] == list(range(n))
            assert len(batched) < n and max(len(f) for f in batched) > 1
            assert all(len(f) == 1 for f in plain)
            for ws in socks:
                await ws.close()
    finally:
        await asyncio.wait_for(runner.cleanup(), 15)
