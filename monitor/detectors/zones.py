"""Polygon zones in normalised 0..1 image coordinates (pure).

A person is in a zone by the bottom centre of its box (where the feet stand), a cylinder
by the centre of its box. ``Zone.trigger`` returns a boolean mask over the detections
and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from monitor.detectors.detections import Detections


@dataclass(frozen=True, eq=False)
class Zone:
    name: str
    points: npt.NDArray[np.float32]  # (K, 2) normalised x, y

    def __post_init__(self) -> None:
        p = self.points
        if not isinstance(p, np.ndarray) or p.ndim != 2 or p.shape[1] != 2 or p.shape[0] < 3:
            raise ValueError(f"Zone {self.name}: expected (K>=3, 2) points, got shape {getattr(p, 'shape', None)}")
        if float(p.min()) < 0.0 or float(p.max()) > 1.0:
            raise ValueError(f"Zone {self.name}: expected normalised 0..1 points, got range "
                             f"[{float(p.min()):.3f}, {float(p.max()):.3f}]")

    @classmethod
    def of(cls, name: str, points: Sequence[Sequence[float]]) -> Zone:
        return cls(name, np.asarray(points, np.float32).reshape(-1, 2))

    def contains(self, pts: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
        """Which of the (N, 2) points lie inside (even-odd rule; points on an edge count inside)."""
        pts = np.asarray(pts, np.float32).reshape(-1, 2)
        if len(pts) == 0:
            return np.zeros(0, bool)
        x = pts[:, 0:1]
        y = pts[:, 1:2]
        px = self.points[:, 0][None, :]
        py = self.points[:, 1][None, :]
        qx = np.roll(self.points[:, 0], -1)[None, :]
        qy = np.roll(self.points[:, 1], -1)[None, :]
        crosses = (py > y) != (qy > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            xi = px + (y - py) * (qx - px) / (qy - py)
        inside: npt.NDArray[np.bool_] = np.logical_and(crosses, x < xi).sum(axis=1) % 2 == 1
        return inside | self._on_edge(x, y, px, py, qx, qy)

    @staticmethod
    def _on_edge(
        x: np.ndarray, y: np.ndarray, px: np.ndarray, py: np.ndarray, qx: np.ndarray, qy: np.ndarray
    ) -> npt.NDArray[np.bool_]:
        eps = 1e-6
        cross = (qx - px) * (y - py) - (qy - py) * (x - px)
        within = (
            (np.minimum(px, qx) - eps <= x) & (x <= np.maximum(px, qx) + eps)
            & (np.minimum(py, qy) - eps <= y) & (y <= np.maximum(py, qy) + eps)
        )
        on: npt.NDArray[np.bool_] = np.any((np.abs(cross) <= eps) & within, axis=1)
        return on

    def trigger(self, dets: Detections) -> npt.NDArray[np.bool_]:
        """Mask of detections inside: persons by their feet, cylinders by their centre."""
        return self.contains(dets.anchors("auto"))


def zones_from_config(zones: Mapping[str, Sequence[Sequence[float]]]) -> dict[str, Zone]:
    return {name: Zone.of(name, pts) for name, pts in zones.items()}
