"""Is the detector keeping up with a camera? (pure)

A video worker given more cameras than its detector can take does not fail: the video
part keeps handing over each camera's newest frame and replaces those the detector has
not taken yet, so every camera is still "online" while almost none of its frames are
analysed (measured: 50 cameras on 2 cores, 1 % of frames, 1 of 283 skipped discharges
seen). ``KeepUpWatch`` turns that into a condition an operator sees: per camera, the
share of the frames handed to the detector (after the motion gate: a still scene hands
over few frames and is not "behind") that were analysed over the last ``window_s``. Below
``behind_below`` the camera is behind (its rules are not really watched); back at or above
``ok_at`` it has recovered. Windows with fewer than ``min_frames`` frames handed over say
nothing. Counters are cumulative; the watch keeps their samples for one window.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass


@dataclass(frozen=True)
class KeepUp:
    camera: str
    behind: bool
    share: float  # analysed / handed over, in the window
    analysed: int
    offered: int
    window_s: float


class KeepUpWatch:
    def __init__(self, window_s: float = 30.0, behind_below: float = 0.5, ok_at: float = 0.8,
                 min_frames: int = 10) -> None:
        if not 0.0 < behind_below <= ok_at <= 1.0:
            raise ValueError(f"need 0 < behind_below ({behind_below}) <= ok_at ({ok_at}) <= 1")
        self.window_s = window_s
        self.behind_below = behind_below
        self.ok_at = ok_at
        self.min_frames = min_frames
        self._samples: dict[str, collections.deque[tuple[float, int, int]]] = {}
        self.behind: set[str] = set()

    def update(self, camera: str, now: float, analysed: int, offered: int) -> KeepUp | None:
        """Note the camera's cumulative counters at ``now`` (monotonic seconds); returns the
        new state when it changes (behind, or recovered), else None."""
        q = self._samples.setdefault(camera, collections.deque())
        q.append((now, analysed, offered))
        while len(q) > 1 and q[1][0] <= now - self.window_s:
            q.popleft()
        t0, a0, o0 = q[0]
        if now - t0 < self.window_s * 0.5:
            return None  # not enough history yet
        da, do = analysed - a0, offered - o0
        if do < self.min_frames:
            return None
        share = da / do
        was = camera in self.behind
        if not was and share < self.behind_below:
            self.behind.add(camera)
        elif was and share >= self.ok_at:
            self.behind.discard(camera)
        else:
            return None
        return KeepUp(camera, not was, round(share, 3), da, do, round(now - t0, 1))

    def forget(self, camera: str) -> None:
        """The camera is no longer this process's (lease lost): start its history afresh."""
        self._samples.pop(camera, None)
        self.behind.discard(camera)
