"""Motion gating (pure): decide whether a sampled frame goes to the detector at all.

The measure is the share of pixels of a small grey frame (the luma plane, subsampled)
that differ from the last frame *sent* by more than ``PIXEL_DELTA`` grey levels. A frame
passes when that share is at least ``threshold``, or when ``forced_every_s`` has passed
since the last frame sent (so a still scene is re-checked), or when it is the first.
Comparing with the last frame sent, not the previous one, lets slow motion accumulate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PIXEL_DELTA = 18
SMALL_W = 64


def small_grey(luma: np.ndarray, width: int = SMALL_W) -> np.ndarray:
    """A cheap small grey image from a luma plane (H x W uint8) by strided subsampling."""
    w = luma.shape[1]
    step = max(1, w // width)
    return np.ascontiguousarray(luma[::step, ::step])


@dataclass
class GateDecision:
    send: bool
    motion: float  # share of changed pixels, 0..1
    forced: bool


class MotionGate:
    """Per-camera gate; call ``check(small, t)`` with a monotonic time in seconds."""

    def __init__(self, threshold: float, forced_every_s: float) -> None:
        self.threshold = threshold
        self.forced_every_s = forced_every_s
        self._ref: np.ndarray | None = None
        self._last_sent: float | None = None
        self.passed = 0
        self.gated = 0

    def check(self, small: np.ndarray, t: float) -> GateDecision:
        if self._ref is None or self._ref.shape != small.shape or self._last_sent is None:
            return self._send(small, t, 1.0, forced=True)
        diff = np.abs(small.astype(np.int16) - self._ref.astype(np.int16)) > PIXEL_DELTA
        motion = float(diff.mean())
        if motion >= self.threshold and motion > 0.0:
            return self._send(small, t, motion, forced=False)
        if t - self._last_sent >= self.forced_every_s:
            return self._send(small, t, motion, forced=True)
        self.gated += 1
        return GateDecision(False, motion, False)

    def _send(self, small: np.ndarray, t: float, motion: float, *, forced: bool) -> GateDecision:
        self._ref = small
        self._last_sent = t
        self.passed += 1
        return GateDecision(True, motion, forced)


class Sampler:
    """Frame sampling to ``fps`` on the stream's own clock (seconds): a frame passes when
    its time reaches the next due time (less a quarter period of slack)."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self._next: float | None = None

    def take(self, t: float) -> bool:
        if self._next is None or t < self._next - 10 * self.period:  # first, or the clock went back
            self._next = t + self.period
            return True
        if t >= self._next - 0.25 * self.period:
            self._next += self.period
            if self._next <= t:  # a gap in the stream: start again from here
                self._next = t + self.period
            return True
        return False
