"""Versioned SQL migrations, applied once, in order.

Files live in ``migrations/`` as ``NNNN_name.sql``. A version may add a variant for one
storage path: ``NNNN_name.timescale.sql`` (TimescaleDB present) or ``NNNN_name.plain.sql``
(plain PostgreSQL); the variant runs right after the common file. A file whose first
line is ``-- migrate: no-transaction`` runs statement by statement outside a
transaction (TimescaleDB continuous aggregates need that).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg

from monitor.store.db import detect_timescale
from monitor.store.sqlsplit import split_sql

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(timescale|plain))?\.sql$")
LOCK_KEY = 0x6C7067  # "lpg"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    common: str | None
    variants: dict[str, str]

    def scripts(self, path: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self.common is not None:
            out.append((f"{self.version:04d}_{self.name}.sql", self.common))
        if path in self.variants:
            out.append((f"{self.version:04d}_{self.name}.{path}.sql", self.variants[path]))
        return out

    def checksum(self, path: str) -> str:
        h = hashlib.sha256()
        for _, text in self.scripts(path):
            h.update(text.encode())
        return h.hexdigest()[:16]


def load_migrations() -> list[Migration]:
    files: dict[int, dict[str, Any]] = {}
    root = resources.files("monitor.store") / "migrations"
    for entry in root.iterdir():
        m = _NAME.match(entry.name)
        if not m:
            continue
        version, name, variant = int(m.group(1)), m.group(2), m.group(3)
        slot = files.setdefault(version, {"name": name, "common": None, "variants": {}})
        if slot["name"] != name:
            raise RuntimeError(f"migration {version:04d} has two names: {slot['name']} and {name}")
        text = entry.read_text(encoding="utf-8")
        if variant:
            slot["variants"][variant] = text
        else:
            slot["common"] = text
    return [
        Migration(v, d["name"], d["common"], d["variants"]) for v, d in sorted(files.items())
    ]


async def _run_script(conn: psycopg.AsyncConnection[Any], label: str, text: str) -> None:
    statements = split_sql(text)
    no_tx = text.lstrip().startswith("-- migrate: no-transaction")
    try:
        if no_tx:
            await conn.set_autocommit(True)
            try:
                for stmt in statements:
                    await conn.execute(stmt.encode())
            finally:
                await conn.set_autocommit(False)
        else:
            async with conn.transaction():
                for stmt in statements:
                    await conn.execute(stmt.encode())
    except psycopg.Error as e:
        raise RuntimeError(f"migration {label} failed: {e}") from e


async def _exists(conn: psycopg.AsyncConnection[Any], sql: str) -> bool:
    cur = await conn.execute(sql)
    return await cur.fetchone() is not None


async def migrate(conn: psycopg.AsyncConnection[Any], *, want_timescale: bool | None = None) -> list[str]:
    """Apply pending migrations on ``conn`` (autocommit is managed here). Returns the applied labels."""
    await conn.set_autocommit(True)
    has_ts = await detect_timescale(conn) if want_timescale is None else want_timescale
    path = "timescale" if has_ts else "plain"
    # One process at a time, from the very first statement: two services starting together
    # on an empty database raced on CREATE TABLE IF NOT EXISTS (a unique violation on
    # pg_type), and the loser did not start.
    await conn.execute(f"SELECT pg_advisory_lock({LOCK_KEY})")
    try:
        return await _migrate_locked(conn, has_ts, path)
    finally:
        await conn.set_autocommit(True)
        await conn.execute(f"SELECT pg_advisory_unlock({LOCK_KEY})")


async def _migrate_locked(conn: psycopg.AsyncConnection[Any], has_ts: bool, path: str) -> list[str]:
    """Under the lock; ``migrate`` restores autocommit and unlocks, whatever happens here."""
    # The service may run as a role that owns nothing (docker/db/init-roles.sh): when the
    # schema is current there must be nothing here that needs CREATE or ownership.
    if has_ts and not await _exists(conn, "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'"):
        await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    if not await _exists(conn, "SELECT 1 WHERE to_regclass('schema_migrations') IS NOT NULL"):
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   path text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
    applied: list[str] = []
    cur = await conn.execute("SELECT version, path FROM schema_migrations")
    rows = await cur.fetchall()
    done = {(r["version"] if isinstance(r, dict) else r[0]) for r in rows}
    paths = {(r["path"] if isinstance(r, dict) else r[1]) for r in rows}
    if paths and path not in paths:
        raise RuntimeError(f"database was migrated on the {paths.pop()} path, now {path}: refusing")
    await conn.set_autocommit(False)
    for m in load_migrations():
        if m.version in done:
            continue
        for label, text in m.scripts(path):
            log.info("applying migration %s", label)
            await _run_script(conn, label, text)
            applied.append(label)
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, path, checksum) VALUES (%s, %s, %s, %s)",
                (m.version, m.name, path, m.checksum(path)),
            )
    log.info("storage path: %s; %d migration script(s) applied", path, len(applied))
    return applied


async def migrate_url(url: str, **kw: Any) -> tuple[list[str], bool]:
    from psycopg.rows import dict_row

    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row, prepare_threshold=None) as conn:
        applied = await migrate(conn, **kw)
        has_ts = await detect_timescale(conn)
        return applied, has_ts
