"""The real service on loopback: health, metrics, login, roles, CSRF, throttling, shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import psycopg
import pytest
from psycopg.rows import dict_row

from monitor.store.audit import Actor
from monitor.web import auth
from tests.conftest import ROOT, city_config, running_service
from tests.support.net import free_port, port_open, wait_for


async def _add_user(db: str, name: str, role: str, pw: str = "correct horse") -> None:
    async with await psycopg.AsyncConnection.connect(db, row_factory=dict_row) as conn:
        try:
            await auth.add_user(conn, Actor.system("test"), name, role, pw)
        except Exception as e:  # exists from another test
            if "exists" not in str(e):
                raise


async def test_healthz_metrics_and_login_flow(session_db: str, mqtt_url: str) -> None:
    cfg = city_config(session_db, mqtt_url)
    async with running_service(cfg) as base:
        await _add_user(session_db, "op1", "operator")
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            # health: database and broker both up (wait for the broker connection)
            for _ in range(100):
                r = await http.get(f"{base}/healthz")
                body = await r.json()
                if r.status == 200:
                    break
                await asyncio.sleep(0.1)
            assert r.status == 200, body
            assert body["database"]["up"] and body["broker"]["up"] and body["database"]["timescale"] is False
            r = await http.get(f"{base}/metrics")
            assert r.status == 200 and "monitor_ws_clients" in await r.text()
            # no session: 401 in the error format
            r = await http.get(f"{base}/api/v1/me")
            assert r.status == 401 and (await r.json())["error"]["code"] == "unauthorized"
            # bad body: precise error naming the field
            r = await http.post(f"{base}/api/v1/login", json={"username": "op1"})
            err = (await r.json())["error"]
            assert r.status == 422 and err["field"] == "password"
            r = await http.post(f"{base}/api/v1/login", data=b"{not json")
            assert r.status == 422 and (await r.json())["error"]["code"] == "invalid_json"
            r = await http.post(f"{base}/api/v1/login", json={"username": "op1", "password": "wrong-pass"})
            assert r.status == 401
            r = await http.post(f"{base}/api/v1/login", json={"username": "op1", "password": "correct horse"})
            assert r.status == 200
            login = await r.json()
            assert login["role"] == "operator" and login["csrf"]
            r = await http.get(f"{base}/api/v1/me")
            assert (await r.json())["username"] == "op1"
            # state change without the CSRF header is refused
            r = await http.post(f"{base}/api/v1/logout")
            assert r.status == 403 and (await r.json())["error"]["code"] == "csrf"
            r = await http.post(f"{base}/api/v1/logout", headers={"X-CSRF-Token": login["csrf"]})
            assert r.status == 200
            r = await http.get(f"{base}/api/v1/me")
            assert r.status == 401
    async with await psycopg.AsyncConnection.connect(session_db, row_factory=dict_row) as conn:
        cur = await conn.execute("SELECT action FROM audit WHERE target = 'user/op1' ORDER BY id")
        actions = [r["action"] for r in await cur.fetchall()]
    assert actions[-4:] == ["user.add", "login.failed", "login", "logout"] or actions[-3:] == [
        "login.failed", "login", "logout"]


async def test_login_throttled(session_db: str, mqtt_url: str) -> None:
    cfg = city_config(session_db, mqtt_url)
    async with running_service(cfg) as base, aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        for _ in range(5):
            r = await http.post(f"{base}/api/v1/login", json={"username": "nobody", "password": "guess-guess"})
            assert r.status == 401
        r = await http.post(f"{base}/api/v1/login", json={"username": "nobody", "password": "guess-guess"})
        assert r.status == 429 and int(r.headers["Retry-After"]) > 0


async def test_websocket_checks_origin_and_role(session_db: str, mqtt_url: str) -> None:
    cfg = city_config(session_db, mqtt_url)
    await _add_user(session_db, "viewer1", "viewer")
    async with running_service(cfg) as base, aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        r = await http.post(f"{base}/api/v1/login", json={"username": "viewer1", "password": "correct horse"})
        assert r.status == 200
        r = await http.get(f"{base}/api/v1/ws", headers={"Origin": "http://evil.example"})
        assert r.status == 403
        async with http.ws_connect(f"{base}/api/v1/ws", origin=base) as ws:
            hello = await ws.receive_json(timeout=5)
            assert hello["type"] == "hello" and hello["role"] == "viewer"
            await ws.send_json({"op": "subscribe", "topics": ["alerts", "audit"]})
            msgs = [await ws.receive_json(timeout=5) for _ in range(2)]
            assert any(m.get("type") == "error" and "audit" in m["message"] for m in msgs)
            sub = next(m for m in msgs if m.get("type") == "subscribed")
            assert sub["topics"] == ["alerts"]


async def test_service_waits_for_a_database_that_is_down(mqtt_url: str) -> None:
    """A refused database is reported in /healthz and retried, never a crash."""
    port = free_port()
    cfg = city_config(f"postgresql://postgres@127.0.0.1:{port}/nothing", mqtt_url)
    from aiohttp import web

    from monitor.app import build_app

    app = build_app(cfg)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", cfg.server.port)
    await site.start()
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            r = await http.get(f"http://127.0.0.1:{cfg.server.port}/healthz")
            body = await r.json()
            assert r.status == 503 and body["database"]["up"] is False
            r = await http.post(f"http://127.0.0.1:{cfg.server.port}/api/v1/login",
                                json={"username": "a", "password": "b"})
            assert r.status == 503 and (await r.json())["error"]["code"] == "database_unavailable"
    finally:
        await asyncio.wait_for(runner.cleanup(), 15)


def test_monitor_run_stops_on_sigterm_within_10s(session_db: str, mqtt_url: str, tmp_path: Path) -> None:
    port = free_port()
    cfgfile = tmp_path / "city.yaml"
    text = (ROOT / "config" / "example-city.yaml").read_text()
    cfgfile.write_text(text.replace("port: 8080", f"port: {port}"))
    env = {**os.environ, "DATABASE_URL": session_db, "MQTT_URL": mqtt_url}
    exe = Path(sys.executable).parent / "monitor"
    proc = subprocess.Popen([str(exe), "--log-json", "run", "--config", str(cfgfile)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: port_open("127.0.0.1", port), 30, "monitor to listen")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert time.monotonic() - t0 < 10
        assert proc.returncode == 0
        assert '"level": "info"' in err and "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)


def test_users_cli(session_db: str) -> None:
    exe = Path(sys.executable).parent / "monitor"
    env = {**os.environ, "DATABASE_URL": session_db}
    r = subprocess.run([str(exe), "users", "add", "sup-cli", "--role", "supervisor"], input="long enough pw\n",
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(exe), "users", "add", "sup-cli", "--role", "supervisor"], input="long enough pw\n",
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "exists" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([str(exe), "users", "add", "x", "--role", "supervisor"], input="short\n",
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "at least 8" in r.stderr
    r = subprocess.run([str(exe), "users", "list"], env=env, capture_output=True, text=True, timeout=60)
    assert "sup-cli" in r.stdout and "supervisor" in r.stdout
    r = subprocess.run([str(exe), "apikeys", "add", "app-1"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("mk_")


@pytest.mark.parametrize(("role", "need", "ok"), [
    ("viewer", "operator", False), ("operator", "operator", True), ("supervisor", "operator", True),
    ("operator", "supervisor", False), ("admin", "supervisor", True),
])
def test_role_ranks(role: str, need: str, ok: bool) -> None:
    assert auth.Principal("user", "u", role).at_least(need) is ok
    assert not auth.Principal("apikey", "k", "app").at_least("viewer")


def test_key_cache_trusts_a_recent_key_only() -> None:
    from monitor.web.security import KeyCache

    c = KeyCache(ttl_s=60)
    p = auth.Principal("apikey", "app", "app", site_id="st-a")
    assert c.recall("k1") is None
    c.remember("k1", p)
    assert c.recall("k1") == p and c.recall("k2") is None
    c.remember("k1", None)  # seen revoked: forgotten at once
    assert c.recall("k1") is None
    c2 = KeyCache(ttl_s=0.0)
    c2.remember("k", p)
    assert c2.recall("k") is None
