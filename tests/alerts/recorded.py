"""An EvidenceSource for tests: real JPEG snapshots (OpenCV) and real H.264 MP4 clips (PyAV),
rendered here, standing in for the video part's packet ring."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

W, H = 320, 180


def frame(i: int = 0) -> np.ndarray:
    img = np.full((H, W, 3), 90, np.uint8)
    cv2.rectangle(img, (20 + i % 100, 40), (60 + i % 100, 140), (200, 200, 200), -1)
    return img


def jpeg(i: int = 0) -> bytes:
    ok, buf = cv2.imencode(".jpg", frame(i))
    assert ok
    return bytes(buf)


def write_mp4(dest: Path, seconds: float, fps: int = 10) -> None:
    with av.open(str(dest), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.time_base = Fraction(1, fps)
        for i in range(max(1, round(seconds * fps))):
            vf = av.VideoFrame.from_ndarray(frame(i), format="bgr24")
            vf.pts = i
            for p in s.encode(vf):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


class RecordedCamera:
    """Snapshots and clips of any camera; ``ring_holds=False`` plays a ring that lost the time."""

    def __init__(self, *, ring_holds: bool = True, has_frame: bool = True) -> None:
        self.ring_holds = ring_holds
        self.has_frame = has_frame
        self.snapshots: list[str] = []
        self.clips: list[tuple[str, datetime, datetime]] = []

    async def snapshot(self, camera: str) -> tuple[datetime, bytes] | None:
        self.snapshots.append(camera)
        if not self.has_frame:
            return None
        return datetime.now(UTC), jpeg()

    async def clip(self, camera: str, start: datetime, end: datetime, dest: Path) -> Path | None:
        self.clips.append((camera, start, end))
        if not self.ring_holds:
            return None
        await asyncio.to_thread(write_mp4, dest, (end - start).total_seconds())
        return dest
