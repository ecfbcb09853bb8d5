"""Evidence packs: what to gather for an alert (pure), and the gatherer that does it.

For a video alert: the annotated snapshot (the detector's own image when the finding
carries one, else the camera's latest frame with zones and boxes drawn) and the clip
(pre-roll and post-roll from ``media``) cut by the video part's ``EvidenceSource``. For a
correlated alert: the scale trace around the fill and the scans involved, copied from the
series tables. The rows are written ``pending`` in the alert's own transaction; the
gatherer works after the commit, asynchronously, bounded (queue, concurrency, a time
limit per try) and retried with back-off, so it never holds up an alert. A pending row
that no task holds (dropped from a full queue, or left by a restart) is picked up again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from prometheus_client import Counter

from monitor.alerts import series_refs
from monitor.alerts.annotate import annotate, boxes_from_details
from monitor.alerts.clock import Clock
from monitor.alerts.store import Conn, jsonb
from monitor.config import Config
from monitor.errors import DatabaseUnavailable
from monitor.evidence import EvidenceSource
from monitor.findings import Finding
from monitor.store.db import Database
from monitor.tasks import Backoff

log = logging.getLogger(__name__)

EVIDENCE = Counter("monitor_evidence_total", "evidence items finished, by kind and outcome", ["kind", "status"])
EVIDENCE_DROPPED = Counter("monitor_evidence_dropped_total", "evidence items not queued (queue full; swept later)")

Kind = Literal["snapshot", "clip", "scale_trace", "scans"]
# Rules whose evidence is in the scale and scan series.
TRACE_RULES = frozenset({"fill_without_scan", "overfill", "missing_postfill_check", "antistatic_during_fill"})
SCAN_RULES = frozenset({"fill_without_scan", "overfill", "invalid_cylinder", "missing_postfill_check",
                        "stock_mismatch"})
CYLINDER_SUBJECT_RULES = frozenset({"fill_without_scan", "overfill", "invalid_cylinder",
                                    "missing_postfill_check"})


@dataclass(frozen=True)
class EvidencePlan:
    kind: Kind
    camera: str | None
    request: dict[str, Any]  # JSON: what to gather (kept in the row, so a restart can resume)


def _time(v: Any) -> datetime | None:
    if isinstance(v, datetime):
        return v if v.tzinfo else None
    if isinstance(v, str):
        try:
            t = datetime.fromisoformat(v)
        except ValueError:
            return None
        return t if t.tzinfo else None
    return None


def _strings(v: Any) -> list[str]:
    if isinstance(v, str):
        return [v]
    if isinstance(v, (list, tuple)):
        return [str(x) for x in v if isinstance(x, (str, int))][:200]
    return []


def plan_evidence(f: Finding, cfg: Config) -> list[EvidencePlan]:
    """The evidence an alert raised by ``f`` needs."""
    out: list[EvidencePlan] = []
    cams = {c.id for _, c in cfg.cameras()}
    camera = f.source if f.source in cams else (f.details.get("camera") if f.details.get("camera") in cams else None)
    if camera is not None:
        at = _time(f.details.get("snapshot_at")) or f.ts
        out.append(EvidencePlan("snapshot", camera, {"camera": camera, "at": at.isoformat()}))
        clip_start = at - timedelta(seconds=cfg.media.preroll_s)
        clip_end = at + timedelta(seconds=cfg.media.postroll_s)
        out.append(EvidencePlan("clip", camera, {"camera": camera, "start": clip_start.isoformat(),
                                                 "end": clip_end.isoformat()}))
    window = timedelta(seconds=cfg.alerts.trace_window_s)
    after = min(timedelta(seconds=60), window / 4)
    d = f.details
    start = _time(d.get("fill_start") or d.get("started_at") or d.get("start"))
    end = _time(d.get("fill_end") or d.get("ended_at") or d.get("end"))
    lo = (start or f.ts) - min(window, timedelta(seconds=60) if start else window)
    hi = (end or f.ts) + after
    if f.rule in TRACE_RULES:
        try:
            site = cfg.site(f.site)
            scale_ids = [s.id for s in site.scales]
        except KeyError:
            scale_ids = []
        named = [s for s in _strings(d.get("scale") or d.get("scales")) if not scale_ids or s in scale_ids]
        if f.source in scale_ids:
            named = [f.source]
        out.append(EvidencePlan("scale_trace", None, {
            "site": f.site, "scales": named, "start": lo.isoformat(), "end": hi.isoformat()}))
    if f.rule in SCAN_RULES:
        cylinders = _strings(d.get("cylinder") or d.get("cylinders"))
        if f.rule in CYLINDER_SUBJECT_RULES and f.subject not in cylinders:
            cylinders.insert(0, f.subject)
        scan_ids = _strings(d.get("scan_ids") or d.get("scans") or d.get("scan_id"))
        out.append(EvidencePlan("scans", None, {
            "site": f.site, "cylinders": cylinders, "scan_ids": scan_ids, "start": lo.isoformat(),
            "end": hi.isoformat()}))
    return out


async def insert_plans(conn: Conn, plans: list[tuple[int, EvidencePlan]]) -> list[tuple[int, int, EvidencePlan]]:
    """The pending rows of (alert id, plan) in one statement; (evidence id, alert id, plan) of those made."""
    if not plans:
        return []
    cur = await conn.execute(
        """INSERT INTO evidence (alert_id, kind, camera, request)
           SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::jsonb[])
           ON CONFLICT (alert_id, kind) DO NOTHING RETURNING id, alert_id, kind""",
        ([a for a, _ in plans], [p.kind for _, p in plans], [p.camera for _, p in plans],
         [jsonb(p.request) for _, p in plans]),
        binary=True,
    )
    made = {(int(r["alert_id"]), r["kind"]): int(r["id"]) for r in await cur.fetchall()}
    return [(made[(a, p.kind)], a, p) for a, p in plans if (a, p.kind) in made]


# --- gathering ----------------------------------------------------------------------


# A pending row untouched this long is nobody's: longer than any single try may take
# (a clip waits for its post-roll, at most 120 s, plus 30 s).
STALE_S = 300.0


class Unavailable(Exception):
    """The evidence cannot exist (no such table, the ring no longer holds the time)."""


class NotYet(Exception):
    """Try again later (no video source in this process yet, a camera without a frame)."""


@dataclass
class Job:
    evidence_id: int
    alert_id: int
    kind: Kind
    request: dict[str, Any]
    camera: str | None = None
    image: bytes | None = field(default=None, repr=False)  # the detector's annotated frame
    details: dict[str, Any] = field(default_factory=dict, repr=False)
    summary: str = ""


@dataclass
class GatherStats:
    queued: int = 0
    dropped: int = 0
    ready: int = 0
    failed: int = 0
    unavailable: int = 0
    attempts: int = 0


def media_path(media_dir: Path, rel: str) -> Path:
    """``rel`` under ``media_dir``, refusing anything that would leave it."""
    root = media_dir.resolve()
    p = (root / rel).resolve()
    if root != p and root not in p.parents:
        raise ValueError(f"media path {rel!r} leaves the media directory")
    return p


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class EvidenceGatherer:
    """Gathers evidence items after their alert is committed; bounded and retried."""

    def __init__(
        self, *, db: Database, cfg: Config, clock: Clock, source: Callable[[], EvidenceSource | None],
        media_dir: Path | None = None,
    ) -> None:
        self.db = db
        self.cfg = cfg
        self.clock = clock
        self.source = source
        self.media_dir = media_dir or Path(cfg.media.dir)
        a = cfg.alerts
        self.attempts = a.evidence_attempts
        self.queue: asyncio.Queue[Job] = asyncio.Queue(a.evidence_queue)
        self.sem = asyncio.Semaphore(a.evidence_concurrency)
        self.inflight: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = GatherStats()
        self.idle = asyncio.Event()
        self.idle.set()

    # -- intake -------------------------------------------------------------------------
    def enqueue(self, job: Job) -> bool:
        if job.evidence_id in self.inflight:
            return True
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            self.stats.dropped += 1
            EVIDENCE_DROPPED.inc()
            log.warning("evidence queue full: %s of alert %d waits for the sweep", job.kind, job.alert_id)
            return False
        self.inflight.add(job.evidence_id)
        self.idle.clear()
        self.stats.queued += 1
        return True

    async def sweep(self, older_than_s: float = STALE_S) -> int:
        """Claim and queue the pending rows nobody has touched for ``older_than_s`` (left by a
        restart, or dropped from a full queue). A claim bumps ``updated_at``, as every try
        does, so two processes never take the same row, nor a row that is being worked on."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                """UPDATE evidence e SET updated_at = now()
                   FROM alerts a
                   WHERE a.id = e.alert_id AND e.id IN (
                       SELECT id FROM evidence
                       WHERE status = 'pending' AND updated_at <= now() - make_interval(secs => %s)
                       ORDER BY id LIMIT 200 FOR UPDATE SKIP LOCKED)
                   RETURNING e.id, e.alert_id, e.kind, e.camera, e.request, a.summary""",
                (older_than_s,),
            )
            rows = await cur.fetchall()
        n = 0
        for r in sorted(rows, key=lambda r: int(r["id"])):
            if r["id"] in self.inflight:
                continue
            if self.enqueue(Job(int(r["id"]), int(r["alert_id"]), r["kind"], r["request"] or {}, r["camera"],
                                summary=r["summary"])):
                n += 1
        return n

    # -- work ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Take jobs and run each as its own task, at most ``evidence_concurrency`` at once."""
        try:
            while True:
                job = await self.queue.get()
                await self.sem.acquire()
                t = asyncio.get_running_loop().create_task(self._job(job), name=f"evidence-{job.evidence_id}")
                self._tasks.add(t)
                t.add_done_callback(self._tasks.discard)
        finally:
            for t in list(self._tasks):
                t.cancel()
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=5.0)

    async def sweeper(self, every_s: float = 60.0) -> None:
        while True:
            try:
                await self.sweep()
            except DatabaseUnavailable as e:
                log.warning("evidence sweep: %s", e)
            await asyncio.sleep(every_s)

    async def _job(self, job: Job) -> None:
        backoff = Backoff(initial=1.0, cap=20.0)
        try:
            for attempt in range(1, self.attempts + 1):
                self.stats.attempts += 1
                if attempt > 1:
                    await self._touch(job)
                try:
                    result = await asyncio.wait_for(self._gather(job), self._limit_s(job))
                except Unavailable as e:
                    await self._finish(job, "unavailable", attempt, error=str(e))
                    self.stats.unavailable += 1
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # a try failed: record it and try again later
                    err = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                    if attempt >= self.attempts:
                        log.warning("evidence %s of alert %d failed after %d tries: %s",
                                    job.kind, job.alert_id, attempt, err)
                        await self._finish(job, "failed", attempt, error=err)
                        self.stats.failed += 1
                        return
                    log.info("evidence %s of alert %d: try %d failed: %s", job.kind, job.alert_id, attempt, err)
                    await self._note_attempt(job, attempt, err)
                    await asyncio.sleep(backoff.next())
                    continue
                await self._finish(job, "ready", attempt, **result)
                self.stats.ready += 1
                return
        except DatabaseUnavailable as e:
            log.warning("evidence %s of alert %d: cannot record the outcome (%s); the sweep retries",
                        job.kind, job.alert_id, e)
        finally:
            self.inflight.discard(job.evidence_id)
            self.sem.release()
            if not self.inflight:
                self.idle.set()

    def _limit_s(self, job: Job) -> float:
        if job.kind == "clip":
            end = _time(job.request.get("end"))
            wait = (end - self.clock.now()).total_seconds() if end else 0.0
            return max(0.0, min(wait, 120.0)) + 30.0
        return 30.0

    async def _touch(self, job: Job) -> None:
        async with self.db.connection() as conn:
            await conn.execute("UPDATE evidence SET updated_at = now() WHERE id = %s", (job.evidence_id,))

    async def _note_attempt(self, job: Job, attempt: int, err: str) -> None:
        async with self.db.connection() as conn:
            await conn.execute(
                "UPDATE evidence SET attempts = %s, error = %s, updated_at = now() WHERE id = %s",
                (attempt, err[:500], job.evidence_id),
            )

    async def _finish(self, job: Job, status: str, attempt: int, *, error: str | None = None,
                      path: str | None = None, media_type: str | None = None, data: Any = None,
                      ts: datetime | None = None, ends_at: datetime | None = None) -> None:
        EVIDENCE.labels(job.kind, status).inc()
        size = digest = None
        if path is not None:
            full = media_path(self.media_dir, path)
            size = full.stat().st_size
            digest = await asyncio.to_thread(_sha256, full)
        async with self.db.connection() as conn:
            await conn.execute(
                """UPDATE evidence SET status = %s, attempts = %s, error = %s, path = %s, media_type = %s,
                          bytes = %s, sha256 = %s, data = %s, ts = %s, ends_at = %s, updated_at = now()
                   WHERE id = %s""",
                (status, attempt, error[:500] if error else None, path, media_type, size, digest,
                 jsonb(data) if data is not None else None, ts, ends_at, job.evidence_id),
            )

    async def _gather(self, job: Job) -> dict[str, Any]:
        if job.kind == "snapshot":
            return await self._snapshot(job)
        if job.kind == "clip":
            return await self._clip(job)
        if job.kind == "scale_trace":
            return await self._trace(job)
        return await self._scans(job)

    def _video(self) -> EvidenceSource:
        src = self.source()
        if src is None:
            raise NotYet("no video evidence source in this process")
        return src

    async def _snapshot(self, job: Job) -> dict[str, Any]:
        rel = f"incidents/{job.alert_id}/snapshot.jpg"
        at = _time(job.request.get("at"))
        if job.image:
            data = job.image  # the detector drew the boxes, track ids and zones on the very frame
        else:
            assert job.camera is not None
            snap = await self._video().snapshot(job.camera)
            if snap is None:
                raise NotYet(f"camera {job.camera} has no frame")
            at, jpeg = snap
            try:
                _, cam = self.cfg.camera(job.camera)
                zones = {k: [list(p) for p in v] for k, v in cam.zones.items()}
            except KeyError:
                zones = {}
            caption = f"{job.camera} {at.isoformat(timespec='seconds')} {job.summary}"
            data = await asyncio.to_thread(annotate, jpeg, zones=zones, boxes=boxes_from_details(job.details),
                                           caption=caption)
        await asyncio.to_thread(_write_atomic, media_path(self.media_dir, rel), data)
        return {"path": rel, "media_type": "image/jpeg", "ts": at}

    async def _clip(self, job: Job) -> dict[str, Any]:
        start, end = _time(job.request.get("start")), _time(job.request.get("end"))
        if job.camera is None or start is None or end is None:
            raise Unavailable("clip request without camera or times")
        rel = f"incidents/{job.alert_id}/clip.mp4"
        dest = media_path(self.media_dir, rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        got = await self._video().clip(job.camera, start, end, dest)
        if got is None:
            raise Unavailable(f"the video ring of {job.camera} no longer holds {start.isoformat()}")
        if Path(got) != dest:
            await asyncio.to_thread(os.replace, got, dest)
        log.info("clip of alert %d: %.1fs cut in %.2fs", job.alert_id, (end - start).total_seconds(),
                 time.monotonic() - t0)
        return {"path": rel, "media_type": "video/mp4", "ts": start, "ends_at": end}

    async def _trace(self, job: Job) -> dict[str, Any]:
        r = job.request
        start, end = _time(r.get("start")), _time(r.get("end"))
        if start is None or end is None:
            raise Unavailable("scale trace request without times")
        await self._wait_until(end)
        async with self.db.connection() as conn:
            data = await series_refs.scale_trace(conn, str(r.get("site")), _strings(r.get("scales")), start, end)
        if data is None:
            raise Unavailable("no scale readings table in this database")
        return {"data": data, "ts": start, "ends_at": end}

    async def _scans(self, job: Job) -> dict[str, Any]:
        r = job.request
        start, end = _time(r.get("start")), _time(r.get("end"))
        if start is None or end is None:
            raise Unavailable("scans request without times")
        await self._wait_until(end)
        async with self.db.connection() as conn:
            data = await series_refs.scans(conn, str(r.get("site")), _strings(r.get("cylinders")),
                                           _strings(r.get("scan_ids")), start, end)
        if data is None:
            raise Unavailable("no scans table in this database")
        return {"data": data, "ts": start, "ends_at": end}

    async def _wait_until(self, end: datetime) -> None:
        """Let the series catch up with the end of the window (bounded)."""
        wait = (end - self.clock.now()).total_seconds()
        if wait > 0:
            await asyncio.sleep(min(wait, 20.0))
