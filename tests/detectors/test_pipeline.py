"""One camera's pipeline on made-up detections: the motion gate, reused detections, snapshots."""

from __future__ import annotations

from datetime import timedelta

import cv2
import numpy as np
import pytest

from monitor.config import Config
from monitor.detectors.detections import Detections
from monitor.detectors.motion import MotionGate
from monitor.detectors.pipeline import CameraPipeline
from tests.detectors.walks import T0, ZONES


def cfg(**detect: float) -> Config:
    return Config.model_validate({"sites": [{"id": "st-p", "kind": "station", "storage_capacity": 10, "cameras": [
        {"id": "cam", "url": "rtsp://127.0.0.1:1/x", "zones": ZONES, "rules": ["antistatic"],
         "detect": {"fps": 5, **detect}}]}]})


def still(value: int = 90) -> np.ndarray:
    return np.full((180, 320, 3), value, np.uint8)


def with_person(x: float) -> np.ndarray:
    img = still()
    cv2.rectangle(img, (int(x * 320), 60), (int(x * 320) + 20, 150), (20, 200, 20), -1)
    return img


@pytest.mark.parametrize(
    ("images", "expected"),
    [
        ([still()] * 6, [True, False, False, False, False, True]),  # forced every 1 s at 5 fps
        ([with_person(0.1 + 0.05 * k) for k in range(4)], [True, True, True, True]),  # moving: every frame
        ([still(), still(92), still(95), still()], [True, False, False, False]),  # light flicker is not motion
    ],
)
def test_motion_gate(images: list[np.ndarray], expected: list[bool]) -> None:
    gate = MotionGate(threshold=0.004, forced_every_s=1.0)
    assert [gate.should_analyse(k * 0.2, img) for k, img in enumerate(images)] == expected


def watch_empty_doorway(pipe: CameraPipeline) -> list:
    """One frame before anyone comes (people in view on the first frame are not judged)."""
    ts = T0 - timedelta(seconds=0.2)
    return pipe.process(ts, still(), Detections.empty("cam", ts, 320, 180)).findings


def person_at(x: float, t: float, track: int = 1) -> Detections:
    return Detections.build("cam", T0 + timedelta(seconds=t), [[x - 0.03, 0.35, x + 0.03, 0.6]], ["person"],
                            confidences=[0.9], track_ids=[track], width=320, height=180)


def test_still_person_at_the_post_keeps_dwelling_on_gated_frames() -> None:
    """Frames held back by the gate reuse the last detections at their own time."""
    pipe = CameraPipeline.for_camera(cfg(forced_every_s=2.0), "cam")
    findings = []
    t = 0.0
    # Walk in (analysed), stand at the post 4 s (a still scene: mostly gated), walk to the filling area.
    for k in range(5):
        t = k * 0.2
        findings += pipe.process(T0 + timedelta(seconds=t), with_person(0.02 * k), person_at(0.03 + 0.03 * k, t)).findings
    analysed = 0
    for _ in range(20):
        t += 0.2
        img = with_person(0.12)
        ts = T0 + timedelta(seconds=t)
        want = pipe.wants(ts, img)
        analysed += want
        findings += pipe.process(ts, img, person_at(0.16, t) if want else None).findings
    assert analysed <= 3  # a still scene: the model ran at most every forced_every_s
    for k in range(15):
        t += 0.2
        x = 0.16 + 0.05 * (k + 1)
        findings += pipe.process(T0 + timedelta(seconds=t), with_person(min(0.9, x)), person_at(min(0.9, x), t)).findings
    assert findings == []


def test_violation_carries_an_annotated_snapshot() -> None:
    pipe = CameraPipeline.for_camera(cfg(), "cam")
    out = watch_empty_doorway(pipe)
    for k in range(45):  # walks past the post (1.6 s inside it) into the filling area
        t = k * 0.2
        x = 0.05 + 0.02 * k
        out += pipe.process(T0 + timedelta(seconds=t), with_person(min(0.9, x)), person_at(min(0.95, x), t)).findings
    (f,) = out
    assert f.image is not None
    img = cv2.imdecode(np.frombuffer(f.image, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (180, 320, 3)
    assert not np.array_equal(img, with_person(0.9))  # zones and boxes drawn on it
