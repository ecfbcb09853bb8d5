"""Anti-static rule (pure, synchronous): discharge at the post before the filling area.

A person who reaches the filling area without having spent ``dwell_s`` (default 3 s) at
the discharge post since entering the view is a violation (``antistatic_skipped``): one
finding per person and visit, with the person's id, the raw track ids it was seen under,
the time it spent in each zone, the frame time to snapshot and its box.

- Persons, not raw track ids: ``TrackStitcher`` folds split, flickering and re-started
  ids into one person (re-identification within ``reid_gap_s`` / ``reid_dist``). When two
  people who stood together part and the tracker gives one of them a new id, the new
  person shares the discharge time of the one it split from (either may be which), and
  that one's visit to the filling area if it is on one: a box born beside someone in the
  filling area (a duplicate, or someone who walked in hidden behind them) is not a second
  entry.
- Time is seconds between frame timestamps, never frame counts. Between an observation at
  the post and the next one: seen at the post again, the time counts (up to ``dwell_s``
  over a gap: frames dropped under load, a moment hidden; what the rule did not see is not
  held against a person); seen elsewhere, they left at an unknown moment in between, and
  half the time counts (at most ``max_step_s``: a gap in the video is not dwell).
- Entering the filling area counts once the feet have been inside for ``enter_s``; the
  finding's ``ts`` is the first frame inside. Leaving it for ``exit_s`` or longer ends the
  visit, and the next visit needs a fresh discharge.
- A person already in view in the first frame the rule sees was there before we watched;
  whether and how long they discharged is unknown, so their first visit is not judged (a
  camera that just (re)connected, or a worker that just took it over, must not accuse
  someone whose discharge it saw only the end of, or not at all). Nor is someone first
  seen inside the filling area within ``warmup_s`` of that first frame: they were there
  too, missed by the detector or not yet confirmed by the tracker (a worker taking a
  camera over must not judge again someone its previous holder judged). Nor, later, is a
  new person (neither re-identified nor split off someone) first seen inside the filling
  area away from the picture's edges: nobody walks into the middle of a view, so it is
  someone the tracker lost on the way (hidden, missed, their id swapped to someone else)
  or a duplicate box, and their discharge is unknown. Someone who enters the view at its
  edge straight into the filling area is judged.
- State of a person is pruned when the person ends (unseen for ``reid_gap_s``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from monitor.detectors.detections import PERSON, Detections
from monitor.detectors.stitch import Person, TrackStitcher
from monitor.detectors.zones import Zone
from monitor.findings import Finding

POST = "discharge_post"
FILL = "filling_area"


@dataclass
class PersonState:
    pid: int
    first_ts: float
    last_ts: float
    post_s: float = 0.0  # dwell at the post that counts for the next visit
    post_total_s: float = 0.0
    fill_total_s: float = 0.0
    in_post: bool = False
    inside_since: float | None = None  # first frame of the current run inside the filling area
    inside_frames: int = 0
    outside_since: float | None = None
    in_fill: bool = False  # a confirmed visit is going on
    exempt: bool = False  # inside when watching began
    visits: int = 0
    violations: int = 0
    raw_ids: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class AntistaticParams:
    dwell_s: float = 3.0
    reid_gap_s: float = 2.0
    reid_dist: float = 0.12
    enter_s: float = 0.4
    exit_s: float = 1.0
    max_step_s: float = 1.0
    warmup_s: float = 2.0


class AntistaticRule:
    rule_id = "antistatic_skipped"

    def __init__(self, site: str, camera: str, zones: dict[str, Zone], params: AntistaticParams) -> None:
        for z in (POST, FILL):
            if z not in zones:
                raise ValueError(f"camera {camera}: the anti-static rule needs zone {z!r}; got {sorted(zones)}")
        self.site = site
        self.camera = camera
        self.post = zones[POST]
        self.fill = zones[FILL]
        self.p = params
        self.stitcher = TrackStitcher(params.reid_gap_s, params.reid_dist)
        self.states: dict[int, PersonState] = {}
        self._t0: float | None = None
        self.last_pids: np.ndarray = np.zeros(0, np.int64)  # person id per row of the last update
        self._frame_pids: np.ndarray = np.zeros(0, np.int64)
        self.findings = 0

    def update(self, dets: Detections) -> list[Finding]:
        """Feed one frame's tracked detections; return the findings it completes."""
        ts = dets.ts.timestamp()
        first_frame = self._t0 is None
        if self._t0 is None:
            self._t0 = ts
        persons = dets.select(np.flatnonzero((dets.classes == PERSON) & (dets.track_ids >= 0)))
        pids, ended = self.stitcher.update(ts, persons.track_ids, persons.boxes)
        self._frame_pids = pids
        for gone in ended:
            self.states.pop(gone.pid, None)
        self.last_pids = np.full(len(dets), -1, np.int64)
        rows = np.flatnonzero((dets.classes == PERSON) & (dets.track_ids >= 0))
        self.last_pids[rows] = pids
        in_post = self.post.trigger(persons)
        in_fill = self.fill.trigger(persons)
        out: list[Finding] = []
        for pid, i in self.stitcher.representative_rows(pids, persons.boxes).items():
            st = self.states.get(pid)
            if st is None:
                st = self.states[pid] = self._new_state(pid, ts)
                if first_frame:
                    st.exempt = True  # in view before we watched: whether they discharged is unknown
                elif bool(in_fill[i]) and ts - self._t0 <= self.p.warmup_s:
                    st.exempt = True  # inside since before we watched, seen a frame or two late
                elif bool(in_fill[i]) and self._born_lost(pid, persons.boxes[i]):
                    st.exempt = True  # someone the tracker lost, come back inside: history unknown
            st.raw_ids |= self.stitcher.persons[pid].raw_ids
            f = self._step(st, ts, bool(in_post[i]), bool(in_fill[i]), dets, persons, i)
            if f is not None:
                out.append(f)
        return out

    def _born_lost(self, pid: int, box: npt.NDArray[np.float32]) -> bool:
        """A new person (neither re-identified nor split off someone) first seen away from the
        picture's edges: nobody walks into the middle of a view, so this is someone the tracker
        lost (hidden, missed, swapped to another id) or a duplicate box."""
        person = self.stitcher.persons.get(pid)
        return person is not None and person.split_from is None and self.stitcher.interior(box)

    def _new_state(self, pid: int, ts: float) -> PersonState:
        """A new person; one split off a person it stood with shares that one's discharge, and
        that one's visit to the filling area if it is on one (judged when they entered)."""
        st = PersonState(pid, ts, ts)
        person = self.stitcher.persons.get(pid)
        parent = self.states.get(person.split_from) if person is not None and person.split_from else None
        if parent is not None:
            st.first_ts = parent.first_ts
            st.post_s = parent.post_s
            st.post_total_s = parent.post_total_s
            st.in_post = parent.in_post
            st.raw_ids = set(parent.raw_ids)
            if parent.in_fill:
                st.in_fill = True
                st.inside_since = parent.inside_since
                st.inside_frames = parent.inside_frames
                st.visits = parent.visits
                st.exempt = parent.exempt
        return st

    def _step(
        self, st: PersonState, ts: float, at_post: bool, at_fill: bool, dets: Detections, persons: Detections, i: int
    ) -> Finding | None:
        gap = max(ts - st.last_ts, 0.0)
        dt = min(gap, self.p.max_step_s)
        # Time since the previous observation counts in the zone the person was in then.
        if st.in_post:
            # At the post on both sides of a gap (frames the detector dropped under load, a
            # moment hidden): they stayed; the unseen time counts, up to the dwell asked for.
            # Seen elsewhere next: they left at an unknown moment of the gap; half of it counts.
            held = (min(gap, max(self.p.max_step_s, self.p.dwell_s)) if at_post
                    else min(gap / 2, self.p.max_step_s))
            st.post_s += held
            st.post_total_s += held
        if st.inside_since is not None:
            st.fill_total_s += dt
        st.last_ts = ts
        st.in_post = at_post
        if at_fill:
            st.outside_since = None
            if st.inside_since is None:
                st.inside_since = ts
                st.inside_frames = 0
            st.inside_frames += 1
            if not st.in_fill and st.inside_frames >= 2 and ts - st.inside_since >= self.p.enter_s:
                st.in_fill = True
                st.visits += 1
                return self._judge(st, ts, dets, persons, i)
            return None
        if st.inside_since is not None:
            st.outside_since = ts if st.outside_since is None else st.outside_since
            if ts - st.outside_since >= self.p.exit_s or not st.in_fill:
                if st.in_fill:
                    st.post_s = 0.0  # a new visit needs a fresh discharge
                st.inside_since = None
                st.outside_since = None
                st.inside_frames = 0
                st.in_fill = False
                st.exempt = False
        return None

    def _judge(self, st: PersonState, ts: float, dets: Detections, persons: Detections, i: int) -> Finding | None:
        if st.exempt or st.post_s >= self.p.dwell_s - 1e-6:
            return None
        st.violations += 1
        self.findings += 1
        assert st.inside_since is not None
        entered = st.inside_since
        box = [round(float(v), 4) for v in persons.boxes[i]]
        return Finding(
            rule=self.rule_id,
            site=self.site,
            source=self.camera,
            subject=f"track-{st.pid}",
            ts=_utc(entered),
            summary=(
                f"person {st.pid} entered the filling area after {st.post_s:.1f}s at the discharge post "
                f"(needs {self.p.dwell_s:g}s)"
            ),
            details={
                "track": st.pid,
                "raw_tracks": sorted(st.raw_ids),
                "entered_at": _utc(entered).isoformat(),
                "snapshot_at": dets.ts.isoformat(),
                "first_seen": _utc(st.first_ts).isoformat(),
                "dwell_s": round(st.post_s, 2),
                "required_s": self.p.dwell_s,
                "zone_s": {POST: round(st.post_total_s, 2), FILL: round(st.fill_total_s, 2)},
                "visit": st.visits,
                "box": box,
                "boxes": [
                    {"track": int(p), "box": [round(float(v), 4) for v in b]}
                    for p, b in zip(self._frame_pids.tolist(), persons.boxes, strict=True)
                ],
            },
        )

    def person_of(self, pid: int) -> Person | None:
        return self.stitcher.persons.get(pid)


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
