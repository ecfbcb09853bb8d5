"""A cheap motion gate (pure): analyse a frame only when enough of it changed.

The frame is shrunk to a small grey thumbnail and compared with the thumbnail of the
last frame that was analysed; when the share of pixels that changed by more than
``pixel_delta`` is at least ``threshold``, or ``forced_every_s`` has passed since the last
analysis, the frame is analysed. A skipped frame shows what the last analysed one
showed, so its detections are reused at the new time.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt


class MotionGate:
    def __init__(self, threshold: float, forced_every_s: float, *, size: tuple[int, int] = (96, 54),
                 pixel_delta: int = 14) -> None:
        self.threshold = threshold
        self.forced_every_s = forced_every_s
        self.size = size
        self.pixel_delta = pixel_delta
        self._ref: npt.NDArray[np.int16] | None = None
        self._ref_ts: float | None = None
        self.analysed = 0
        self.skipped = 0

    def thumbnail(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.int16]:
        small = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
        return grey.astype(np.int16)

    def changed(self, image: npt.NDArray[np.uint8]) -> float:
        """Share of the thumbnail's pixels that changed since the last analysed frame (1.0 if none)."""
        if self._ref is None:
            return 1.0
        diff = np.abs(self.thumbnail(image) - self._ref) > self.pixel_delta
        return float(diff.mean())

    def should_analyse(self, ts: float, image: npt.NDArray[np.uint8]) -> bool:
        thumb = self.thumbnail(image)
        due = self._ref is None or self._ref_ts is None or ts - self._ref_ts >= self.forced_every_s
        if not due:
            assert self._ref is not None
            due = float((np.abs(thumb - self._ref) > self.pixel_delta).mean()) >= self.threshold
        if due:
            self._ref = thumb
            self._ref_ts = ts
            self.analysed += 1
        else:
            self.skipped += 1
        return due
