"""Pure parts of the video pipeline: bitstream, MP4, ring, gate, sampling, hand-offs, relay."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import av
import numpy as np
import pytest

from monitor.sim.rtsp_server import access_units
from monitor.sim.scenes import SceneSpec, write_clip
from monitor.video.frame import Frame
from monitor.video.h264 import params_of, parse_sps, split_nals
from monitor.video.handoff import LatestFeed
from monitor.video.media import prune, write_cut
from monitor.video.motion import MotionGate, Sampler
from monitor.video.mp4 import init_segment, media_segment, samples_from
from monitor.video.relay import LiveRelay
from monitor.video.ring import PacketRing


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[int, int], list[list[bytes]]]:
    """Access units (as NAL lists) of small encoded scenes, by size."""
    out = {}
    d = tmp_path_factory.mktemp("units")
    for size in [(320, 180), (640, 360), (1280, 720)]:
        p = write_clip(SceneSpec(kind="station", seed=3, seconds=3 if size[0] < 1000 else 1, size=size), d / f"{size[0]}.h264",
                       truth=False)
        out[size] = [split_nals(a) for a in access_units(p.read_bytes())]
    return out


@pytest.mark.parametrize("size", [(320, 180), (640, 360), (1280, 720)])
def test_sps_gives_the_picture_size(clips: dict[tuple[int, int], list[list[bytes]]], size: tuple[int, int]) -> None:
    sps, pps = params_of(clips[size][0])
    assert sps is not None and pps is not None
    info = parse_sps(sps)
    assert (info.width, info.height) == size
    assert info.codec.startswith("avc1.") and len(info.codec) == 11


def _ring_with(units: list[list[bytes]], fps: float = 10.0, t0: float = 1000.0, ring_s: float = 30.0) -> PacketRing:
    ring = PacketRing(ring_s)
    for i, nals in enumerate(units):
        ring.add(t0 + i / fps, nals)
    return ring


def test_ring_starts_at_a_keyframe_and_keeps_ring_s(clips: dict[tuple[int, int], list[list[bytes]]]) -> None:
    units = clips[(320, 180)] * 4  # 12 s at 10 fps
    ring = _ring_with(units, ring_s=5.0)
    span = ring.span()
    assert span is not None
    start, end = span
    assert 5.0 <= end - start < 6.0 + 1e-6, "at least ring_s, less one GOP more"
    cut = ring.cut(start, end)
    assert cut is not None and cut.units[0].key


@pytest.mark.parametrize(
    ("start", "end", "expect"),
    [
        (1002.25, 1004.0, (1002.0, 1004.0)),  # from the keyframe before start
        (1000.0, 1001.0, (1000.0, 1001.0)),
        (999.0, 1001.0, None),  # the ring does not hold start
        (1002.0, 1001.0, None),  # end before start
    ],
)
def test_cut_bounds(clips: dict[tuple[int, int], list[list[bytes]]], start: float, end: float,
                    expect: tuple[float, float] | None) -> None:
    ring = _ring_with(clips[(320, 180)] * 2)
    cut = ring.cut(start, end)
    if expect is None:
        assert cut is None
        return
    assert cut is not None
    assert cut.units[0].key
    assert cut.units[0].t == pytest.approx(expect[0]) and cut.units[-1].t == pytest.approx(expect[1])


def test_cut_stops_where_the_resolution_changes(clips: dict[tuple[int, int], list[list[bytes]]]) -> None:
    ring = _ring_with(clips[(320, 180)] + clips[(640, 360)])
    cut = ring.cut(1000.0, 1005.5)
    assert cut is not None
    assert len(cut.units) == len(clips[(320, 180)])
    assert parse_sps(cut.sps).width == 320


@pytest.mark.parametrize("size", [(320, 180), (640, 360)])
def test_clip_is_an_mp4_that_decodes_from_its_first_frame(
    tmp_path: Path, clips: dict[tuple[int, int], list[list[bytes]]], size: tuple[int, int]
) -> None:
    ring = _ring_with(clips[size] * 3)
    cut = ring.cut(1001.5, 1006.0)
    assert cut is not None
    info = write_cut(cut, tmp_path / "c.mp4")
    data = info.path.read_bytes()
    assert data[4:8] == b"ftyp" and data.index(b"moov") < data.index(b"mdat"), "faststart: moov first"
    with av.open(str(info.path)) as c:
        st = c.streams.video[0]
        frames = list(c.decode(st))
        assert frames[0].key_frame
        assert len(frames) == info.frames == len(cut.units)
        assert (frames[0].width, frames[0].height) == size
        dur = float(st.duration * st.time_base)
    assert dur == pytest.approx(info.duration_s, abs=0.01)
    assert 4.5 - 1.0 <= dur <= 4.5 + 1.0, "requested 4.5 s within one GOP"


def test_fragmented_mp4_decodes(tmp_path: Path, clips: dict[tuple[int, int], list[list[bytes]]]) -> None:
    units = clips[(320, 180)]
    sps, pps = params_of(units[0])
    assert sps and pps
    samples = samples_from([(i / 10, n) for i, n in enumerate(units)], 0.1)
    data = init_segment(sps, pps) + b"".join(media_segment(i + 1, i * 9000, [s]) for i, s in enumerate(samples))
    (tmp_path / "f.mp4").write_bytes(data)
    with av.open(str(tmp_path / "f.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == len(units)


@pytest.mark.parametrize(
    ("frames", "expect"),
    [
        # (t, brightness change box) -> sent?
        ([(0.0, 0), (0.2, 0), (0.4, 0), (2.1, 0)], [True, False, False, True]),  # still: forced every 2 s
        ([(0.0, 0), (0.2, 1), (0.4, 1), (0.6, 2)], [True, True, False, True]),  # motion passes; same frame again not
    ],
)
def test_motion_gate(frames: list[tuple[float, int]], expect: list[bool]) -> None:
    gate = MotionGate(threshold=0.01, forced_every_s=2.0)
    base = np.full((36, 64), 100, np.uint8)
    got = []
    for t, k in frames:
        img = base.copy()
        if k:
            img[: 10 * k, : 10 * k] = 200
        got.append(gate.check(img, t).send)
    assert got == expect


@pytest.mark.parametrize(
    ("src_fps", "fps", "seconds", "expect"),
    [(25, 5, 10, 50), (10, 5, 10, 50), (5, 5, 10, 50), (25, 2, 10, 20), (3, 5, 10, 30)],
)
def test_sampler_rate(src_fps: float, fps: float, seconds: float, expect: int) -> None:
    s = Sampler(fps)
    n = sum(s.take(i / src_fps) for i in range(int(seconds * src_fps)))
    assert abs(n - expect) <= 1


def _frame(cam: str, seq: int) -> Frame:
    return Frame(camera=cam, ts=datetime.now(UTC), seq=seq, image=np.zeros((4, 4, 3), np.uint8))


async def test_latest_feed_keeps_only_the_newest_and_counts_drops() -> None:
    feed = LatestFeed(asyncio.get_running_loop())
    for i in range(5):
        feed.put(_frame("a", i))
    feed.put(_frame("b", 0))
    got = await feed.wait(1.0)
    assert sorted((f.camera, f.seq) for f in got) == [("a", 4), ("b", 0)]
    assert feed.dropped == {"a": 4}
    assert await feed.wait(0.05) == []


async def test_latest_feed_from_threads_wakes_the_consumer() -> None:
    feed = LatestFeed(asyncio.get_running_loop())

    def produce() -> None:
        for i in range(200):
            feed.put(_frame("a", i))
            time.sleep(0.0005)

    task = asyncio.create_task(asyncio.to_thread(produce))
    seen = []
    async for f in feed.frames("a", idle_timeout_s=2.0):
        seen.append(f.seq)
        if f.seq == 199:
            break
    await task
    assert seen == sorted(seen) and seen[-1] == 199
    assert len(seen) + feed.dropped.get("a", 0) == 200


async def test_relay_slow_viewer_skips_to_a_keyframe(clips: dict[tuple[int, int], list[list[bytes]]]) -> None:
    relay = LiveRelay(asyncio.get_running_loop(), queue_frames=5)
    fast, slow = relay.join(), relay.join()
    units = (clips[(320, 180)] * 2)[:52]  # keyframes every 10 units; ends two after one
    got_fast: list[str] = []

    async def drain_fast() -> None:
        async for kind, _ in fast.messages():
            got_fast.append(kind)

    task = asyncio.create_task(drain_fast())
    for i, nals in enumerate(units):
        relay.offer(1000 + i / 10, nals, key=any((n[0] & 0x1F) == 5 for n in nals))
        await asyncio.sleep(0)  # the dispatch, then the fast viewer's turn
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)
    assert slow.skipped > 0 and fast.skipped == 0
    assert got_fast[:2] == ["codec", "init"] and got_fast.count("media") == len(units)
    # what the slow viewer still holds starts at a keyframe
    held = []
    while not slow.queue.empty():
        u = slow.queue.get_nowait()
        assert u is not None
        held.append(u.sample.key)
    assert held == [True, False]
    relay.close()
    await asyncio.wait_for(task, 2)
    assert relay.viewers == 0


@pytest.mark.parametrize(
    ("ages", "sizes", "max_age", "max_bytes", "left"),
    [
        ([10, 20, 30], [100, 100, 100], 25, 10_000, 2),  # one too old
        ([10, 20, 30], [100, 100, 100], 100, 250, 2),  # over the size: oldest goes
        ([10, 20, 30], [100, 100, 100], 100, 10_000, 3),
    ],
)
def test_media_prune(tmp_path: Path, ages: list[int], sizes: list[int], max_age: float, max_bytes: int,
                     left: int) -> None:
    now = 1_000_000.0
    for i, (age, size) in enumerate(zip(ages, sizes, strict=True)):
        p = tmp_path / "clips" / f"c{i}.mp4"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"x" * size)
        os.utime(p, (now - age, now - age))
    prune(tmp_path, max_age, max_bytes, now=now)
    assert len(list(tmp_path.rglob("*.mp4"))) == left


async def test_one_process_runs_at_most_max_cameras_the_anti_static_ones_first(tmp_path: Path) -> None:
    from monitor.config import Config
    from monitor.store.leases import UNASSIGNED
    from monitor.tasks import TaskGroup
    from monitor.video.service import VideoService

    dead = "rtsp://127.0.0.1:9/x"
    post = {"discharge_post": [[0, 0], [0.2, 0], [0.2, 1]], "filling_area": [[0.5, 0], [1, 0], [1, 1]]}
    cfg = Config.model_validate({
        "media": {"dir": str(tmp_path), "max_cameras": 2},
        "sites": [{"id": "st-x", "kind": "station", "storage_capacity": 10, "cameras": [
            {"id": "a-door", "url": dead},  # recorded only
            {"id": "b-store", "url": dead, "zones": {"storage": [[0, 0], [1, 0], [1, 1]]}, "rules": ["storage"]},
            {"id": "c-entry", "url": dead, "zones": post, "rules": ["antistatic"]}]}],
    })
    svc = VideoService(cfg)
    tasks = TaskGroup()
    svc.start(tasks)
    try:
        assert svc.running == ["b-store", "c-entry"] and svc.unassigned == ["a-door"]
        assert svc.camera_states()["a-door"] == "unassigned" and UNASSIGNED._value.get() == 1
    finally:
        await tasks.stop(5.0)
        svc.close()
