"""Fill sessions segmented from one scale's readings: pure, synchronous, no I/O.

A fill: an empty cylinder is placed (its tare read), the gun opens, the weight rises,
the gun closes (gross read), the cylinder is removed. The segmenter is robust to

- noise: decisions use the median of the last three readings;
- a cylinder lifted mid-fill: a load that comes back within ``lift_grace_s`` continues
  the session (flag ``lifted``); a cylinder gone longer ends it at the lift;
- missing readings: a gap is flagged (``gap``); a session whose first reading already has
  the gun open takes its tare from that reading (``tare_estimated``); a cylinder swapped
  for another without an empty reading in between is seen by the drop to a new tare;
- a gun controller that reports nothing: a weight gain of ``fill_min_kg`` on a loaded
  scale is a fill too (``no_gun_signal``) — the kind an unauthorised fill looks like.

``feed`` returns the events it completes: ``start`` (the fill is under way; enough to
judge it "without scan") and ``end`` (the finished ``Fill``). ``tick(now)`` ends a session
whose cylinder was lifted and never came back when no further reading arrives.
"""

from __future__ import annotations

import statistics
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from monitor.series.model import Fill, Reading

State = Literal["empty", "loaded", "filling", "filled"]


@dataclass(frozen=True)
class SegmenterParams:
    load_min_kg: float = 3.0  # a load at least this heavy is a cylinder
    fill_min_kg: float = 0.5  # a gain of this much over the tare is a fill
    lift_grace_s: float = 20.0  # a load back within this continues the session
    gap_s: float = 30.0  # readings further apart than this flag the session
    silent_end_s: float = 300.0  # no reading this long ends an open session
    swap_drop_kg: float = 2.0  # a drop this large after the gun closed is a new cylinder


@dataclass(frozen=True)
class FillEvent:
    kind: Literal["start", "end"]
    fill: Fill  # for ``start``: the session so far (ended_at = start, gross = tare)
    reading: Reading | None  # the reading that completed the event (None from ``tick``)


@dataclass
class _Session:
    started_at: datetime
    tare: float
    flags: set[str]
    gross_max: float
    ended_at: datetime
    last_rise_at: datetime
    readings: int = 0
    gun_seen: bool = False
    stable: deque[float] = field(default_factory=lambda: deque(maxlen=7))
    codes: Counter[str] = field(default_factory=Counter)


