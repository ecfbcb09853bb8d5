"""The interlock through the real service, over MQTT (a simulated gun controller) and HTTP
(an API key bound to the station), against the series' registry and scans on a real
PostgreSQL: every decision answered with its reason, recorded, and refusals reported."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import date, timedelta
from typing import Any

import aiohttp
import aiomqtt
import psycopg
import pytest
from psycopg.rows import dict_row

from monitor.control import store as control_store
from monitor.control.clock import ManualClock
from monitor.control.model import GunId
from monitor.series import store as series_store
from monitor.series.model import ScanRecord
from monitor.store.audit import Actor
from monitor.web import auth
from monitor.web.keys import FINDINGS
from tests.control.conftest import FindingLog, control_city, device, rows, serve, staff, until

TODAY = date.today()


def code() -> str:
    return "T" + uuid.uuid4().hex[:11].upper()


async def registry(db: str, site: str, other: str, clock: ManualClock) -> dict[str, str]:
    """Cylinders of every kind the interlock must tell apart, and their scans."""
    now = clock.now()
    c = {k: code() for k in ("ok", "no_scan", "old_scan", "elsewhere", "postfill", "foreign", "scrapped", "over_age",
                             "inspection_due", "ok2")}
    cyl = {
        "ok": (site, TODAY - timedelta(days=400), "in_service"),
        "ok2": (site, TODAY - timedelta(days=400), "in_service"),
        "no_scan": (site, TODAY - timedelta(days=400), "in_service"),
        "old_scan": (site, TODAY - timedelta(days=400), "in_service"),
        "elsewhere": (site, TODAY - timedelta(days=400), "in_service"),
        "postfill": (site, TODAY - timedelta(days=400), "in_service"),
        "foreign": (other, TODAY - timedelta(days=400), "in_service"),
        "scrapped": (site, TODAY - timedelta(days=400), "scrapped"),
        "over_age": (site, TODAY.replace(year=TODAY.year - 13), "in_service"),
        "inspection_due": (site, TODAY.replace(year=TODAY.year - 9), "in_service"),
    }
    scans = {
        "ok": (site, "prefill_check", 60), "ok2": (site, "prefill_check", 5), "old_scan": (site, "prefill_check", 700),
        "elsewhere": (other, "prefill_check", 30), "postfill": (site, "postfill_check", 30),
        "foreign": (site, "prefill_check", 30), "scrapped": (site, "prefill_check", 30),
        "over_age": (site, "prefill_check", 30), "inspection_due": (site, "prefill_check", 30),
    }
    async with await psycopg.AsyncConnection.connect(db, row_factory=dict_row) as conn:
        for k, (owner, made, status) in cyl.items():
            await conn.execute(
                """INSERT INTO cylinders (code, owner_site, nominal_kg, tare_kg, manufactured, status)
                   VALUES (%s, %s, 15, 16, %s, %s)""", (c[k], owner, made, status))
        await series_store.insert_scans(conn, [
            ScanRecord(id=f"s-{uuid.uuid4().hex}", ts=now - timedelta(seconds=ago), cylinder=c[k], site=where,
                       step=step, validity="ok", app="test")
            for k, (where, step, ago) in scans.items()
        ])
    return c


CASES = [  # (gun, cylinder key or literal, allow, reason)
    ("g1", "ok", True, "ok"),
    ("g1", "ok2", True, "ok"),
    ("g1", "no_scan", False, "no_prefill_scan"),
    ("g1", "old_scan", False, "no_prefill_scan"),
    ("g1", "elsewhere", False, "no_prefill_scan"),
    ("g1", "postfill", False, "no_prefill_scan"),
    ("g1", "foreign", False, "foreign"),
    ("g1", "scrapped", False, "scrapped"),
    ("g1", "over_age", False, "over_age"),
    ("g1", "inspection_due", False, "inspection_due"),
    ("g1", "=UNKNOWN0001", False, "unregistered"),
    ("g1", "=abc", False, "malformed_code"),
    ("g1", "=", False, "malformed_code"),
    ("g1", 12345678, False, "malformed_code"),
    ("g1", None, False, "malformed_code"),
    ("g2", "ok", False, "gun_locked"),
    ("g9", "ok", False, "unknown_gun"),
]


def _code(c: dict[str, str], key: Any) -> Any:
    if isinstance(key, str):
        return key[1:] if key.startswith("=") else c[key]
    return key


@pytest.mark.parametrize("via", ["mqtt", "http"])
async def test_authorize_decisions(session_db: str, mqtt_url: str, via: str) -> None:
    clock = ManualClock()
    cfg = control_city(session_db, mqtt_url, guns=(2, 1))
    site, other = cfg.sites[0].id, cfg.sites[1].id
    async with serve(cfg, clock=clock) as run, staff(run.base, session_db, "operator") as op:
        found = FindingLog(run.app)
        c = await registry(session_db, site, other, clock)
        assert (await op.post(f"/api/v1/sites/{site}/guns/g2/lock", {"reason": "alert 4"}))[0] == 200
        guns = {g: device(cfg, site, g) for g in ("g1", "g2", "g9")}
        key = ""
        if via == "http":
            async with await psycopg.AsyncConnection.connect(session_db, row_factory=dict_row) as conn:
                key = await auth.add_api_key(conn, Actor.system("test"), f"gun-{site}", site)
                other_key = await auth.add_api_key(conn, Actor.system("test"), f"gun-{other}", other)
        else:
            for d in guns.values():
                await d.start()
        got: list[tuple[str, Any, bool, str]] = []
        async with aiohttp.ClientSession() as http:
            for i, (gun, k, _, _) in enumerate(CASES):
                cyl = _code(c, k)
                rid = f"r{i}"
                if via == "mqtt":
                    reply = await guns[gun].authorize(cyl, request_id=rid, timeout_s=10)
                else:
                    r = await http.post(f"{run.base}/api/v1/interlock/authorize",
                                        json={"site": site, "gun": gun, "cylinder": cyl, "request_id": rid},
                                        headers={"Authorization": f"Bearer {key}"})
                    assert r.status == 200, await r.text()
                    reply = await r.json()
                assert reply["request_id"] == rid and reply["message"]
                got.append((gun, k, reply["allow"], reply["reason"]))
            if via == "http":  # a key bound to another station may not ask for this one
                r = await http.post(f"{run.base}/api/v1/interlock/authorize",
                                    json={"site": site, "gun": "g1", "cylinder": c["ok"]},
                                    headers={"Authorization": f"Bearer {other_key}"})
                assert r.status == 403
                r = await http.post(f"{run.base}/api/v1/interlock/authorize",
                                    json={"site": site, "gun": "g1", "cylinder": c["ok"]})
                assert r.status == 401
                r = await http.post(f"{run.base}/api/v1/interlock/authorize", json={"site": site, "gun": "g1"},
                                    headers={"Authorization": f"Bearer {key}"})
                assert r.status == 422 and (await r.json())["error"]["field"] == "cylinder"
        for d in guns.values():
            await d.stop()
        assert got == [(g, k, allow, reason) for g, k, allow, reason in CASES]
        # the decision log holds every one, with its reason
        await run.app[FINDINGS].drain()
        logged = await until(
            lambda: rows(session_db, "SELECT * FROM interlock_decisions WHERE site_id = %s AND via = %s", site, via),
            lambda r: len(r) >= len(CASES),
        )
        by_rid = {r["request_id"]: r for r in logged}
        for i, (gun, _, allow, reason) in enumerate(CASES):
            r = by_rid[f"r{i}"]
            assert (r["gun_id"], r["allow"], r["reason"]) == (gun, allow, reason)
        assert by_rid["r0"]["scan_ts"] is not None and by_rid["r0"]["gun_version"] == 0
        refused = found.of("interlock_refused")
        assert sorted(f.reason for f in refused) == sorted(reason for _, _, allow, reason in CASES if not allow)
        assert all(f.severity == "info" and f.site == site for f in refused)


async def test_malformed_requests_get_a_reply(session_db: str, mqtt_url: str) -> None:
    cfg = control_city(session_db, mqtt_url)
    site = cfg.sites[0].id
    host, port = mqtt_url.removeprefix("mqtt://").split(":")
    t = f"{cfg.mqtt.prefix}/{site}/gun/g1/authorize"
    async with serve(cfg), aiomqtt.Client(host, int(port), identifier=f"t-{uuid.uuid4().hex[:6]}") as c:
        await c.subscribe(t + "/reply", qos=1)
        for payload in (b"garbage", b"[]", b'{"cylinder": "ABCDEF12"}', b'{"request_id": "", "cylinder": "X"}'):
            await c.publish(t, payload, qos=1)
            async with asyncio.timeout(10):
                msg = await anext(aiter(c.messages))
            assert isinstance(msg.payload, bytes)
            reply = json.loads(msg.payload)
            assert reply["request_id"] is None and reply["allow"] is False
            assert reply["reason"] == "malformed_request" and reply["message"]


async def test_facts_agree_with_the_series_store(session_db: str) -> None:
    """The interlock's one query gives what get_cylinder and last_scan give."""
    clock = ManualClock()
    site, other = f"st-f{uuid.uuid4().hex[:6]}", f"st-o{uuid.uuid4().hex[:6]}"
    c = await registry(session_db, site, other, clock)
    since = clock.now() - timedelta(seconds=600)
    async with await psycopg.AsyncConnection.connect(session_db, row_factory=dict_row) as conn:
        for cyl_code in [*c.values(), "NOSUCHCODE1"]:
            cyl, scan_ts, locked = await control_store.facts(conn, cyl_code, GunId(site, "g1"), since)
            assert cyl == await series_store.get_cylinder(conn, cyl_code)
            last = await series_store.last_scan(conn, cylinder=cyl_code, site=site, step="prefill_check", since=since)
            assert scan_ts == (None if last is None else last.ts)
            assert locked is False


