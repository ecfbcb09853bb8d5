"""A camera taken over by another video worker: the detectors report only under a lease,
start the camera afresh, and continue what its previous holder left live.

The lease answers come from a small stand-in for the video part's ``lease_generation``
(the leases themselves run on PostgreSQL in tests/test_leases.py, tests/video/test_leases.py
and the kill test, tests/test_scaleout.py); the model, pipelines and rules are real.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from monitor.detectors.antistatic import AntistaticParams, AntistaticRule
from monitor.detectors.service import DetectorService, Takeover
from monitor.detectors.zones import zones_from_config
from monitor.findings import Finding
from monitor.video.frame import Frame
from tests.detectors.clips import OUTLET, STATION, frames
from tests.detectors.test_service import T0, NoFrames, config, needs_model
from tests.detectors.walks import ENTRY, IN_FILL, MIDWAY, ZONES, Walker, path
from tests.detectors.walks import frames as walk_frames

ENTRY_CAM, STORE_CAM = "st-svc-entry", "ol-svc-store"


def _judged(walkers: list[Walker]) -> list[Finding]:
    rule = AntistaticRule("st-a", "cam", zones_from_config(ZONES), AntistaticParams())
    out: list[Finding] = []
    for d in walk_frames(walkers):
        out += rule.update(d)
    return out


def test_someone_found_inside_just_after_watching_began_is_not_judged() -> None:
    """Missed on the first frame (detector, tracker confirmation) but inside all along: a worker
    that just took the camera over must not judge again whom its previous holder judged."""
    passer = Walker(path((0, ENTRY), (8, MIDWAY)), ids=((0, 1),))
    inside = Walker(path((0, IN_FILL), (10, IN_FILL)), ids=((0, 2),), hidden=((0, 0.7),))
    assert _judged([passer, inside]) == []
    # Someone who comes in later than the warm-up is judged as ever (never near the post; in at
    # the picture's edge: someone first seen in the middle of the filling area later is a person
    # the tracker lost, tests/detectors/test_antistatic.py).
    late = Walker(path((4, (0.98, 0.6)), (5, IN_FILL), (10, IN_FILL)), ids=((0, 3),))
    assert [f.details["raw_tracks"] for f in _judged([passer, late])] == [[3]]


class Leases:
    """The answers of the video part's ``lease_generation``; ``lose_on`` makes the lease of a
    camera vanish at that call (a worker that lost it while its frame was being analysed)."""

    lease_worker: str | None = None  # findings unfenced here (the engine's check: tests/alerts/test_fence.py)

    def __init__(self) -> None:
        self.gen: dict[str, int | None] = {}
        self.calls: dict[str, int] = {}
        self.lose_on: dict[str, int] = {}

    def lease_generation(self, camera: str) -> int | None:
        n = self.calls[camera] = self.calls.get(camera, 0) + 1
        if self.lose_on.get(camera) == n:
            self.gen[camera] = None
        return self.gen.get(camera)


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@needs_model
@pytest.mark.slow
async def test_reports_only_under_a_lease_and_continues_the_previous_holder(session_db: str) -> None:
    station = list(frames(STATION))
    outlet = list(frames(OUTLET))
    seen: list[Finding] = []
    asked: list[str] = []

    async def submit(f: Finding) -> None:
        seen.append(f)

    async def resume(camera: str) -> Takeover:
        asked.append(camera)
        # the previous holder raised over capacity and judged person 7
        return Takeover(conditions=frozenset({"storage_over_capacity"}) if camera == STORE_CAM else frozenset(),
                        subjects=frozenset({"storage"} if camera == STORE_CAM else {"track-7", "track-3"}))

    leases = Leases()
    svc = DetectorService(config(session_db), NoFrames(), submit, leases=leases, resume=resume)
    await svc.load()
    try:
        def batch(k: int) -> list[Frame]:
            out = []
            for cam, seq in ((ENTRY_CAM, station), (STORE_CAM, outlet)):
                _, img = seq[k % len(seq)]
                out.append(Frame(cam, T0 + timedelta(seconds=k / OUTLET.fps), k, img))
            return out

        # No lease: nothing analysed, nothing asked.
        assert await svc.step(batch(0)) == []
        assert asked == [] and svc.frames == 0
        # A lease: the first frames wait for what the previous holder left, then it is continued.
        leases.gen = {ENTRY_CAM: 1, STORE_CAM: 1}
        k = 1
        while not await svc.step(batch(k)):
            await asyncio.sleep(0.01)  # the feed's wait, in the service
            k += 1
            assert k < 20, "the takeover was never read"
        assert sorted(asked) == sorted([ENTRY_CAM, STORE_CAM])
        store, entry = svc.pipes[STORE_CAM], svc.pipes[ENTRY_CAM]
        assert store.storage is not None and store.storage.over  # raised by the previous holder
        # The outlet is over capacity from 8 s to 18 s of its clip, then back within it.
        persons: set[int] = set()
        k = max(k, round(9 * OUTLET.fps))
        while k < round(29 * OUTLET.fps):
            for cam, r in await svc.step(batch(k)):
                if cam == ENTRY_CAM:
                    persons |= {int(t) for t in r.dets.track_ids if t >= 0}
            k += 1
        storage = [f for f in seen if f.rule == "storage_over_capacity"]
        assert [f.active for f in storage] == [False], storage  # only the clearing is news
        # People are numbered after the previous holder's person 7, so no new alert merges into its.
        assert persons and min(persons) > 7, persons
        anti = [f for f in seen if f.rule == "antistatic_skipped"]
        assert anti and all(int(f.subject.removeprefix("track-")) > 7 for f in anti), anti

        # The lease lost (another worker holds the camera now): its frames are not analysed.
        leases.gen[ENTRY_CAM] = None
        done = svc.frames
        res = await svc.step(batch(k))
        assert [c for c, _ in res] == [STORE_CAM] and svc.frames == done + 1
        # Claimed again (a new generation): the camera starts afresh under it.
        leases.gen[ENTRY_CAM] = 2
        while ENTRY_CAM not in [c for c, _ in await svc.step(batch(k))]:
            await asyncio.sleep(0.01)
            k += 1
            assert k < 2 * len(outlet)
        assert svc.pipes[ENTRY_CAM] is not entry and asked.count(ENTRY_CAM) == 2

        # Lost while its frame was being analysed: the results are not reported.
        fenced = _sample("monitor_detector_fenced_total", what="frame")
        leases.lose_on[STORE_CAM] = leases.calls[STORE_CAM] + 2  # the check after the model
        before = len(seen)
        res = await svc.step(batch(k + 1))
        assert STORE_CAM not in [c for c, _ in res]
        assert _sample("monitor_detector_fenced_total", what="frame") == fenced + 1
        assert len(seen) == before or all(f.source != STORE_CAM for f in seen[before:])
    finally:
        svc.close()
