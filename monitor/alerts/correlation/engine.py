"""The correlation rules in live operation.

The series tells the engine of each reading, fill start and end, and stored scan
(``SeriesListener``, synchronous and quick); the finding bus tells it of anti-static
findings. The engine answers at once where it can (an invalid cylinder scanned, an
overfill crossing its limit, an anti-static violation while a scale fills) and queues
what needs the database (the pre-fill scans for a fill that just started) for its worker.
A periodic sweep handles the time-window rules (post-fill check overdue, video count
above stock, silent scales). Every decision is a call of the pure rules in ``rules.py``.
Findings go to the ``FindingBus`` without waiting (``submit_nowait``): the engine never
blocks ingest.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from monitor.alerts.correlation import rules
from monitor.config import Config
from monitor.errors import DatabaseUnavailable
from monitor.findings import Finding, FindingBus
from monitor.series import store
from monitor.series.fills import FillEvent, FillSegmenter
from monitor.series.model import Fill, Reading, ScanRecord
from monitor.series.validity import Cylinder
from monitor.store.db import Database

log = logging.getLogger(__name__)


def params_of(cfg: Config) -> rules.Params:
    c = cfg.rules.correlation
    return rules.Params(prefill_window_s=c.prefill_window_s, postfill_window_s=c.postfill_window_s,
                        overfill_tolerance_kg=c.overfill_tolerance_kg, stock_hold_s=c.stock_hold_s,
                        silent_after_s=c.silent_after_s, tare_match_kg=c.tare_match_kg)


@dataclass
class Session:
    """What the engine knows of one scale's fill under way."""

    start: Fill
    match: rules.Match | None = None
    cylinder: Cylinder | None = None
    checked: bool = False
    overfill_raised: bool = False
    ended: datetime | None = None
    paused_at: datetime | None = None  # the gun closed (or the weight stopped rising) at; None: filling


@dataclass
class EngineStats:
    findings: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    dropped_jobs: int = 0
    bus_full: int = 0
    db_retries: int = 0
    sweeps: int = 0


Job = tuple[str, Fill]


