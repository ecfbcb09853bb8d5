"""Simulated CCTV scenes with ground truth: station entrances and outlet storage rooms.

The same generator drives the demo, the tests, the benchmarks and the training data of
the detector models. Everything is seeded and deterministic: the same ``SceneSpec`` gives
the same pixels and the same truth, and ``Scene.frames()`` can be iterated again.

API (stable)::

    spec = SceneSpec(kind="station", seed=7, seconds=40, fps=10, size=(640, 360),
                     capacity=None, difficulty=0.3)
    scene = Scene(spec)
    for image, truth in scene.frames():      # image: HxWx3 BGR uint8
        truth.t                              # seconds since the scene's start
        for o in truth.objects:              # TruthObject
            o.cls, o.track, o.box, o.visible_fraction   # box = (x1, y1, x2, y2), 0..1
    scene.events                             # SceneEvents (ground truth of the rules)
    write_clip(spec, Path("var/clips/st-1.h264"))   # or .mp4; writes st-1.truth.json too

Station scenes (``kind="station"``): workers walk in from the left edge; some stop at the
static-discharge post (drawn inside ``STATION_ZONES["discharge_post"]``) for several
seconds, some touch it only briefly or walk past, and all walk on into the filling area
(``STATION_ZONES["filling_area"]``). ``scene.events.people`` holds, per person, when they
entered the view, how long their feet (the bottom centre of their box) were inside the
discharge-post zone before they first reached the filling area, when they reached it,
and ``violation`` = reached the filling area with less than ``DWELL_S`` (3 s) at the post.
Dwell times are kept clear of the 3 s threshold (never within 0.6 s of it), so the truth
is unambiguous.

Outlet scenes (``kind="outlet"``): workers carry cylinders along the aisle at the top and
into the storage zone (``OUTLET_ZONES["storage"]``, y >= 0.30), put them down, or pick
them up and carry them out, so the number standing in the zone rises above the capacity
and falls back below it. ``scene.events.count`` is the number of cylinders *standing* in
the zone (carried ones are in the frame truth but not counted) as change points
``(t, n)``; ``scene.events.over_capacity`` the intervals ``(start, end)`` with
``n > capacity``. Station scenes also have cylinders standing at the filling scales.

Variation (seeded; more with ``difficulty``): camera scale and perspective, floor and wall
colours, lighting level, colour cast and gradient, sensor noise, blur, clothing, helmet
and cylinder colours, people's sizes and speeds, number of people, a pillar in front of
the scene, and objects passing in front of the camera (occlusions).

Boxes are the tight box of the object's whole silhouette, clipped to the image;
``visible_fraction`` is the share of the silhouette's pixels that are seen (not hidden by
a nearer object, the pillar or the image border). Objects wholly out of view or hidden
are not listed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

Kind = Literal["station", "outlet"]
Cls = Literal["person", "cylinder"]
Color = tuple[int, int, int]
Box = tuple[float, float, float, float]

DWELL_S = 3.0
STATION_ZONES: dict[str, list[tuple[float, float]]] = {
    "discharge_post": [(0.08, 0.35), (0.24, 0.35), (0.24, 0.80), (0.08, 0.80)],
    "filling_area": [(0.55, 0.25), (1.00, 0.25), (1.00, 1.00), (0.55, 1.00)],
}
OUTLET_ZONES: dict[str, list[tuple[float, float]]] = {
    "storage": [(0.0, 0.30), (1.0, 0.30), (1.0, 1.0), (0.0, 1.0)],
}


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class SceneSpec:
    kind: Kind
    seed: int
    seconds: float
    fps: float = 10.0
    size: tuple[int, int] = (640, 360)  # (width, height)
    capacity: int | None = None  # outlet: licensed count; None: chosen from the seed
    difficulty: float = 0.0  # 0 easy .. 1 hard (light, noise, occlusion, crowd)
    people: int | None = None  # station: number of workers; None: from seed/difficulty

    def __post_init__(self) -> None:
        if self.kind not in ("station", "outlet"):
            raise ValueError(f"SceneSpec.kind: expected 'station' or 'outlet', got {self.kind!r}")
        if not self.seconds > 0:
            raise ValueError(f"SceneSpec.seconds: expected > 0, got {self.seconds}")
        if not 0 < self.fps <= 60:
            raise ValueError(f"SceneSpec.fps: expected 0 < fps <= 60, got {self.fps}")
        w, h = self.size
        if w < 64 or h < 64 or w % 2 or h % 2:
            raise ValueError(f"SceneSpec.size: expected even (width, height) >= 64, got {self.size}")
        if not 0.0 <= self.difficulty <= 1.0:
            raise ValueError(f"SceneSpec.difficulty: expected 0..1, got {self.difficulty}")
        if self.capacity is not None and not 1 <= self.capacity <= 60:
            raise ValueError(f"SceneSpec.capacity: expected 1..60, got {self.capacity}")
        if self.people is not None and not 0 <= self.people <= 20:
            raise ValueError(f"SceneSpec.people: expected 0..20, got {self.people}")

    @property
    def n_frames(self) -> int:
        return max(1, round(self.seconds * self.fps))


@dataclass(frozen=True)
class TruthObject:
    cls: Cls
    track: int
    box: Box
    visible_fraction: float


@dataclass(frozen=True)
class FrameTruth:
    t: float
    objects: list[TruthObject]


@dataclass(frozen=True)
class PersonEvent:
    track: int
    entered_s: float  # first seen in the view
    dwell_s: float  # feet inside the discharge-post zone before reaching the filling area
    filling_s: float | None  # first time inside the filling area; None: not within the scene
    violation: bool  # reached the filling area with dwell_s < DWELL_S


@dataclass
class SceneEvents:
    kind: Kind
    zones: dict[str, list[tuple[float, float]]]
    people: list[PersonEvent] = field(default_factory=list)
    capacity: int | None = None
    count: list[tuple[float, int]] = field(default_factory=list)  # change points of the standing count
    over_capacity: list[tuple[float, float]] = field(default_factory=list)

    def count_at(self, t: float) -> int:
        n = 0
        for ts, c in self.count:
            if ts <= t:
                n = c
        return n

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- motion


@dataclass
class _Path:
    """A piecewise-linear route: points (x, y) normalised, with arrival times; waits are repeated points."""

    times: list[float]
    points: list[tuple[float, float]]

    def at(self, t: float) -> tuple[float, float, float, float] | None:
        """(x, y, dx, dy) at time t; None outside the route's time."""
        if t < self.times[0] or t > self.times[-1]:
            return None
        i = int(np.searchsorted(self.times, t, side="right")) - 1
        i = min(max(i, 0), len(self.times) - 2)
        t0, t1 = self.times[i], self.times[i + 1]
        (x0, y0), (x1, y1) = self.points[i], self.points[i + 1]
        a = 0.0 if t1 <= t0 else (t - t0) / (t1 - t0)
        return x0 + (x1 - x0) * a, y0 + (y1 - y0) * a, x1 - x0, y1 - y0

    def distance_to(self, t: float, aspect: float) -> float:
        """Distance walked up to t (for the walking phase), in image heights."""
        d = 0.0
        for i in range(len(self.times) - 1):
            t0, t1 = self.times[i], self.times[i + 1]
            if t <= t0:
                break
            (x0, y0), (x1, y1) = self.points[i], self.points[i + 1]
            seg = math.hypot((x1 - x0) * aspect, y1 - y0)
            frac = 1.0 if t >= t1 else (t - t0) / (t1 - t0)
            d += seg * frac
        return d