async def test_no_database_means_no_gas_and_a_precise_error(mqtt_url: str) -> None:
    """The database is away from the start: a gun asking is told ``unavailable`` (never
    allowed, never left without an answer), and a lock request is refused with 503."""
    from aiohttp import web

    from monitor.app import build_app
    from tests.support.net import free_port

    cfg = control_city(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing", mqtt_url)
    site = cfg.sites[0].id
    app = build_app(cfg, roles=frozenset({"api", "control"}), client_id=f"centre-{uuid.uuid4().hex[:6]}")
    runner = web.AppRunner(app, shutdown_timeout=5.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", cfg.server.port).start()
    dev = device(cfg, site, "g1")
    try:
        await dev.start()
        reply = await dev.authorize("ABCDEF123", request_id="r-down", timeout_s=10)
        assert (reply["allow"], reply["reason"], reply["request_id"]) == (False, "unavailable", "r-down")
        async with aiohttp.ClientSession() as http:
            r = await http.get(f"http://127.0.0.1:{cfg.server.port}/healthz")
            assert r.status == 503
    finally:
        await dev.stop()
        await asyncio.wait_for(runner.cleanup(), 20)


async def test_a_request_the_gun_gave_up_on_is_answered_busy(session_db: str, mqtt_url: str) -> None:
    """Under overload, a request that waited longer than ``stale_after_s`` is not decided
    (the gun stopped waiting): it is answered ``busy``, counted, and nothing is allowed."""
    from monitor.web.keys import INTERLOCK

    cfg = control_city(session_db, mqtt_url)
    site = cfg.sites[0].id
    async with serve(cfg) as run:
        interlock = run.app[INTERLOCK]
        interlock.stale_after_s = 0.0  # every request is already too old when a worker takes it
        dev = device(cfg, site, "g1")
        await dev.start()
        try:
            reply = await dev.authorize("ABCDEF123", request_id="late-1", timeout_s=10)
        finally:
            await dev.stop()
        assert (reply["request_id"], reply["allow"], reply["reason"]) == ("late-1", False, "busy")
        assert interlock.busy == 1
