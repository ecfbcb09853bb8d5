"""The live correlation engine fed directly (real PostgreSQL, no broker): a fill's judgement
waits while accepted scans are still in the spool; stock mismatch from camera counts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.alerts.correlation.engine import LiveCorrelation
from monitor.config import SiteConfig, load_config
from monitor.findings import Finding, FindingBus
from monitor.series import store
from monitor.series.fills import FillEvent, FillSegmenter
from monitor.series.model import Fill, ScanRecord
from monitor.store.db import Database
from tests.series.support import new_code, until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def db(session_db: str) -> AsyncIterator[Database]:
    d = Database(session_db)
    await d.open()
    await d.wait_up(10)
    yield d
    await d.close()


def drained(bus: FindingBus) -> list[Finding]:
    out = []
    while not bus.queue.empty():
        out.append(bus.queue.get_nowait())
    return out


async def test_judgement_waits_for_the_spool(db: Database) -> None:
    cfg = load_config(ROOT / "config" / "example-city.yaml")
    bus = FindingBus()
    settled = [False]
    eng = LiveCorrelation(cfg, db, bus, settled=lambda: settled[0])
    code = new_code()
    now = datetime.now(UTC)
    seg = FillSegmenter("st-minwang", "s1", "g1")
    start = Fill("st-minwang", "s1", "g1", now, now, 16.4, 16.4, code, 1)
    eng.fill(FillEvent("start", start, None), seg)
    worker = asyncio.ensure_future(eng.run())
    try:
        await until(lambda: not eng.jobs.qsize() and eng.retry, 5, "the job deferred")
        assert drained(bus) == []  # the scan may still be in the spool: not judged yet
        async with db.connection() as conn:  # the spool is flushed: the scan arrives
            await store.insert_scans(conn, [ScanRecord(new_code(), now - timedelta(seconds=30), code, "st-minwang",
                                                       "prefill_check", "ok")])
        settled[0] = True
        await eng.sweep(datetime.now(UTC))
        assert [f for f in drained(bus) if f.rule == "fill_without_scan"] == []
        # a second fill, never scanned, is judged at once
        other = Fill("st-minwang", "s2", "g2", now, now, 16.4, 16.4, new_code(), 1)
        eng.fill(FillEvent("start", other, None), seg)
        await until(lambda: bus.queue.qsize(), 5, "a finding")
        [f] = drained(bus)
        assert f.rule == "fill_without_scan" and f.subject == other.cylinder
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)


async def test_stock_mismatch_from_camera_counts(db: Database) -> None:
    cfg = load_config(ROOT / "config" / "example-city.yaml")
    c = cfg.rules.correlation.model_copy(update={"stock_hold_s": 60.0})
    site = f"ol-t{uuid.uuid4().hex[:8]}"  # an outlet of this test's own
    cfg = cfg.model_copy(update={"rules": cfg.rules.model_copy(update={"correlation": c}),
                                 "sites": [*cfg.sites, SiteConfig(id=site, kind="outlet", storage_capacity=10)]})
    bus = FindingBus()
    eng = LiveCorrelation(cfg, db, bus)
    now = datetime.now(UTC)
    async with db.connection() as conn:
        cur = await conn.execute("SELECT to_regclass('camera_counts') IS NOT NULL AS present")
        if not (await cur.fetchone())["present"]:  # type: ignore[index]
            pytest.skip("no camera_counts table (migration 0007) in this tree")
        await store.insert_scans(conn, [ScanRecord(new_code(), now - timedelta(hours=3), new_code(), site,
                                                   "outlet_receive", "ok") for _ in range(4)])
        stock = await store.outlet_stock(conn, site, now)
        assert stock == 4
        for i in range(10):  # 10 samples over 90 s, each 3 above the scan-derived stock
            await conn.execute(
                "INSERT INTO camera_counts (ts, camera_id, site_id, count, raw) VALUES (%s, %s, %s, %s, %s)",
                (now - timedelta(seconds=100 - i * 10), f"{site}-store", site, stock + 3, stock + 3))
    eng.stock_cutoff = now - timedelta(seconds=120)
    await eng._sweep_stock(now)
    found = [f for f in drained(bus) if f.rule == "stock_mismatch"]
    assert len(found) == 1 and found[0].active and found[0].source == f"{site}-store"
    assert found[0].details["video_count"] == stock + 3 and found[0].details["scan_stock"] == stock


async def test_a_span_read_back_from_the_database(db: Database) -> None:
    """``batch.load_span`` + ``evaluate``: the day re-examined from what is stored."""
    from monitor.alerts.correlation import rules
    from monitor.alerts.correlation.batch import evaluate, load_span

    site = f"st-t{uuid.uuid4().hex[:6]}"
    t0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    scanned, unscanned = new_code(), new_code()
    async with db.connection() as conn:
        for c in (scanned, unscanned):
            await conn.execute("INSERT INTO cylinders (code, owner_site, nominal_kg, tare_kg, manufactured, status) "
                               "VALUES (%s, %s, 15, 16.4, '2022-01-01', 'in_service')", (c, site))
        await store.insert_scans(conn, [ScanRecord(new_code(), t0 - timedelta(seconds=200), scanned, site,
                                                   "prefill_check", "ok")])
        await store.insert_fills(conn, [
            Fill(site, "s1", "g1", t0, t0 + timedelta(seconds=60), 16.4, 31.4, scanned, 60),
            Fill(site, "s2", "g2", t0, t0 + timedelta(seconds=60), 16.4, 33.9, unscanned, 60)])
        span = await load_span(conn, t0 - timedelta(hours=1), t0 + timedelta(hours=1), rules.Params())
    found = evaluate(span, now=t0 + timedelta(hours=2), p=rules.Params())
    assert [f.subject for f in found["fill_without_scan"]] == [unscanned]
    assert [f.subject for f in found["overfill"]] == [unscanned]
    assert [f.subject for f in found["missing_postfill_check"]] == [scanned]
