"""Locks through the real service: API → database → broker → simulated controller → report
→ confirmed, with the roles, the audit trail and the WebSocket view (real PostgreSQL,
real Mosquitto)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.control.conftest import Mosquitto, control_city, devices, rows, serve, staff


async def _ws_until(ws: aiohttp.ClientWebSocketResponse, pred: Any, timeout_s: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        while True:
            msg = await ws.receive_json()
            if pred(msg):
                return dict(msg)


async def test_lock_confirmed_by_the_device_and_seen_live(session_db: str, broker: Mosquitto) -> None:
    cfg = control_city(session_db, broker.url)
    site = cfg.sites[0].id
    async with serve(cfg) as run, devices(cfg, site) as guns, staff(run.base, session_db, "operator") as op:
        async with op.http.ws_connect(f"{run.base}/api/v1/ws", origin=run.base) as ws:
            await ws.send_json({"op": "subscribe", "topics": ["guns"]})
            snap = await _ws_until(ws, lambda m: m.get("type") == "snapshot")
            assert {g["gun"] for g in snap["guns"] if g["site"] == site} == {"g1", "g2", "g3"}
            status, body = await op.post(f"/api/v1/sites/{site}/guns/g2/lock",
                                         {"reason": "alert 17: anti-static skipped", "alert_id": 17})
            assert status == 200, body
            (changed,) = body["changed"]
            assert changed["locked"] and changed["version"] == 1 and changed["command"] in ("requested", "sent")
            assert changed["by"] == "ctl-operator" and changed["ref"] == "17"
            seen = await _ws_until(ws, lambda m: m.get("type") == "gun" and m["gun"]["gun"] == "g2"
                                   and m["gun"]["command"] == "confirmed")
            assert seen["gun"]["in_effect"] and seen["gun"]["reported"]["version"] == 1
        assert guns["g2"].locked and guns["g2"].version == 1
        assert not guns["g1"].locked and guns["g1"].version == 0
        status, body = await op.get(f"/api/v1/sites/{site}/guns")
        by = {g["gun"]: g for g in body["guns"]}
        assert by["g2"]["command"] == "confirmed" and by["g2"]["reason"] == "alert 17: anti-static skipped"
        assert by["g1"]["command"] is None and not by["g1"]["locked"]
        # the gun refuses to open while locked
        assert await guns["g2"].open("CYL0000001") == (False, "gun_locked")
    audit = await rows(session_db, "SELECT actor, role, action, reason, details FROM audit WHERE target = %s",
                       f"site/{site}/gun/g2")
    assert [(a["actor"], a["action"], a["reason"]) for a in audit] == [
        ("ctl-operator", "gun.lock", "alert 17: anti-static skipped")]
    assert audit[0]["details"]["guns"] == [{"gun": "g2", "version": 1}]


async def test_station_lock_and_supervisor_unlock(session_db: str, broker: Mosquitto) -> None:
    cfg = control_city(session_db, broker.url, guns=(12,))
    site = cfg.sites[0].id
    async with serve(cfg) as run, devices(cfg, site) as guns, \
            staff(run.base, session_db, "operator") as op, staff(run.base, session_db, "supervisor") as sup:
        status, body = await op.post(f"/api/v1/sites/{site}/lock", {"reason": "alert 3"})
        assert status == 200 and len(body["changed"]) == 12
        for g in guns:
            await run.wait_state(site, g, lambda s: s.command == "confirmed")
        assert all(d.locked for d in guns.values())
        # an operator may not unlock; the refusal changes nothing
        status, body = await op.post(f"/api/v1/sites/{site}/unlock", {"note": "fixed"})
        assert status == 403 and body["error"]["code"] == "forbidden"
        # a supervisor must say what was put right
        status, body = await sup.post(f"/api/v1/sites/{site}/unlock", {})
        assert status == 422 and body["error"]["field"] == "note"
        status, body = await sup.post(f"/api/v1/sites/{site}/unlock", {"note": "   "})
        assert status == 422 and body["error"]["field"] == "note"
        status, body = await sup.post(f"/api/v1/sites/{site}/unlock", {"note": "discharge post repaired"})
        assert status == 200 and {s["version"] for s in body["changed"]} == {2}
        for g in guns:
            await run.wait_state(site, g, lambda s: s.command == "confirmed" and not s.locked)
        assert not any(d.locked for d in guns.values())
        # unlocking again: nothing to do, said precisely
        status, body = await sup.post(f"/api/v1/sites/{site}/unlock", {"note": "again"})
        assert status == 409 and "already unlocked" in body["error"]["message"]
    audit = await rows(session_db, "SELECT actor, action, reason FROM audit WHERE target = %s ORDER BY id",
                       f"site/{site}")
    assert [(a["actor"], a["action"], a["reason"]) for a in audit] == [
        ("ctl-operator", "station.lock", "alert 3"), ("ctl-supervisor", "station.unlock", "discharge post repaired")]


@pytest.mark.parametrize(
    ("role", "path", "body", "status", "field"),
    [
        ("viewer", "/guns/g1/lock", {"reason": "x"}, 403, None),
        ("operator", "/guns/g1/lock", {}, 422, "reason"),
        ("operator", "/guns/g1/lock", {"reason": ""}, 422, "reason"),
        ("operator", "/guns/g1/lock", {"reason": "x" * 501}, 422, "reason"),
        ("operator", "/guns/g1/lock", {"reason": "x", "extra": 1}, 422, "extra"),
        ("operator", "/guns/g9/lock", {"reason": "x"}, 404, "gun"),
        ("operator", "/guns/g1/unlock", {"note": "x"}, 403, None),
        ("supervisor", "/guns/g1/unlock", {"reason": "x"}, 422, "note"),
    ],
)
async def test_bad_requests_change_nothing(
    session_db: str, mqtt_url: str, role: str, path: str, body: dict[str, Any], status: int, field: str | None
) -> None:
    cfg = control_city(session_db, mqtt_url)
    site = cfg.sites[0].id
    async with serve(cfg) as run, staff(run.base, session_db, role) as who:
        got, reply = await who.post(f"/api/v1/sites/{site}{path}", body)
        assert got == status, reply
        assert reply["error"].get("field") == field
        got, reply = await who.post("/api/v1/sites/st-nowhere/lock", {"reason": "x"})
        assert got in (403, 404)
        states = await rows(session_db, "SELECT version FROM gun_state WHERE site_id = %s", site)
        assert states and all(s["version"] == 0 for s in states)
        assert not await rows(session_db, "SELECT 1 FROM audit WHERE target LIKE %s", f"site/{site}%")