class LiveCorrelation:
    def __init__(self, cfg: Config, db: Database, bus: FindingBus, *, db_ready: asyncio.Event | None = None,
                 settled: Callable[[], bool] = lambda: True,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), jobs_max: int = 2000) -> None:
        self.cfg = cfg
        self.db_ready = db_ready
        # False while accepted scans still wait in the spool: judging a fill then could
        # miss its scan, so the judgement waits (retried by the sweep)
        self.settled = settled
        self.db = db
        self.bus = bus
        self.clock = clock
        self.p = params_of(cfg)
        self.stats = EngineStats()
        self.sessions: dict[tuple[str, str, datetime], Session] = {}  # (site, scale, start)
        self.current: dict[tuple[str, str], datetime] = {}  # (site, scale) -> start of the fill under way
        self.recent: deque[rules.Interval] = deque()  # fills that ended lately (anti-static look-back)
        self.used_scans: dict[str, datetime] = {}  # pre-fill scan id -> the fill start it fed
        self.started = clock()
        self.last_seen: dict[tuple[str, str], datetime] = {
            (s.id, sc.id): self.started for s in cfg.sites for sc in s.scales}
        self.silent: set[tuple[str, str]] = set()
        self.jobs: asyncio.Queue[Job] = asyncio.Queue(jobs_max)
        self.retry: deque[Job] = deque(maxlen=jobs_max)
        self.postfill_upto = self.started  # pre-fill scans up to here have been judged
        self.stock_cutoff: datetime | None = None
        self.episodes: dict[str, dict[str, rules.Episode]] = defaultdict(dict)
        self.outlets = {s.id for s in cfg.sites if s.kind == "outlet"}

    # -- emitting -----------------------------------------------------------------------
    def emit(self, findings: Sequence[Finding]) -> None:
        for f in findings:
            self.stats.findings[f.rule] += 1
            if not self.bus.submit_nowait(f):
                self.stats.bus_full += 1

    # -- SeriesListener -------------------------------------------------------------------
    def reading(self, r: Reading, seg: FillSegmenter) -> None:
        key = (r.site, r.scale)
        self.last_seen[key] = max(r.ts, self.last_seen.get(key, r.ts))
        if key in self.silent:
            self.silent.discard(key)
            self.emit([Finding(rule="device_silent", site=r.site, source=r.scale, subject=r.scale, ts=r.ts,
                               active=False, summary=f"scale {r.scale} at {r.site} reporting again",
                               details={"kind": "scale", "scale": r.scale})])
        start = self.current.get(key)
        s = self.sessions.get((r.site, r.scale, start)) if start is not None else None
        if s is None:
            return
        s.paused_at = seg.end_so_far()
        if s.cylinder is not None and not s.overfill_raised:
            self._check_overfill(s, seg, r)

    def fill(self, e: FillEvent, seg: FillSegmenter) -> None:
        f = e.fill
        key = (f.site, f.scale, f.started_at)
        if e.kind == "start":
            self.sessions[key] = Session(f)
            self.current[(f.site, f.scale)] = f.started_at
            self._queue(("start", f))
        else:
            s = self.sessions.get(key)
            if s is not None:
                s.ended = f.ended_at
            if self.current.get((f.site, f.scale)) == f.started_at:
                del self.current[(f.site, f.scale)]
            self.recent.append(rules.Interval(f.site, f.scale, f.started_at, f.ended_at))
            self._queue(("end", f))

    def scans(self, scans: Sequence[ScanRecord]) -> None:
        self.emit(rules.invalid_cylinder(scans))

    def _queue(self, job: Job) -> None:
        try:
            self.jobs.put_nowait(job)
        except asyncio.QueueFull:
            self.stats.dropped_jobs += 1
            log.error("correlation job queue full: %s of %s/%s dropped", job[0], job[1].site, job[1].scale)

    # -- anti-static (FindingBus subscriber) ---------------------------------------------------
    async def on_finding(self, f: Finding) -> None:
        if f.rule != "antistatic_skipped" or not f.active:
            return
        self.emit(rules.antistatic_during_fill([f], self.intervals(f.site)))

    def intervals(self, site: str | None = None) -> list[rules.Interval]:
        out = [iv for iv in self.recent if site is None or iv.site == site]
        out += [rules.Interval(s.start.site, s.start.scale, s.start.started_at, s.paused_at)
                for s in self.sessions.values() if s.ended is None and (site is None or s.start.site == site)]
        return out

    # -- the worker: fills against their scans -------------------------------------------------
    async def _ready(self) -> None:
        if self.db_ready is not None:
            await self.db_ready.wait()

    async def run(self) -> None:
        await self._ready()
        while True:
            job = await self.jobs.get()
            if not self.settled() or self.retry:
                self.retry.append(job)  # keep the order: after those already waiting
                continue
            try:
                await self.handle(job)
            except DatabaseUnavailable as e:
                self.stats.db_retries += 1
                self.retry.append(job)
                log.warning("correlation: %s of %s/%s waits for the database (%s)", job[0], job[1].site,
                            job[1].scale, e)

    async def handle(self, job: Job) -> None:
        kind, fill = job
        key = (fill.site, fill.scale, fill.started_at)
        s = self.sessions.get(key)
        if s is None:  # the start was missed (its job dropped): judge it now
            s = self.sessions[key] = Session(fill, ended=fill.ended_at)
        if not s.checked:
            await self._match(s, fill)
        if kind == "end":
            self.sessions.pop(key, None)
            if s.cylinder is not None and not s.overfill_raised and s.match is not None:
                m = rules.Match(fill, s.match.scan, s.match.considered, s.match.why)
                found = rules.overfill([m], {s.cylinder.code: s.cylinder}, self.p)
                if found:
                    s.overfill_raised = True
                    self.emit(found)
        self._prune(fill.started_at)

    async def _match(self, s: Session, fill: Fill) -> None:
        start = fill.started_at - timedelta(seconds=self.p.prefill_window_s)
        end = fill.started_at + timedelta(seconds=self.p.scan_lead_s)
        async with self.db.connection() as conn:
            cands = await store.scans_between(conn, start, end, site=fill.site, steps=["prefill_check"])
            codes = {c.cylinder for c in cands}
            if fill.cylinder:
                codes.add(fill.cylinder)
            cyls = await store.get_cylinders(conn, codes)
        m = rules.match_fill(fill, cands, cyls, set(self.used_scans), self.p)
        s.match = m
        s.checked = True
        if m.scan is not None:
            self.used_scans[m.scan.id] = fill.started_at
        code = m.cylinder
        s.cylinder = cyls.get(code) if code else None
        self.emit(rules.fill_without_scan([m]))

    def _check_overfill(self, s: Session, seg: FillSegmenter, r: Reading) -> None:
        net = seg.net_so_far()
        cyl = s.cylinder
        if net is None or cyl is None or net <= rules.overfill_limit(cyl, self.p):
            return
        s.overfill_raised = True
        d = rules.fill_details(s.start)
        d.update(fill_end=None, live=True, reading_ts=r.ts.isoformat(), gross_kg=r.gross_kg)
        self.emit([rules.overfill_finding(r.site, r.scale, cyl.code, cyl, net, self.p, at=r.ts, details=d,
                                          scan=s.match.scan if s.match else None)])

    def _prune(self, now: datetime) -> None:
        keep = timedelta(seconds=max(self.p.prefill_window_s, 300.0) * 2)
        while self.recent and (self.recent[0].end or now) < now - keep:
            self.recent.popleft()
        if len(self.used_scans) > 10_000:  # kept until their post-fill check has been judged
            limit = now - timedelta(seconds=self.p.prefill_window_s + self.p.postfill_window_s + 600)
            self.used_scans = {k: v for k, v in self.used_scans.items() if v >= limit}

    # -- the sweep: time-window rules --------------------------------------------------------------
    async def sweep_loop(self) -> None:
        every = self.cfg.rules.correlation.sweep_every_s
        await self._ready()
        while True:
            await asyncio.sleep(every)
            try:
                await self.sweep(self.clock())
            except DatabaseUnavailable as e:
                log.warning("correlation sweep: %s", e)

    async def sweep(self, now: datetime) -> None:
        self.stats.sweeps += 1
        silent = [f for f in rules.device_silent(self.last_seen, now=now, p=self.p)
                  if (f.site, f.source) not in self.silent]
        for f in silent:
            self.silent.add((f.site, f.source))
        self.emit(silent)
        if not self.settled():
            return
        while self.retry:
            job = self.retry.popleft()
            try:
                await self.handle(job)
            except DatabaseUnavailable:
                self.retry.appendleft(job)
                raise
        await self._sweep_postfill(now)
        await self._sweep_stock(now)

    async def _sweep_postfill(self, now: datetime) -> None:
        """Pre-fill scans whose window ended since the last sweep (and that fed a fill here)."""
        window = timedelta(seconds=self.p.postfill_window_s)
        lo, hi = self.postfill_upto, now - window
        if hi <= lo:
            return
        async with self.db.connection() as conn:
            pre = await store.scans_between(conn, lo, hi, steps=["prefill_check"])
            post = await store.scans_between(conn, lo, now, steps=["postfill_check"])
        self.emit(rules.missing_postfill_check(pre, post, now=now, p=self.p, filled=set(self.used_scans)))
        self.postfill_upto = hi

    async def _sweep_stock(self, now: datetime) -> None:
        if not self.outlets:
            return
        since = self.stock_cutoff or now - timedelta(seconds=self.p.stock_hold_s + 60)
        async with self.db.connection() as conn:
            cur = await conn.execute("SELECT to_regclass('camera_counts') IS NOT NULL AS present")
            row = await cur.fetchone()
            if not row or not row["present"]:
                return
            cur = await conn.execute(
                """SELECT ts, camera_id, site_id, count FROM camera_counts
                   WHERE ts > %s AND ts <= %s AND site_id = ANY(%s) ORDER BY ts""",
                (since, now, sorted(self.outlets)))
            samples: dict[str, list[rules.CountSample]] = defaultdict(list)
            for r in await cur.fetchall():
                samples[r["site_id"]].append(rules.CountSample(r["ts"], r["camera_id"], int(r["count"])))
            if not samples:
                self.stock_cutoff = now
                return
            opening = {site: await store.outlet_stock(conn, site, since) for site in samples}
            moves = await store.scans_between(conn, since, now, steps=["outlet_receive", "deliver"])
        by_site: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
        for m in moves:
            by_site[m.site].append((m.ts, 1 if m.step == "outlet_receive" else -1))
        for site, smp in samples.items():
            self.emit(rules.stock_mismatch(site, smp, by_site.get(site, []), opening=opening[site], p=self.p,
                                           episodes=self.episodes[site]))
        self.stock_cutoff = now

    def health(self) -> dict[str, Any]:
        return {"sessions": len(self.sessions), "jobs": self.jobs.qsize(), "retry": len(self.retry),
                "silent": sorted(f"{a}/{b}" for a, b in self.silent), "findings": dict(self.stats.findings),
                "dropped_jobs": self.stats.dropped_jobs, "bus_full": self.stats.bus_full}
