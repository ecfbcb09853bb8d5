"""Made-up detections for rule tests: people walking between waypoints at a frame rate."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from monitor.detectors.detections import Detections

T0 = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)
POST = [[0.08, 0.35], [0.24, 0.35], [0.24, 0.80], [0.08, 0.80]]
FILL = [[0.55, 0.25], [1.00, 0.25], [1.00, 1.00], [0.55, 1.00]]
ZONES = {"discharge_post": POST, "filling_area": FILL}

# Feet positions: outside everything, at the post, in the filling area.
ENTRY = (0.02, 0.6)
AT_POST = (0.16, 0.6)
MIDWAY = (0.40, 0.6)
IN_FILL = (0.75, 0.6)


@dataclass
class Walker:
    """A person: (time_s, feet_x, feet_y) waypoints, raw track ids by time, hidden intervals."""

    waypoints: Sequence[tuple[float, float, float]]
    ids: Sequence[tuple[float, int]] = ((0.0, 1),)  # from time t on, raw id is i
    hidden: Sequence[tuple[float, float]] = ()
    size: tuple[float, float] = (0.06, 0.25)
    extra_boxes: Sequence[tuple[float, float, int]] = field(default_factory=list)  # (t0, t1, raw id) fragment

    def at(self, t: float) -> tuple[float, float] | None:
        wp = self.waypoints
        if t < wp[0][0] or t > wp[-1][0] or any(a <= t < b for a, b in self.hidden):
            return None
        for (t0, x0, y0), (t1, x1, y1) in itertools.pairwise(wp):
            if t0 <= t <= t1:
                k = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
                return (x0 + k * (x1 - x0), y0 + k * (y1 - y0))
        return (wp[-1][1], wp[-1][2])

    def raw_id(self, t: float) -> int:
        rid = self.ids[0][1]
        for since, i in self.ids:
            if t >= since:
                rid = i
        return rid


def frames(walkers: Sequence[Walker], *, fps: float = 5.0, until: float | None = None,
           camera: str = "cam") -> Iterator[Detections]:
    """Detections at ``fps`` from one frame before the first walker appears (so the rule has
    watched before anyone entered the view) until ``until``."""
    end = until if until is not None else max(w.waypoints[-1][0] for w in walkers) + 3.0
    start = min(w.waypoints[0][0] for w in walkers) - 1 / fps
    n = int((end - start) * fps) + 1
    for k in range(n):
        t = start + k / fps
        boxes, ids = [], []
        for w in walkers:
            p = w.at(t)
            if p is None:
                continue
            x, y = p
            bw, bh = w.size
            boxes.append([max(0.0, x - bw / 2), max(0.0, y - bh), min(1.0, x + bw / 2), y])
            ids.append(w.raw_id(t))
            for a, b, rid in w.extra_boxes:
                if a <= t < b:
                    boxes.append([x - bw / 4, y - bh * 0.9, x + bw / 4, y - bh * 0.5])
                    ids.append(rid)
        yield Detections.build(camera, T0 + timedelta(seconds=t), boxes, ["person"] * len(boxes), track_ids=ids)


def path(*legs: tuple[float, tuple[float, float]]) -> list[tuple[float, float, float]]:
    """path((0, ENTRY), (2, AT_POST), ...) -> waypoints"""
    return [(t, p[0], p[1]) for t, p in legs]
