"""Migration 0004 on a real TimescaleDB (2.23 in WebAssembly): findings and the alert timeline
are hypertables with their policies, and the operators' load query agrees with plain PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from monitor.alerts import stats
from monitor.store.migrate import migrate

pytestmark = pytest.mark.timescale
T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


async def connect(url: str, tries: int = 5) -> psycopg.AsyncConnection[dict[str, Any]]:
    """Connect, retrying a refused connection a few times (bounded): the WebAssembly server takes
    one connection at a time and may still be closing the previous one."""
    for i in range(tries):
        try:
            return await psycopg.AsyncConnection.connect(url, row_factory=dict_row, prepare_threshold=None,
                                                         autocommit=True, connect_timeout=10)
        except psycopg.OperationalError:
            if i == tries - 1:
                raise
            await asyncio.sleep(0.5 * (i + 1))
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def both(timescale_url: str, pg_server: str) -> Iterator[tuple[str, str]]:
    from tests.support.services import fresh_database

    async def mig(url: str) -> None:
        conn = await connect(url)
        async with conn:
            await migrate(conn)

    with fresh_database(pg_server) as plain:
        asyncio.run(mig(timescale_url))
        asyncio.run(mig(plain))
        yield timescale_url, plain


def test_alert_series_are_hypertables_with_policies(both: tuple[str, str]) -> None:
    ts, _ = both
    with psycopg.connect(ts, row_factory=dict_row, prepare_threshold=None, autocommit=True) as c:
        hts = {r["hypertable_name"] for r in c.execute(
            "SELECT hypertable_name FROM timescaledb_information.hypertables").fetchall()}
        assert {"findings", "alert_actions"} <= hts
        jobs = {(r["proc_name"], r["hypertable_name"]) for r in c.execute(
            "SELECT proc_name, hypertable_name FROM timescaledb_information.jobs").fetchall()}
        assert ("policy_compression", "findings") in jobs
        # the incidents view and the live-key index exist on this path too
        assert c.execute("SELECT count(*) AS n FROM incidents").fetchone()["n"] >= 0  # type: ignore[index]


async def test_operator_load_agrees_on_both_paths(both: tuple[str, str]) -> None:
    rows: list[tuple[Any, ...]] = []
    for i in range(40):
        ts = T0 + timedelta(minutes=7 * i)
        rows.append((ts, i, "raised", "system", None, "st-a", "overfill", "critical", i % 5 == 0, None))
        rows.append((ts + timedelta(seconds=20 + i), i, "acknowledged", f"op{i % 3}", "operator", "st-a",
                     "overfill", "critical", False, 20.0 + i))
    out = []
    for url in both:
        conn = await connect(url)
        async with conn:
            await conn.execute("DELETE FROM alert_actions WHERE site = 'st-a'")
            cols = list(zip(*rows, strict=True))  # one statement (no COPY: the WebAssembly server does not take it)
            await conn.execute(
                """INSERT INTO alert_actions (ts, alert_id, action, actor, role, site, rule, severity, silenced,
                                              latency_s)
                   SELECT * FROM unnest(%s::timestamptz[], %s::bigint[], %s::text[], %s::text[], %s::text[],
                                        %s::text[], %s::text[], %s::text[], %s::bool[], %s::float8[])""",
                [list(c) for c in cols])
            hours, people = await stats.load_rows(conn, T0, T0 + timedelta(hours=6), ["st-a"])
            out.append(stats.load_report(hours, people, guideline_per_10min=1.0))
    assert out[0] == out[1]
    assert sum(h["raised"] for h in out[0]["hours"]) == 40
