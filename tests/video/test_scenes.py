"""The scene renderer: deterministic, truthful, and encoded as the RTSP server needs it."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from monitor.sim.scenes import DWELL_S, STATION_ZONES, Scene, SceneSpec, load_truth, write_clip


def _in_rect(x: float, y: float, poly: list[tuple[float, float]]) -> bool:
    xs = [p[0] for p in poly]
    ys = [p[1] for p in poly]
    return min(xs) <= x <= max(xs) and min(ys) <= y <= max(ys)


@pytest.mark.parametrize("kind", ["station", "outlet"])
def test_same_seed_same_pixels_and_truth(kind: str) -> None:
    spec = SceneSpec(kind=kind, seed=11, seconds=2, fps=5, difficulty=0.5)  # type: ignore[arg-type]
    a = list(Scene(spec).frames())
    b = list(Scene(spec).frames())
    assert len(a) == 10
    for (ia, ta), (ib, tb) in zip(a, b, strict=True):
        assert np.array_equal(ia, ib)
        assert ta == tb
    other = next(Scene(SceneSpec(kind=kind, seed=12, seconds=2, fps=5)).frames())[0]  # type: ignore[arg-type]
    assert not np.array_equal(a[0][0], other)


@pytest.mark.parametrize("size", [(640, 360), (320, 180), (1280, 720)])
def test_frames_are_bgr_of_the_size(size: tuple[int, int]) -> None:
    img, truth = next(Scene(SceneSpec(kind="outlet", seed=3, seconds=1, size=size)).frames())
    assert img.shape == (size[1], size[0], 3) and img.dtype == np.uint8
    assert truth.t == 0.0
    assert truth.objects, "an outlet starts with cylinders in store"
    for o in truth.objects:
        x1, y1, x2, y2 = o.box
        assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1
        assert 0 < o.visible_fraction <= 1


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("kind", "depot", "kind"),
        ("seconds", 0, "seconds"),
        ("size", (641, 360), "size"),
        ("difficulty", 1.5, "difficulty"),
        ("capacity", 0, "capacity"),
    ],
)
def test_bad_spec_names_the_field(field: str, value: object, needle: str) -> None:
    kw: dict[str, object] = {"kind": "station", "seed": 1, "seconds": 1.0, field: value}
    with pytest.raises(ValueError, match=f"SceneSpec.{needle}"):
        SceneSpec(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_station_truth_is_consistent(seed: int) -> None:
    scene = Scene(SceneSpec(kind="station", seed=seed, seconds=40, difficulty=0.4))
    people = scene.events.people
    assert people
    for p in people:
        assert abs(p.dwell_s - DWELL_S) >= 0.6, "dwell kept clear of the threshold"
        assert p.violation == (p.filling_s is not None and p.dwell_s < DWELL_S)
    # over seeds both kinds of behaviour occur
    assert any(p.violation for p in people) or any(not p.violation for p in people)


def test_station_feet_match_events() -> None:
    """The person's feet (box bottom centre) are in the post zone when the truth says so."""
    spec = SceneSpec(kind="station", seed=2, seconds=30, fps=5, difficulty=0.0)
    scene = Scene(spec)
    compliant = [p for p in scene.events.people if not p.violation and p.filling_s is not None]
    assert compliant
    p = compliant[0]
    in_post = 0
    for _img, tr in scene.frames():
        if tr.t >= p.filling_s:  # type: ignore[operator]
            break
        for o in tr.objects:
            if o.cls == "person" and o.track == p.track and o.visible_fraction > 0.9:
                fx, fy = (o.box[0] + o.box[2]) / 2, o.box[3]
                in_post += _in_rect(fx, fy, STATION_ZONES["discharge_post"])
    assert in_post / spec.fps >= DWELL_S - 0.5


@pytest.mark.parametrize(("seed", "capacity"), [(1, 5), (2, 12), (3, None)])
def test_outlet_count_crosses_capacity(seed: int, capacity: int | None) -> None:
    scene = Scene(SceneSpec(kind="outlet", seed=seed, seconds=60, capacity=capacity))
    ev = scene.events
    cap = ev.capacity
    assert cap is not None and (capacity is None or cap == capacity)
    counts = [c for _t, c in ev.count]
    assert counts[0] <= cap < max(counts), "rises above the capacity"
    assert counts[-1] < cap, "falls back below it"
    assert ev.over_capacity and all(a < b for a, b in ev.over_capacity)
    # standing cylinders in the frame truth match the count at that time
    _img, tr = scene.frame_at(0)
    standing = [o for o in tr.objects if o.cls == "cylinder"]
    assert len(standing) == ev.count_at(0.0)


@pytest.mark.parametrize("suffix", [".h264", ".mp4"])
def test_write_clip_keyframe_every_second_no_b_frames(tmp_path: Path, suffix: str) -> None:
    spec = SceneSpec(kind="station", seed=5, seconds=3, fps=10, size=(320, 180))
    tpath = write_clip(spec, tmp_path / f"c{suffix}")
    assert tpath == tmp_path / "c.truth.json"
    truth = load_truth(tpath)
    assert truth["spec"]["seed"] == 5 and len(truth["frames"]) == 30
    json.dumps(truth)
    with av.open(str(tmp_path / f"c{suffix}")) as c:
        st = c.streams.video[0]
        keys = []
        decoded = 0
        for pkt in c.demux(st):
            if pkt.size == 0:
                continue
            keys.append(bool(pkt.is_keyframe))
            decoded += len(pkt.decode())
        assert st.codec_context.has_b_frames is False or st.codec_context.has_b_frames == 0
    assert [i for i, k in enumerate(keys) if k] == [0, 10, 20]
    assert decoded == 30


def test_write_clip_refuses_other_suffix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.h264 or \.mp4"):
        write_clip(SceneSpec(kind="station", seed=1, seconds=1), tmp_path / "x.avi")


def test_simulate_scenes_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from monitor.cli import main

    rc = main(["simulate", "scenes", "--out", str(tmp_path), "--count", "2", "--kind", "outlet", "--seed", "7",
               "--seconds", "2", "--size", "320x180"])
    assert rc == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["seed"] for x in lines] == [7, 8]
    assert all(Path(x["clip"]).exists() and Path(x["truth"]).exists() for x in lines)
    assert main(["simulate", "scenes", "--out", str(tmp_path), "--seconds", "0"]) == 2
    assert "--seconds" in capsys.readouterr().err
