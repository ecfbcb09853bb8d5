"""The video service: every camera of this process, and what other parts call.

For the detectors (the interface they consume)::

    video = app[VIDEO]
    frames = await video.feed.wait(timeout_s=1.0)   # newest untaken frame of every camera
    async for frame in video.frames("st-minwang-entry"): ...   # or one camera's newest frames
    video.feed.dropped["cam"]                         # frames replaced before they were taken

Frames arrive sampled to the camera's ``detect.fps`` and motion-gated (``DetectSettings``):
a still scene yields a frame every ``forced_every_s``. Use one of the two styles per
process, not both.

For the alerts (``monitor.evidence.EvidenceSource``): ``await video.snapshot(camera)`` and
``await video.clip(camera, start, end, dest)``.

For the wall: ``camera_states()``, ``summaries()``, and the HTTP routes in ``api.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from monitor.config import Config
from monitor.store.db import Database
from monitor.store.leases import UNASSIGNED, LeaseKeeper, camera_priority
from monitor.tasks import TaskGroup
from monitor.video.camera import Camera, StateChange
from monitor.video.frame import Frame
from monitor.video.handoff import LatestFeed
from monitor.video.media import ClipInfo, prune, write_cut

log = logging.getLogger(__name__)


class VideoService:
    def __init__(
        self,
        cfg: Config,
        *,
        on_state: Callable[[StateChange], None] | None = None,
        cameras: Iterable[str] | None = None,
    ) -> None:
        self.cfg = cfg
        self.feed = LatestFeed()
        self.on_state = on_state
        wanted = set(cameras) if cameras is not None else None
        self.cameras: dict[str, Camera] = {}
        for site, cam in cfg.cameras():
            if wanted is None or cam.id in wanted:
                self.cameras[cam.id] = Camera(site, cam, cfg.media, self.feed, None, self._state)
        self.media_dir = Path(cfg.media.dir)
        self._running: dict[str, asyncio.Task[None]] = {}
        self.leased = False
        self.keeper: LeaseKeeper | None = None
        self.unassigned: list[str] = []  # one process, beyond media.max_cameras: not run
        _LIVE.add(self)

    def _state(self, ch: StateChange) -> None:
        if self.on_state is not None:
            self.on_state(ch)

    def start(self, tasks: TaskGroup) -> None:
        """Run every camera, or the ``media.max_cameras`` most important ones (anti-static
        first, as leases claim them: the rest are reported unassigned), on the event loop
        the consumers use."""
        self.feed.bind(asyncio.get_running_loop())
        self.leased = False
        order = sorted(self.cameras.values(), key=lambda c: (camera_priority(c.cfg.rules), c.id))
        cap = self.cfg.media.max_cameras
        run, self.unassigned = (order, []) if cap is None else (order[:cap], [c.id for c in order[cap:]])
        for cam in run:
            self._start_camera(tasks, cam.id)
        UNASSIGNED.set(len(self.unassigned))
        if self.unassigned:
            log.warning("video: %d camera(s) beyond media.max_cameras (%d) are not run: %s; run the video role "
                        "apart, on more workers", len(self.unassigned), cap, ", ".join(self.unassigned[:20]))
        tasks.supervise("media-retention", self._retention)

    def start_leased(self, tasks: TaskGroup, db: Database, db_ready: asyncio.Event, keeper: LeaseKeeper) -> None:
        """Run only the cameras this worker holds a lease on (``monitor.store.leases``):
        video workers on several machines share the city's cameras, and a dead worker's
        cameras are taken over when its leases expire."""
        self.feed.bind(asyncio.get_running_loop())
        self.leased = True
        self.keeper = keeper
        tasks.supervise("video-leases", lambda: self._lease_loop(tasks, db, db_ready, keeper))
        tasks.supervise("media-retention", self._retention)

    def _start_camera(self, tasks: TaskGroup, cid: str) -> None:
        cam = self.cameras.get(cid)
        if cam is None or cid in self._running:
            return
        self._running[cid] = tasks.supervise(f"camera:{cid}", cam.run, backoff_s=0.5, cap_s=10.0)

    def _stop_camera(self, cid: str, why: str) -> None:
        task = self._running.pop(cid, None)
        if task is not None:
            task.cancel()
            cam = self.cameras[cid]
            for role in cam.roles:
                cam._stream_down(role, why)
            cam.snapshots.clear()

    async def _lease_loop(self, tasks: TaskGroup, db: Database, db_ready: asyncio.Event, keeper: LeaseKeeper) -> None:
        await db_ready.wait()
        async with db.connection() as conn:
            await keeper.register(conn)
        last_ok = time.monotonic()
        try:
            while True:
                try:
                    async with db.connection() as conn:
                        ch = await keeper.tick(conn)
                    last_ok = time.monotonic()
                except Exception as e:
                    # Cannot renew: once our leases may have expired, another worker may run
                    # the cameras, so stop them rather than run them twice.
                    log.warning("video leases: cannot renew (%s)", e)
                    if time.monotonic() - last_ok > keeper.ttl_s * 0.8:
                        for cid in list(self._running):
                            self._stop_camera(cid, "lease not renewed (database unreachable)")
                        keeper.drop()
                else:
                    for cid in ch.lost:
                        self._stop_camera(cid, "lease lost to another worker")
                    for cid in keeper.held:
                        self._start_camera(tasks, cid)
                await asyncio.sleep(keeper.renew_s)
        finally:
            for cid in list(self._running):
                self._stop_camera(cid, "worker stopping")
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0), db.connection() as conn:
                    await keeper.release_all(conn)

    async def _retention(self) -> None:
        m = self.cfg.media
        while True:
            await asyncio.to_thread(prune, self.media_dir, m.max_age_days * 86400, m.max_bytes)
            await asyncio.sleep(m.retention_every_s)

    def close(self) -> None:
        self.feed.close()
        for cam in self.cameras.values():
            cam.relay.close()

    # ------------------------------------------------------------------ detectors

    def lease_generation(self, camera: str) -> int | None:
        """May this process report for ``camera`` now? None: no (it does not run the camera,
        or its lease may have passed to another worker); else the lease's generation, which
        changes when the camera is claimed again (0 when one process runs every camera).
        Answered from memory (the lease loop's last renewal), so it costs no round trip."""
        if camera not in self._running:
            return None
        if not self.leased:
            return 0
        return None if self.keeper is None else self.keeper.generation(camera)

    @property
    def lease_worker(self) -> str | None:
        """This worker's name in ``camera_leases`` (None: one process runs every camera)."""
        return self.keeper.worker if self.leased and self.keeper is not None else None

    def fence(self, camera: str) -> tuple[str, str, int] | None:
        """(camera, worker, generation) for a finding about ``camera`` observed now."""
        gen = self.lease_generation(camera)
        worker = self.lease_worker
        return None if gen is None or worker is None else (camera, worker, gen)

    def frames(self, camera: str) -> AsyncIterator[Frame]:
        if camera not in self.cameras:
            raise KeyError(camera)
        return self.feed.frames(camera)

    # ------------------------------------------------------------------ wall

    @property
    def running(self) -> list[str]:
        """The cameras this process runs now (all of them, or those it holds leases on)."""
        return sorted(self._running)

    def camera_states(self) -> Mapping[str, str]:
        return {**{cid: "unassigned" for cid in self.unassigned},
                **{cid: self.cameras[cid].state for cid in sorted(self._running)}}

    def summaries(self) -> list[dict[str, Any]]:
        return [self.cameras[cid].summary() for cid in sorted(self._running)]

    # ------------------------------------------------------------------ evidence

    async def snapshot(self, camera: str) -> tuple[datetime, bytes] | None:
        cam = self.cameras.get(camera)
        if cam is None or camera not in self._running:
            return None
        got = await asyncio.to_thread(cam.snapshots.jpeg)
        if got is None:
            return None
        return datetime.fromtimestamp(got[0], UTC), got[1]

    async def clip(self, camera: str, start: datetime, end: datetime, dest: Path) -> Path | None:
        info = await self.export(camera, start, end, dest)
        return None if info is None else info.path

    async def export(self, camera: str, start: datetime, end: datetime, dest: Path,
                     *, wait_s: float | None = None) -> ClipInfo | None:
        """Cut [start, end] from the ring to ``dest``, waiting (bounded) for the post-roll."""
        cam = self.cameras.get(camera)
        if cam is None or (camera not in self._running and cam.ring.newest_t is None):
            return None
        s, e = start.timestamp(), end.timestamp()
        if e <= s:
            raise ValueError("clip: end must be after start")
        limit = wait_s if wait_s is not None else max(0.0, e - time.time()) + 2 * self.cfg.media.open_timeout_s + 2.0
        arrived = asyncio.Event()
        loop = asyncio.get_running_loop()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(arrived.set)

        cancel = cam.ring.when_reaches(e, wake)
        try:
            await asyncio.wait_for(arrived.wait(), limit)
        except TimeoutError:
            log.info("clip %s: post-roll incomplete after %.1fs; cutting what the ring holds", camera, limit)
        finally:
            cancel()
        cut = cam.ring.cut(s, e, frame_s=cam.frame_s)
        if cut is None:
            return None
        return await asyncio.to_thread(write_cut, cut, Path(dest))


_LIVE: weakref.WeakSet[VideoService] = weakref.WeakSet()

_COUNTERS = {
    "packets": "packets received",
    "bytes": "bytes received",
    "frames_decoded": "frames decoded",
    "frames_sampled": "frames sampled to the detection rate",
    "frames_gated": "sampled frames held back by the motion gate",
    "frames_sent": "frames handed to the detector",
    "frames_dropped": "frames replaced before the detector took them",
    "decode_errors": "packets the decoder refused",
    "reconnects": "connections re-made",
}


class _CameraCollector(Collector):
    """Per-camera figures read at scrape time (no cost on the packet path)."""

    def collect(self) -> Iterable[Any]:
        cams = [svc.cameras[cid] for svc in list(_LIVE) for cid in svc.running]
        up = GaugeMetricFamily("monitor_camera_up", "1 online, 0.5 degraded, 0 offline", labels=["camera", "site"])
        age = GaugeMetricFamily("monitor_camera_frame_age_seconds", "age of the last frame handed to the detector",
                                labels=["camera"])
        ring = GaugeMetricFamily("monitor_camera_ring_bytes", "bytes held in the packet ring", labels=["camera"])
        viewers = GaugeMetricFamily("monitor_camera_live_viewers", "live relay viewers", labels=["camera"])
        counters = {k: CounterMetricFamily(f"monitor_camera_{k}", v, labels=["camera"]) for k, v in _COUNTERS.items()}
        for c in cams:
            up.add_metric([c.id, c.site.id], {"online": 1.0, "degraded": 0.5}.get(c.state, 0.0))
            if c.frame_ages:
                age.add_metric([c.id], c.frame_ages[-1])
            ring.add_metric([c.id], c.ring.bytes)
            viewers.add_metric([c.id], c.relay.viewers)
            c.counters.frames_dropped = c.feed.dropped.get(c.id, 0)
            d = c.counters.as_dict()
            for k, fam in counters.items():
                fam.add_metric([c.id], float(d[k]))
        yield from (up, age, ring, viewers, *counters.values())


REGISTRY.register(_CameraCollector())
