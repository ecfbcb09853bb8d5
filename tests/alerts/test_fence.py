"""A finding observed under a camera lease is filed only if that lease still holds when the
alert engine writes it: checked inside the write transaction, on real PostgreSQL.

A video worker paused (or cut off) after its in-memory fence check and before its finding
is written must not raise what the camera's new holder raises too."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import psycopg

from tests.alerts.conftest import engine_env, later, make_finding

CAM = "st-minwang-entry"


async def _lease(url: str, worker: str, generation: int, expires: str) -> None:
    async with await psycopg.AsyncConnection.connect(url) as c:
        await c.execute("INSERT INTO sites (id, kind, storage_capacity) VALUES ('st-minwang', 'station', 100) "
                        "ON CONFLICT DO NOTHING")
        await c.execute("INSERT INTO cameras (id, site_id, url) VALUES (%s, 'st-minwang', 'rtsp://127.0.0.1/x') "
                        "ON CONFLICT DO NOTHING", (CAM,))
        await c.execute(
            """INSERT INTO camera_leases (camera_id, worker, generation, expires_at)
               VALUES (%s, %s, %s, now() + %s::interval)
               ON CONFLICT (camera_id) DO UPDATE SET worker = EXCLUDED.worker, generation = EXCLUDED.generation,
                                                     expires_at = EXCLUDED.expires_at""",
            (CAM, worker, generation, expires))


async def test_a_finding_under_a_lease_that_passed_on_is_not_filed_and_the_rest_are(
        alerts_db: str, tmp_path: Path) -> None:
    await _lease(alerts_db, "w-new", 3, "1 minute")
    async with engine_env(alerts_db, tmp_path) as env:
        stale = dataclasses.replace(make_finding(subject="track-1", ts=later(0)), fence=(CAM, "w-old", 2))
        held = dataclasses.replace(make_finding(subject="track-2", ts=later(1)), fence=(CAM, "w-new", 3))
        other = make_finding("storage_over_capacity", source="ol-qingnian-store", site="ol-qingnian",
                             subject="storage", ts=later(1))  # no lease involved
        await env.engine.process([stale, held, other])
        alerts = await env.rows("SELECT subject FROM alerts ORDER BY subject")
        assert [a["subject"] for a in alerts] == ["storage", "track-2"]
        assert [r["n"] for r in await env.rows("SELECT count(*) AS n FROM findings")] == [2]
        assert env.engine.stats.fenced == 1
        assert sorted(e["alert"]["subject"] for e in env.events) == ["storage", "track-2"]
        # the lease runs out (the worker was paused past its TTL): its next finding is not filed
        await _lease(alerts_db, "w-new", 3, "-1 second")
        late = dataclasses.replace(make_finding(subject="track-3", ts=later(2)), fence=(CAM, "w-new", 3))
        await env.engine.process([late])
        assert [a["subject"] for a in await env.rows("SELECT subject FROM alerts ORDER BY subject")] == [
            "storage", "track-2"]
        assert env.engine.stats.fenced == 2
        # the camera's new holder files its own
        await _lease(alerts_db, "w-other", 4, "1 minute")
        mine = dataclasses.replace(make_finding(subject="track-3", ts=later(3)), fence=(CAM, "w-other", 4))
        await env.engine.process([mine])
        assert "track-3" in [a["subject"] for a in await env.rows("SELECT subject FROM alerts")]
