"""The series writer: readings and fills to the database in batches, or to the spool.

Two modes. ``db``: each batch (whatever queued while the last one was written, up to
``batch_max``) goes to PostgreSQL, readings by binary COPY. When the database fails the
writer turns to ``spool``: batches are appended to the on-disk spool (fsync) and a probe
task pings the database with capped back-off; once it answers, the probe flushes the
spool oldest first (under the same lock, so nothing overtakes it) and the writer returns
to ``db``. Each item's ``ack`` (the MQTT PUBACK) is called only after its batch is in the
database or in the spool. When the spool is full, the batch waits in memory (no ack: the
broker keeps the rest) and is retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from monitor.errors import DatabaseUnavailable
from monitor.series import metrics, store
from monitor.series.model import Fill, Reading, ScanRecord
from monitor.series.spool import Spool, SpoolFull
from monitor.store.db import Database
from monitor.tasks import Backoff

log = logging.getLogger(__name__)

Ack = Callable[[], None]
# Stores spooled scans (validity is judged then) and returns those newly stored.
ScanFlush = Callable[[Any, Sequence[ScanRecord]], Awaitable[list[ScanRecord]]]
ScansStored = Callable[[Sequence[ScanRecord]], None]


@dataclass
class WriterStats:
    batches: int = 0
    readings_written: int = 0
    readings_duplicate: int = 0
    fills_written: int = 0
    spooled: int = 0
    flushed: int = 0
    db_failures: int = 0
    spool_full_waits: int = 0
    dead_letters: int = 0
    last_batch: int = 0
    queue_high: int = 0
    modes: list[tuple[float, str]] = field(default_factory=list)


@dataclass
class Item:
    value: Reading | Fill | None  # None: only an ack to send in order (a refused message)
    ack: Ack | None = None


class SeriesWriter:
    def __init__(self, db: Database, spool: Spool, *, db_ready: asyncio.Event, batch_max: int = 5000,
                 queue_max: int = 50_000, scan_flush: ScanFlush | None = None,
                 scans_stored: ScansStored | None = None, dead_dir: str | None = None) -> None:
        self.db = db
        self.spool = spool
        self.db_ready = db_ready
        self.batch_max = batch_max
        self.queue: asyncio.Queue[Item] = asyncio.Queue(queue_max)
        self.scan_flush = scan_flush
        self.scans_stored = scans_stored
        self.dead_dir = Path(dead_dir) if dead_dir else spool.dir / "dead"
        self.stats = WriterStats()
        self.mode = "db"
        self.lock = asyncio.Lock()
        self._spool_mode = asyncio.Event()  # set while the spool has something or the DB is away
        self._drained = asyncio.Event()

    # -- input --------------------------------------------------------------------------
    async def put(self, value: Reading | Fill | None, ack: Ack | None = None) -> None:
        await self.queue.put(Item(value, ack))
        self.stats.queue_high = max(self.stats.queue_high, self.queue.qsize())

    @property
    def db_ok(self) -> bool:
        return self.mode == "db" and self.db_ready.is_set() and self.spool.empty

    def _set_mode(self, mode: str, why: str = "") -> None:
        if mode != self.mode:
            log.warning("series writer: %s -> %s%s", self.mode, mode, f" ({why})" if why else "")
            self.stats.modes.append((time.time(), mode))
        self.mode = mode
        metrics.WRITER_MODE.set(1 if mode == "spool" else 0)
        metrics.SPOOL_BYTES.set(self.spool.bytes)
        if mode == "spool":
            self._spool_mode.set()
        else:
            self._spool_mode.clear()

    async def spool_items(self, items: Sequence[ScanRecord | Reading | Fill]) -> None:
        """Append to the spool (durably) — used by the scans API while the DB is away."""
        await asyncio.to_thread(self.spool.append, items)
        self.stats.spooled += len(items)
        self._set_mode("spool", "items spooled")

    # -- the loops ----------------------------------------------------------------------
    async def run(self) -> None:
        """Take batches off the queue and make them durable, for ever."""
        if not self.spool.empty:
            self._set_mode("spool", "spool not empty at start")
        while True:
            batch = [await self.queue.get()]
            while len(batch) < self.batch_max:
                try:
                    batch.append(self.queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            await self.write(batch)

    async def write(self, batch: list[Item]) -> None:
        backoff = Backoff(0.2, 5.0)
        while True:
            values = [i.value for i in batch if i.value is not None]
            if not values:
                break
            async with self.lock:
                try:
                    if self.db_ok:
                        try:
                            await self._to_db(values)
                        except DatabaseUnavailable as e:
                            self.stats.db_failures += 1
                            self._set_mode("spool", str(e).splitlines()[0])
                            await asyncio.to_thread(self.spool.append, values)
                            self.stats.spooled += len(values)
                    else:
                        if self.mode == "db":
                            self._set_mode("spool", "database not ready")
                        await asyncio.to_thread(self.spool.append, values)
                        self.stats.spooled += len(values)
                    break
                except SpoolFull as e:
                    self.stats.spool_full_waits += 1
                    log.error("%s", e)
            await asyncio.sleep(backoff.next())
        self.stats.batches += 1
        self.stats.last_batch = len(batch)
        if self.mode == "spool":
            metrics.SPOOLED.inc(len(batch))
            metrics.SPOOL_BYTES.set(self.spool.bytes)
        for i in batch:
            if i.ack is not None:
                i.ack()
        if self.queue.empty():
            self._drained.set()

    async def _to_db(self, values: Sequence[Reading | Fill]) -> None:
        readings = [v for v in values if isinstance(v, Reading)]
        fills = [v for v in values if isinstance(v, Fill)]
        now = datetime.now(UTC)
        try:
            async with self.db.connection() as conn:
                if readings:
                    n = await store.copy_readings(conn, readings, now)
                    self.stats.readings_written += n
                    self.stats.readings_duplicate += len(readings) - n
                if fills:
                    self.stats.fills_written += await store.insert_fills(conn, fills)
        except DatabaseUnavailable:
            raise
        except psycopg.OperationalError as e:
            raise DatabaseUnavailable(f"database unavailable: {e}") from e
        except psycopg.Error as e:
            # Not the database being away: these rows themselves are refused. Keep them on
            # disk (never silently dropped) and carry on.
            self.stats.dead_letters += len(values)
            log.exception("series writer: %d record(s) refused by the database (%s); kept in %s",
                          len(values), type(e).__name__, self.dead_dir)
            dead = Spool(self.dead_dir, max_bytes=1 << 62, slots=True)
            await asyncio.to_thread(dead.open)
            await asyncio.to_thread(dead.append, values)
            await asyncio.to_thread(dead.close)

    async def probe(self) -> None:
        """While in spool mode: ping the database with back-off; when it answers, flush."""
        backoff = Backoff(0.2, 5.0)
        while True:
            await self._spool_mode.wait()
            await self.db_ready.wait()
            if await self.db.ping():
                async with self.lock:
                    done = await self.flush()
                if done:
                    self._set_mode("db", "spool flushed")
                    backoff.reset()
                    continue
            await asyncio.sleep(backoff.next())

    async def flush(self) -> bool:
        """Write the spool to the database, oldest segment first; True when it is empty."""
        for path in self.spool.pending():
            items = await asyncio.to_thread(self.spool.read, path)
            try:
                await self._flush_segment(items)
            except DatabaseUnavailable as e:
                log.warning("spool flush stopped at %s: %s", path.name, e)
                return False
            await asyncio.to_thread(self.spool.done, path, len(items))
            self.stats.flushed += len(items)
            metrics.FLUSHED.inc(len(items))
            metrics.SPOOL_BYTES.set(self.spool.bytes)
            log.info("spool segment %s flushed: %d record(s)", path.name, len(items))
        return self.spool.empty

    async def _flush_segment(self, items: Sequence[Reading | ScanRecord | Fill]) -> None:
        values = [x for x in items if not isinstance(x, ScanRecord)]
        scans = [x for x in items if isinstance(x, ScanRecord)]
        stored: list[ScanRecord] = []
        for i in range(0, len(values), 20_000):
            await self._to_db(values[i: i + 20_000])
        if scans and self.scan_flush is not None:
            try:
                async with self.db.connection() as conn:
                    stored = await self.scan_flush(conn, scans)
            except psycopg.OperationalError as e:
                raise DatabaseUnavailable(f"database unavailable: {e}") from e
        if stored and self.scans_stored is not None:
            self.scans_stored(stored)

    async def drain(self, timeout_s: float) -> None:
        """Wait (bounded) until everything queued so far is durable (shutdown)."""
        end = time.monotonic() + timeout_s
        while not self.queue.empty() and time.monotonic() < end:
            self._drained.clear()
            try:
                await asyncio.wait_for(self._drained.wait(), max(0.01, end - time.monotonic()))
            except TimeoutError:
                break
