"""The one value a frame's detections travel in, from the model to the rules.

``Detections`` holds N objects of one frame of one camera: boxes in **normalised**
``x1, y1, x2, y2`` coordinates (0..1 of the frame's width and height, so zones, the wall
overlay and any resolution agree), our class of each (an index into ``CLASSES``), the
confidence, and the track id (``-1`` where the object is not tracked). Shapes are checked
in ``__post_init__``; selections return new values and never mutate.

``from_ultralytics`` adapts an ultralytics ``Results`` through a class map (model class id
→ our class); model classes the map does not name are dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

CLASSES: tuple[str, ...] = ("person", "cylinder")
PERSON = 0
CYLINDER = 1

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


def class_index(name: str) -> int:
    try:
        return CLASSES.index(name)
    except ValueError:
        raise ValueError(f"class: expected one of {CLASSES}, got {name!r}") from None


def class_lookup(class_map: Mapping[Any, Sequence[int]]) -> dict[int, int]:
    """``{"person": [0, 1]}`` → ``{0: PERSON, 1: PERSON}``; a model id named twice is an error."""
    out: dict[int, int] = {}
    for name, ids in class_map.items():
        ours = class_index(name)
        for i in ids:
            if i in out and out[i] != ours:
                raise ValueError(f"classes: model class {i} mapped to both {CLASSES[out[i]]} and {name}")
            out[int(i)] = ours
    return out


@dataclass(frozen=True, eq=False)
class Detections:
    camera: str
    ts: datetime  # the frame's time (UTC)
    boxes: FloatArray  # (N, 4) normalised x1, y1, x2, y2
    classes: IntArray  # (N,) index into CLASSES
    confidences: FloatArray  # (N,)
    track_ids: IntArray  # (N,) -1 where untracked
    width: int  # frame size in pixels
    height: int

    def __post_init__(self) -> None:
        b = self.boxes
        if not isinstance(b, np.ndarray) or b.ndim != 2 or b.shape[1] != 4:
            raise ValueError(f"Detections.boxes: expected shape (N, 4), got {getattr(b, 'shape', type(b))}")
        n = b.shape[0]
        for name in ("classes", "confidences", "track_ids"):
            a = getattr(self, name)
            if not isinstance(a, np.ndarray) or a.shape != (n,):
                raise ValueError(f"Detections.{name}: expected shape ({n},), got {getattr(a, 'shape', type(a))}")
        if n and (np.any(b[:, 2] < b[:, 0]) or np.any(b[:, 3] < b[:, 1])):
            raise ValueError("Detections.boxes: expected x1 <= x2 and y1 <= y2 in every row")
        if n and (float(b.min()) < -1e-3 or float(b.max()) > 1.0 + 1e-3):
            raise ValueError(
                f"Detections.boxes: expected normalised 0..1 coordinates, got range "
                f"[{float(b.min()):.3f}, {float(b.max()):.3f}]"
            )
        if n and (int(self.classes.min()) < 0 or int(self.classes.max()) >= len(CLASSES)):
            raise ValueError(f"Detections.classes: expected indices 0..{len(CLASSES) - 1}, got {self.classes.tolist()}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"Detections: expected a positive frame size, got {self.width}x{self.height}")
        if self.ts.tzinfo is None:
            raise ValueError("Detections.ts: expected an aware UTC datetime")

    # -- construction ------------------------------------------------------------
    @classmethod
    def empty(cls, camera: str, ts: datetime, width: int, height: int) -> Detections:
        return cls(
            camera, ts, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32),
            np.zeros(0, np.int64), width, height,
        )

    @classmethod
    def build(
        cls, camera: str, ts: datetime, boxes: Any, classes: Any, *, confidences: Any = None,
        track_ids: Any = None, width: int = 640, height: int = 360,
    ) -> Detections:
        """Convenience for tests and adapters: lists in, validated arrays out; class names allowed."""
        b = np.asarray(boxes, np.float32).reshape(-1, 4)
        n = b.shape[0]
        cl = [class_index(c) if isinstance(c, str) else int(c) for c in classes]
        conf = np.ones(n, np.float32) if confidences is None else np.asarray(confidences, np.float32)
        tid = np.full(n, -1, np.int64) if track_ids is None else np.asarray(track_ids, np.int64)
        return cls(camera, ts, b, np.asarray(cl, np.int64).reshape(-1), conf, tid, width, height)

    @classmethod
    def from_pixels(
        cls, camera: str, ts: datetime, xyxy: Any, model_classes: Any, confidences: Any,
        lookup: Mapping[int, int], width: int, height: int, track_ids: Any = None,
    ) -> Detections:
        """Pixel boxes and model class ids → normalised boxes of our classes (unmapped dropped)."""
        px = np.asarray(xyxy, np.float32).reshape(-1, 4)
        mc = np.asarray(model_classes).astype(np.int64).reshape(-1)
        conf = np.asarray(confidences, np.float32).reshape(-1)
        keep = np.array([int(c) in lookup for c in mc], bool) if len(mc) else np.zeros(0, bool)
        ours = np.array([lookup[int(c)] for c in mc[keep]], np.int64)
        scale = np.array([width, height, width, height], np.float32)
        boxes = np.clip(px[keep] / scale, 0.0, 1.0).astype(np.float32)
        tid = np.full(len(ours), -1, np.int64) if track_ids is None else np.asarray(track_ids, np.int64)[keep]
        return cls(camera, ts, boxes, ours, conf[keep], tid, width, height)

    @classmethod
    def from_ultralytics(
        cls, result: Any, camera: str, ts: datetime, lookup: Mapping[int, int]
    ) -> Detections:
        """An ultralytics ``Results`` (one image) → Detections; ids from ``result.boxes.id`` if tracked."""
        h, w = (int(v) for v in result.orig_shape[:2])
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return cls.empty(camera, ts, w, h)
        xyxy = _numpy(boxes.xyxy)
        tids = _numpy(boxes.id) if getattr(boxes, "id", None) is not None else None
        return cls.from_pixels(camera, ts, xyxy, _numpy(boxes.cls), _numpy(boxes.conf), lookup, w, h, tids)

    # -- views -------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def select(self, mask: npt.NDArray[np.bool_] | npt.NDArray[np.int64]) -> Detections:
        return Detections(
            self.camera, self.ts, self.boxes[mask], self.classes[mask], self.confidences[mask],
            self.track_ids[mask], self.width, self.height,
        )

    def of_class(self, name: str) -> Detections:
        return self.select(self.classes == class_index(name))

    def at(self, ts: datetime) -> Detections:
        """The same objects at another time (a still scene the motion gate skipped)."""
        return Detections(
            self.camera, ts, self.boxes, self.classes, self.confidences, self.track_ids, self.width, self.height
        )

    def with_track_ids(self, track_ids: Any) -> Detections:
        return Detections(
            self.camera, self.ts, self.boxes, self.classes, self.confidences,
            np.asarray(track_ids, np.int64).reshape(-1), self.width, self.height,
        )

    def anchors(self, where: Literal["feet", "centre", "auto"] = "auto") -> FloatArray:
        """(N, 2) normalised points: bottom-centre (feet), centre, or by class (person feet, cylinder centre)."""
        b = self.boxes
        cx = (b[:, 0] + b[:, 2]) / 2
        cy = (b[:, 1] + b[:, 3]) / 2
        y: np.ndarray
        if where == "feet":
            y = b[:, 3]
        elif where == "centre":
            y = cy
        else:
            y = np.where(self.classes == PERSON, b[:, 3], cy)
        return np.stack([cx, y], axis=1).astype(np.float32)

    def pixel_boxes(self) -> npt.NDArray[np.int32]:
        scale = np.array([self.width, self.height, self.width, self.height], np.float32)
        return np.round(self.boxes * scale).astype(np.int32)

    def areas(self) -> FloatArray:
        b = self.boxes
        return ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).astype(np.float32)

    def as_json(self) -> dict[str, Any]:
        """The live overlay event (``detections:<camera>``): boxes normalised, rounded."""
        return {
            "camera": self.camera,
            "ts": self.ts.isoformat(),
            "width": self.width,
            "height": self.height,
            "objects": [
                {
                    "cls": CLASSES[int(c)],
                    "box": [round(float(v), 4) for v in box],
                    "conf": round(float(p), 3),
                    "track": int(t) if t >= 0 else None,
                }
                for box, c, p, t in zip(self.boxes, self.classes, self.confidences, self.track_ids, strict=True)
            ],
        }


def _numpy(a: Any) -> np.ndarray:
    if hasattr(a, "cpu"):
        a = a.cpu()
    if hasattr(a, "numpy"):
        return np.asarray(a.numpy())
    return np.asarray(a)