class FillSegmenter:
    """One scale's state machine: empty → loaded → filling → filled → (removed) empty."""

    def __init__(self, site: str, scale: str, gun: str | None, params: SegmenterParams | None = None) -> None:
        self.site = site
        self.scale = scale
        self.gun = gun
        self.p = params or SegmenterParams()
        self.state: State = "empty"
        self.window: deque[float] = deque(maxlen=3)
        self.tare_samples: deque[float] = deque(maxlen=5)
        self.loaded_codes: Counter[str] = Counter()
        self.session: _Session | None = None
        self.lifted_at: datetime | None = None
        self.last_ts: datetime | None = None
        self.last_loaded_at: datetime | None = None
        self.out_of_order = 0

    # -- what the rules ask ---------------------------------------------------------------
    @property
    def filling(self) -> bool:
        """A fill is under way (gun open or weight rising) and not yet over."""
        return self.state == "filling" and self.lifted_at is None

    @property
    def in_session(self) -> bool:
        return self.session is not None

    def net_so_far(self) -> float | None:
        if self.session is None:
            return None
        return round(self.session.gross_max - self.session.tare, 3)

    def end_so_far(self) -> datetime | None:
        """When the session under way last filled (gun closed, or the last rise); None while filling."""
        if self.session is None or self.filling:
            return None
        return self.session.ended_at if self.session.gun_seen else self.session.last_rise_at

    def code_so_far(self) -> str | None:
        if self.session is None:
            return None
        codes = self.session.codes + self.loaded_codes
        return codes.most_common(1)[0][0] if codes else None

    # -- input ----------------------------------------------------------------------------
    def feed(self, r: Reading) -> list[FillEvent]:
        if self.last_ts is not None and r.ts <= self.last_ts:
            self.out_of_order += 1
            return []
        events: list[FillEvent] = []
        gap = self.last_ts is not None and (r.ts - self.last_ts).total_seconds() > self.p.gap_s
        if self.session is not None and self.last_ts is not None and (
            (r.ts - self.last_ts).total_seconds() > self.p.silent_end_s
        ):
            events += self._end(None, flag="silent")
        self.last_ts = r.ts
        self.window.append(r.gross_kg)
        w = statistics.median(self.window)
        loaded = w >= self.p.load_min_kg
        if self.session is not None and self.lifted_at is not None:
            if loaded:
                if self._is_new_cylinder(w, r):
                    events += self._end(r)
                    return events + self._from_empty(r, w)
                self.lifted_at = None
                self.session.flags.add("lifted")
            elif (r.ts - self.lifted_at).total_seconds() > self.p.lift_grace_s:
                events += self._end(r)
                self._reset_empty()
                return events
            else:
                return events

        if gap and self.session is not None:
            self.session.flags.add("gap")
        if self.state == "empty":
            return events + self._from_empty(r, w)
        if self.state == "loaded":
            if not loaded:
                self._reset_empty()
                return events
            if r.cylinder:
                self.loaded_codes[r.cylinder] += 1
            tare_est = statistics.median(self.tare_samples) if self.tare_samples else w
            if r.gun_open or w >= tare_est + self.p.fill_min_kg:
                return events + self._start(r, w)
            self.tare_samples.append(w)
            return events
        s = self.session
        assert s is not None
        if not loaded:
            self.lifted_at = r.ts
            return events
        s.readings += 1
        if r.cylinder:
            s.codes[r.cylinder] += 1
        self.last_loaded_at = r.ts
        if self.state == "filled" and self._is_new_cylinder(w, r):
            events += self._end(r)
            return events + self._from_empty(r, w)
        if w > s.gross_max + 0.05:
            s.last_rise_at = r.ts
        s.gross_max = max(s.gross_max, w)
        if self.state == "filling":
            if r.gun_open:
                s.gun_seen = True
                s.ended_at = r.ts
            elif s.gun_seen:
                self.state = "filled"
                s.ended_at = r.ts
                s.stable.clear()
            else:
                s.ended_at = s.last_rise_at
        elif self.state == "filled":
            if r.gun_open:
                self.state = "filling"
                s.flags.add("topup")
                s.ended_at = r.ts
            else:
                s.stable.append(w)
        return events

    def tick(self, now: datetime) -> list[FillEvent]:
        """End a session whose cylinder was lifted and not put back, when readings stop."""
        if self.session is None:
            return []
        if self.lifted_at is not None and (now - self.lifted_at).total_seconds() > self.p.lift_grace_s:
            ev = self._end(None)
            self._reset_empty()
            return ev
        if self.last_ts is not None and (now - self.last_ts).total_seconds() > self.p.silent_end_s:
            ev = self._end(None, flag="silent")
            self._reset_empty()
            return ev
        return []

    # -- transitions ----------------------------------------------------------------------
    def _from_empty(self, r: Reading, w: float) -> list[FillEvent]:
        self._reset_empty()
        # a fresh load: the window holds only this reading (the old load is gone)
        self.window.clear()
        self.window.append(r.gross_kg)
        w = r.gross_kg
        if w < self.p.load_min_kg:
            return []
        self.state = "loaded"
        self.last_loaded_at = r.ts
        if r.cylinder:
            self.loaded_codes[r.cylinder] += 1
        if r.gun_open:  # the placement was missed: the gun is already open
            return self._start(r, w, estimated=True)
        self.tare_samples.append(w)
        return []

    def _start(self, r: Reading, w: float, *, estimated: bool = False) -> list[FillEvent]:
        if self.tare_samples and not estimated:
            tare = statistics.median(self.tare_samples)
        else:
            tare = r.gross_kg
            estimated = True
        flags: set[str] = set()
        if estimated:
            flags.add("tare_estimated")
        self.session = _Session(started_at=r.ts, tare=round(tare, 3), flags=flags, gross_max=max(w, tare),
                                ended_at=r.ts, last_rise_at=r.ts, readings=1, gun_seen=r.gun_open)
        if r.cylinder:
            self.session.codes[r.cylinder] += 1
        self.state = "filling"
        self.lifted_at = None
        return [FillEvent("start", self._fill(final=False), r)]

    def _is_new_cylinder(self, w: float, r: Reading) -> bool:
        s = self.session
        if s is None or (self.state != "filled" and self.lifted_at is None):
            return False
        code = self.code_so_far()
        if r.cylinder and code and r.cylinder != code:
            return True
        if self.state == "filling" and self.lifted_at is not None:
            return False  # lifted while the gun was open: the same cylinder coming back
        ref = statistics.median(s.stable) if s.stable else s.gross_max
        return w < ref - max(self.p.swap_drop_kg, (ref - s.tare) / 2)

    def _end(self, r: Reading | None, *, flag: str | None = None) -> list[FillEvent]:
        s = self.session
        if s is None:
            return []
        if flag:
            s.flags.add(flag)
        if not s.gun_seen:
            s.flags.add("no_gun_signal")
            s.ended_at = s.last_rise_at
        fill = self._fill(final=True)
        self.session = None
        self.lifted_at = None
        self.state = "empty"
        if fill.net_kg < self.p.fill_min_kg:
            return []  # the gun opened but nothing went in
        return [FillEvent("end", fill, r)]

    def _fill(self, *, final: bool) -> Fill:
        s = self.session
        assert s is not None
        if final:
            gross = statistics.median(s.stable) if len(s.stable) >= 2 else s.gross_max
            ended = s.ended_at
        else:
            gross, ended = s.tare, s.started_at
        return Fill(
            site=self.site, scale=self.scale, gun=self.gun, started_at=s.started_at, ended_at=ended,
            tare_kg=s.tare, gross_kg=round(gross, 3), cylinder=self.code_so_far(), readings=s.readings,
            flags=tuple(sorted(s.flags)),
        )

    def _reset_empty(self) -> None:
        self.state = "empty"
        self.tare_samples.clear()
        self.loaded_codes.clear()
        self.session = None
        self.lifted_at = None


def segment(readings: list[Reading], gun: str | None = None, params: SegmenterParams | None = None,
            *, until: datetime | None = None) -> list[Fill]:
    """All fills in one scale's readings (sorted by time); ``until`` closes a trailing session."""
    if not readings:
        return []
    seg = FillSegmenter(readings[0].site, readings[0].scale, gun, params)
    out: list[Fill] = []
    for r in readings:
        out += [e.fill for e in seg.feed(r) if e.kind == "end"]
    if until is not None:
        out += [e.fill for e in seg.tick(until + timedelta(seconds=seg.p.silent_end_s + seg.p.lift_grace_s + 1))
                if e.kind == "end"]
    return out