def _route(start_t: float, pts: list[tuple[float, float]], waits: list[float], speed: float, aspect: float) -> _Path:
    """Walk through ``pts`` at ``speed`` (image heights/s), waiting ``waits[i]`` at point i."""
    times = [start_t]
    points = [pts[0]]
    t = start_t
    for i in range(1, len(pts)):
        (x0, y0), (x1, y1) = pts[i - 1], pts[i]
        t += math.hypot((x1 - x0) * aspect, y1 - y0) / speed
        times.append(t)
        points.append(pts[i])
        if waits[i] > 0:
            t += waits[i]
            times.append(t)
            points.append(pts[i])
    return _Path(times, points)


def _in_poly(x: float, y: float, poly: list[tuple[float, float]]) -> bool:
    inside = False
    n = len(poly)
    for i in range(n):
        x1, y1 = poly[i]
        x2, y2 = poly[(i + 1) % n]
        if (y1 > y) != (y2 > y):
            xi = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            if x < xi:
                inside = not inside
    return inside


# --------------------------------------------------------------------------- actors

PALETTE_CLOTHES: list[Color] = [
    (150, 80, 30), (40, 40, 40), (30, 90, 200), (200, 200, 200), (40, 110, 40), (60, 60, 140),
    (120, 120, 120), (20, 140, 230), (90, 50, 20), (170, 170, 60), (80, 30, 120), (30, 30, 170),
]
PALETTE_TROUSERS: list[Color] = [(60, 40, 30), (40, 40, 40), (110, 80, 50), (90, 90, 90), (130, 100, 60)]
PALETTE_HELMET: list[Color] = [(20, 200, 240), (240, 240, 240), (30, 30, 210), (200, 110, 20), (30, 30, 30)]
PALETTE_SKIN: list[Color] = [(120, 160, 210), (100, 140, 190), (80, 115, 160), (140, 175, 225)]
PALETTE_CYL: list[Color] = [
    (170, 170, 170), (200, 200, 205), (160, 100, 40), (235, 235, 235), (40, 40, 190), (130, 130, 135),
]


@dataclass
class _Person:
    track: int
    path: _Path
    height: float  # image heights at y = 1 (scaled by perspective)
    shirt: Color
    trousers: Color
    skin: Color
    helmet: Color | None
    vest: bool
    carry: _Path | None = None  # the path while carrying a cylinder (subset of times)
    carry_color: Color = (170, 170, 170)
    carry_track: int = 0  # the carried cylinder's track (the same as when it stands)


@dataclass
class _Cylinder:
    track: int
    x: float
    y: float
    color: Color
    scale: float
    t_from: float = -1e9  # standing here from
    t_to: float = 1e9  # until


@dataclass
class _Passer:
    """An object crossing in front of the camera: a cart or a large board."""

    t0: float
    t1: float
    y: float
    h: float
    w: float
    color: Color
    left_to_right: bool


def _lerp_color(a: Color, b: Color, k: float) -> Color:
    return (int(a[0] + (b[0] - a[0]) * k), int(a[1] + (b[1] - a[1]) * k), int(a[2] + (b[2] - a[2]) * k))


def _shade(c: Color, k: float) -> Color:
    return (min(255, max(0, int(c[0] * k))), min(255, max(0, int(c[1] * k))), min(255, max(0, int(c[2] * k))))


