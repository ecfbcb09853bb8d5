"""Migrations on real PostgreSQL: once, in order; the audit trail is append-only."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.rows import dict_row

from monitor.store.audit import Actor, list_audit, record
from monitor.store.migrate import load_migrations, migrate, migrate_url


def test_migrations_are_numbered_uniquely() -> None:
    ms = load_migrations()
    assert [m.version for m in ms] == sorted({m.version for m in ms})
    assert ms[0].version == 1 and ms[0].common is not None


async def test_migrate_applies_once_in_order(fresh_db: str) -> None:
    applied, ts = await migrate_url(fresh_db)
    assert not ts  # no TimescaleDB on this PostgreSQL: the plain path
    assert applied[0] == "0001_core.sql" and "0001_core.plain.sql" in applied
    again, _ = await migrate_url(fresh_db)
    assert again == []
    async with await psycopg.AsyncConnection.connect(fresh_db, row_factory=dict_row) as conn:
        cur = await conn.execute("SELECT version, path FROM schema_migrations ORDER BY version")
        rows = await cur.fetchall()
        assert [r["version"] for r in rows] == [m.version for m in load_migrations()]
        assert {r["path"] for r in rows} == {"plain"}


async def test_services_starting_together_on_an_empty_database_migrate_it_once(fresh_db: str) -> None:
    """Every process migrates at start: four at once on an empty database (an API process and
    video workers started together) all start; the schema is made once."""
    import asyncio

    results = await asyncio.gather(*(migrate_url(fresh_db) for _ in range(4)))
    applied = [a for a, _ in results]
    assert sum(1 for a in applied if a) == 1  # one applied the scripts; the others found them applied
    async with await psycopg.AsyncConnection.connect(fresh_db) as conn:
        cur = await conn.execute("SELECT count(*) FROM schema_migrations")
        assert (await cur.fetchone()) == (len(load_migrations()),)


async def test_failed_migration_changes_nothing(fresh_db: str) -> None:
    async with await psycopg.AsyncConnection.connect(fresh_db, row_factory=dict_row) as conn:
        await conn.set_autocommit(True)
        await conn.execute("CREATE TABLE sites (x int)")  # collides with 0001
        with pytest.raises(RuntimeError, match=r"0001_core\.sql failed"):
            await migrate(conn)
        cur = await conn.execute("SELECT count(*) AS n FROM schema_migrations")
        row = await cur.fetchone()
        assert row is not None and row["n"] == 0
        cur = await conn.execute("SELECT to_regclass('users') AS t")
        row = await cur.fetchone()
        assert row is not None and row["t"] is None


async def test_audit_is_append_only(db_conn: psycopg.AsyncConnection[dict]) -> None:  # type: ignore[type-arg]
    await db_conn.set_autocommit(True)
    rid = await record(db_conn, Actor("alice", "operator", "127.0.0.1"), "test.action", "thing/1", reason="why")
    rows = await list_audit(db_conn, target="thing/1")
    assert rows[0]["id"] == rid and rows[0]["reason"] == "why" and rows[0]["address"] == "127.0.0.1"
    for sql in ("UPDATE audit SET reason = 'x' WHERE id = %s", "DELETE FROM audit WHERE id = %s"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            await db_conn.execute(sql, (rid,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        await db_conn.execute("TRUNCATE audit")
    assert (await list_audit(db_conn, target="thing/1"))[0]["reason"] == "why"


async def test_bucket_matches_hour_boundaries(db_conn: psycopg.AsyncConnection[dict]) -> None:  # type: ignore[type-arg]
    cur = await db_conn.execute(
        "SELECT bucket('1 hour', '2026-11-29 07:42:13+00') AS h, bucket('1 day', '2026-11-29 07:42:13+00') AS d"
    )
    row = await cur.fetchone()
    assert row is not None
    assert row["h"].isoformat() == "2026-11-29T07:00:00+00:00"
    assert row["d"].isoformat() == "2026-11-29T00:00:00+00:00"
