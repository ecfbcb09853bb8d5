"""The anti-static rule on made-up detections: one finding per person who skips the post."""

from __future__ import annotations

import pytest

from monitor.detectors.antistatic import AntistaticParams, AntistaticRule
from monitor.detectors.zones import zones_from_config
from tests.detectors.walks import AT_POST, ENTRY, IN_FILL, MIDWAY, T0, ZONES, Walker, frames, path


def run(walkers: list[Walker], **params: float) -> tuple[AntistaticRule, list]:
    rule = AntistaticRule("st-a", "cam", zones_from_config(ZONES), AntistaticParams(**params))
    out = []
    for d in frames(walkers):
        out += rule.update(d)
    return rule, out


COMPLIANT = path((0, ENTRY), (1, AT_POST), (5, AT_POST), (7, MIDWAY), (9, IN_FILL), (15, IN_FILL))
SKIPPER = path((0, ENTRY), (1, AT_POST), (1.5, MIDWAY), (3, IN_FILL), (9, IN_FILL))
SHORT_DWELL = path((0, ENTRY), (1, AT_POST), (2.5, AT_POST), (3.5, MIDWAY), (6, IN_FILL), (10, IN_FILL))  # ~2.4 s
STRAIGHT_IN = path((0, MIDWAY), (2, IN_FILL), (6, IN_FILL))
# Enters, discharges, fills, leaves the filling area, and comes back without discharging.
COMES_BACK = path((0, ENTRY), (1, AT_POST), (5, AT_POST), (7, IN_FILL), (12, IN_FILL), (14, MIDWAY),
                  (17, MIDWAY), (19, IN_FILL), (24, IN_FILL))
# Same, but discharges again before coming back.
COMES_BACK_OK = path((0, ENTRY), (1, AT_POST), (5, AT_POST), (7, IN_FILL), (12, IN_FILL), (14, AT_POST),
                     (18, AT_POST), (20, IN_FILL), (24, IN_FILL))


@pytest.mark.parametrize(
    ("walkers", "violators"),
    [
        pytest.param([Walker(COMPLIANT)], [], id="discharges-3s-plus"),
        pytest.param([Walker(SKIPPER)], [1], id="skips-post"),
        pytest.param([Walker(SHORT_DWELL)], [1], id="dwells-only-2.4s"),
        pytest.param([Walker(STRAIGHT_IN)], [1], id="never-near-post"),
        pytest.param([Walker(COMES_BACK)], [1], id="comes-back-without-discharging"),
        pytest.param([Walker(COMES_BACK_OK)], [], id="comes-back-after-discharging"),
        pytest.param([Walker(COMPLIANT, ids=((0, 1),)), Walker(SKIPPER, ids=((0, 2),))], [2], id="two-people-together"),
    ],
)
def test_violations(walkers: list[Walker], violators: list[int]) -> None:
    _, out = run(walkers)
    assert sorted(f.details["raw_tracks"][0] for f in out) == violators
    assert all(f.rule == "antistatic_skipped" and f.source == "cam" and f.site == "st-a" for f in out)


def test_comes_back_is_a_second_visit() -> None:
    _, out = run([Walker(COMES_BACK)])
    assert len(out) == 1
    assert out[0].details["visit"] == 2
    assert out[0].details["zone_s"]["discharge_post"] >= 3.0


def test_finding_carries_evidence() -> None:
    _, out = run([Walker(SKIPPER)])
    (f,) = out
    d = f.details
    assert f.subject == f"track-{d['track']}"
    assert d["dwell_s"] < 3.0 and d["required_s"] == 3.0
    assert set(d["zone_s"]) == {"discharge_post", "filling_area"}
    assert len(d["box"]) == 4 and d["boxes"]
    # ts is the first frame inside the filling area (feet cross x=0.55 at about t=2.3s).
    assert 2.0 <= (f.ts - frames([Walker(SKIPPER)]).__next__().ts).total_seconds() <= 2.6
    assert d["snapshot_at"] >= d["entered_at"]


