"""Storage rule (pure, synchronous): cylinders in the storage zone against the capacity.

Each frame's count (cylinder box centres inside the ``storage`` zone) joins a window of
``window_s`` seconds; the smoothed count is a quantile of the window (``quantile``, 0.75
by default; 0.5 is the median): a cylinder hidden behind a person only ever lowers a
frame's count, so a quantile above the median leans against that bias. With hysteresis:
the smoothed count above the capacity for ``hold_s`` raises ``storage_over_capacity`` (stating
the count and the capacity); at or under it for ``hold_s`` again clears it
(``active=False``). Time is seconds between frame timestamps. The window holds only the
last ``window_s`` of samples, so the state is bounded on a 24/7 stream.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from monitor.detectors.detections import CYLINDER, Detections
from monitor.detectors.zones import Zone
from monitor.findings import Finding

STORAGE = "storage"


@dataclass(frozen=True)
class StorageParams:
    capacity: int
    window_s: float = 10.0
    hold_s: float = 60.0
    quantile: float = 0.75


@dataclass(frozen=True)
class CountSample:
    ts: datetime
    raw: int  # this frame
    count: int  # the window's quantile


class StorageRule:
    rule_id = "storage_over_capacity"

    def __init__(self, site: str, camera: str, zones: dict[str, Zone], params: StorageParams) -> None:
        if STORAGE not in zones:
            raise ValueError(f"camera {camera}: the storage rule needs zone {STORAGE!r}; got {sorted(zones)}")
        self.site = site
        self.camera = camera
        self.zone = zones[STORAGE]
        self.p = params
        self._window: deque[tuple[float, int]] = deque()
        self.over = False
        self._since: float | None = None  # the opposite condition holds since
        self._peak = 0
        self.last: CountSample | None = None

    def count_in_zone(self, dets: Detections) -> int:
        cyl = dets.select(np.flatnonzero(dets.classes == CYLINDER))
        return int(self.zone.trigger(cyl).sum())

    def update(self, dets: Detections) -> list[Finding]:
        ts = dets.ts.timestamp()
        raw = self.count_in_zone(dets)
        self._window.append((ts, raw))
        while self._window and self._window[0][0] <= ts - self.p.window_s:
            self._window.popleft()
        count = round(float(np.quantile([c for _, c in self._window], self.p.quantile)))
        self.last = CountSample(dets.ts, raw, count)
        above = count > self.p.capacity
        if above == self.over:
            self._since = None
            if above:
                self._peak = max(self._peak, count)
            return []
        if self._since is None:
            self._since = ts
        if above:
            self._peak = max(self._peak, count)
        if ts - self._since < self.p.hold_s:
            return []
        since = self._since
        self.over = above
        self._since = None
        if above:
            summary = f"{count} cylinders in storage, over the capacity of {self.p.capacity}"
        else:
            summary = f"{count} cylinders in storage, back within the capacity of {self.p.capacity}"
        f = Finding(
            rule=self.rule_id,
            site=self.site,
            source=self.camera,
            subject="storage",
            ts=dets.ts,
            summary=summary,
            active=above,
            details={
                "count": count,
                "capacity": self.p.capacity,
                "raw": raw,
                "since": datetime.fromtimestamp(since, UTC).isoformat(),
                "window_s": self.p.window_s,
                "hold_s": self.p.hold_s,
                "peak": self._peak,
                "snapshot_at": dets.ts.isoformat(),
            },
        )
        if not above:
            self._peak = 0
        return [f]
