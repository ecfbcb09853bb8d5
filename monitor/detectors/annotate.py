"""Annotated snapshots: zones, boxes and person ids drawn on a frame, as JPEG."""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np
import numpy.typing as npt

from monitor.detectors.detections import CLASSES, Detections
from monitor.detectors.zones import Zone

ZONE_COLOURS = {"discharge_post": (0, 200, 255), "filling_area": (0, 0, 255), "storage": (255, 160, 0)}
CLASS_COLOURS = {"person": (60, 220, 60), "cylinder": (255, 200, 60)}


def annotate(
    image: npt.NDArray[np.uint8], dets: Detections, zones: Mapping[str, Zone],
    labels: Mapping[int, str] | None = None, highlight: int | None = None, banner: str | None = None,
) -> npt.NDArray[np.uint8]:
    """A copy of ``image`` with zones, boxes and labels (row -> text) drawn; ``highlight`` row in red."""
    out = image.copy()
    h, w = out.shape[:2]
    thick = max(1, round(min(w, h) / 240))
    for name, z in zones.items():
        pts = np.round(z.points * np.array([w, h], np.float32)).astype(np.int32)
        colour = ZONE_COLOURS.get(name, (200, 200, 200))
        cv2.polylines(out, [pts], True, colour, thick)
        cv2.putText(out, name, (int(pts[0][0]) + 3, int(pts[0][1]) + 14), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * thick, colour, thick, cv2.LINE_AA)
    for i, (box, cls) in enumerate(zip(dets.pixel_boxes(), dets.classes.tolist(), strict=True)):
        colour = (0, 0, 255) if i == highlight else CLASS_COLOURS[CLASSES[cls]]
        x1, y1, x2, y2 = (int(v) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick + (1 if i == highlight else 0))
        text = (labels or {}).get(i)
        if text:
            cv2.putText(out, text, (x1, max(10, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick, colour, thick,
                        cv2.LINE_AA)
    if banner:
        cv2.putText(out, banner, (6, 16 * thick), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * thick, (255, 255, 255),
                    thick, cv2.LINE_AA)
    return out


def jpeg(image: npt.NDArray[np.uint8], quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return bytes(buf.tobytes())