class _Painter:
    """Draws one object on the padded image, the id map and its own silhouette mask."""

    def __init__(self, img: np.ndarray, ids: np.ndarray, oid: int, roi: tuple[int, int, int, int]) -> None:
        self.img = img
        self.ids = ids
        self.oid = oid
        x0, y0, x1, y1 = roi
        H, W = ids.shape
        self.x0, self.y0 = max(0, x0), max(0, y0)
        self.x1, self.y1 = min(W, x1), min(H, y1)
        self.mask = np.zeros((max(1, self.y1 - self.y0), max(1, self.x1 - self.x0)), np.uint8)

    def _off(self, p: tuple[int, int]) -> tuple[int, int]:
        return p[0] - self.x0, p[1] - self.y0

    def circle(self, c: tuple[int, int], r: int, color: Color) -> None:
        r = max(1, r)
        cv2.circle(self.img, c, r, color, -1, cv2.LINE_AA)
        cv2.circle(self.ids, c, r, self.oid, -1, cv2.LINE_8)
        cv2.circle(self.mask, self._off(c), r, 1, -1, cv2.LINE_8)

    def ellipse(self, c: tuple[int, int], axes: tuple[int, int], color: Color, a0: int = 0, a1: int = 360) -> None:
        axes = (max(1, axes[0]), max(1, axes[1]))
        cv2.ellipse(self.img, c, axes, 0, a0, a1, color, -1, cv2.LINE_AA)
        cv2.ellipse(self.ids, c, axes, 0, a0, a1, self.oid, -1, cv2.LINE_8)
        cv2.ellipse(self.mask, self._off(c), axes, 0, a0, a1, 1, -1, cv2.LINE_8)

    def line(self, a: tuple[int, int], b: tuple[int, int], th: int, color: Color) -> None:
        th = max(1, th)
        cv2.line(self.img, a, b, color, th, cv2.LINE_AA)
        cv2.line(self.ids, a, b, self.oid, th, cv2.LINE_8)
        cv2.line(self.mask, self._off(a), self._off(b), 1, th, cv2.LINE_8)

    def rect(self, a: tuple[int, int], b: tuple[int, int], color: Color) -> None:
        cv2.rectangle(self.img, a, b, color, -1, cv2.LINE_AA)
        cv2.rectangle(self.ids, a, b, self.oid, -1, cv2.LINE_8)
        cv2.rectangle(self.mask, self._off(a), self._off(b), 1, -1, cv2.LINE_8)

    def poly(self, pts: list[tuple[int, int]], color: Color) -> None:
        arr = np.array(pts, np.int32)
        cv2.fillPoly(self.img, [arr], color, cv2.LINE_AA)
        cv2.fillPoly(self.ids, [arr], self.oid, cv2.LINE_8)
        cv2.fillPoly(self.mask, [arr - np.array([self.x0, self.y0], np.int32)], 1, cv2.LINE_8)

    def detail_line(self, a: tuple[int, int], b: tuple[int, int], th: int, color: Color) -> None:
        """Paint only (inside the silhouette already drawn)."""
        cv2.line(self.img, a, b, color, max(1, th), cv2.LINE_AA)

    def detail_rect(self, a: tuple[int, int], b: tuple[int, int], color: Color) -> None:
        cv2.rectangle(self.img, a, b, color, -1, cv2.LINE_AA)


# --------------------------------------------------------------------------- the scene


