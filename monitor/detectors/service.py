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

The service knows frames only through the small ``FrameFeed`` protocol the entry hands it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from prometheus_client import Counter

from monitor.config import Config, DetectorConfig
from monitor.detectors.detections import Detections
from monitor.detectors.pipeline import CameraPipeline, FrameResult
from monitor.detectors.runner import InferenceWorker, ModelRunner
from monitor.errors import MonitorError
from monitor.findings import Finding
from monitor.video.frame import Frame

log = logging.getLogger(__name__)

FINDINGS = Counter("monitor_detector_findings_total", "findings raised by the detectors", ["rule"])
COUNT_ROWS_DROPPED = Counter("monitor_detector_count_rows_dropped_total", "count rows dropped (database away)")
COUNT_EVERY_S = 10.0
FLUSH_EVERY_S = 2.0


class FrameFeed(Protocol):
    async def wait(self, timeout_s: float | None = None) -> list[Frame]: ...


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
    ) -> None:
        self.cfg = cfg
        self.feed = feed
        self.submit = submit
        self.hub = hub
        self.write_counts = write_counts
        self.pipes: dict[str, CameraPipeline] = {}
        self.groups: dict[str, str] = {}  # camera -> detector config key
        self.configs: dict[str, DetectorConfig] = {}
        for site, cam in cfg.cameras():
            if not cam.rules or (cameras is not None and cam.id not in cameras):
                continue
            self.pipes[cam.id] = CameraPipeline(site, cam, cfg, gate=False)
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
        while True:
            frames = [f for f in await self.feed.wait(timeout_s=1.0) if f.camera in self.pipes]
            if frames:
                await self.step(frames)

    async def step(self, frames: list[Frame]) -> list[tuple[str, FrameResult]]:
        """One round: the frames' detections (batched), the pipelines, then the outputs."""
        dets = await asyncio.gather(
            *(self.workers[self.groups[f.camera]].detect(f.camera, f.ts, f.image) for f in frames)
        )
        todo = [(f, d) for f, d in zip(frames, dets, strict=True) if d is not None]
        results = await asyncio.to_thread(self._process, todo)
        for cam, r in results:
            self.frames += 1
            for finding in r.findings:
                FINDINGS.labels(finding.rule).inc()
                self.findings += 1
                await self.submit(finding)
            if self.hub is not None:
                self.hub.publish(f"detections:{cam}", {"type": "detections", **r.dets.as_json(),
                                                       "site": self.pipes[cam].site.id})
            if r.count is not None:
                self._note_count(cam, r)
        return results

    def _process(self, todo: list[tuple[Frame, Detections]]) -> list[tuple[str, FrameResult]]:
        return [(f.camera, self.pipes[f.camera].process(f.ts, f.image, d)) for f, d in todo]

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
