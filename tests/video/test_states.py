"""Roles apart: the video workers' camera states reach the API process through PostgreSQL.

Real PostgreSQL and the real API service on loopback; the worker side is the lease keeper
and the state writer the video role runs (the RTSP part is tested in test_leases.py and
the kill test, tests/test_scaleout.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from monitor.app import build_app
from monitor.store.db import Database
from monitor.store.leases import LeaseKeeper
from monitor.video.states import StateView, StateWriter
from tests.conftest import city_config
from tests.support.api import logged_in, on_loopback
from tests.support.services import city_database


async def _until(pred: Any, limit_s: float, what: str) -> None:
    end = asyncio.get_running_loop().time() + limit_s
    while not await pred():
        if asyncio.get_running_loop().time() > end:
            raise AssertionError(f"not within {limit_s}s: {what}")
        await asyncio.sleep(0.2)


async def test_a_worker_writes_states_only_under_its_lease_and_the_api_shows_them(
        fresh_db: str, mqtt_url: str) -> None:
    cfg = city_config(fresh_db, mqtt_url)
    await city_database(fresh_db, cfg)
    cams = sorted(c.id for _, c in cfg.cameras())
    db = Database(fresh_db, max_size=4)
    await db.open()
    try:
        keeper = LeaseKeeper("w1", ttl_s=30.0, capacity=2)  # two cameras; the rest unassigned
        async with db.connection() as conn:
            await keeper.register(conn)
            await keeper.tick(conn)
        a, b = sorted(keeper.held)
        other = next(c for c in cams if c not in keeper.held)
        writer = StateWriter(db, lambda: "w1")
        t = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
        writer.note(a, "online", "", t, keeper.held[a])
        writer.note(b, "offline", "connection refused", t, keeper.held[b])
        writer.note(other, "online", "", t, 1)  # not ours: refused by the write itself
        assert await writer.write(writer.pending) == 2 and writer.refused == 1

        app = build_app(cfg, roles=frozenset({"api"}))
        async with on_loopback(app, cfg.server.port) as base, \
                logged_in(base, fresh_db, "viewer", "st-viewer") as viewer:

            async def listed() -> dict[str, dict[str, Any]]:
                status, body = await viewer.get("/api/v1/cameras")
                assert status == 200
                return {c["id"]: c for c in body["cameras"]}

            async def shown() -> bool:
                got = await listed()
                return got[a]["state"] == "online" and got[b]["state"] == "offline"

            await _until(shown, 15, "the worker's states on the API")
            got = await listed()
            assert got[a]["worker"] == "w1" and got[a]["since"] == t.isoformat()
            assert got[b]["reason"] == "connection refused"
            assert {got[c]["state"] for c in cams if c not in (a, b)} == {"unassigned"}
            status, ov = await viewer.get("/api/v1/overview")
            assert status == 200 and ov["counts"]["cameras_online"] == 1 and ov["counts"]["cameras_offline"] == 1

            # the worker stops (its leases given back): nothing it wrote counts any more
            async with db.connection() as conn:
                await keeper.release_all(conn)

            async def all_unassigned() -> bool:
                return {c["state"] for c in (await listed()).values()} == {"unassigned"}

            await _until(all_unassigned, 15, "every camera unassigned")
    finally:
        await db.close()


async def test_the_view_publishes_changes_once_and_sees_a_takeover(fresh_db: str, mqtt_url: str) -> None:
    cfg = city_config(fresh_db, mqtt_url)
    await city_database(fresh_db, cfg)
    db = Database(fresh_db, max_size=4)
    await db.open()
    try:
        w1 = LeaseKeeper("w1", ttl_s=1.0, capacity=1)
        async with db.connection() as conn:
            await w1.register(conn)
            await w1.tick(conn)
        [cam] = w1.held  # the one camera it took (an anti-static one: leases.PRIORITY)
        events: list[dict[str, Any]] = []
        view = StateView(db, {cam: "site"}, publish=events.append)
        await StateWriter(db, lambda: "w1").write({cam: ("online", "", datetime.now(UTC), w1.held[cam])})
        await view.refresh()
        await view.refresh()  # nothing changed: nothing published
        assert [(e["camera"], e["state"], e["worker"]) for e in events] == [(cam, "online", "w1")]
        await asyncio.sleep(1.2)  # w1 stops renewing; w2 takes the camera over
        w2 = LeaseKeeper("w2", ttl_s=30.0)
        async with db.connection() as conn:
            await w2.register(conn)
            await w2.tick(conn)
        assert cam in w2.held
        await view.refresh()
        assert events[-1]["state"] == "connecting" and "taken over" in events[-1]["reason"]
        # w1 wakes and writes a late state: refused (the lease is w2's)
        late = StateWriter(db, lambda: "w1")
        assert await late.write({cam: ("offline", "late", datetime.now(UTC), w1.held[cam])}) == 0
        await StateWriter(db, lambda: "w2").write({cam: ("online", "", datetime.now(UTC), w2.held[cam])})
        await view.refresh()
        assert (events[-1]["state"], events[-1]["worker"]) == ("online", "w2")
        assert view.camera_states() == {cam: "online"}
    finally:
        await db.close()