class Scene:
    """A seeded scene: its script is made at construction; ``frames()`` renders it."""

    def __init__(self, spec: SceneSpec) -> None:
        self.spec = spec
        W, H = spec.size
        self.W, self.H = W, H
        self.aspect = W / H
        self.pad = H // 2
        rng = np.random.default_rng([spec.seed, 0 if spec.kind == "station" else 1])
        d = spec.difficulty
        # camera: overall scale of people/objects, perspective strength
        self.scale = float(rng.uniform(0.85, 1.15)) * (1.0 - 0.15 * d * float(rng.random()))
        self.persp = float(rng.uniform(0.45, 0.75))  # size at top relative to bottom
        # lighting
        self.gain = float(rng.uniform(0.85, 1.1) - d * rng.uniform(0.0, 0.45))
        self.cast = np.array(rng.uniform(1 - 0.12 * (0.3 + d), 1 + 0.12 * (0.3 + d), 3), np.float32)
        self.grad = float(rng.uniform(-0.25, 0.25) * (0.3 + d))
        self.noise = float(1.5 + 9.0 * d * rng.uniform(0.5, 1.0))
        self.blur = bool(d > 0.5 and rng.random() < d - 0.3)
        self.flicker = float(0.04 * d * rng.random())
        self.people: list[_Person] = []
        self.cylinders: list[_Cylinder] = []
        self.passers: list[_Passer] = []
        self.pillar: tuple[float, float, float] | None = None  # (x centre, width, colour shade)
        self.events = SceneEvents(kind=spec.kind, zones=STATION_ZONES if spec.kind == "station" else OUTLET_ZONES)
        self._next_track = 1
        if spec.kind == "station":
            self._script_station(rng)
        else:
            self._script_outlet(rng)
        self._script_occluders(rng)
        self.background = self._render_background(np.random.default_rng([spec.seed, 99]))

    # ----------------------------------------------------------------- geometry

    def size_at(self, y: float) -> float:
        """Perspective: the scale of an object standing at normalised y."""
        return self.scale * (self.persp + (1.0 - self.persp) * min(1.2, max(0.0, y)))

    def _px(self, x: float, y: float) -> tuple[int, int]:
        return round(x * self.W) + self.pad, round(y * self.H) + self.pad

    def _track(self) -> int:
        t = self._next_track
        self._next_track += 1
        return t

    def _new_person(self, rng: np.random.Generator, path: _Path) -> _Person:
        worker = rng.random() < 0.8
        return _Person(
            track=self._track(),
            path=path,
            height=float(rng.uniform(0.36, 0.46)),
            shirt=PALETTE_CLOTHES[int(rng.integers(len(PALETTE_CLOTHES)))],
            trousers=PALETTE_TROUSERS[int(rng.integers(len(PALETTE_TROUSERS)))],
            skin=PALETTE_SKIN[int(rng.integers(len(PALETTE_SKIN)))],
            helmet=PALETTE_HELMET[int(rng.integers(len(PALETTE_HELMET)))] if worker else None,
            vest=bool(worker and rng.random() < 0.5),
        )

    # ----------------------------------------------------------------- scripts

    def _script_station(self, rng: np.random.Generator) -> None:
        spec = self.spec
        T = spec.seconds
        d = spec.difficulty
        n = spec.people if spec.people is not None else int(rng.integers(2, 4 + round(3 * d)))
        post = STATION_ZONES["discharge_post"]
        self.post_x = float(rng.uniform(0.13, 0.19))
        self.post_y = float(rng.uniform(0.52, 0.62))  # base of the post
        # static cylinders at the filling scales
        for i in range(int(rng.integers(2, 5))):
            x = 0.62 + i * float(rng.uniform(0.08, 0.1))
            if x > 0.96:
                break
            y = float(rng.uniform(0.4, 0.5))
            col = PALETTE_CYL[int(rng.integers(len(PALETTE_CYL)))]
            self.cylinders.append(_Cylinder(self._track(), x, y, col, 1.0))
        # one person every ~ (T-10)/n seconds; the first at once
        span = max(1.0, T - 12.0)
        starts = sorted([0.3 + float(rng.uniform(0, 1.0))] + [float(rng.uniform(0, span)) for _ in range(max(0, n - 1))])
        for i, t0 in enumerate(starts):
            behaviour = ["stop", "skip", "brief"][i % 3] if rng.random() < 0.7 else str(rng.choice(["stop", "skip", "brief"]))
            speed = float(rng.uniform(0.22, 0.34))
            for _attempt in range(20):
                y_in = float(rng.uniform(0.5, 0.95))
                start = (-0.08, y_in)
                fill = (float(rng.uniform(0.62, 0.92)), float(rng.uniform(0.45, 0.95)))
                pts: list[tuple[float, float]] = [start]
                waits = [0.0]
                if behaviour in ("stop", "brief"):
                    stand = (self.post_x + float(rng.uniform(0.02, 0.05)), self.post_y + float(rng.uniform(0.04, 0.12)))
                    pts.append(stand)
                    waits.append(float(rng.uniform(3.8, 6.5)) if behaviour == "stop" else float(rng.uniform(0.2, 0.9)))
                else:
                    # walk past: along the bottom, or above the post
                    via = (float(rng.uniform(0.3, 0.45)), float(rng.choice([rng.uniform(0.85, 0.97), rng.uniform(0.3, 0.34)])))
                    pts[0] = (-0.08, via[1])
                    pts.append(via)
                    waits.append(0.0)
                pts.append(fill)
                waits.append(float(rng.uniform(4.0, 10.0)))
                pts.append((1.1, float(rng.uniform(0.5, 0.95))))
                waits.append(0.0)
                path = _route(t0, pts, waits, speed, self.aspect)
                dwell, filling = self._dwell(path, post)
                if abs(dwell - DWELL_S) >= 0.6:
                    break
            person = self._new_person(rng, path)
            self.people.append(person)
        self.people.sort(key=lambda p: p.path.times[0])
        for p in self.people:
            dwell, filling = self._dwell(p.path, post)
            entered = max(0.0, self._entered(p.path))
            if entered >= T:
                continue
            if filling is not None and filling > T:
                filling = None
            self.events.people.append(
                PersonEvent(
                    track=p.track,
                    entered_s=round(entered, 3),
                    dwell_s=round(dwell, 3),
                    filling_s=None if filling is None else round(filling, 3),
                    violation=filling is not None and dwell < DWELL_S,
                )
            )

    def _dwell(self, path: _Path, post: list[tuple[float, float]]) -> tuple[float, float | None]:
        """Seconds with feet in the post zone before the filling area, and the filling time."""
        fill_zone = STATION_ZONES["filling_area"]
        dt = 0.01
        t = path.times[0]
        dwell = 0.0
        while t <= path.times[-1]:
            p = path.at(t)
            assert p is not None
            x, y = p[0], p[1]
            if _in_poly(x, y, fill_zone):
                return dwell, t
            if _in_poly(x, y, post):
                dwell += dt
            t += dt
        return dwell, None

    def _entered(self, path: _Path) -> float:
        dt = 0.02
        t = path.times[0]
        while t <= path.times[-1]:
            p = path.at(t)
            assert p is not None
            if p[0] > -0.02:
                return t
            t += dt
        return path.times[-1]

    def _script_outlet(self, rng: np.random.Generator) -> None:
        spec = self.spec
        T = spec.seconds
        cap = spec.capacity if spec.capacity is not None else int(rng.integers(6, 19))
        self.events.capacity = cap
        # slots: rows of places in the storage zone
        rows = [0.5, 0.62, 0.75, 0.88]
        cols = [0.07 + i * 0.062 for i in range(15)]
        slots = [(x + float(rng.uniform(-0.01, 0.01)), y + float(rng.uniform(-0.01, 0.01))) for y in rows for x in cols]
        order = list(rng.permutation(len(slots)))
        self.pillar_avoid = 0.0
        start = max(0, cap - int(rng.integers(1, 4)))
        up = cap + int(rng.integers(2, 5)) - start
        down = up + int(rng.integers(2, 5))
        down = min(down, start + up)
        standing: list[_Cylinder] = []
        free = [slots[i] for i in order]
        for _ in range(start):
            x, y = free.pop(0)
            c = _Cylinder(self._track(), x, y, PALETTE_CYL[int(rng.integers(len(PALETTE_CYL)))], 1.0)
            standing.append(c)
            self.cylinders.append(c)
        ops: list[str] = ["in"] * up + ["out"] * down
        n_ops = len(ops)
        # spread operations over the scene, leaving time at the ends
        t_ops: list[float] = [float(v) for v in np.linspace(0.5, max(1.0, T * 0.8), n_ops + 1)[:-1]]
        changes: list[tuple[float, int]] = [(0.0, start)]
        speed = float(rng.uniform(0.25, 0.34))
        for i, op in enumerate(ops):
            t0 = float(t_ops[i]) + float(rng.uniform(0, 0.5))
            from_left = rng.random() < 0.5
            ex = -0.08 if from_left else 1.08
            aisle = float(rng.uniform(0.23, 0.28))
            if op == "in":
                sx, sy = free.pop(0)
                col = PALETTE_CYL[int(rng.integers(len(PALETTE_CYL)))]
                stand_at = (sx + 0.035, sy + 0.01)
                path = _route(t0, [(ex, aisle), (sx + 0.035, aisle + 0.02), stand_at, (ex, aisle)], [0, 0, 0.8, 0], speed, self.aspect)
                t_put = path.times[3]  # the wait at stand_at ends
                person = self._new_person(rng, path)
                person.carry = _Path(path.times[:4], path.points[:4])
                person.carry_color = col
                self.people.append(person)
                c = _Cylinder(self._track(), sx, sy, col, 1.0, t_from=t_put)
                person.carry_track = c.track
                self.cylinders.append(c)
                changes.append((t_put, +1))
            else:
                # pick the cylinder nearest the aisle that stands now
                cand = [c for c in standing if c.t_to > 1e8]
                if not cand:
                    continue
                c = min(cand, key=lambda c: c.y + 0.01 * float(rng.random()))
                stand_at = (c.x + 0.035, c.y + 0.01)
                path = _route(t0, [(ex, aisle), (c.x + 0.035, aisle + 0.02), stand_at, (ex, aisle)], [0, 0, 0.8, 0], speed, self.aspect)
                t_pick = path.times[3]
                c.t_to = t_pick
                person = self._new_person(rng, path)
                person.carry = _Path(path.times[3:], path.points[3:])
                person.carry_color = c.color
                person.carry_track = c.track
                self.people.append(person)
                changes.append((t_pick, -1))
            if op == "in":
                standing.append(self.cylinders[-1])
        # a few passers-by without cylinders
        for _ in range(int(rng.integers(0, 2 + round(2 * spec.difficulty)))):
            t0 = float(rng.uniform(0, max(1.0, T - 5)))
            y = float(rng.uniform(0.22, 0.29))
            pts = [(-0.08, y), (1.08, y)] if rng.random() < 0.5 else [(1.08, y), (-0.08, y)]
            self.people.append(self._new_person(rng, _route(t0, pts, [0, 0], speed, self.aspect)))
        # the count over time
        n = 0
        pts_count: list[tuple[float, int]] = []
        for t, dn in sorted(changes[1:]):
            pts_count.append((t, dn))
        self.events.count = [(0.0, start)]
        n = start
        for t, dn in pts_count:
            if t > T:
                break
            n += dn
            self.events.count.append((round(t, 3), n))
        over: list[tuple[float, float]] = []
        t_over: float | None = None
        for t, cnt in self.events.count:
            if cnt > cap and t_over is None:
                t_over = t
            elif cnt <= cap and t_over is not None:
                over.append((t_over, t))
                t_over = None
        if t_over is not None:
            over.append((t_over, round(T, 3)))
        self.events.over_capacity = over

    def _script_occluders(self, rng: np.random.Generator) -> None:
        spec = self.spec
        d = spec.difficulty
        if rng.random() < 0.25 + 0.6 * d:
            if spec.kind == "station":
                x = float(rng.uniform(0.34, 0.48))  # between the post and the filling area
            else:
                x = float(rng.uniform(0.15, 0.85))
            self.pillar = (x, float(rng.uniform(0.035, 0.06)), float(rng.uniform(0.6, 1.0)))
        for _ in range(int(rng.integers(0, 1 + round(2 * d) + (1 if rng.random() < 0.3 else 0)))):
            t0 = float(rng.uniform(0, max(1.0, spec.seconds - 3)))
            dur = float(rng.uniform(1.5, 4.0))
            self.passers.append(
                _Passer(
                    t0=t0, t1=t0 + dur, y=float(rng.uniform(0.85, 1.05)), h=float(rng.uniform(0.2, 0.45)),
                    w=float(rng.uniform(0.12, 0.3)), color=PALETTE_CLOTHES[int(rng.integers(len(PALETTE_CLOTHES)))],
                    left_to_right=bool(rng.random() < 0.5),
                )
            )

    # ----------------------------------------------------------------- background

    def _render_background(self, rng: np.random.Generator) -> np.ndarray:
        W, H, P = self.W, self.H, self.pad
        img = np.zeros((H + 2 * P, W + 2 * P, 3), np.uint8)
        floor = np.array(rng.uniform(95, 150, 3), np.float32)
        floor[:] = floor.mean() + (floor - floor.mean()) * 0.3
        img[:] = floor.astype(np.uint8)
        # concrete texture: low-frequency blotches + fine grain
        small = rng.normal(0, 9, ((H + 2 * P) // 16 + 1, (W + 2 * P) // 16 + 1)).astype(np.float32)
        blot = cv2.resize(small, (W + 2 * P, H + 2 * P), interpolation=cv2.INTER_CUBIC)
        grain = rng.normal(0, 4, (H + 2 * P, W + 2 * P)).astype(np.float32)
        img = np.clip(img.astype(np.float32) + (blot + grain)[..., None], 0, 255).astype(np.uint8)
        # floor slab joints in perspective (vanishing point above the image)
        vx = float(rng.uniform(0.3, 0.7))
        joint = tuple(int(v) for v in (floor * 0.75))
        for k in range(-6, 16):
            xb = k / 9.0
            cv2.line(img, self._px(vx + (xb - vx) * 0.4, 0.0), self._px(xb, 1.2), joint, 1, cv2.LINE_AA)
        for yy in (0.3, 0.42, 0.56, 0.72, 0.9):
            cv2.line(img, self._px(-0.5, yy), self._px(1.5, yy), joint, 1, cv2.LINE_AA)
        wall_h = float(rng.uniform(0.12, 0.2))
        wall = tuple(int(v) for v in rng.uniform(150, 215, 3))
        cv2.rectangle(img, self._px(-0.5, -0.5), self._px(1.5, wall_h), wall, -1)
        cv2.rectangle(img, self._px(-0.5, wall_h - 0.015), self._px(1.5, wall_h), tuple(int(v * 0.6) for v in wall), -1)
        if self.spec.kind == "station":
            # filling area: painted floor and a yellow boundary, canopy posts, scales
            fa = np.array([self._px(0.55, 0.25), self._px(1.5, 0.25), self._px(1.5, 1.5), self._px(0.55, 1.5)], np.int32)
            ov = img.copy()
            cv2.fillPoly(ov, [fa], (90, 120, 100))
            img = np.asarray(cv2.addWeighted(ov, 0.25, img, 0.75, 0), np.uint8)
            cv2.line(img, self._px(0.55, 0.25), self._px(0.55, 1.2), (0, 200, 230), 3, cv2.LINE_AA)
            cv2.line(img, self._px(0.55, 0.25), self._px(1.2, 0.25), (0, 200, 230), 3, cv2.LINE_AA)
            for i, c in enumerate(self.cylinders):
                s = self.size_at(c.y)
                x0, y0 = self._px(c.x - 0.045 * s, c.y - 0.01)
                x1, y1 = self._px(c.x + 0.045 * s, c.y + 0.02)
                cv2.rectangle(img, (x0, y0), (x1, y1), (70, 70, 75), -1)
                cv2.rectangle(img, (x0, y0), (x1, y1), (40, 40, 40), 1)
                # the filling rig behind the scale
                rx, ry = self._px(c.x + 0.03 * s, c.y - 0.22 * s)
                cv2.line(img, (rx, ry), self._px(c.x + 0.03 * s, c.y - 0.01), (60, 60, 60), 3, cv2.LINE_AA)
                if i == 0:
                    cv2.rectangle(img, self._px(0.58, wall_h + 0.01), self._px(0.7, wall_h + 0.09), (60, 60, 60), -1)
            # the static-discharge post: striped pole with a metal touch plate on top
            s = self.size_at(self.post_y)
            top = self.post_y - 0.30 * s
            bx, by = self._px(self.post_x, self.post_y)
            _tx, ty = self._px(self.post_x, top)
            pw = max(3, int(0.018 * s * self.H * 1.5))
            cv2.ellipse(img, (bx, by), (pw * 2, max(2, pw // 2)), 0, 0, 360, (50, 50, 50), -1, cv2.LINE_AA)
            nstripe = 6
            for k in range(nstripe):
                ya = ty + (by - ty) * k // nstripe
                yb = ty + (by - ty) * (k + 1) // nstripe
                col = (0, 210, 240) if k % 2 == 0 else (25, 25, 25)
                cv2.rectangle(img, (bx - pw // 2, ya), (bx + pw // 2, yb), col, -1)
            cv2.circle(img, (bx, ty), pw + 2, (190, 190, 195), -1, cv2.LINE_AA)
            cv2.circle(img, (bx - 1, ty - 1), max(1, pw // 2), (235, 235, 240), -1, cv2.LINE_AA)
            cv2.rectangle(img, (bx - pw, ty - pw * 4), (bx + pw, ty - pw * 2), (40, 40, 200), -1)
        else:
            # storage zone line and a door in the back wall
            cv2.line(img, self._px(-0.5, 0.30), self._px(1.5, 0.30), (0, 200, 230), 3, cv2.LINE_AA)
            dx = float(rng.uniform(0.3, 0.7))
            cv2.rectangle(img, self._px(dx - 0.06, wall_h - 0.14), self._px(dx + 0.06, wall_h), (60, 70, 80), -1)
            for yy in (0.44, 0.56, 0.69, 0.82, 0.95):
                cv2.line(img, self._px(0.02, yy), self._px(0.98, yy), tuple(int(v * 0.85) for v in floor), 1, cv2.LINE_AA)
        return img

    # ----------------------------------------------------------------- drawing

    def _draw_person(self, img: np.ndarray, ids: np.ndarray, p: _Person, t: float, oid: int) -> _Painter | None:
        st = p.path.at(t)
        if st is None:
            return None
        x, y, dx, dy = st
        s = self.size_at(y)
        h = p.height * s * self.H
        fx, fy = self._px(x, y)
        roi = (int(fx - h * 0.6), int(fy - h * 1.1), int(fx + h * 0.6), int(fy + h * 0.15))
        pt = _Painter(img, ids, oid, roi)
        moving = dx * dx + dy * dy > 1e-9
        phase = p.path.distance_to(t, self.aspect) / (p.height * s * 0.55) * math.pi if moving else 0.0
        sw = math.sin(phase)
        norm = math.hypot(dx * self.aspect, dy) or 1.0
        ux, uy = (dx * self.aspect / norm, dy / norm) if moving else (0.0, 1.0)
        # shadow on the floor (not part of the silhouette)
        sh = (int(fx + 0.08 * h), int(fy))
        ov_axes = (max(2, int(0.22 * h)), max(1, int(0.05 * h)))
        cv2.ellipse(img, sh, ov_axes, 0, 0, 360, _shade(tuple(int(v) for v in img[min(sh[1], img.shape[0] - 1), min(sh[0], img.shape[1] - 1)]), 0.6), -1, cv2.LINE_AA)  # type: ignore[arg-type]
        hip_y = fy - 0.47 * h
        sh_y = fy - 0.80 * h
        leg_th = int(0.085 * h)
        for side, sgn in ((-1, 1.0), (1, -1.0)):
            hx = fx + side * 0.055 * h
            amp = 0.13 * h * sgn * sw
            footx = hx + ux * amp
            footy = fy - 0.03 * h + uy * amp * 0.4
            pt.line((int(hx), int(hip_y)), (int(footx), int(footy)), leg_th, p.trousers)
            pt.ellipse((int(footx), int(footy + 0.01 * h)), (int(0.045 * h), int(0.025 * h)), (25, 25, 30))
        # torso
        tw = 0.15 * h
        torso = [
            (int(fx - tw), int(sh_y)), (int(fx + tw), int(sh_y)),
            (int(fx + tw * 0.85), int(hip_y + 0.03 * h)), (int(fx - tw * 0.85), int(hip_y + 0.03 * h)),
        ]
        pt.poly(torso, p.shirt)
        pt.ellipse((int(fx), int(sh_y + 0.01 * h)), (int(tw), int(0.05 * h)), p.shirt)
        # light from the left: a darker right flank
        pt.detail_line((int(fx + tw * 0.7), int(sh_y + 0.04 * h)), (int(fx + tw * 0.6), int(hip_y)), int(0.06 * h), _shade(p.shirt, 0.75))
        if p.vest:
            yb = int(fy - 0.6 * h)
            pt.detail_rect((int(fx - tw * 0.9), yb), (int(fx + tw * 0.9), yb + max(1, int(0.03 * h))), (200, 240, 240))
        # arms swing opposite to the legs; a carrying arm holds still
        for side, sgn in ((-1, -1.0), (1, 1.0)):
            sx_ = fx + side * (tw + 0.02 * h)
            carrying = p.carry is not None and p.carry.at(t) is not None and side == 1
            amp = 0.0 if carrying else 0.1 * h * sgn * sw
            hx = sx_ + ux * amp + side * 0.02 * h
            hy = fy - 0.48 * h + uy * amp * 0.4
            pt.line((int(sx_), int(sh_y + 0.03 * h)), (int(hx), int(hy)), int(0.06 * h), _shade(p.shirt, 0.9))
            pt.circle((int(hx), int(hy)), int(0.03 * h), p.skin)
        # head
        hr = 0.075 * h
        hcx, hcy = int(fx), int(fy - 0.9 * h)
        pt.line((hcx, int(sh_y)), (hcx, int(hcy + hr)), int(0.05 * h), p.skin)
        pt.circle((hcx, hcy), int(hr), p.skin)
        if p.helmet is not None:
            pt.ellipse((hcx, hcy - int(0.1 * hr)), (int(hr * 1.15), int(hr * 1.05)), p.helmet, 180, 360)
            pt.ellipse((hcx, hcy - int(0.1 * hr)), (int(hr * 1.3), max(1, int(hr * 0.25))), _shade(p.helmet, 0.85))
        else:
            pt.ellipse((hcx, hcy - int(0.2 * hr)), (int(hr), int(hr * 0.9)), (25, 25, 30), 180, 360)
        return pt

    def _draw_cylinder(self, img: np.ndarray, ids: np.ndarray, x: float, y: float, color: Color, oid: int,
                       lift: float = 0.0) -> _Painter:
        s = self.size_at(y)
        h = 0.14 * s * self.H
        w = 0.55 * h
        bx, by = self._px(x, y)
        by = int(by - lift * h)
        roi = (int(bx - w), int(by - h * 1.3), int(bx + w), int(by + h * 0.1))
        pt = _Painter(img, ids, oid, roi)
        top = by - h
        r = w / 2
        # foot ring, body, shoulder dome
        pt.rect((int(bx - r * 0.8), int(by - 0.08 * h)), (int(bx + r * 0.8), int(by)), _shade(color, 0.55))
        pt.rect((int(bx - r), int(top + 0.22 * h)), (int(bx + r), int(by - 0.07 * h)), color)
        pt.ellipse((int(bx), int(top + 0.24 * h)), (int(r), int(0.16 * h)), color, 180, 360)
        pt.ellipse((int(bx), int(by - 0.08 * h)), (int(r), int(0.05 * h)), color, 0, 180)
        # shading: highlight on the left, shadow on the right
        pt.detail_rect((int(bx - r * 0.55), int(top + 0.25 * h)), (int(bx - r * 0.25), int(by - 0.1 * h)), _shade(color, 1.25))
        pt.detail_rect((int(bx + r * 0.55), int(top + 0.25 * h)), (int(bx + r * 0.95), int(by - 0.1 * h)), _shade(color, 0.72))
        pt.detail_line((int(bx - r), int(top + 0.55 * h)), (int(bx + r), int(top + 0.55 * h)), max(1, int(0.02 * h)), _shade(color, 0.8))
        # collar (guard ring) and valve
        cw = r * 0.55
        pt.rect((int(bx - cw), int(top + 0.02 * h)), (int(bx - cw * 0.6), int(top + 0.14 * h)), _shade(color, 0.6))
        pt.rect((int(bx + cw * 0.6), int(top + 0.02 * h)), (int(bx + cw), int(top + 0.14 * h)), _shade(color, 0.6))
        pt.rect((int(bx - cw), int(top)), (int(bx + cw), int(top + 0.04 * h)), _shade(color, 0.6))
        pt.rect((int(bx - r * 0.15), int(top + 0.03 * h)), (int(bx + r * 0.15), int(top + 0.12 * h)), (40, 120, 170))
        return pt

    def _render(self, t: float, frame_no: int) -> tuple[np.ndarray, list[TruthObject]]:
        W, H, P = self.W, self.H, self.pad
        img = self.background.copy()
        ids = np.zeros(img.shape[:2], np.int16)
        items: list[tuple[float, str, Any]] = []
        for c in self.cylinders:
            if c.t_from <= t < c.t_to:
                items.append((c.y, "cyl", c))
        for p in self.people:
            st = p.path.at(t)
            if st is not None:
                items.append((st[1], "person", p))
                if p.carry is not None:
                    cs = p.carry.at(t)
                    if cs is not None:
                        items.append((st[1] + 0.001, "carried", p))
        items.sort(key=lambda it: it[0])
        painted: list[tuple[Cls, int, _Painter]] = []
        oid = 1
        for _y, kind, obj in items:
            if kind == "cyl":
                painted.append(("cylinder", obj.track, self._draw_cylinder(img, ids, obj.x, obj.y, obj.color, oid)))
            elif kind == "person":
                pt = self._draw_person(img, ids, obj, t, oid)
                if pt is not None:
                    painted.append(("person", obj.track, pt))
            else:
                st = obj.path.at(t)
                s = self.size_at(st[1])
                # carried at the right hand, lifted off the floor
                hx = st[0] + (0.15 * obj.height * s + 0.05 * obj.height * s) * self.H / self.W + 0.01
                painted.append(("cylinder", obj.carry_track, self._draw_cylinder(img, ids, hx, st[1], obj.carry_color, oid, lift=0.35)))
            oid += 1
        # occluders: pillar and passers (id -1)
        if self.pillar is not None:
            px, pw, shade = self.pillar
            col = _shade((150, 150, 155), shade)
            a, b = self._px(px - pw / 2, -0.5), self._px(px + pw / 2, 1.5)
            cv2.rectangle(img, a, b, col, -1)
            cv2.rectangle(img, (a[0], a[1]), (a[0] + max(1, (b[0] - a[0]) // 4), b[1]), _shade(col, 1.15), -1)
            cv2.rectangle(ids, a, b, -1, -1)
        for ps in self.passers:
            if ps.t0 <= t <= ps.t1:
                k = (t - ps.t0) / (ps.t1 - ps.t0)
                cx = -0.3 + 1.6 * k if ps.left_to_right else 1.3 - 1.6 * k
                a, b = self._px(cx - ps.w / 2, ps.y - ps.h), self._px(cx + ps.w / 2, ps.y + 0.3)
                cv2.rectangle(img, a, b, _shade(ps.color, 0.7), -1)
                cv2.rectangle(img, (a[0] + 3, a[1] + 3), (b[0] - 3, a[1] + max(4, (b[1] - a[1]) // 3)), ps.color, -1)
                cv2.rectangle(ids, a, b, -1, -1)
        # truth
        objs: list[TruthObject] = []
        for i, (cls, track, pt) in enumerate(painted):
            oid_i = i + 1
            total = int(pt.mask.sum())
            if total == 0:
                continue
            sub = ids[pt.y0:pt.y1, pt.x0:pt.x1]
            vis_mask = sub == oid_i
            # only pixels inside the image count as seen
            ys, xs = np.nonzero(pt.mask)
            gx, gy = xs + pt.x0 - P, ys + pt.y0 - P
            vy, vx = np.nonzero(vis_mask)
            vgx, vgy = vx + pt.x0 - P, vy + pt.y0 - P
            inside = (vgx >= 0) & (vgx < W) & (vgy >= 0) & (vgy < H)
            seen = int(inside.sum())
            if seen == 0:
                continue
            x1, y1 = max(0, int(gx.min())), max(0, int(gy.min()))
            x2, y2 = min(W, int(gx.max()) + 1), min(H, int(gy.max()) + 1)
            if x2 <= x1 or y2 <= y1:
                continue
            box = (round(x1 / W, 4), round(y1 / H, 4), round(x2 / W, 4), round(y2 / H, 4))
            objs.append(TruthObject(cls, track, box, round(min(1.0, seen / total), 3)))
        out = img[P:P + H, P:P + W]
        out = self._post(out, t, frame_no)
        objs.sort(key=lambda o: (o.cls, o.track))
        return out, objs

    def _post(self, img: np.ndarray, t: float, frame_no: int) -> np.ndarray:
        H, W = img.shape[:2]
        rng = np.random.default_rng([self.spec.seed, 7, frame_no])
        gain = self.gain * (1.0 + self.flicker * math.sin(t * 7.3))
        ramp = np.linspace(1.0 - self.grad, 1.0 + self.grad, W, dtype=np.float32)[None, :, None]
        f = img.astype(np.float32) * (gain * ramp) * self.cast[None, None, :]
        if self.noise > 0:
            f += rng.normal(0.0, self.noise, (H, W, 1)).astype(np.float32) + rng.normal(0.0, self.noise * 0.4, (H, W, 3)).astype(np.float32)
        out = np.clip(f, 0, 255).astype(np.uint8)
        if self.blur:
            out = np.asarray(cv2.GaussianBlur(out, (3, 3), 0.8), np.uint8)
        return out

    # ----------------------------------------------------------------- public

    def frames(self) -> Iterator[tuple[np.ndarray, FrameTruth]]:
        fps = self.spec.fps
        for i in range(self.spec.n_frames):
            t = i / fps
            img, objs = self._render(t, i)
            yield np.ascontiguousarray(img), FrameTruth(t=round(t, 4), objects=objs)

    def frame_at(self, i: int) -> tuple[np.ndarray, FrameTruth]:
        t = i / self.spec.fps
        img, objs = self._render(t, i)
        return np.ascontiguousarray(img), FrameTruth(t=round(t, 4), objects=objs)


# --------------------------------------------------------------------------- encoding


def encoder_options(fps: float) -> dict[str, str]:
    """libx264 options: no B-frames, a keyframe every second, SPS/PPS before each keyframe,
    one slice per picture (served over GStreamer's RTSP server, pictures of several slices
    lost their first slice: a green band on every frame at 640x360)."""
    g = max(1, round(fps))
    return {
        "tune": "zerolatency",
        "preset": "veryfast",
        "bf": "0",
        "g": str(g),
        "keyint_min": str(g),
        "sc_threshold": "0",
        "x264-params": f"keyint={g}:min-keyint={g}:scenecut=0:repeat-headers=1:bframes=0:sliced-threads=0:slices=1",
    }


def write_clip(spec: SceneSpec, path: Path | str, *, crf: int = 26, truth: bool = True) -> Path:
    """Render ``spec`` and encode it with libx264 to ``path`` (``.h264``: raw Annex-B;
    ``.mp4``: MP4 with faststart). Writes ``path.with_suffix(".truth.json")`` beside it.
    Returns the truth file's path (or the clip's when ``truth`` is False)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix not in (".h264", ".264", ".mp4"):
        raise ValueError(f"write_clip: path must end in .h264 or .mp4, got {path.name!r}")
    scene = Scene(spec)
    fmt = "mp4" if suffix == ".mp4" else "h264"
    opts = {"movflags": "+faststart"} if fmt == "mp4" else {}
    rate = Fraction(spec.fps).limit_denominator(1001)
    frames_truth: list[dict[str, Any]] = []
    with av.open(str(path), "w", format=fmt, options=opts) as out:
        st = out.add_stream("libx264", rate=rate)
        st.width, st.height = spec.size
        st.pix_fmt = "yuv420p"
        st.options = {**encoder_options(spec.fps), "crf": str(crf)}
        for img, tr in scene.frames():
            vf = av.VideoFrame.from_ndarray(img, format="bgr24")
            for pkt in st.encode(vf):
                out.mux(pkt)
            if truth:
                frames_truth.append({"t": tr.t, "objects": [asdict(o) for o in tr.objects]})
        for pkt in st.encode(None):
            out.mux(pkt)
    if not truth:
        return path
    tpath = path.with_suffix(".truth.json")
    doc = {
        "spec": {**asdict(spec), "size": list(spec.size)},
        "clip": path.name,
        "events": scene.events.to_json(),
        "frames": frames_truth,
    }
    tpath.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
    return tpath


def load_truth(path: Path | str) -> dict[str, Any]:
    """Read a ``.truth.json`` written by ``write_clip``."""
    data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return data
