"""The detectors at run time: frames in, findings, counts and live overlays out.

For every camera of this process that has rules, the service takes the newest frames
(already sampled to ``detect.fps`` and motion-gated by the video part), sends them to the
model runner (one ``InferenceWorker`` per distinct detector configuration; frames of many
cameras go in one batch), then runs the camera's ``CameraPipeline`` (tracker, rules,
annotated snapshots) off the event loop. Its outputs:

- findings → ``FindingBus.submit`` (waits, bounded; never dropped silently);
- live detections → hub topic ``detections:<camera>`` (boxes normalised, person ids);
- storage counts → table ``camera_counts(ts, camera_id, site_id, count, raw, capacity)``,
  one row per camera when the smoothed count changes or every ``COUNT_EVERY_S``,
  written in batches; rows wait in a bounded buffer while the database is away (the
  oldest are dropped and counted when it is full).

Video workers on several machines (``LeaseView``, the video part's leases): a camera's
frames are analysed and its results reported only while this process may report for it,
checked from memory before the model and again before reporting (a worker that was
paused while another took the camera over reports nothing for it). When this process
starts reporting for a camera (its first frame here, or a lease claimed again) the
camera's pipeline starts afresh (so people already in the filling area are not judged,
``antistatic``) and continues what its previous holder left live (``Takeover``, read by
``resume``): a storage condition already raised is not raised again (only its clearing is
news), and new people are numbered after those its alerts name, so a new person's alert is
never merged into an old one's.

Keeping up (``watch.KeepUpWatch``): every ``KEEPUP_EVERY_S`` the service compares, per
camera, the frames it analysed with the frames handed to it (those the feed replaced
before the detector took them included: ``replaced``). A camera whose frames are mostly
never analysed raises the condition ``detector_behind`` (its rules are not really
watched: the worker has more cameras than its detector takes; see ``media.max_cameras``),
which clears when it keeps up again.

The service knows frames only through the small ``FrameFeed`` protocol the entry hands it.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from prometheus_client import Counter, Gauge

from monitor.config import CameraConfig, Config, DetectorConfig, SiteConfig
from monitor.detectors.detections import Detections
from monitor.detectors.pipeline import CameraPipeline, FrameResult
from monitor.detectors.runner import InferenceWorker, ModelRunner
from monitor.detectors.storage import StorageRule
from monitor.detectors.watch import KeepUp, KeepUpWatch
from monitor.errors import MonitorError
from monitor.findings import Finding
from monitor.video.frame import Frame

log = logging.getLogger(__name__)

FINDINGS = Counter("monitor_detector_findings_total", "findings raised by the detectors", ["rule"])
COUNT_ROWS_DROPPED = Counter("monitor_detector_count_rows_dropped_total", "count rows dropped (database away)")
CAMERA_FRAMES = Counter("monitor_detector_camera_frames_total", "frames analysed, per camera", ["camera"])
SKIPPED = Counter("monitor_detector_frames_skipped_total",
                  "frames not analysed: no lease on the camera, or its previous holder's state still being read",
                  ["why"])
FENCED = Counter("monitor_detector_fenced_total",
                 "results not reported: the camera's lease was lost while its frame was analysed", ["what"])
BEHIND = Gauge("monitor_detector_cameras_behind",
               "cameras whose frames this process's detector mostly does not analyse (detector_behind)")
COUNT_EVERY_S = 10.0
KEEPUP_EVERY_S = 5.0
FLUSH_EVERY_S = 2.0
RESUME_WAIT_S = 10.0  # frames of a newly taken camera wait at most this long for its Takeover
_PERSON_SUBJECT = re.compile(r"track-(\d+)")  # the anti-static rule's alert subject


class FrameFeed(Protocol):
    async def wait(self, timeout_s: float | None = None) -> list[Frame]: ...


class LeaseView(Protocol):
    def lease_generation(self, camera: str) -> int | None: ...

    @property
    def lease_worker(self) -> str | None: ...  # this worker's name in camera_leases (None: no leases)


@dataclass(frozen=True)
class Takeover:
    """What a camera's previous holder (another worker, or this process before a restart)
    left live: the condition rules raised and still active, the subjects of live alerts."""

    conditions: frozenset[str] = frozenset()
    subjects: frozenset[str] = frozenset()


Resume = Callable[[str], Awaitable[Takeover | None]]  # None: could not be read


@dataclass
class _Resuming:
    generation: int
    task: asyncio.Task[Takeover | None]
    began: float = field(default_factory=time.monotonic)


class Publisher(Protocol):
    def publish(self, topic: str, event: dict[str, Any]) -> int: ...


@dataclass(frozen=True)
class CountRow:
    ts: datetime
    camera_id: str
    site_id: str
    count: int
    raw: int
    capacity: int


CountWriter = Callable[[Sequence[CountRow]], Awaitable[None]]


class DetectorService:
    def __init__(
        self, cfg: Config, feed: FrameFeed, submit: Callable[[Finding], Awaitable[None]], *,
        hub: Publisher | None = None, write_counts: CountWriter | None = None,
        cameras: set[str] | None = None, buffer_rows: int = 10_000,
        leases: LeaseView | None = None, resume: Resume | None = None,
        replaced: Callable[[str], int] | None = None,
    ) -> None:
        self.cfg = cfg
        self.feed = feed
        self.submit = submit
        self.hub = hub
        self.write_counts = write_counts
        self.leases = leases
        self.resume = resume
        self.replaced = replaced  # camera -> frames the feed replaced before we took them (cumulative)
        self.keepup = KeepUpWatch()
        self._taken: dict[str, int] = {}
        self._analysed: dict[str, int] = {}
        self.pipes: dict[str, CameraPipeline] = {}
        self._cams: dict[str, tuple[SiteConfig, CameraConfig]] = {}
        self._gen: dict[str, int] = {}  # camera -> lease generation its pipeline reports under
        self._resuming: dict[str, _Resuming] = {}
        self.groups: dict[str, str] = {}  # camera -> detector config key
        self.configs: dict[str, DetectorConfig] = {}
        for site, cam in cfg.cameras():
            if not cam.rules or (cameras is not None and cam.id not in cameras):
                continue
            self.pipes[cam.id] = CameraPipeline(site, cam, cfg, gate=False)
            self._cams[cam.id] = (site, cam)
            det = cfg.detector_for(cam)
            key = det.model_dump_json()
            self.configs[key] = det
            self.groups[cam.id] = key
        self.workers: dict[str, InferenceWorker] = {}
        self.rows: collections.deque[CountRow] = collections.deque()
        self.buffer_rows = buffer_rows
        self.rows_dropped = 0
        self._last_count: dict[str, tuple[int, float]] = {}
        self.state = "starting"
        self.error: str | None = None
        self.frames = 0
        self.findings = 0
        self.ready = asyncio.Event()

    # -- model loading ---------------------------------------------------------------
    async def load(self) -> None:
        """Load (and export, once) every model the cameras need; off the event loop."""
        for key, det in self.configs.items():
            if key in self.workers:
                continue
            runner = await asyncio.to_thread(ModelRunner, det)
            w = InferenceWorker(runner, maxsize=max(8, 2 * len(self.pipes)))
            w.start()
            self.workers[key] = w
        self.state = "running"
        self.error = None
        self.ready.set()

    def close(self) -> None:
        for w in self.workers.values():
            w.stop()
        self.workers.clear()
        for r in self._resuming.values():
            r.task.cancel()
        self._resuming.clear()

    # -- the loop --------------------------------------------------------------------
    async def run(self) -> None:
        """Supervised: load the models (retrying while they cannot load), then analyse for ever."""
        if not self.pipes:
            log.info("detectors: no camera of this process has rules")
            await asyncio.Event().wait()
        while not self.ready.is_set():
            try:
                await self.load()
            except MonitorError as e:
                self.state, self.error = "model_error", str(e)
                log.error("detectors: cannot load the model: %s; retrying in 60s", e)
                await asyncio.sleep(60.0)
        log.info("detectors running on %d camera(s): %s", len(self.pipes), ", ".join(sorted(self.pipes)))
        next_check = time.monotonic() + KEEPUP_EVERY_S
        while True:
            frames = [f for f in await self.feed.wait(timeout_s=1.0) if f.camera in self.pipes]
            if frames:
                await self.step(frames)
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + KEEPUP_EVERY_S
                for finding in self.check_keepup(time.monotonic()):
                    await self.submit(finding)

    async def step(self, frames: list[Frame]) -> list[tuple[str, FrameResult]]:
        """One round: the frames' detections (batched), the pipelines, then the outputs."""
        if self.leases is not None:
            frames = [f for f in frames if self._admit(f.camera)]
            if not frames:
                return []
        for f in frames:
            self._taken[f.camera] = self._taken.get(f.camera, 0) + 1
        dets = await asyncio.gather(
            *(self.workers[self.groups[f.camera]].detect(f.camera, f.ts, f.image) for f in frames)
        )
        todo = [(f, d) for f, d in zip(frames, dets, strict=True) if d is not None]
        results = await asyncio.to_thread(self._process, todo)
        if self.leases is not None:
            results = [(cam, r) for cam, r in results if self._still_ours(cam, r)]
        for cam, r in results:
            self.frames += 1
            self._analysed[cam] = self._analysed.get(cam, 0) + 1
            CAMERA_FRAMES.labels(cam).inc()
            for finding in r.findings:
                FINDINGS.labels(finding.rule).inc()
                self.findings += 1
                await self.submit(self._fenced(cam, finding))
            if self.hub is not None:
                self.hub.publish(f"detections:{cam}", {"type": "detections", **r.dets.as_json(),
                                                       "site": self.pipes[cam].site.id})
            if r.count is not None:
                self._note_count(cam, r)
        return results

    def _process(self, todo: list[tuple[Frame, Detections]]) -> list[tuple[str, FrameResult]]:
        return [(f.camera, self.pipes[f.camera].process(f.ts, f.image, d)) for f, d in todo]

    # -- keeping up ------------------------------------------------------------------------
    def check_keepup(self, now: float) -> list[Finding]:
        """``detector_behind`` findings (raised or cleared) for the cameras this process
        reports for whose state changed; a camera no longer ours is forgotten."""
        if self.replaced is None:
            return []
        out: list[Finding] = []
        for cam in self.pipes:
            if self.leases is not None and (
                self.leases.lease_generation(cam) is None or self._gen.get(cam) is None
            ):
                if cam in self.keepup.behind:
                    log.info("detectors: %s is no longer this process's; its keep-up state is dropped", cam)
                self.keepup.forget(cam)
                continue
            offered = self._taken.get(cam, 0) + self.replaced(cam)
            change = self.keepup.update(cam, now, self._analysed.get(cam, 0), offered)
            if change is not None:
                out.append(self._fenced(cam, self._behind_finding(change)))
        BEHIND.set(len(self.keepup.behind))
        return out

    def _fenced(self, cam: str, f: Finding) -> Finding:
        """The finding carries the lease it was observed under: the alert engine files it only
        if that lease still holds when it writes it (checked in the same transaction)."""
        worker = self.leases.lease_worker if self.leases is not None else None
        gen = self._gen.get(cam)
        if worker is None or gen is None:
            return f
        return dataclasses.replace(f, fence=(cam, worker, gen))

    def _behind_finding(self, k: KeepUp) -> Finding:
        site, cam = self._cams[k.camera]
        pct = f"{k.share:.0%}"
        if k.behind:
            summary = (f"camera {k.camera}: the detector analysed {pct} of its frames in the last {k.window_s:g} s "
                       f"({k.analysed} of {k.offered}): its rules ({', '.join(cam.rules)}) are not watched; "
                       f"this video worker has more cameras than its detector takes")
            log.warning("detectors: %s", summary)
        else:
            summary = f"camera {k.camera}: the detector keeps up again ({pct} of its frames analysed)"
            log.info("detectors: %s", summary)
        return Finding(rule="detector_behind", site=site.id, source=k.camera, subject=k.camera,
                       ts=datetime.now(UTC), summary=summary, active=k.behind,
                       details={"share": k.share, "analysed": k.analysed, "offered": k.offered,
                                "window_s": k.window_s, "rules": list(cam.rules)})

    # -- leases: report only for cameras this process holds --------------------------------
    def _admit(self, cam: str) -> bool:
        """May this frame of ``cam`` be analysed? Starts (and then waits for) the camera's
        takeover when this process begins reporting for it under a new lease generation."""
        assert self.leases is not None
        gen = self.leases.lease_generation(cam)
        if gen is None:
            pending = self._resuming.pop(cam, None)
            if pending is not None:
                pending.task.cancel()
            SKIPPED.labels("not_leased").inc()
            return False
        if self._gen.get(cam) == gen:
            return True
        r = self._resuming.get(cam)
        if r is None or r.generation != gen:
            if r is not None:
                r.task.cancel()
            task: asyncio.Task[Takeover | None] = asyncio.ensure_future(self._read_takeover(cam))
            self._resuming[cam] = r = _Resuming(gen, task)
        if not r.task.done():
            if time.monotonic() - r.began < RESUME_WAIT_S:
                SKIPPED.labels("resuming").inc()
                return False
            r.task.cancel()
            log.warning("detectors: %s: what its previous holder left was not read in %.0fs; starting afresh",
                        cam, RESUME_WAIT_S)
        took = r.task.result() if r.task.done() and not r.task.cancelled() else None
        del self._resuming[cam]
        self._start_reporting(cam, gen, took)
        return True

    async def _read_takeover(self, cam: str) -> Takeover | None:
        if self.resume is None:
            return Takeover()
        try:
            return await self.resume(cam)
        except Exception as e:  # best effort: the camera is analysed afresh rather than not at all
            log.warning("detectors: %s: cannot read what its previous holder left (%s: %s)", cam,
                        type(e).__name__, e)
            return None

    def _start_reporting(self, cam: str, gen: int, took: Takeover | None) -> None:
        if cam in self._gen or self.pipes[cam].frames:
            # Taken again after another worker held it: what this pipeline knew is stale.
            site, cc = self._cams[cam]
            self.pipes[cam] = CameraPipeline(site, cc, self.cfg, gate=False)
            self._last_count.pop(cam, None)
        self._gen[cam] = gen
        pipe = self.pipes[cam]
        if took is None:
            return
        if pipe.storage is not None and StorageRule.rule_id in took.conditions:
            pipe.storage.over = True  # raised by the previous holder: only its clearing is news
        if pipe.antistatic is not None:
            used = [int(m.group(1)) for sub in took.subjects if (m := _PERSON_SUBJECT.fullmatch(sub))]
            if used:
                pipe.antistatic.stitcher.number_after(max(used))
        if took.conditions or took.subjects:
            log.info("detectors: %s (lease %d) continues %d live alert(s) of its previous holder", cam, gen,
                     len(took.subjects))

    def _still_ours(self, cam: str, r: FrameResult) -> bool:
        assert self.leases is not None
        if self.leases.lease_generation(cam) == self._gen.get(cam):
            return True
        FENCED.labels("frame").inc()
        if r.findings:
            FENCED.labels("finding").inc(len(r.findings))
            log.warning("detectors: %s: lease lost during analysis; %d finding(s) not reported", cam,
                        len(r.findings))
        return False

    # -- counts --------------------------------------------------------------------------
    def _note_count(self, cam: str, r: FrameResult) -> None:
        assert r.count is not None
        now = time.monotonic()
        last = self._last_count.get(cam)
        if last is not None and last[0] == r.count.count and now - last[1] < COUNT_EVERY_S:
            return
        self._last_count[cam] = (r.count.count, now)
        pipe = self.pipes[cam]
        if len(self.rows) >= self.buffer_rows:
            self.rows.popleft()
            self.rows_dropped += 1
            COUNT_ROWS_DROPPED.inc()
        self.rows.append(CountRow(r.count.ts, cam, pipe.site.id, r.count.count, r.count.raw,
                                  pipe.site.storage_capacity))

    async def flush_counts(self) -> int:
        """Write the buffered rows (all or none); they stay buffered when the database is away."""
        if not self.rows or self.write_counts is None:
            return 0
        batch = list(self.rows)
        await self.write_counts(batch)
        for _ in range(len(batch)):
            self.rows.popleft()
        return len(batch)

    async def run_counts(self, db_ready: asyncio.Event | None = None) -> None:
        if db_ready is not None:
            await db_ready.wait()
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            try:
                await self.flush_counts()
            except MonitorError as e:
                log.warning("detectors: counts not written yet (%s); %d row(s) waiting", e, len(self.rows))

    def summary(self) -> dict[str, Any]:
        return {
            "state": self.state, "error": self.error, "cameras": sorted(self.pipes), "frames": self.frames,
            "findings": self.findings, "dropped": sum(w.dropped for w in self.workers.values()),
            "count_rows_waiting": len(self.rows), "count_rows_dropped": self.rows_dropped,
        }
