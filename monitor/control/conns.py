"""Connections of control's own, for its hot paths (the interlock's decisions, the
lifecycle's single-statement writes, lock transactions)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from monitor.errors import DatabaseUnavailable


class Connections:
    """A few autocommit connections of control's own: one round trip per decision
    (the shared pool checks each connection out with a probe and wraps it in a
    transaction: four round trips for one SELECT). A broken connection is dropped and
    the next user opens a new one; every wait is bounded."""

    def __init__(self, url: str, size: int, *, timeout_s: float = 5.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._free: asyncio.LifoQueue[psycopg.AsyncConnection[dict[str, Any]] | None] = asyncio.LifoQueue()
        for _ in range(size):
            self._free.put_nowait(None)  # a slot; the connection is opened when first needed

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
        try:
            conn = await asyncio.wait_for(self._free.get(), self.timeout_s)
        except TimeoutError as e:
            raise DatabaseUnavailable(f"no control connection free within {self.timeout_s:.0f}s") from e
        try:
            if conn is None or conn.closed:
                try:
                    conn = await psycopg.AsyncConnection.connect(
                        self.url, autocommit=True, row_factory=dict_row, connect_timeout=int(self.timeout_s))
                except psycopg.OperationalError as e:
                    conn = None
                    raise DatabaseUnavailable(f"database unavailable: {e}") from e
            try:
                yield conn
            except psycopg.OperationalError as e:
                await conn.close()
                conn = None
                raise DatabaseUnavailable(f"database unavailable: {e}") from e
        finally:
            if conn is not None and conn.info.transaction_status != TransactionStatus.IDLE:
                # interrupted mid-command (a cancelled task): not fit for the next user
                await conn.close()
                conn = None
            self._free.put_nowait(conn)

    async def close(self) -> None:
        while not self._free.empty():
            conn = self._free.get_nowait()
            if conn is not None:
                await conn.close()
