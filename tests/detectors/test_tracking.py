"""The person tracker (ultralytics' ByteTrack under our settings) on made-up detections."""

from __future__ import annotations

from datetime import timedelta

import pytest

from monitor.detectors.detections import Detections
from monitor.detectors.tracking import PersonTracker
from tests.detectors.walks import T0


def _walk(speed: float, conf: float, n: int = 12, fps: float = 5.0) -> list[Detections]:
    """An empty frame, then one person walking right at ``speed`` (normalised per second)."""
    out = [Detections.build("cam", T0, [], [])]
    for k in range(n):
        x = 0.10 + speed * k / fps
        box = [x - 0.03, 0.35, x + 0.03, 0.60]
        out.append(Detections.build("cam", T0 + timedelta(seconds=(k + 1) / fps), [box], ["person"],
                                    confidences=[conf]))
    return out


@pytest.mark.parametrize("kind", ["bytetrack", "botsort"])
def test_a_brisk_walker_detected_at_half_confidence_is_tracked(kind: str) -> None:
    """0.15 of the width per second at 5 fps, confidence 0.5: consecutive boxes overlap at IoU
    0.33, fused distance 1 - 0.33 x 0.5 = 0.83. Ultralytics confirms a new track only under 0.7,
    so this walker would never get an id and would cross the view unseen by the rules."""
    tracker = PersonTracker(kind, fps=5.0)
    ids = [tracker.update(d).track_ids.tolist() for d in _walk(0.15, 0.5)]
    tracked = [i for i in ids[2:] if i]
    assert len(tracked) == len(ids) - 2  # from the walker's second frame on
    assert len({i[0] for i in tracked}) == 1  # one id throughout


def test_a_one_frame_box_is_never_tracked() -> None:
    """Confirmation still needs a second matching frame: a box seen once gets no id."""
    tracker = PersonTracker("bytetrack", fps=5.0)
    first = [tracker.update(d) for d in _walk(0.15, 0.9, n=1)]
    empty = tracker.update(Detections.build("cam", T0 + timedelta(seconds=1), [], []))
    assert all(len(d) == 0 for d in [*first, empty])