@pytest.mark.parametrize(
    ("walker", "expected"),
    [
        # Raw id switches while walking from the post to the filling area: history inherited.
        pytest.param(Walker(COMPLIANT, ids=((0, 1), (6.0, 7))), 0, id="compliant-id-switch"),
        pytest.param(Walker(SKIPPER, ids=((0, 1), (2.0, 7))), 1, id="skipper-id-switch"),
        # Hidden for 1.2 s between post and filling area, comes back under a new id.
        pytest.param(Walker(COMPLIANT, ids=((0, 1), (6.4, 9)), hidden=((5.6, 6.8),)), 0, id="compliant-occluded"),
        # A partly hidden person alternating between two ids every frame in the filling area.
        pytest.param(Walker(SKIPPER, ids=tuple((3 + k * 0.2, 1 if k % 2 else 2) for k in range(30))), 1,
                     id="skipper-flickering-ids"),
        pytest.param(Walker(COMPLIANT, ids=tuple((9 + k * 0.2, 1 if k % 2 else 2) for k in range(30))), 0,
                     id="compliant-flickering-ids"),
        # A short box inside the person, with an id of its own, while in the filling area.
        pytest.param(Walker(COMPLIANT, extra_boxes=((10.0, 12.0, 5),)), 0, id="compliant-fragment-box"),
        pytest.param(Walker(SKIPPER, extra_boxes=((4.0, 6.0, 5),)), 1, id="skipper-fragment-box"),
    ],
)
def test_robust_to_raw_track_ids(walker: Walker, expected: int) -> None:
    """Raw ultralytics ids split and flicker: one finding per raw id would over-count."""
    _, out = run([walker])
    assert len(out) == expected


def test_people_parting_at_the_post_keep_their_discharge() -> None:
    """Regression: B came to the post hidden behind A; when A walked on, the tracker kept A's
    id on the spot (now B) and gave A a new one, so A looked like someone who never discharged.
    A track born inside the picture out of a person's box shares that person's history."""
    a = Walker(path((0, ENTRY), (1, AT_POST), (6, AT_POST), (8, MIDWAY), (10, IN_FILL), (14, IN_FILL)),
               ids=((0, 1), (6, 5)))
    b = Walker(path((4, AT_POST), (9, AT_POST), (11, MIDWAY), (13, IN_FILL), (16, IN_FILL)),
               ids=((0, 1),), hidden=((4, 6),))
    rule, out = run([a, b])
    assert out == []
    assert rule.stitcher.splits == 1


def test_hidden_for_longer_than_the_gap_inside_the_picture() -> None:
    """Someone hidden behind a pillar for 3 s on the way to the filling area is still the
    person who discharged (a person who vanished inside the picture is kept longer)."""
    w = Walker(COMPLIANT, ids=((0, 1), (7.6, 4)), hidden=((5.6, 7.6),))
    rule, out = run([w])
    assert out == []
    assert rule.stitcher.reidentified == 1


def test_one_finding_per_raw_id_would_over_count() -> None:
    """The regression the stitcher exists for: the flickering skipper has 2 raw ids and 1 finding."""
    walker = Walker(SKIPPER, ids=tuple((1 + k * 0.2, 1 if k % 2 else 2) for k in range(40)))
    raw_ids_in_fill = set()
    for d in frames([walker]):
        raw_ids_in_fill |= set(d.track_ids.tolist())
    _, out = run([walker])
    assert len(raw_ids_in_fill) >= 2
    assert len(out) == 1
    assert set(out[0].details["raw_tracks"]) >= {1, 2}


def test_reid_only_nearby_and_recent() -> None:
    """A new id far from where someone vanished is a new person (and is judged by itself)."""
    first = Walker(path((0, ENTRY), (1, AT_POST), (5, AT_POST)), ids=((0, 1),))
    other = Walker(path((5.4, (0.50, 0.95)), (8, IN_FILL), (12, IN_FILL)), ids=((0, 2),))
    _, out = run([first, other])
    assert len(out) == 1 and out[0].details["raw_tracks"] == [2]


def test_person_inside_when_watching_begins_is_not_judged() -> None:
    _, out = run([Walker(path((0, IN_FILL), (10, IN_FILL)))])
    assert out == []


def test_dwell_is_time_not_frames() -> None:
    """The same walk at 2 fps and at 10 fps: same decision."""
    for fps in (2.0, 10.0):
        for wp, n in ((COMPLIANT, 0), (SHORT_DWELL, 1)):
            rule = AntistaticRule("st-a", "cam", zones_from_config(ZONES), AntistaticParams())
            out = [f for d in frames([Walker(wp)], fps=fps) for f in rule.update(d)]
            assert len(out) == n, (fps, n)


def test_state_is_pruned_when_people_leave() -> None:
    walkers = [Walker(path((k * 3.0, ENTRY), (k * 3.0 + 1, AT_POST), (k * 3.0 + 2, ENTRY)), ids=((0, 100 + k),))
               for k in range(40)]
    rule, _ = run(walkers)
    assert len(rule.states) <= 2
    assert len(rule.stitcher.persons) <= 2
    assert len(rule.stitcher._by_raw) <= 4


@pytest.mark.parametrize("dwell_s", [1.0, 5.0])
def test_dwell_is_configurable(dwell_s: float) -> None:
    _, out = run([Walker(SHORT_DWELL)], dwell_s=dwell_s)
    assert len(out) == (0 if dwell_s == 1.0 else 1)


