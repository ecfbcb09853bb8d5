"""Connection pool and database state.

The service keeps running when the database is away: the pool reconnects, the state
(``up``, ``last_error``) is reported by ``/healthz``, and ingest spools to disk.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from monitor.errors import DatabaseUnavailable

log = logging.getLogger(__name__)


@dataclass
class DbState:
    up: bool = False
    timescale: bool = False
    last_error: str | None = None
    since: float = field(default_factory=time.time)


class Database:
    """An async pool with bounded waits; errors surface as DatabaseUnavailable."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10, timeout_s: float = 5.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.state = DbState()
        self.pool: AsyncConnectionPool[psycopg.AsyncConnection[dict[str, Any]]] = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            open=False,
            timeout=timeout_s,
            kwargs={"row_factory": dict_row, "autocommit": False},
            check=AsyncConnectionPool.check_connection,
            reconnect_timeout=0,  # keep trying for ever; health is reported
            name="monitor",
        )

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close(timeout=5.0)

    def _mark(self, up: bool, err: str | None = None) -> None:
        if up != self.state.up:
            self.state.since = time.time()
            if up:
                log.info("database reachable")
            else:
                log.warning("database unreachable: %s", err)
        self.state.up = up
        self.state.last_error = err

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
        """A pooled connection in a transaction committed on success."""
        try:
            async with self.pool.connection(timeout=self.timeout_s) as conn:
                self._mark(True)
                yield conn
        except PoolTimeout as e:
            self._mark(False, f"no connection within {self.timeout_s:.1f}s")
            raise DatabaseUnavailable("database unavailable") from e
        except psycopg.OperationalError as e:
            self._mark(False, str(e).strip().splitlines()[0] if str(e) else type(e).__name__)
            raise DatabaseUnavailable(f"database unavailable: {e}") from e

    async def ping(self) -> bool:
        try:
            async with self.connection() as conn:
                await conn.execute("SELECT 1")
            return True
        except DatabaseUnavailable:
            return False

    async def wait_up(self, deadline_s: float) -> None:
        """Wait for the database with capped exponential back-off and jitter."""
        end = time.monotonic() + deadline_s
        delay = 0.2
        while True:
            if await self.ping():
                return
            if time.monotonic() >= end:
                raise DatabaseUnavailable(f"database not reachable after {deadline_s:.0f}s: {self.state.last_error}")
            await asyncio.sleep(min(delay, max(0.0, end - time.monotonic())) * random.uniform(0.8, 1.2))
            delay = min(delay * 2, 5.0)


async def detect_timescale(conn: psycopg.AsyncConnection[Any]) -> bool:
    cur = await conn.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'")
    row = await cur.fetchone()
    if row is None:
        return False
    return bool(row["count"] if isinstance(row, dict) else row[0])
