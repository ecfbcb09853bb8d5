"""The faults of issue 7, on a real Mosquitto that is stopped and restarted with its
retained messages kept: in every case the gun ends in the state last desired, and the
operator sees the truth. Long absences run on an injected clock, never on sleeps."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import aiomqtt
import pytest

from monitor.control.clock import ManualClock
from monitor.control.model import GunId
from monitor.web.keys import FINDINGS
from tests.control.conftest import FindingLog, Mosquitto, control_city, device, rows, serve, staff, until


async def publish(url: str, topic: str, body: Any, *, retain: bool = False, times: int = 1) -> None:
    host, port = url.removeprefix("mqtt://").split(":")
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with aiomqtt.Client(host, int(port), identifier=f"test-{uuid.uuid4().hex[:8]}") as c:
        for _ in range(times):
            await c.publish(topic, payload, qos=1, retain=retain)


async def retained(url: str, topic: str) -> dict[str, Any]:
    """The message the broker retains on ``topic`` (as a device that just connected gets it)."""
    host, port = url.removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(host, int(port), identifier=f"test-{uuid.uuid4().hex[:8]}") as c:
        await c.subscribe(topic, qos=1)
        async for msg in c.messages:
            assert isinstance(msg.payload, bytes)
            return dict(json.loads(msg.payload))
    raise AssertionError("no message")


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


@pytest.mark.parametrize("phase", ["before_send", "after_send"])
async def test_broker_restarted_between_request_and_report(session_db: str, broker: Mosquitto, phase: str) -> None:
    """before_send: the broker is down when the lock is requested (stays ``requested``,
    sent on reconnect). after_send: the broker takes the retained desired state, restarts
    (persistence keeps it) and only then does the device come online and report."""
    cfg = control_city(session_db, broker.url)
    site = cfg.sites[0].id
    dev = device(cfg, site, "g1")
    async with serve(cfg) as run, staff(run.base, session_db, "operator") as op:
        await dev.start()
        if phase == "after_send":
            await dev.stop()
        else:
            broker.stop()
        status, _ = await op.post(f"/api/v1/sites/{site}/guns/g1/lock", {"reason": "alert 5"})
        assert status == 200
        if phase == "after_send":
            await run.wait_state(site, "g1", lambda s: s.command == "sent")
            broker.stop()
        else:
            s = run.svc.state(GunId(site, "g1"))
            assert s is not None and s.command == "requested" and s.locked
        broker.start()
        if phase == "after_send":
            await dev.start()
        s = await run.wait_state(site, "g1", lambda s: s.command == "confirmed", timeout_s=30)
        assert s.in_effect and s.reported is not None and s.reported.locked
        assert dev.locked and dev.version == 1
    await dev.stop()


async def test_device_offline_for_an_hour(session_db: str, broker: Mosquitto) -> None:
    clock = ManualClock()
    cfg = control_city(session_db, broker.url)
    site = cfg.sites[0].id
    g = GunId(site, "g1")
    dev = device(cfg, site, "g1")
    await dev.start()  # known to the broker (a persistent session), then gone
    await dev.stop()
    async with serve(cfg, clock=clock) as run, staff(run.base, session_db, "operator") as op:
        found = FindingLog(run.app)
        assert (await op.post(f"/api/v1/sites/{site}/guns/g1/lock", {"reason": "alert 8"}))[0] == 200
        await run.wait_state(site, "g1", lambda s: s.command == "sent")
        clock.advance(cfg.control.confirm_timeout_s + 1)
        await run.svc.tick()
        s = await run.wait_state(site, "g1", lambda s: s.command == "unconfirmed")
        await run.app[FINDINGS].drain()
        (raised,) = [f for f in found.of("lock_unconfirmed") if f.subject == "g1"]
        assert raised.active and raised.site == site and "not confirmed" in raised.summary
        _, body = await op.get(f"/api/v1/sites/{site}/guns")
        assert {x["gun"]: x for x in body["guns"]}["g1"]["command"] == "unconfirmed"
        # an hour passes; the centre keeps re-sending (once a minute here)
        for _ in range(60):
            clock.advance(60)
            await run.svc.tick()
            s = await run.wait_state(site, "g1", lambda x, n=s.sends: x.sends > n)
        assert s.command == "unconfirmed" and not s.in_effect
        await dev.start()
        s = await run.wait_state(site, "g1", lambda s: s.command == "confirmed")
        assert s.in_effect and dev.locked and dev.version == s.version == 1
        assert dev.applied == [(1, True)]  # the re-sent copies changed nothing
        await run.app[FINDINGS].drain()
        cleared = [f for f in found.of("lock_unconfirmed") if f.subject == "g1" and not f.active]
        assert len(cleared) == 1
    kinds = [e["kind"] for e in await rows(session_db, "SELECT kind FROM gun_events WHERE site_id = %s ORDER BY id",
                                           g.site)]
    assert kinds == ["unconfirmed", "confirmed_late"]
    await dev.stop()


async def test_service_restarted_with_locks_outstanding(session_db: str, broker: Mosquitto) -> None:
    cfg = control_city(session_db, broker.url, guns=(2,))
    site = cfg.sites[0].id
    d1, d2 = device(cfg, site, "g1"), device(cfg, site, "g2")
    await d1.start()
    await d1.stop()
    async with serve(cfg) as run, staff(run.base, session_db, "operator") as op:
        assert (await op.post(f"/api/v1/sites/{site}/lock", {"reason": "alert 9"}))[0] == 200
        await run.wait_state(site, "g1", lambda s: s.command == "sent")
    # the centre is down; one device comes back, applies the retained lock and reports
    await d1.start()
    await d1.wait_for(lambda d: d.locked, 10)
    await d2.start()
    await d2.wait_for(lambda d: d.locked, 10)
    async with serve(cfg) as run, staff(run.base, session_db, "viewer") as who:
        for g in ("g1", "g2"):
            s = await run.wait_state(site, g, lambda s: s.command == "confirmed")
            assert s.locked and s.version == 1 and s.in_effect
        _, body = await who.get("/api/v1/guns")
        mine = [x for x in body["guns"] if x["site"] == site]
        assert [(x["locked"], x["command"]) for x in mine] == [(True, "confirmed")] * 2
    await d1.stop()
    await d2.stop()


async def test_lock_survives_restarts_of_service_broker_and_device(session_db: str, broker: Mosquitto) -> None:
    cfg = control_city(session_db, broker.url)
    site = cfg.sites[0].id
    dev = device(cfg, site, "g3")
    await dev.start()
    async with serve(cfg) as run, staff(run.base, session_db, "operator") as op:
        assert (await op.post(f"/api/v1/sites/{site}/guns/g3/lock", {"reason": "alert 10"}))[0] == 200
        await run.wait_state(site, "g3", lambda s: s.command == "confirmed")
    broker.stop()
    broker.start()
    await dev.stop()
    # a replaced controller: factory state (unlocked, version 0), same identity
    fresh = device(cfg, site, "g3")
    await fresh.start()
    await fresh.wait_for(lambda d: d.locked and d.version == 1, 10)
    async with serve(cfg) as run:
        s = await run.wait_state(site, "g3", lambda s: s.command == "confirmed")
        assert s.locked and s.in_effect
    await fresh.stop()


async def test_device_that_falls_back_reopens_the_lifecycle(session_db: str, broker: Mosquitto) -> None:
    """A confirmed gun whose controller later reports an older state (reset, swapped) is
    no longer shown confirmed; the centre re-sends until it is."""
    cfg = control_city(session_db, broker.url)
    site = cfg.sites[0].id
    dev = device(cfg, site, "g1")
    await dev.start()
    async with serve(cfg) as run, staff(run.base, session_db, "operator") as op:
        assert (await op.post(f"/api/v1/sites/{site}/guns/g1/lock", {"reason": "alert 11"}))[0] == 200
        await run.wait_state(site, "g1", lambda s: s.command == "confirmed")
        await dev.stop()
        await publish(cfg.mqtt.url, f"{cfg.mqtt.prefix}/{site}/gun/g1/reported",
                      {"locked": False, "version": 0, "ts": now_iso()}, retain=True)
        # no longer shown confirmed (re-sent at once, so "requested" may already be "sent")
        s = await run.wait_state(site, "g1", lambda s: s.reported is not None and s.reported.version == 0)
        assert s.command in ("requested", "sent") and not s.in_effect and s.locked
        await dev.start()
        s = await run.wait_state(site, "g1", lambda s: s.command == "confirmed")
        assert s.in_effect and dev.locked
        kinds = [e["kind"] for e in await rows(session_db, "SELECT kind FROM gun_events WHERE site_id = %s", site)]
        assert kinds == ["regressed"]
    await dev.stop()


async def test_stale_retained_desired_with_a_lower_version(session_db: str, broker: Mosquitto) -> None:
    cfg = control_city(session_db, broker.url)
    site = cfg.sites[0].id
    t_desired = f"{cfg.mqtt.prefix}/{site}/gun/g1/desired"
    dev = device(cfg, site, "g1")
    await dev.start()
    async with serve(cfg) as run, staff(run.base, session_db, "operator") as op:
        await op.post(f"/api/v1/sites/{site}/guns/g1/lock", {"reason": "alert 12"})
        await run.wait_state(site, "g1", lambda s: s.command == "confirmed")
        # someone replays an old "unlocked" state as the retained desired message
        await publish(cfg.mqtt.url, t_desired, {"locked": False, "version": 0, "reason": "", "ts": now_iso()},
                      retain=True)
        # the device ignores it, and the centre puts its own state back on the broker
        await dev.wait_for(lambda d: d.desired_seen >= 3, 10)
        r = await until(lambda: retained(cfg.mqtt.url, t_desired), lambda r: r["version"] == 1)
        assert r["locked"] is True
        assert dev.locked and dev.version == 1 and dev.applied == [(1, True)]
        s = await run.wait_state(site, "g1", lambda s: s.command == "confirmed")
        assert s.locked and s.in_effect
        # a factory-fresh controller connecting now gets the lock, not the replay
        await dev.stop()
        fresh = device(cfg, site, "g1")
        await fresh.start()
        await fresh.wait_for(lambda d: d.locked and d.version == 1, 10)
        await fresh.stop()


async def test_duplicate_qos1_delivery_changes_nothing(session_db: str, broker: Mosquitto) -> None:
    cfg = control_city(session_db, broker.url)
    site = cfg.sites[0].id
    p = f"{cfg.mqtt.prefix}/{site}/gun/g1"
    dev = device(cfg, site, "g1")
    await dev.start()
    async with serve(cfg) as run, staff(run.base, session_db, "operator") as op:
        await op.post(f"/api/v1/sites/{site}/guns/g1/lock", {"reason": "alert 13"})
        s = await run.wait_state(site, "g1", lambda s: s.command == "confirmed")
        audit_before = await rows(session_db, "SELECT id FROM audit WHERE target LIKE %s", f"site/{site}%")
        # the same desired message delivered twice more (a QoS 1 re-delivery), and the
        # same report twice more
        desired = {"locked": True, "version": 1, "reason": "alert 13", "ts": now_iso()}
        await publish(cfg.mqtt.url, f"{p}/desired", desired, times=2)
        await dev.wait_for(lambda d: d.desired_seen >= 3, 10)
        report = {"locked": True, "version": 1, "ts": now_iso()}
        n0 = run.svc.stats.reports
        await publish(cfg.mqtt.url, f"{p}/reported", report, times=2)
        await until(lambda: asyncio.sleep(0, run.svc.stats.reports), lambda n: n >= n0 + 2)  # both handled
        await run.svc.reconcile()
        assert dev.applied == [(1, True)]
        after = run.svc.state(GunId(site, "g1"))
        assert after is not None and after.command == "confirmed" and after.version == 1 and after.in_effect
        assert await rows(session_db, "SELECT id FROM audit WHERE target LIKE %s", f"site/{site}%") == audit_before
        assert not await rows(session_db, "SELECT kind FROM gun_events WHERE site_id = %s", site)
        assert s.version == after.version
    await dev.stop()


@pytest.mark.parametrize(
    "forged",
    [
        {"locked": False, "version": 99},  # a version never sent, above the desired one
        {"locked": False, "version": 1},  # the desired version, the other state
        {"locked": True, "version": 7},
    ],
)
async def test_forged_report_confirms_nothing(session_db: str, broker: Mosquitto, forged: dict[str, Any]) -> None:
    """Not believed, recorded, reported; and since a device may have been fooled into the
    forged version, the desired state is re-asserted above it (older forged versions are
    in the lifecycle's unit tests)."""
    cfg = control_city(session_db, broker.url)
    site = cfg.sites[0].id
    dev = device(cfg, site, "g2", misbehave="no_report")  # applies, never answers
    await dev.start()
    clock = ManualClock()
    async with serve(cfg, clock=clock) as run, staff(run.base, session_db, "operator") as op:
        found = FindingLog(run.app)
        await op.post(f"/api/v1/sites/{site}/guns/g2/lock", {"reason": "alert 14"})
        await dev.wait_for(lambda d: d.locked, 10)
        await publish(cfg.mqtt.url, f"{cfg.mqtt.prefix}/{site}/gun/g2/reported", {**forged, "ts": now_iso()},
                      retain=True)
        s = await run.wait_state(site, "g2", lambda s: s.anomaly is not None)
        assert s.anomaly is not None and s.anomaly["kind"] == "forged_report"
        # nothing confirmed, nothing believed (the device's own report at connect was v0)
        assert s.command != "confirmed" and (s.reported is None or s.reported.version == 0)
        await run.app[FINDINGS].drain()
        (f,) = [f for f in found.of("lock_unconfirmed") if f.reason == "forged_report"]
        assert f.subject == "g2/forged" and f.severity == "critical"
        # the lock is re-asserted above the forged version, and the device obeys
        await dev.wait_for(lambda d: d.version > forged["version"], 10)
        assert dev.locked
        dev.misbehave = "none"
        clock.advance(cfg.control.resend_every_s + 1)  # the next re-send reaches a device that answers
        await run.svc.tick()
        s = await run.wait_state(site, "g2", lambda s: s.command == "confirmed")
        assert s.locked and s.in_effect and dev.locked
    events = await rows(session_db, "SELECT kind FROM gun_events WHERE site_id = %s ORDER BY id", site)
    assert events[0]["kind"] == "forged_report"
    audit = await rows(session_db, "SELECT actor, action FROM audit WHERE target = %s ORDER BY id",
                       f"site/{site}/gun/g2")
    assert [(a["actor"], a["action"]) for a in audit] == [("ctl-operator", "gun.lock"),
                                                          ("system:reconcile", "gun.reassert")]
    await dev.stop()


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"[1,2]", b'{"locked": "yes", "version": 1}', b'{"locked": true, "version": -1}',
     b'{"locked": true, "version": 1.5}', b'{"locked": true, "version": 1, "ts": "yesterday"}'],
)
async def test_malformed_report_is_recorded_not_believed(session_db: str, mqtt_url: str, payload: bytes) -> None:
    cfg = control_city(session_db, mqtt_url)
    site = cfg.sites[0].id
    async with serve(cfg) as run:
        await publish(mqtt_url, f"{cfg.mqtt.prefix}/{site}/gun/g1/reported", payload)
        s = await run.wait_state(site, "g1", lambda s: s.anomaly is not None)
        assert s.anomaly is not None and s.anomaly["kind"] == "malformed_report" and s.reported is None
        assert s.anomaly["error"]