@pytest.mark.parametrize(
    ("walker", "violators"),
    [
        pytest.param(Walker(COMPLIANT), [], id="at-post-on-both-sides-of-the-gap"),
        pytest.param(Walker(SHORT_DWELL), [1], id="left-the-post-during-the-gap"),
        pytest.param(Walker(SKIPPER), [1], id="never-at-post"),
    ],
)
def test_frames_dropped_at_the_post_are_not_held_against_a_person(walker: Walker, violators: list[int]) -> None:
    """Frames the detector never got (2.0-4.6 s: dropped under load) while someone stands at the
    post: seen there on both sides, they stayed; someone seen elsewhere after the gap did not."""
    rule = AntistaticRule("st-a", "cam", zones_from_config(ZONES), AntistaticParams())
    out = []
    for d in frames([walker]):
        if 1.0 < (d.ts - T0).total_seconds() < 4.6:
            continue
        out += rule.update(d)
    assert sorted(f.details["raw_tracks"][0] for f in out) == violators


def test_someone_already_in_view_when_watching_starts_is_not_judged() -> None:
    """A camera that just (re)connected, or was just taken over, cannot know whether someone
    already in view discharged: their first visit is not judged; a newcomer's is."""
    rule = AntistaticRule("st-a", "cam", zones_from_config(ZONES), AntistaticParams())
    late = path((6, ENTRY), (7, MIDWAY), (9, IN_FILL), (14, IN_FILL))
    walkers = [Walker(STRAIGHT_IN, ids=((0, 1),)), Walker(late, ids=((0, 2),))]
    out = []
    for d in list(frames(walkers))[1:]:  # no empty doorway: the first is in view on the first frame
        out += rule.update(d)
    assert [f.details["raw_tracks"] for f in out] == [[2]]


def test_leaving_the_post_unseen_counts_half_the_gap() -> None:
    """At the post from 0.6 s until about 3 s (too short), hidden 2.2-4.6 s, seen next on the
    way to the filling area: when they left is unknown, so half the unseen time counts (1.6
    + 1.2 s), not all of it (1.6 + 2.4 s, which would pass them)."""
    walker = Walker(path((0, ENTRY), (1, AT_POST), (2.8, AT_POST), (4.6, MIDWAY), (6, IN_FILL), (10, IN_FILL)),
                    hidden=((2.2, 4.6),))
    _, out = run([walker], max_step_s=2.5)
    assert len(out) == 1
    assert 2.6 <= out[0].details["dwell_s"] <= 3.0


def test_someone_first_seen_in_the_middle_of_the_filling_area_is_not_judged() -> None:
    """Nobody walks into the middle of a view: a person first seen inside the filling area,
    away from the picture's edges, is someone the tracker lost (or a duplicate box), whose
    discharge is unknown. Someone who walks in at the picture's edge straight into the filling
    area is judged."""
    watcher = Walker(path((0, ENTRY), (1, AT_POST), (20, AT_POST)), ids=((0, 1),))
    lost = Walker(path((6, IN_FILL), (12, IN_FILL)), ids=((0, 2),))
    at_edge = Walker(path((13, (0.98, 0.9)), (15, (0.80, 0.9)), (20, (0.80, 0.9))), ids=((0, 3),))
    _, out = run([watcher, lost, at_edge])
    assert [f.details["raw_tracks"] for f in out] == [[3]]


def test_a_wrong_reidentification_is_undone_when_the_person_comes_back() -> None:
    """A discharges at the post and is hidden there (4-5.6 s); B, who skips the post, is first
    seen where A vanished and is taken for A (re-identified). When A's own id comes back at
    the post while B is walking on, B is someone else: a person of its own from then on, who
    did not discharge."""
    a = Walker(path((0, ENTRY), (1, AT_POST), (12, AT_POST)), ids=((0, 1),), hidden=((4.0, 5.6),))
    b = Walker(path((3.0, ENTRY), (4.2, (0.18, 0.62)), (5.0, MIDWAY), (7.0, IN_FILL), (12, IN_FILL)),
               ids=((0, 2),), hidden=((3.0, 4.2),))
    rule, out = run([a, b])
    assert rule.stitcher.reidentified == 1 and rule.stitcher.detached == 1
    assert len(out) == 1 and out[0].details["raw_tracks"] == [2]


def test_a_box_born_beside_someone_in_the_filling_area_is_not_a_second_entry() -> None:
    """A skipper is judged on entering the filling area; there, a second box (another id) is
    born beside them (a duplicate, or someone who came in hidden behind them). It continues
    their visit, already judged: one finding, not two."""
    skipper = Walker(SKIPPER, ids=((0, 1),))
    beside = Walker(path((5, (0.77, 0.6)), (9, (0.77, 0.6))), ids=((0, 2),))
    rule, out = run([skipper, beside])
    assert rule.stitcher.splits == 1
    assert len(out) == 1 and out[0].details["raw_tracks"] == [1]
