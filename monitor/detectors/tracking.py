"""Per-camera person tracking with ultralytics' ByteTrack or BoT-SORT.

One tracker per camera, fed the person detections of each analysed frame (cylinders are
counted, not tracked). ``lap`` must be installed (ultralytics does not install it). The
trackers count frames internally; ``track_buffer`` is therefore derived from seconds and
the analysis rate. Boxes returned are the detector's own (the Kalman-smoothed box only
decides association); persons the tracker has not confirmed yet carry no id and are
dropped, so rules only ever see tracked persons.

A new track is confirmed by its second frame's match to a detection. Ultralytics asks of
that match more than of any other (fused distance ``1 - IoU x confidence`` under 0.7, while
confirmed tracks match under ``match_thresh``): at 5 fps a person walking briskly, or
detected at a confidence of 0.4-0.5 (half hidden, far), moves too far between two frames
and is never confirmed, so a walker could cross the view untracked and be first seen in
the filling area. New tracks here are confirmed under ``confirm_thresh`` (default: the
same ``match_thresh`` as every other match).
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np

from monitor.detectors.detections import PERSON, Detections

TrackerKind = Literal["bytetrack", "botsort"]
log = logging.getLogger(__name__)


def _tracker_args(kind: TrackerKind, fps: float, keep_lost_s: float) -> SimpleNamespace:
    args: dict[str, Any] = {
        "tracker_type": kind,
        "track_high_thresh": 0.25,
        "track_low_thresh": 0.1,
        "new_track_thresh": 0.25,
        "track_buffer": max(2, round(fps * keep_lost_s)),
        # Looser than ultralytics' 0.8: people who cross or stand together at the post keep
        # their tracks more often (measured on simulated station clips of other seeds than the
        # benchmark's: anti-static recall 0.87 -> 0.94 at the same precision).
        "match_thresh": 0.9,
        "fuse_score": True,
        "confirm_thresh": 0.9,  # a new track's second match (ultralytics: 0.7; see the module's notes)
    }
    if kind == "botsort":
        args.update({"gmc_method": "none", "proximity_thresh": 0.5, "appearance_thresh": 0.8,
                     "with_reid": False, "model": "auto", "device": "cpu"})
    return SimpleNamespace(**args)


class PersonTracker:
    def __init__(self, kind: TrackerKind = "bytetrack", *, fps: float = 5.0, keep_lost_s: float = 2.0) -> None:
        from ultralytics.trackers.bot_sort import BOTSORT
        from ultralytics.trackers.byte_tracker import BYTETracker

        args = _tracker_args(kind, fps, keep_lost_s)
        self.kind = kind
        base: Any = BOTSORT if kind == "botsort" else BYTETracker
        if hasattr(base, "_unconfirmed_association"):
            base = _confirming(base)
        else:  # an ultralytics without the hook: its own threshold for new tracks
            log.warning("ultralytics %s has no _unconfirmed_association: new tracks are confirmed at 0.7",
                        base.__name__)
        self.tracker: Any = base(args)

    def update(self, dets: Detections) -> Detections:
        """``dets`` with track ids on the tracked persons; untracked persons dropped, the rest kept."""
        from ultralytics.engine.results import Boxes

        is_person = dets.classes == PERSON
        persons = dets.select(np.flatnonzero(is_person))
        others = np.flatnonzero(~is_person)
        px = persons.pixel_boxes().astype(np.float32)
        data = np.concatenate(
            [px, persons.confidences[:, None], np.zeros((len(persons), 1), np.float32)], axis=1
        ) if len(persons) else np.zeros((0, 6), np.float32)
        tracks = self.tracker.update(Boxes(data, (dets.height, dets.width)), None)
        tracks = np.asarray(tracks)
        if len(tracks):
            idx = tracks[:, -1].astype(np.int64)
            ids = tracks[:, 4].astype(np.int64)
        else:
            idx = np.zeros(0, np.int64)
            ids = np.zeros(0, np.int64)
        kept = dets.select(np.concatenate([np.flatnonzero(is_person)[idx], others]).astype(np.int64))
        tids = np.concatenate([ids, np.full(len(others), -1, np.int64)])
        return kept.with_track_ids(tids)

    def reset(self) -> None:
        self.tracker.reset()


def _confirming(base: Any) -> Any:
    """``base`` (ultralytics' BYTETracker or BOTSORT) confirming new tracks under ``args.confirm_thresh``."""
    from ultralytics.trackers.utils import matching

    class Confirming(base):  # type: ignore[misc,valid-type]
        def _unconfirmed_association(
            self, unconfirmed: list[Any], u_detection: list[int], detections: list[Any], activated: list[Any],
            removed: list[Any],
        ) -> tuple[list[int], list[Any]]:
            # ultralytics' own, with the threshold taken from the arguments.
            detections = [detections[i] for i in u_detection]
            if not unconfirmed:
                return list(range(len(detections))), detections
            dists = self.get_dists(unconfirmed, detections)
            matches, u_unconfirmed, u_left = matching.linear_assignment(dists, thresh=self.args.confirm_thresh)
            for it, idet in matches:
                unconfirmed[it].update(detections[idet], self.frame_id)
                activated.append(unconfirmed[it])
            for it in u_unconfirmed:
                unconfirmed[it].mark_removed()
                removed.append(unconfirmed[it])
            return list(u_left), detections

    Confirming.__name__ = f"Confirming{base.__name__}"
    return Confirming
