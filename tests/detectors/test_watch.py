"""KeepUpWatch: a camera whose frames the detector mostly never takes is 'behind' (pure)."""

from __future__ import annotations

import pytest

from monitor.detectors.watch import KeepUpWatch


def test_a_starved_camera_is_behind_once_and_recovers_once() -> None:
    w = KeepUpWatch(window_s=30, behind_below=0.5, ok_at=0.8, min_frames=10)
    changes = []
    analysed = offered = 0
    for t in range(0, 121):  # one sample a second
        if t < 60:  # overloaded: 1 frame in 20 analysed (5 handed over a second)
            analysed += 1 if t % 4 == 0 else 0
            offered += 5
        else:  # capacity back: every frame analysed
            analysed += 5
            offered += 5
        if (c := w.update("cam", float(t), analysed, offered)) is not None:
            changes.append((t, c.behind, c.share))
    assert [b for _, b, _ in changes] == [True, False]
    t_behind, _, share = changes[0]
    assert 15 <= t_behind <= 16 and share < 0.1  # after half a window of history
    assert 60 < changes[1][0] <= 90 and changes[1][2] >= 0.8
    assert w.behind == set()


def test_a_still_scene_that_hands_over_few_frames_is_not_behind() -> None:
    w = KeepUpWatch(window_s=30, min_frames=10)
    # the motion gate hands over one frame every 2 s, and the detector takes each one
    assert all(w.update("cam", float(t), t // 2, t // 2) is None for t in range(0, 300))
    # and a few frames replaced in a quiet window say nothing either
    assert w.update("cam", 330.0, 150, 158) is None


def test_a_camera_that_keeps_up_with_some_replacements_is_not_behind() -> None:
    w = KeepUpWatch()
    # batching across cameras: 1 frame in 4 replaced before the detector took it
    assert all(w.update("cam", float(t), 4 * t * 3 // 4, 4 * t) is None for t in range(0, 200))


def test_forget_and_validation() -> None:
    w = KeepUpWatch(window_s=10, min_frames=1)
    for t in range(0, 11):
        w.update("cam", float(t), 0, t * 5)
    assert w.behind == {"cam"}
    w.forget("cam")
    assert w.behind == set() and w.update("cam", 20.0, 0, 100) is None  # history starts afresh
    with pytest.raises(ValueError, match="behind_below"):
        KeepUpWatch(behind_below=0.9, ok_at=0.5)
