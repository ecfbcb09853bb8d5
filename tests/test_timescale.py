"""The TimescaleDB path, executed: migrations and the product's time-bucket queries run on a
real TimescaleDB (2.23, compiled to WebAssembly) and give the same results as on plain
PostgreSQL."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from monitor.store.migrate import load_migrations, migrate

pytestmark = pytest.mark.timescale

T0 = datetime(2026, 11, 28, 22, 17, tzinfo=UTC)


def _connect(url: str) -> psycopg.Connection[dict[str, Any]]:
    return psycopg.connect(url, row_factory=dict_row, prepare_threshold=None, autocommit=True, connect_timeout=10)


@pytest.fixture(scope="module")
def both(timescale_url: str, pg_server: str) -> Iterator[tuple[str, str]]:
    """The TimescaleDB server and a fresh plain database, both migrated."""
    import asyncio

    from tests.support.services import fresh_database

    async def mig(url: str) -> None:
        conn = await psycopg.AsyncConnection.connect(url, row_factory=dict_row, prepare_threshold=None)
        async with conn:
            await migrate(conn)

    with fresh_database(pg_server) as plain:
        asyncio.run(mig(timescale_url))
        asyncio.run(mig(plain))
        yield timescale_url, plain


def test_timescale_path_is_taken(both: tuple[str, str]) -> None:
    ts, plain = both
    with _connect(ts) as c:
        paths = {r["path"] for r in c.execute("SELECT path FROM schema_migrations").fetchall()}
        assert paths == {"timescale"}
        versions = [r["version"] for r in c.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()]
        assert versions == [m.version for m in load_migrations()]
        hypertables = {r["hypertable_name"] for r in c.execute(
            "SELECT hypertable_name FROM timescaledb_information.hypertables").fetchall()}
        assert {"audit", "scans", "scale_readings", "fills"} <= hypertables
        caggs = {r["view_name"] for r in c.execute(
            "SELECT view_name FROM timescaledb_information.continuous_aggregates").fetchall()}
        assert {"fills_hourly", "outlet_stock_hourly"} <= caggs
        jobs = {(r["proc_name"], r["hypertable_name"]) for r in c.execute(
            "SELECT proc_name, hypertable_name FROM timescaledb_information.jobs").fetchall()}
        assert ("policy_retention", "scale_readings") in jobs
        assert ("policy_compression", "scale_readings") in jobs
        # Filling records are kept at least two years: no retention on fills or scans.
        assert ("policy_retention", "fills") not in jobs and ("policy_retention", "scans") not in jobs
    with _connect(plain) as c:
        assert {r["path"] for r in c.execute("SELECT path FROM schema_migrations").fetchall()} == {"plain"}


def test_bucket_is_time_bucket(both: tuple[str, str]) -> None:
    ts, plain = both
    rnd = random.Random(7)
    stamps = [T0 + timedelta(seconds=rnd.uniform(-4e6, 4e6)) for _ in range(200)]
    q = """SELECT bucket(%s::interval, t) AS b FROM unnest(%s::timestamptz[]) AS t"""
    for width in ("1 minute", "15 minutes", "1 hour", "1 day", "7 days"):
        with _connect(ts) as c:
            a = [r["b"] for r in c.execute(q, (width, stamps)).fetchall()]
            tb = [r["b"] for r in c.execute(
                "SELECT time_bucket(%s::interval, t) AS b FROM unnest(%s::timestamptz[]) AS t", (width, stamps)
            ).fetchall()]
        with _connect(plain) as c:
            b = [r["b"] for r in c.execute(q, (width, stamps)).fetchall()]
        assert a == tb == b, width


def _rows(rnd: random.Random) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    fills, scans = [], []
    for i in range(300):
        start = T0 + timedelta(minutes=rnd.uniform(0, 60 * 30))
        tare = rnd.choice([15.4, 16.0, 33.5])
        net = round(rnd.uniform(4.0, 15.5), 2)
        fills.append((start, start + timedelta(seconds=90), f"st-{i % 3}", f"s{i % 4}", f"g{i % 4}",
                      f"HK{i:08d}", tare, tare + net, net, 40))
    for i in range(600):
        t = T0 + timedelta(minutes=rnd.uniform(0, 60 * 30))
        step = rnd.choice(["outlet_receive", "deliver", "prefill_check"])
        scans.append((t, f"scan-{i}", f"HK{i:08d}", f"ol-{i % 5}", step, "ok"))
    return fills, scans


def _load(url: str, fills: list[tuple[Any, ...]], scans: list[tuple[Any, ...]]) -> None:
    with _connect(url) as c:
        c.execute("DELETE FROM fills")
        c.execute("DELETE FROM scans")
        with c.cursor() as cur:  # one statement per batch: the rollup triggers are per statement
            cur.executemany(
                """INSERT INTO fills (started_at, ended_at, site_id, scale_id, gun_id, cylinder, tare_kg, gross_kg,
                                      net_kg, readings) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)""", fills)
            cur.executemany(
                "INSERT INTO scans (ts, id, cylinder, site_id, step, validity) VALUES (%s,%s,%s,%s,%s,%s)", scans)


QUERIES = {
    "fills per station per hour": """
        SELECT bucket, site_id, fills, round(net_kg::numeric, 2) AS net_kg FROM fills_hourly
        WHERE bucket >= %(since)s ORDER BY site_id, bucket""",
    "fills per station per 6 hours (re-bucketed)": """
        SELECT bucket(INTERVAL '6 hours', bucket) AS b, site_id, sum(fills) AS fills FROM fills_hourly
        GROUP BY 1, 2 ORDER BY 2, 1""",
    "outlet stock movement per hour": """
        SELECT bucket, site_id, received, delivered FROM outlet_stock_hourly ORDER BY site_id, bucket""",
    "outlet stock running total": """
        SELECT site_id, bucket, sum(received - delivered) OVER (PARTITION BY site_id ORDER BY bucket) AS stock
        FROM outlet_stock_hourly ORDER BY site_id, bucket""",
    "scale-free fills per day": """
        SELECT bucket(INTERVAL '1 day', started_at) AS d, count(*) AS n FROM fills GROUP BY 1 ORDER BY 1""",
}


def test_product_queries_agree(both: tuple[str, str]) -> None:
    ts, plain = both
    fills, scans = _rows(random.Random(11))
    # executemany sends one INSERT per row: the plain path's rollup triggers accumulate
    # through ON CONFLICT, the TimescaleDB path answers from real-time aggregates.
    for url in (ts, plain):
        _load(url, fills, scans)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for name, q in QUERIES.items():
        for label, url in (("timescale", ts), ("plain", plain)):
            with _connect(url) as c:
                results.setdefault(name, {})[label] = c.execute(q, {"since": T0 - timedelta(days=1)}).fetchall()
        assert results[name]["timescale"], name
        assert results[name]["timescale"] == results[name]["plain"], name


def test_audit_append_only_on_timescale(both: tuple[str, str]) -> None:
    ts, _ = both
    with _connect(ts) as c:
        c.execute("INSERT INTO audit (actor, role, action, target) VALUES ('t', 'admin', 'test', 'x/1')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("UPDATE audit SET reason = 'changed' WHERE target = 'x/1'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("DELETE FROM audit WHERE target = 'x/1'")
