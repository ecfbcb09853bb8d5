"""Control's migration and statements on a real TimescaleDB (2.23 in WebAssembly): the
decision log is a compressed hypertable, and the lock transaction (CTE, trigger, audit
hypertable) and the batched decision insert run there as on plain PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from monitor.control import store
from monitor.control.model import GunId
from monitor.store.audit import Actor
from monitor.store.migrate import migrate

pytestmark = pytest.mark.timescale


async def _conn(url: str) -> psycopg.AsyncConnection[dict[str, Any]]:
    """The server opens its port a moment before it takes connections: retry, bounded."""
    async with asyncio.timeout(30):
        while True:
            try:
                return await psycopg.AsyncConnection.connect(url, row_factory=dict_row, prepare_threshold=None,
                                                             autocommit=True)
            except psycopg.OperationalError:
                await asyncio.sleep(0.5)


async def test_control_on_timescaledb(timescale_url: str) -> None:
    conn = await _conn(timescale_url)
    async with conn:
        await migrate(conn)
        cur = await conn.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")
        assert "interlock_decisions" in {r["hypertable_name"] for r in await cur.fetchall()}
        cur = await conn.execute("SELECT proc_name FROM timescaledb_information.jobs "
                                 "WHERE hypertable_name = 'interlock_decisions'")
        assert [r["proc_name"] for r in await cur.fetchall()] == ["policy_compression"]
        site = f"st-ts{uuid.uuid4().hex[:6]}"
        await conn.execute("INSERT INTO sites (id, kind, storage_capacity) VALUES (%s, 'station', 10)", (site,))
        await conn.execute("INSERT INTO guns (site_id, id) VALUES (%s, 'g1'), (%s, 'g2')", (site, site))
        guns = [GunId(site, "g1"), GunId(site, "g2")]
        await store.ensure_guns(conn, guns)
        now = datetime.now(UTC)
        changed = await store.set_desired(conn, guns, locked=True, reason="alert 1", ref="1",
                                          actor=Actor("op", "operator"), now=now, action="station.lock",
                                          target=f"site/{site}")
        assert [(s.gun, s.version, s.command) for s in changed] == [("g1", 1, "requested"), ("g2", 1, "requested")]
        sent = await store.mark_sent(conn, [(g, 1) for g in guns], now)
        assert {s.command for s in sent} == {"sent"}
        await store.insert_decisions(conn, [
            (now, site, "g1", f"r{i}", "ABCDEF123", i % 2 == 0, "ok" if i % 2 == 0 else "gun_locked", "mqtt", 1, None)
            for i in range(10)])
        cur = await conn.execute("SELECT count(*) AS n FROM interlock_decisions WHERE site_id = %s", (site,))
        assert (await cur.fetchone() or {})["n"] == 10
        cur = await conn.execute("SELECT action FROM audit WHERE target = %s", (f"site/{site}",))
        assert [r["action"] for r in await cur.fetchall()] == ["station.lock"]
