"""One camera's detection pipeline after the model: motion gate, tracker, rules, snapshots.

Synchronous and free of I/O: the service (live frames) and ``monitor analyze``
(recordings) both drive it the same way::

    if pipe.wants(ts, image):          # the motion gate
        dets = runner.detect(...)      # the model, batched across cameras elsewhere
    else:
        dets = None                    # still scene: last detections hold at this time
    result = pipe.process(ts, image, dets)

``process`` returns the tracked detections (``track_ids`` are person ids after
stitching), the findings completed by this frame (each with an annotated JPEG), and the
storage count sample when the camera has the storage rule.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt

from monitor.config import CameraConfig, Config, SiteConfig
from monitor.detectors.annotate import annotate, jpeg
from monitor.detectors.antistatic import AntistaticParams, AntistaticRule
from monitor.detectors.detections import Detections
from monitor.detectors.motion import MotionGate
from monitor.detectors.storage import CountSample, StorageParams, StorageRule
from monitor.detectors.tracking import PersonTracker
from monitor.detectors.zones import Zone, zones_from_config
from monitor.findings import Finding


@dataclass(frozen=True)
class FrameResult:
    dets: Detections
    findings: list[Finding] = field(default_factory=list)
    count: CountSample | None = None
    analysed: bool = True


class CameraPipeline:
    def __init__(
        self, site: SiteConfig, cam: CameraConfig, cfg: Config, *, gate: bool = True, snapshots: bool = True,
    ) -> None:
        self.site = site
        self.cam = cam
        self.zones: dict[str, Zone] = zones_from_config(cam.zones)
        det = cfg.detector_for(cam)
        self.tracker = PersonTracker(det.tracker, fps=cam.detect.fps, keep_lost_s=cfg.rules.antistatic.reid_gap_s)
        self.gate = MotionGate(cam.detect.motion_threshold, cam.detect.forced_every_s) if gate else None
        self.snapshots = snapshots
        self.antistatic: AntistaticRule | None = None
        self.storage: StorageRule | None = None
        if "antistatic" in cam.rules:
            a = cfg.rules.antistatic
            # A motion gate may hold back a still scene's frames for up to forced_every_s: a
            # person standing at the post that long is still dwelling.
            step = max(1.0, cam.detect.forced_every_s + 0.5)
            self.antistatic = AntistaticRule(
                site.id, cam.id, self.zones,
                AntistaticParams(a.dwell_s, a.reid_gap_s, a.reid_dist, max_step_s=step),
            )
        if "storage" in cam.rules:
            s = cfg.rules.storage
            self.storage = StorageRule(
                site.id, cam.id, self.zones, StorageParams(site.storage_capacity, s.window_s, s.hold_s, s.quantile)
            )
        self._last: Detections | None = None
        self.frames = 0

    @classmethod
    def for_camera(cls, cfg: Config, camera_id: str, **kw: bool) -> CameraPipeline:
        site, cam = cfg.camera(camera_id)
        return cls(site, cam, cfg, **kw)

    def wants(self, ts: datetime, image: npt.NDArray[np.uint8]) -> bool:
        """Should this frame go to the model? (always, without a gate or before the first detections)"""
        if self.gate is None or self._last is None:
            if self.gate is not None:
                self.gate.should_analyse(ts.timestamp(), image)
            return True
        return self.gate.should_analyse(ts.timestamp(), image)

    def process(self, ts: datetime, image: npt.NDArray[np.uint8], dets: Detections | None) -> FrameResult:
        """Run tracker and rules on one frame; ``dets=None`` reuses the last detections (gated frame)."""
        self.frames += 1
        analysed = dets is not None
        if dets is not None:
            tracked = self.tracker.update(dets)
            self._last = tracked
        elif self._last is not None:
            tracked = self._last.at(ts)
        else:
            h, w = image.shape[:2]
            tracked = Detections.empty(self.cam.id, ts, w, h)
        findings: list[Finding] = []
        shown = tracked
        if self.antistatic is not None:
            findings += self.antistatic.update(tracked)
            pids = self.antistatic.last_pids
            shown = tracked.with_track_ids(np.where(pids >= 0, pids, tracked.track_ids))
        count = None
        if self.storage is not None:
            findings += self.storage.update(tracked)
            count = self.storage.last
        if findings and self.snapshots:
            findings = [self._with_snapshot(f, image, shown) for f in findings]
        return FrameResult(shown, findings, count, analysed)

    def _with_snapshot(self, f: Finding, image: npt.NDArray[np.uint8], shown: Detections) -> Finding:
        labels = {i: f"#{int(t)}" for i, t in enumerate(shown.track_ids.tolist()) if t >= 0}
        highlight = None
        banner = None
        track = f.details.get("track")
        if track is not None:
            rows = np.flatnonzero(shown.track_ids == int(track))
            highlight = int(rows[0]) if len(rows) else None
            banner = f"{self.cam.id} #{track}: {f.details.get('dwell_s', 0)}s at post"
        elif "count" in f.details:
            banner = f"{self.cam.id}: {f.details['count']} / {f.details['capacity']}"
        img = annotate(image, shown, self.zones, labels, highlight, banner)
        return dataclasses.replace(f, image=jpeg(img))
