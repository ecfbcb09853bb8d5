"""Person identities over raw tracker ids (pure).

Raw tracker ids split and flicker on real footage: a partly hidden person alternates
between two ids, a short box appears inside a person, an id is lost behind an obstacle
and a new one starts where it vanished. One finding per raw id over-counts, so the rules
key their state on a *person* id that this stitcher keeps:

- a raw id it has seen keeps its person;
- a new raw id whose box lies mostly inside the box of a person seen in the same frame
  is a fragment of that person;
- a new raw id that appears within ``reid_dist`` (normalised, feet to feet) of where a
  person vanished less than ``reid_gap_s`` ago (plus how far one walks in the gap, at
  ``walk_speed``), or of where that person was walking to (its last velocity carried on),
  inherits that person (the nearest one). People enter a view at its edges: a track born
  inside the picture is someone the tracker lost, and may reach ``interior_reach`` times
  further;
- otherwise it is a new person; when it is born inside the picture overlapping (or within
  ``reid_dist`` of) a person seen in the same frame (two people who stood together part, and the tracker kept one id
  on the spot), it is marked ``split_from`` that person, whose history it may share;
- otherwise it is a new person.

Re-identification is a guess. When a raw id the person had before comes back while a raw id
re-identified as that person is seen in the same frame, away from it (feet further than
``reid_dist``: not a fragment, not one box seen twice), the guess was wrong: someone else
walked where the person vanished. The guessed raw id leaves the person and becomes a new
person from that frame on (what it did under the wrong name stays with the old one).

Persons absent from a frame and unseen for longer than ``reid_gap_s`` end (those that
vanished inside the picture, hidden rather than gone, are kept ``hidden_keep_s`` for tracks
born inside the picture); ``update`` reports them so the
callers prune their own per-person state. Time is in seconds from the frame timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt


@dataclass
class Person:
    pid: int
    first_ts: float
    last_ts: float
    anchor: tuple[float, float]  # feet, normalised
    box: tuple[float, float, float, float]
    raw_ids: set[int] = field(default_factory=set)
    velocity: tuple[float, float] = (0.0, 0.0)  # feet, normalised per second (smoothed)
    split_from: int | None = None  # born inside the box of this person, in the same frame

    def predicted(self, ts: float, horizon_s: float) -> tuple[float, float]:
        """Where the feet would be at ``ts`` walking on as before (at most ``horizon_s`` ahead)."""
        dt = min(max(ts - self.last_ts, 0.0), horizon_s)
        return (self.anchor[0] + self.velocity[0] * dt, self.anchor[1] + self.velocity[1] * dt)


class TrackStitcher:
    def __init__(
        self, reid_gap_s: float, reid_dist: float, *, contain: float = 0.85, max_fragment: float = 0.6,
        walk_speed: float = 0.15, border: float = 0.03, interior_reach: float = 2.5, split_iou: float = 0.2,
        hidden_keep_s: float = 6.0,
    ) -> None:
        self.reid_gap_s = reid_gap_s
        self.reid_dist = reid_dist
        self.walk_speed = walk_speed  # normalised per second: how far someone may walk while lost
        self.border = border
        self.interior_reach = interior_reach
        self.split_iou = split_iou
        self.hidden_keep_s = max(hidden_keep_s, reid_gap_s)
        self.contain = contain
        self.max_fragment = max_fragment
        self.persons: dict[int, Person] = {}
        self._by_raw: dict[int, int] = {}
        self._next = 1
        self.reidentified = 0  # raw ids that inherited a vanished person
        self.fragments = 0  # raw ids folded into a person seen in the same frame
        self.splits = 0  # new persons born out of a person's box (whose history they may share)
        self.detached = 0  # re-identified raw ids given back their own person (the guess was wrong)
        self._guessed: set[int] = set()  # raw ids that inherited a person by re-identification

    def update(
        self, ts: float, raw_ids: npt.NDArray[np.int64], boxes: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.int64], list[Person]]:
        """Person id for each row (raw id ``-1`` rows get ``-1``), and the persons that ended."""
        n = len(raw_ids)
        pids = np.full(n, -1, np.int64)
        for i in range(n):
            r = int(raw_ids[i])
            if r >= 0 and r in self._by_raw:
                pids[i] = self._by_raw[r]
        self._detach_wrong_guesses(ts, raw_ids, boxes, pids)
        present = {int(p) for p in pids if p >= 0}
        # A person whose raw id is back is never pruned, however long the gap between frames
        # (a motion gate may hold back frames of a still scene); absent ones end after the gap.
        ended = self._prune(ts, present)
        new_rows = [i for i in range(n) if pids[i] < 0 and raw_ids[i] >= 0]
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) if n else np.zeros(0)
        for i in sorted(new_rows, key=lambda k: -float(areas[k])):
            pid = self._fragment_of(i, boxes, pids)
            if pid is not None:
                self.fragments += 1
            else:
                pid = self._vanished_near(ts, boxes[i], present)
                if pid is not None:
                    self.reidentified += 1
                    self._guessed.add(int(raw_ids[i]))
                else:
                    parent = self._split_from(i, boxes, pids)
                    pid = self._new_person(ts, boxes[i])
                    if parent is not None:
                        self.persons[pid].split_from = parent
                        self.splits += 1
            pids[i] = pid
            present.add(pid)
            self._by_raw[int(raw_ids[i])] = pid
            self.persons[pid].raw_ids.add(int(raw_ids[i]))
        # One representative box per person: the largest (a fragment never moves the feet).
        for p, i in self.representative_rows(pids, boxes).items():
            person = self.persons[p]
            feet = _feet(boxes[i])
            dt = ts - person.last_ts
            if dt > 0:
                k = min(1.0, dt / 1.0)  # about a second of memory
                vx = (feet[0] - person.anchor[0]) / dt
                vy = (feet[1] - person.anchor[1]) / dt
                person.velocity = (
                    (1 - k) * person.velocity[0] + k * vx, (1 - k) * person.velocity[1] + k * vy
                )
            person.last_ts = ts
            person.box = _box(boxes[i])
            person.anchor = feet
        return pids, ended

    def number_after(self, pid: int) -> None:
        """Number new persons after ``pid`` (a camera taken over continues its alerts' numbering)."""
        self._next = max(self._next, pid + 1)

    def representative_rows(self, pids: npt.NDArray[np.int64], boxes: npt.NDArray[np.float32]) -> dict[int, int]:
        """Row of the largest box of each person in a frame."""
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) if len(boxes) else np.zeros(0)
        best: dict[int, int] = {}
        for i, p in enumerate(pids.tolist()):
            if p >= 0 and (p not in best or areas[i] > areas[best[p]]):
                best[p] = i
        return best

    def interior(self, box: npt.NDArray[np.float32]) -> bool:
        """Is the box away from the picture's edges (where people enter and leave a view)?"""
        return _interior(box, self.border)

    # -- helpers -------------------------------------------------------------------
    def _detach_wrong_guesses(
        self, ts: float, raw_ids: npt.NDArray[np.int64], boxes: npt.NDArray[np.float32], pids: npt.NDArray[np.int64]
    ) -> None:
        """A re-identified raw id seen away from another raw id of its person: a new person."""
        rows = [i for i in range(len(raw_ids)) if pids[i] >= 0]
        for i in rows:
            r = int(raw_ids[i])
            if r not in self._guessed:
                continue
            pid = int(pids[i])
            others = [j for j in rows if j != i and pids[j] == pid and int(raw_ids[j]) not in self._guessed]
            fi = _feet(boxes[i])
            if not any(float(np.hypot(fi[0] - _feet(boxes[j])[0], fi[1] - _feet(boxes[j])[1])) > self.reid_dist
                       for j in others):
                continue
            self._guessed.discard(r)
            self.persons[pid].raw_ids.discard(r)
            new = self._new_person(ts, boxes[i])
            self.persons[new].raw_ids.add(r)
            self._by_raw[r] = new
            pids[i] = new
            self.detached += 1

    def _prune(self, ts: float, present: set[int]) -> list[Person]:
        ended = [p for p in self.persons.values() if p.pid not in present and ts - p.last_ts > self._keep_s(p)]
        for p in ended:
            del self.persons[p.pid]
            for r in p.raw_ids:
                self._by_raw.pop(r, None)
                self._guessed.discard(r)
        return ended

    def _fragment_of(self, i: int, boxes: npt.NDArray[np.float32], pids: npt.NDArray[np.int64]) -> int | None:
        b = boxes[i]
        area = float((b[2] - b[0]) * (b[3] - b[1]))
        if area <= 0:
            return None
        for j in range(len(boxes)):
            if j == i or pids[j] < 0:
                continue
            o = boxes[j]
            iw = min(b[2], o[2]) - max(b[0], o[0])
            ih = min(b[3], o[3]) - max(b[1], o[1])
            o_area = float((o[2] - o[0]) * (o[3] - o[1]))
            # Mostly inside, and clearly smaller: two people walking together are not fragments.
            if iw > 0 and ih > 0 and float(iw * ih) / area >= self.contain and area <= self.max_fragment * o_area:
                return int(pids[j])
        return None

    def _vanished_near(self, ts: float, box: npt.NDArray[np.float32], present: set[int]) -> int | None:
        fx, fy = _feet(box)
        # People enter a view at its edges; a track born inside the picture is someone the
        # tracker lost (behind another person, a pillar), so it may reach further back.
        interior = _interior(box, self.border)
        best: tuple[float, int] | None = None
        for p in self.persons.values():
            gap = ts - p.last_ts
            if p.pid in present or gap <= 0 or gap > (self._keep_s(p) if interior else self.reid_gap_s):
                continue
            px, py = p.predicted(ts, self.reid_gap_s)
            # Near where it vanished (allowing a walk since), or near where it was walking to.
            walked = self.walk_speed * min(gap, self.reid_gap_s)
            d = min(float(np.hypot(fx - p.anchor[0], fy - p.anchor[1])) - walked,
                    float(np.hypot(fx - px, fy - py)))
            reach = self.reid_dist * (self.interior_reach if interior else 1.0)
            if d <= reach and (best is None or d < best[0]):
                best = (d, p.pid)
        return None if best is None else best[1]

    def _keep_s(self, p: Person) -> float:
        """How long an absent person is kept: longer when it vanished inside the picture
        (hidden behind someone or something, not gone), only ``reid_gap_s`` at an edge."""
        return self.hidden_keep_s if _interior(np.asarray(p.box), self.border) else self.reid_gap_s

    def _split_from(self, i: int, boxes: npt.NDArray[np.float32], pids: npt.NDArray[np.int64]) -> int | None:
        """The person whose box a track born inside the picture overlaps (two people who stood
        together and part: the tracker keeps one id on the spot and gives the other a new one,
        so either may be the one the history belongs to)."""
        b = boxes[i]
        if not _interior(b, self.border):
            return None
        fx, fy = _feet(b)
        best: tuple[float, int] | None = None
        for j in range(len(boxes)):
            if j == i or pids[j] < 0:
                continue
            ox, oy = _feet(boxes[j])
            d = float(np.hypot(fx - ox, fy - oy))
            if (d <= self.reid_dist or _iou(b, boxes[j]) >= self.split_iou) and (best is None or d < best[0]):
                best = (d, int(pids[j]))
        return None if best is None else best[1]

    def _new_person(self, ts: float, box: npt.NDArray[np.float32]) -> int:
        pid = self._next
        self._next += 1
        self.persons[pid] = Person(pid, ts, ts, _feet(box), _box(box))
        return pid


def _iou(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = float(iw * ih)
    union = float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
    return inter / union if union > 0 else 0.0


def _interior(b: npt.NDArray[np.float32], margin: float) -> bool:
    return bool(b[0] > margin and b[2] < 1 - margin and b[1] > margin and b[3] < 1 - margin)


def _feet(b: npt.NDArray[np.float32]) -> tuple[float, float]:
    return (float(b[0] + b[2]) / 2, float(b[3]))


def _box(b: npt.NDArray[np.float32]) -> tuple[float, float, float, float]:
    return (float(b[0]), float(b[1]), float(b[2]), float(b[3]))
