"""The packet ring: the last N seconds of a camera's encoded access units, from a keyframe.

Packets are kept as whole GOPs (a keyframe and what follows it) so the ring always starts
at a keyframe; the oldest GOP goes once the next one alone still covers ``ring_s``.
Each GOP carries the SPS/PPS it decodes with, so a clip never mixes two resolutions.
Thread-safe: the camera thread appends, the event loop reads.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from monitor.video.h264 import NAL_SPS, is_keyframe, nal_type, params_of


@dataclass(frozen=True)
class AccessUnit:
    t: float  # wall-clock seconds (UTC epoch) of its presentation
    nals: list[bytes]
    key: bool
    size: int


@dataclass
class Gop:
    sps: bytes
    pps: bytes
    units: list[AccessUnit] = field(default_factory=list)

    @property
    def start(self) -> float:
        return self.units[0].t

    @property
    def end(self) -> float:
        return self.units[-1].t


@dataclass(frozen=True)
class Cut:
    """What a clip is made of: units of one parameter set, from a keyframe."""

    sps: bytes
    pps: bytes
    units: list[AccessUnit]
    frame_s: float  # the nominal frame duration (for the last sample)


class PacketRing:
    def __init__(self, ring_s: float = 30.0) -> None:
        self.ring_s = ring_s
        self._gops: deque[Gop] = deque()
        self._lock = threading.Lock()
        self._sps: bytes | None = None
        self._pps: bytes | None = None
        self.bytes = 0
        self.newest_t: float | None = None
        self._cond = threading.Condition(self._lock)
        self._waiters: list[tuple[float, Callable[[], None]]] = []

    def set_params(self, sps: bytes | None, pps: bytes | None) -> None:
        """Parameter sets known out of band (the SDP / extradata) for a new connection."""
        with self._lock:
            if sps:
                self._sps = sps
            if pps:
                self._pps = pps

    def add(self, t: float, nals: list[bytes]) -> None:
        """Append one access unit (its NAL units) presented at wall-clock ``t``."""
        if not nals:
            return
        due: list[Callable[[], None]] = []
        sps, pps = params_of(nals)
        key = is_keyframe(nals)
        size = sum(len(n) for n in nals)
        with self._lock:
            if sps:
                self._sps = sps
            if pps:
                self._pps = pps
            au = AccessUnit(t, [n for n in nals if nal_type(n) != 9], key, size)
            if key and self._sps and self._pps:
                self._gops.append(Gop(self._sps, self._pps, [au]))
            elif self._gops and not key:
                g = self._gops[-1]
                if t < g.end:  # time went backwards (a new connection without a keyframe yet)
                    return
                g.units.append(au)
            else:
                return  # nothing to hang it on until a keyframe with parameter sets
            self.bytes += size
            self.newest_t = t
            while len(self._gops) > 1 and self._gops[1].start <= t - self.ring_s:
                old = self._gops.popleft()
                self.bytes -= sum(u.size for u in old.units)
            self._cond.notify_all()
            due = [cb for (wt, cb) in self._waiters if wt <= t] if self._waiters else []
            if due:
                self._waiters = [(wt, cb) for (wt, cb) in self._waiters if wt > t]
        for cb in due:
            cb()

    def when_reaches(self, t: float, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (on the camera thread, or now) once a unit at or after ``t`` is
        in the ring. Returns a function that cancels the wait."""
        with self._lock:
            if self.newest_t is not None and self.newest_t >= t:
                now = True
            else:
                now = False
                entry = (t, callback)
                self._waiters.append(entry)
        if now:
            callback()
            return lambda: None

        def cancel() -> None:
            with self._lock:
                if entry in self._waiters:
                    self._waiters.remove(entry)

        return cancel

    def reset(self) -> None:
        """Forget everything (a new stream whose parameters differ)."""
        with self._lock:
            self._gops.clear()
            self.bytes = 0
            self._sps = self._pps = None

    @property
    def oldest_t(self) -> float | None:
        with self._lock:
            return self._gops[0].start if self._gops else None

    def span(self) -> tuple[float, float] | None:
        with self._lock:
            if not self._gops:
                return None
            return self._gops[0].start, self._gops[-1].end

    def wait_until(self, t: float, timeout_s: float) -> bool:
        """Block (a thread) until a unit at or after ``t`` arrived; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.newest_t is not None and self.newest_t >= t, timeout_s)

    def cut(self, start: float, end: float, frame_s: float = 0.04) -> Cut | None:
        """Units from the last keyframe at or before ``start`` up to ``end``; None when the
        ring no longer (or not yet) holds ``start``. Stops where the parameter sets change."""
        with self._lock:
            gops = list(self._gops)
        if not gops or end < start:
            return None
        first = None
        for i, g in enumerate(gops):
            if g.start <= start:
                first = i
            else:
                break
        if first is None:
            return None
        base = gops[first]
        units: list[AccessUnit] = []
        for g in gops[first:]:
            if g.sps != base.sps or g.pps != base.pps:
                break
            if g.start > end:
                break
            for u in g.units:
                if u.t > end:
                    break
                units.append(u)
        if not units:
            return None
        return Cut(base.sps, base.pps, units, frame_s)

    def latest_gop_params(self) -> tuple[bytes, bytes] | None:
        with self._lock:
            if not self._gops:
                return None
            g = self._gops[-1]
            return g.sps, g.pps


def sps_changed(old: bytes | None, nals: list[bytes]) -> bool:
    """True when ``nals`` carry an SPS that differs from ``old`` (e.g. a new resolution)."""
    for n in nals:
        if nal_type(n) == NAL_SPS:
            return old is not None and n != old
    return False
