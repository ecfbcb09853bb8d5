"""Draw an alert's evidence on a snapshot: the camera's zones, the boxes and track ids.

Pure (bytes in, bytes out). Boxes are read defensively from a finding's ``details``:
``{"boxes": [{"box"|"xyxy"|"bbox": [x1, y1, x2, y2], "track"?, "cls"|"label"?, "conf"?}]}``
or a single ``"box"``; coordinates in 0..1 of the frame (pixels are accepted too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

ZONE_COLOURS = {"discharge_post": (80, 200, 80), "filling_area": (0, 160, 255), "storage": (255, 180, 0)}
BOX_COLOUR = (40, 40, 230)
HIGHLIGHT = (0, 0, 255)


@dataclass(frozen=True)
class Box:
    x1: float
    y1: float
    x2: float
    y2: float
    label: str
    highlight: bool = False


def _box_of(v: Any) -> tuple[float, float, float, float] | None:
    if isinstance(v, Sequence) and not isinstance(v, str) and len(v) >= 4:
        try:
            x1, y1, x2, y2 = (float(v[i]) for i in range(4))
        except (TypeError, ValueError):
            return None
        if x2 >= x1 and y2 >= y1:
            return x1, y1, x2, y2
    return None


def boxes_from_details(details: Mapping[str, Any]) -> list[Box]:
    """The boxes a finding names, the one it is about highlighted."""
    out: list[Box] = []
    main_track = details.get("track")
    items = details.get("boxes") or details.get("detections") or []
    if isinstance(items, Sequence) and not isinstance(items, str):
        for it in items[:200]:
            if isinstance(it, Mapping):
                xy = _box_of(it.get("box") or it.get("xyxy") or it.get("bbox"))
                track = it.get("track", it.get("track_id"))
                cls = it.get("cls") or it.get("label") or it.get("class") or ""
                conf = it.get("conf", it.get("confidence"))
            else:
                xy, track, cls, conf = _box_of(it), None, "", None
            if xy is None:
                continue
            parts = [str(cls)] if cls else []
            if track is not None:
                parts.append(f"#{track}")
            if isinstance(conf, (int, float)):
                parts.append(f"{conf:.2f}")
            hl = main_track is not None and track is not None and str(track) == str(main_track)
            out.append(Box(*xy, label=" ".join(parts), highlight=hl))
    if not out:
        xy = _box_of(details.get("box"))
        if xy is not None:
            out.append(Box(*xy, label=f"#{main_track}" if main_track is not None else "", highlight=True))
    return out


def _px(x: float, y: float, w: int, h: int, normalised: bool) -> tuple[int, int]:
    if normalised:
        return round(x * (w - 1)), round(y * (h - 1))
    return round(x), round(y)


def annotate(
    jpeg: bytes, *, zones: Mapping[str, Sequence[Sequence[float]]], boxes: Sequence[Box], caption: str = "",
    quality: int = 85,
) -> bytes:
    """Zones, boxes and a caption drawn on a JPEG; the input when it cannot be decoded."""
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        return jpeg
    h, w = img.shape[:2]
    thick = max(1, round(min(w, h) / 240))
    for name, poly in zones.items():
        pts = np.array([_px(float(p[0]), float(p[1]), w, h, True) for p in poly], np.int32)
        colour = ZONE_COLOURS.get(name, (200, 200, 200))
        overlay = img.copy()
        cv2.fillPoly(overlay, [pts], colour)
        cv2.addWeighted(overlay, 0.18, img, 0.82, 0, dst=img)
        cv2.polylines(img, [pts], True, colour, thick)
        x, y = pts[0]
        cv2.putText(img, name, (int(x) + 3, int(y) + 14 * thick), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick,
                    colour, thick, cv2.LINE_AA)
    for b in boxes:
        normalised = max(b.x1, b.y1, b.x2, b.y2) <= 1.5
        p1 = _px(b.x1, b.y1, w, h, normalised)
        p2 = _px(b.x2, b.y2, w, h, normalised)
        colour = HIGHLIGHT if b.highlight else BOX_COLOUR
        cv2.rectangle(img, p1, p2, colour, thick * (2 if b.highlight else 1))
        if b.label:
            cv2.putText(img, b.label, (p1[0], max(12, p1[1] - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * thick,
                        colour, thick, cv2.LINE_AA)
    if caption:
        cv2.rectangle(img, (0, h - 18 * thick), (w, h), (0, 0, 0), -1)
        cv2.putText(img, caption[:120], (4, h - 5 * thick), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick,
                    (255, 255, 255), thick, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return bytes(buf) if ok else jpeg
