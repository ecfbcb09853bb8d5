"""The detector service on simulated frames: findings to the bus, counts to PostgreSQL, overlays.

The frames come through the ``FrameFeed`` protocol (the video part's ``LatestFeed`` has its
own tests); everything after it is real: the model runner on its thread, the pipelines,
a ``FindingBus``, the ``camera_counts`` table of a migrated database.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from monitor.config import Config
from monitor.detectors.countstore import counts_between, write_counts
from monitor.detectors.service import CountRow, DetectorService
from monitor.findings import Finding, FindingBus
from monitor.sim.scenes import OUTLET_ZONES, STATION_ZONES
from monitor.video.frame import Frame
from tests.detectors.clips import EXPORTS, OUTLET, STATION, WEIGHTS, frames, truth

needs_model = pytest.mark.skipif(not WEIGHTS.exists(), reason="models/lpg-sim/best.pt not built (make models)")
T0 = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)


def config(db_url: str) -> Config:
    z = lambda zs: {k: [list(p) for p in v] for k, v in zs.items()}  # noqa: E731
    return Config.model_validate({
        "database": {"url": db_url},
        "detector": {"weights": str(WEIGHTS), "backend": "openvino", "imgsz": 640, "export_dir": str(EXPORTS)},
        "rules": {"storage": {"window_s": 3, "hold_s": 3}},
        "sites": [
            {"id": "st-svc", "kind": "station", "storage_capacity": 100, "cameras": [
                {"id": "st-svc-entry", "url": "rtsp://127.0.0.1:1/a", "zones": z(STATION_ZONES),
                 "rules": ["antistatic"]}]},
            {"id": "ol-svc", "kind": "outlet", "storage_capacity": 8, "cameras": [
                {"id": "ol-svc-store", "url": "rtsp://127.0.0.1:1/b", "zones": z(OUTLET_ZONES),
                 "rules": ["storage"]},
                {"id": "ol-svc-door", "url": "rtsp://127.0.0.1:1/c"}]},  # no rules: not analysed
        ],
    })


class ScriptedFeed:
    """Both cameras' frames, round by round, as the video part's feed hands them over."""

    def __init__(self) -> None:
        st = list(frames(STATION))
        ol = list(frames(OUTLET))
        self.rounds: list[list[Frame]] = []
        for k in range(max(len(st), len(ol))):
            batch = []
            for cam, seq in (("st-svc-entry", st), ("ol-svc-store", ol)):
                if k < len(seq):
                    t, img = seq[k]
                    batch.append(Frame(cam, T0 + timedelta(seconds=t), k, img))
            self.rounds.append(batch)

    async def wait(self, timeout_s: float | None = None) -> list[Frame]:
        return self.rounds.pop(0) if self.rounds else []


class NoFrames:
    async def wait(self, timeout_s: float | None = None) -> list[Frame]:
        return []


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def publish(self, topic: str, event: dict[str, Any]) -> int:
        self.events.append((topic, event))
        return 1


@needs_model
async def test_service_end_to_end_after_the_feed(session_db: str) -> None:
    cfg = config(session_db)
    bus = FindingBus()
    seen: list[Finding] = []

    async def collect(f: Finding) -> None:
        seen.append(f)

    bus.subscribe(collect)
    hub = Recorder()
    conn = await psycopg.AsyncConnection.connect(session_db, row_factory=dict_row, autocommit=True)

    async def store(rows: Any) -> None:
        await write_counts(conn, rows)

    svc = DetectorService(cfg, ScriptedFeed(), bus.submit, hub=hub, write_counts=store)
    assert sorted(svc.pipes) == ["ol-svc-store", "st-svc-entry"]
    bus_task = asyncio.create_task(bus.run())
    try:
        await asyncio.wait_for(svc.load(), 120)
        feed = svc.feed
        assert isinstance(feed, ScriptedFeed)
        while feed.rounds:
            await asyncio.wait_for(svc.step(await feed.wait()), 30)
        await bus.drain(10)
        written = await svc.flush_counts()
    finally:
        svc.close()
        bus_task.cancel()
        await asyncio.gather(bus_task, return_exceptions=True)
    anti = [f for f in seen if f.rule == "antistatic_skipped"]
    true_times = sorted(p["filling_s"] for p in truth(STATION)["people"] if p["violation"])
    assert len(anti) == len(true_times)
    for f, t in zip(sorted(anti, key=lambda f: f.ts), true_times, strict=True):
        assert abs((f.ts - T0).total_seconds() - t) <= 2.0
        assert f.site == "st-svc" and f.source == "st-svc-entry" and f.subject.startswith("track-")
        assert f.image is not None and f.image[:2] == b"\xff\xd8"
        assert "image" not in f.as_json()
    over = [f for f in seen if f.rule == "storage_over_capacity"]
    assert [f.active for f in over][:1] == [True]
    assert over[0].details["capacity"] == 8 and over[0].details["count"] > 8
    # Live overlays: normalised boxes, person ids, one topic per camera.
    topics = {t for t, _ in hub.events}
    assert topics == {"detections:st-svc-entry", "detections:ol-svc-store"}
    boxes = [o["box"] for _, e in hub.events for o in e["objects"]]
    assert boxes and all(0.0 <= v <= 1.0 for b in boxes for v in b)
    # The count series in PostgreSQL.
    rows = await counts_between(conn, "ol-svc-store", T0, T0 + timedelta(minutes=5))
    await conn.close()
    assert written == len(rows) > 0
    assert max(r["count"] for r in rows) > 8 and {r["site_id"] for r in rows} == {"ol-svc"}
    assert all(r["capacity"] == 8 for r in rows)


async def test_count_rows_are_idempotent_and_kept_while_the_database_is_away(session_db: str) -> None:
    cfg = config(session_db)
    calls = {"n": 0}
    conn = await psycopg.AsyncConnection.connect(session_db, row_factory=dict_row, autocommit=True)

    async def flaky(rows: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            from monitor.errors import DatabaseUnavailable

            raise DatabaseUnavailable("database unavailable")
        await write_counts(conn, rows)

    svc = DetectorService(cfg, NoFrames(), lambda f: asyncio.sleep(0), write_counts=flaky, buffer_rows=3)
    t = T0 + timedelta(days=1)
    for k in range(5):
        svc.rows.append(CountRow(t + timedelta(seconds=k), "ol-svc-store", "ol-svc", k, k, 8))
        while len(svc.rows) > svc.buffer_rows:  # what _note_count does on a full buffer
            svc.rows.popleft()
            svc.rows_dropped += 1
    from monitor.errors import DatabaseUnavailable

    with pytest.raises(DatabaseUnavailable):
        await svc.flush_counts()
    assert len(svc.rows) == 3 and svc.rows_dropped == 2
    assert await svc.flush_counts() == 3
    await write_counts(conn, [CountRow(t + timedelta(seconds=4), "ol-svc-store", "ol-svc", 99, 99, 8)])
    rows = await counts_between(conn, "ol-svc-store", t, t + timedelta(minutes=1))
    await conn.close()
    assert [r["count"] for r in rows] == [2, 3, 4]  # the repeated row changed nothing


def test_setup_only_with_the_video_role(tmp_path: Path) -> None:
    from monitor.app import build_app

    cfg = config("postgresql://postgres@127.0.0.1:1/none")
    for roles, expected in ((frozenset({"api"}), False), (frozenset({"video"}), True)):
        app = build_app(cfg, roles=roles)
        names = [getattr(c, "__module__", "") for c in app.cleanup_ctx]
        assert ("monitor.detectors" in names) is expected


@needs_model
async def test_a_camera_the_detector_cannot_keep_up_with_raises_detector_behind_then_clears() -> None:
    """The real hand-off (``LatestFeed``: a new frame replaces one not yet taken) and the real
    model: while 8 frames arrive per frame analysed the camera is behind; once every frame is
    taken it clears. Time is the watch's own (``now``), so the test does not depend on speed."""
    from monitor.detectors.watch import KeepUpWatch
    from monitor.video.handoff import LatestFeed

    cfg = config("postgresql://127.0.0.1:1/unused")
    feed = LatestFeed()
    svc = DetectorService(cfg, feed, lambda f: asyncio.sleep(0), replaced=lambda cam: feed.dropped.get(cam, 0))
    svc.keepup = KeepUpWatch(window_s=8, behind_below=0.5, ok_at=0.8, min_frames=5)
    seq = list(frames(OUTLET))
    found: list[Finding] = []
    await asyncio.wait_for(svc.load(), 120)
    try:
        k = 0
        for second in range(24):
            per_take = 8 if second < 10 else 1  # overloaded for 10 s, then keeping up
            for _ in range(per_take):
                _, img = seq[k % len(seq)]
                feed.put(Frame("ol-svc-store", T0 + timedelta(seconds=k * 0.2), k, img))
                k += 1
            await asyncio.wait_for(svc.step(feed.take_all()), 30)
            found += svc.check_keepup(float(second))
    finally:
        svc.close()
    assert [(f.rule, f.source, f.active) for f in found] == [
        ("detector_behind", "ol-svc-store", True), ("detector_behind", "ol-svc-store", False)]
    raised = found[0]
    assert raised.site == "ol-svc" and raised.details["share"] < 0.5 and raised.details["rules"] == ["storage"]
    assert "not watched" in raised.summary and found[1].details["share"] >= 0.8
    assert svc.keepup.behind == set()  # the station camera, handed no frame, never said anything
