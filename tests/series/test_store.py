"""The series' queries on a real PostgreSQL (plain path): registry look-ups, scans once,
readings once, fills, and the hourly rollups the continuous aggregates stand for."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest

from monitor.series import store
from monitor.series.model import Fill, Reading, ScanRecord

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


def code() -> str:
    return "T" + uuid.uuid4().hex[:12].upper()


async def add_cylinder(conn: psycopg.AsyncConnection[Any], c: str, owner: str = "st-a") -> None:
    await conn.execute(
        """INSERT INTO cylinders (code, valve_code, owner_site, nominal_kg, tare_kg, manufactured, status)
           VALUES (%s, 'V1', %s, 15, 16.5, '2020-05-01', 'in_service')""",
        (c, owner),
    )


def scan(c: str, step: str = "prefill_check", ts: datetime = T0, site: str = "st-a", sid: str | None = None) -> ScanRecord:
    return ScanRecord(id=sid or uuid.uuid4().hex, ts=ts, cylinder=c, site=site, step=step, validity="ok")


async def test_get_cylinder_and_unregistered(db_conn: psycopg.AsyncConnection[Any]) -> None:
    c = code()
    await add_cylinder(db_conn, c)
    got = await store.get_cylinder(db_conn, c)
    assert got is not None and got.owner_site == "st-a" and got.manufactured == date(2020, 5, 1)
    assert got.nominal_kg == 15.0 and got.status == "in_service"
    assert await store.get_cylinder(db_conn, code()) is None
    many = await store.get_cylinders(db_conn, [c, code()])
    assert list(many) == [c]


@pytest.mark.parametrize(("step", "site", "since", "found"), [
    ("prefill_check", "st-a", T0 - timedelta(minutes=10), True),
    ("prefill_check", "st-a", T0 + timedelta(seconds=1), False),  # too old
    ("postfill_check", "st-a", T0 - timedelta(minutes=10), False),  # other step
    ("prefill_check", "st-b", T0 - timedelta(minutes=10), False),  # other site
])
async def test_last_scan(db_conn: psycopg.AsyncConnection[Any], step: str, site: str, since: datetime,
                         found: bool) -> None:
    c = code()
    older, newer = scan(c, ts=T0 - timedelta(minutes=5)), scan(c, ts=T0)
    assert await store.insert_scans(db_conn, [older, newer]) == [True, True]
    got = await store.last_scan(db_conn, cylinder=c, site=site, step=step, since=since)
    assert (got is not None) == found
    if got is not None:
        assert got.id == newer.id and got.ts == T0 and got.validity == "ok"


async def test_scan_stored_once(db_conn: psycopg.AsyncConnection[Any]) -> None:
    c = code()
    s = ScanRecord(id=uuid.uuid4().hex, ts=T0, cylinder=c, site="st-a", step="deliver", validity="ok",
                   operator="op", app="a", photos=("p/1.jpg", "p/2.jpg"))
    assert await store.insert_scans(db_conn, [s]) == [True]
    assert await store.insert_scans(db_conn, [s, scan(c, sid=s.id, ts=T0 + timedelta(seconds=5))]) == [False, False]
    cur = await db_conn.execute("SELECT count(*) AS n FROM scans WHERE id = %s", (s.id,))
    assert (await cur.fetchone())["n"] == 1  # type: ignore[index]
    [back] = (await store.cylinder_history(db_conn, c))[0]
    assert back == s
    twice = scan(c)  # the same id twice in one batch: stored once, the first copy
    other = scan(c)
    assert await store.insert_scans(db_conn, [twice, other, twice]) == [True, True, False]
    cur = await db_conn.execute("SELECT count(*) AS n FROM scans WHERE id = %s", (twice.id,))
    assert (await cur.fetchone())["n"] == 1  # type: ignore[index]


async def test_readings_copy_once(db_conn: psycopg.AsyncConnection[Any]) -> None:
    site = "st-" + uuid.uuid4().hex[:6]
    rs = [Reading(ts=T0 + timedelta(seconds=i), site=site, scale="s1", gross_kg=16.5 + i, gun_open=i % 2 == 0)
          for i in range(50)]
    assert await store.copy_readings(db_conn, rs[:30], T0) == 30
    # overlapping batch: the first 30 again (a re-flush) plus 20 new ones
    assert await store.copy_readings(db_conn, rs, T0) == 20
    back = await store.readings_between(db_conn, site, "s1", T0, T0 + timedelta(hours=1))
    assert [r.gross_kg for r in back] == [r.gross_kg for r in rs]


async def test_fills_and_hourly_rollup(db_conn: psycopg.AsyncConnection[Any]) -> None:
    site = "st-" + uuid.uuid4().hex[:6]
    c = code()
    fills = [Fill(site=site, scale="s1", gun="g1", started_at=T0 + timedelta(minutes=20 * i),
                  ended_at=T0 + timedelta(minutes=20 * i + 2), tare_kg=16.0, gross_kg=31.0, cylinder=c, readings=60)
             for i in range(5)]
    assert await store.insert_fills(db_conn, fills) == 5
    assert await store.insert_fills(db_conn, fills[:2]) == 0
    cur = await db_conn.execute(
        "SELECT bucket, fills, net_kg FROM fills_hourly WHERE site_id = %s ORDER BY bucket", (site,))
    rows = await cur.fetchall()
    assert [(r["bucket"], r["fills"], r["net_kg"]) for r in rows] == [
        (T0, 3, 45.0), (T0 + timedelta(hours=1), 2, 30.0)]
    last = await store.last_fill(db_conn, c)
    assert last is not None and last.started_at == fills[-1].started_at and last.net_kg == 15.0


async def test_outlet_stock_from_scans(db_conn: psycopg.AsyncConnection[Any]) -> None:
    site = "ol-" + uuid.uuid4().hex[:6]
    steps = ["outlet_receive"] * 5 + ["deliver"] * 2 + ["outlet_receive"] + ["deliver"]
    scans = [scan(code(), step=s, ts=T0 + timedelta(minutes=25 * i), site=site) for i, s in enumerate(steps)]
    await store.insert_scans(db_conn, scans)
    # minutes 0,25,50 received (hour 0); 75,100 received (hour 1); 125,150 delivered and 175 received
    # (hour 2); 200 delivered (hour 3)
    assert await store.outlet_stock(db_conn, site, T0 + timedelta(minutes=60)) == 3
    assert await store.outlet_stock(db_conn, site, T0 + timedelta(minutes=130)) == 4
    assert await store.outlet_stock(db_conn, site, T0 + timedelta(hours=5)) == 3
    series = await store.stock_series(db_conn, site, T0, T0 + timedelta(hours=5))
    assert series == [(T0, 3), (T0 + timedelta(hours=1), 5), (T0 + timedelta(hours=2), 4),
                      (T0 + timedelta(hours=3), 3)]
