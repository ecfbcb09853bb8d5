"""The series part at run time: scale ingest, fill sessions, scans, the writer and spool.

``SeriesService`` owns the per-scale fill segmenters, the writer (database or spool) and,
in the ``control`` role, the scale subscriber. Later parts (the correlation rules) learn
of readings, fill events and stored scans through ``SeriesListener`` objects added to
``listeners``: plain synchronous calls that must return at once (they queue their own
slow work). The series knows nothing of who listens.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from aiohttp import web

from monitor.config import Config
from monitor.errors import DatabaseUnavailable
from monitor.series import metrics
from monitor.series.fills import FillEvent, FillSegmenter, SegmenterParams
from monitor.series.ingest import ReadingError, ReadingParser, Refusals, ScaleSubscriber
from monitor.series.model import Reading, ScanRecord
from monitor.series.scans import judge_and_store
from monitor.series.spool import Spool, spool_dir_for
from monitor.series.writer import Ack, Item, SeriesWriter
from monitor.store.db import Database

log = logging.getLogger(__name__)


class SeriesListener(Protocol):
    def reading(self, r: Reading, seg: FillSegmenter) -> None: ...

    def fill(self, e: FillEvent, seg: FillSegmenter) -> None: ...

    def scans(self, scans: Sequence[ScanRecord]) -> None: ...


def utcnow() -> datetime:
    return datetime.now(UTC)


class SeriesService:
    def __init__(self, cfg: Config, db: Database, db_ready: asyncio.Event, *, roles: frozenset[str],
                 client_id: str) -> None:
        c = cfg.rules.correlation
        self.cfg = cfg
        self.db = db
        self.db_ready = db_ready
        self.roles = roles
        self.tz = ZoneInfo(cfg.timezone)
        self.parser = ReadingParser(cfg)
        self.refusals = Refusals()
        params = SegmenterParams(load_min_kg=c.load_min_kg, fill_min_kg=c.fill_min_kg, lift_grace_s=c.lift_grace_s)
        self.segmenters: dict[tuple[str, str], FillSegmenter] = {
            (s.id, sc.id): FillSegmenter(s.id, sc.id, sc.gun, params) for s in cfg.sites for sc in s.scales}
        # one spool per database and process kind, and one slot per running process (flock):
        # processes on one host never share files, nor flush one database's rows into another
        self.spool = Spool(spool_dir_for(c.spool_dir, cfg.database.url, roles & {"api", "control"}),
                           c.spool_max_bytes, slots=True)
        self.writer = SeriesWriter(db, self.spool, db_ready=db_ready, scan_flush=self._flush_scans,
                                   scans_stored=self._notify_scans)
        self.subscriber = ScaleSubscriber(cfg, f"{client_id}-scales", self.on_message)
        self.listeners: list[SeriesListener] = []
        self.readings_in = 0
        self.listener_errors = 0
        self.clock = utcnow

    # -- scale readings -----------------------------------------------------------------------
    async def on_message(self, topic: str, payload: bytes, ack: Ack) -> None:
        now = self.clock()
        try:
            r = self.parser.parse(topic, payload, now)
        except ReadingError as err:
            self.refusals.add(topic, err)
            metrics.READINGS.labels("refused").inc()
            metrics.REFUSED.labels(err.reason).inc()
            await self.writer.put(None, ack)  # acked in order, after the readings before it
            return
        self.readings_in += 1
        metrics.READINGS.labels("accepted").inc()
        events = self._segment(r)
        await self.writer.put(r, ack)
        for ev in events:
            if ev.kind == "end":
                metrics.FILLS.inc()
                await self.writer.put(ev.fill)

    def _segment(self, r: Reading) -> list[FillEvent]:
        seg = self.segmenters[(r.site, r.scale)]
        events = seg.feed(r)
        for listener in self.listeners:
            try:
                listener.reading(r, seg)
                for e in events:
                    listener.fill(e, seg)
            except Exception:
                self.listener_errors += 1
                log.exception("series listener failed on a reading of %s/%s", r.site, r.scale)
        return events

    async def tick_loop(self, every_s: float = 1.0) -> None:
        """End sessions whose cylinder left and whose scale then fell quiet."""
        while True:
            await asyncio.sleep(every_s)
            await self.tick(self.clock())

    async def tick(self, now: datetime) -> None:
        for seg in self.segmenters.values():
            for e in seg.tick(now):
                for listener in self.listeners:
                    try:
                        listener.fill(e, seg)
                    except Exception:
                        self.listener_errors += 1
                        log.exception("series listener failed on a fill of %s/%s", seg.site, seg.scale)
                if e.kind == "end":
                    metrics.FILLS.inc()
                    await self.writer.put(e.fill)

    # -- scans ------------------------------------------------------------------------------
    async def post_scans(self, scans: Sequence[ScanRecord]) -> tuple[list[ScanRecord], list[bool], bool]:
        """Judge and store checked scans; spool them when the database is away.

        Returns the scans (judged, or ``pending`` when spooled), whether each was stored
        now (False: a retry of a known id), and whether they went to the spool.
        """
        if self.writer.db_ok:
            try:
                async with self.db.connection() as conn:
                    judged, stored = await judge_and_store(conn, scans, self.tz)
            except DatabaseUnavailable as e:
                log.warning("scans: database unavailable (%s); spooling %d scan(s)", e, len(scans))
            else:
                self._notify_scans([s for s, new in zip(judged, stored, strict=True) if new])
                metrics.SCANS.labels("stored").inc(sum(stored))
                metrics.SCANS.labels("duplicate").inc(len(stored) - sum(stored))
                return judged, stored, False
        await self.writer.spool_items(scans)  # SpoolFull (503) when the spool is full: nothing accepted
        metrics.SCANS.labels("spooled").inc(len(scans))
        return list(scans), [True] * len(scans), True

    async def _flush_scans(self, conn: Any, scans: Sequence[ScanRecord]) -> list[ScanRecord]:
        judged, stored = await judge_and_store(conn, scans, self.tz)
        return [s for s, new in zip(judged, stored, strict=True) if new]

    def _notify_scans(self, scans: Sequence[ScanRecord]) -> None:
        if not scans:
            return
        for listener in self.listeners:
            try:
                listener.scans(scans)
            except Exception:
                self.listener_errors += 1
                log.exception("series listener failed on %d scan(s)", len(scans))

    # -- upkeep -----------------------------------------------------------------------------
    async def retention_loop(self, every_s: float = 6 * 3600) -> None:
        """Drop raw scale readings past the retention (fills and scans are kept)."""
        await self.db_ready.wait()
        days = self.cfg.rules.correlation.readings_retention_days
        while True:
            try:
                async with self.db.connection() as conn:
                    if self.db.state.timescale:
                        await conn.execute("SELECT drop_chunks('scale_readings', older_than => %s::interval)",
                                           (f"{days} days",))
                    else:
                        cur = await conn.execute("DELETE FROM scale_readings WHERE ts < now() - %s::interval",
                                                 (f"{days} days",))
                        if cur.rowcount:
                            log.info("retention: %d scale reading(s) older than %g days dropped", cur.rowcount, days)
            except DatabaseUnavailable as e:
                log.warning("retention skipped: %s", e)
            await asyncio.sleep(every_s)

    def health(self) -> dict[str, Any]:
        w = self.writer
        return {
            "mode": w.mode, "queue": w.queue.qsize(), "spool_bytes": self.spool.bytes,
            "spool_records": self.spool.records, "readings_in": self.readings_in,
            "refused": dict(self.refusals.by_reason), "written": w.stats.readings_written,
            "spooled": w.stats.spooled, "flushed": w.stats.flushed, "dead_letters": w.stats.dead_letters,
            "mqtt_connected": self.subscriber.connected.is_set(),
        }

    async def close(self, timeout_s: float = 10.0) -> None:
        """Make what is still queued durable (DB or spool), then close the spool."""
        items: list[Item] = []
        while True:
            try:
                items.append(self.writer.queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        if items:
            try:
                await asyncio.wait_for(self.writer.write(items), timeout_s)
            except TimeoutError:
                log.error("series: %d queued item(s) not made durable at shutdown (unacked readings are "
                          "re-sent by the broker)", len(items))
        await asyncio.to_thread(self.spool.close)


def setup(app: web.Application) -> None:
    """Plug the series into the service: routes, the cleanup context, ``app[SERIES]``."""
    from monitor.series import web as series_web

    roles = app[_keys().ROLES]
    if not roles & {"api", "control"}:
        return
    if "api" in roles:
        series_web.add_routes(app)
    app.cleanup_ctx.append(_series_ctx)


def _keys() -> Any:
    from monitor.web import keys

    return keys


async def _series_ctx(app: web.Application) -> AsyncIterator[None]:
    from monitor.app import DB_READY

    k = _keys()
    roles = app[k.ROLES]
    svc = SeriesService(app[k.CONFIG], app[k.DB], app[DB_READY], roles=roles, client_id=app[k.BUS].client_id
                        or "monitor-centre")
    app[k.SERIES] = svc
    app[k.SERVICES]["series"] = svc
    await asyncio.to_thread(svc.spool.open)
    tasks = app[k.TASKS]
    tasks.supervise("series-writer", svc.writer.run)
    tasks.supervise("series-probe", svc.writer.probe)
    tasks.supervise("series-tick", svc.tick_loop)
    tasks.supervise("series-retention", svc.retention_loop)
    if "control" in roles:
        tasks.supervise("series-scales", svc.subscriber.run)
    yield
    await svc.close()

