"""The command lifecycle as pure functions: reports judged against what was sent, timers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor.control.lifecycle import (
    ReportOutcome,
    due,
    judge_desired,
    judge_report,
    needs_publish,
    on_report,
)
from monitor.control.model import Desired, GunState, Reported

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def state(**kw: object) -> GunState:
    base: dict[str, object] = {"site": "st-a", "gun": "g1", "locked": True, "version": 5, "command": "sent",
                               "requested_at": T0, "last_sent_at": T0}
    base.update(kw)
    return GunState(**base)  # type: ignore[arg-type]


def rep(locked: bool, version: int) -> Reported:
    return Reported(locked, version, T0, T0)


@pytest.mark.parametrize(
    ("st", "r", "sent", "verdict"),
    [
        (state(), rep(True, 5), None, "confirms"),
        (state(command="unconfirmed"), rep(True, 5), None, "confirms"),
        (state(command="confirmed", reported=rep(True, 5)), rep(True, 5), None, "repeat"),
        (state(), rep(False, 5), None, "forged"),  # our version, the other state
        (state(), rep(True, 6), None, "forged"),  # a version never sent
        (state(), rep(True, 99), True, "forged"),  # above the desired one: never sent, whatever the log says
        (state(), rep(False, 4), False, "behind"),  # an older state we did send
        (state(), rep(True, 4), False, "forged"),  # an older version, but not with that state
        (state(), rep(False, 3), None, "forged"),  # an older version never sent
        (state(), rep(False, 0), None, "factory"),
        (state(version=0, locked=False, command=None), rep(False, 0), None, "factory"),
    ],
)
def test_judge_report(st: GunState, r: Reported, sent: bool | None, verdict: str) -> None:
    assert judge_report(st, r, sent) == verdict


@pytest.mark.parametrize(
    ("st", "r", "sent", "want"),
    [
        (state(), rep(True, 5), None, ReportOutcome("confirms", store_reported=True, command="confirmed")),
        (state(command="unconfirmed"), rep(True, 5), None,
         ReportOutcome("confirms", store_reported=True, command="confirmed", cleared=True, event="confirmed_late")),
        (state(), rep(True, 9), None, ReportOutcome("forged", republish=True, event="forged_report", reassert_above=9)),
        (state(), rep(False, 5), None,
         ReportOutcome("forged", republish=True, event="forged_report", reassert_above=5)),
        (state(), rep(False, 2), None, ReportOutcome("forged", republish=True, event="forged_report")),
        (state(), rep(False, 4), False, ReportOutcome("behind", store_reported=True)),
        (state(command="confirmed", reported=rep(True, 5)), rep(False, 0), None,
         ReportOutcome("factory", store_reported=True, command="requested", rearm=True, republish=True,
                       event="regressed")),
        (state(command="confirmed", reported=rep(True, 5)), rep(False, 4), False,
         ReportOutcome("behind", store_reported=True, command="requested", rearm=True, republish=True,
                       event="regressed")),
    ],
)
def test_on_report(st: GunState, r: Reported, sent: bool | None, want: ReportOutcome) -> None:
    assert on_report(st, r, sent) == want


S = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("st", "now", "timeout", "resend"),
    [
        (state(command="requested", last_sent_at=None), T0, False, True),
        (state(command="sent"), T0 + 4 * S, False, False),
        (state(command="sent"), T0 + 5 * S, False, True),
        (state(command="sent"), T0 + 10 * S, True, True),
        (state(command="unconfirmed"), T0 + 3600 * S, False, True),  # already raised: only re-send
        (state(command="confirmed"), T0 + 3600 * S, False, False),
        (state(version=0, locked=False, command=None), T0 + 3600 * S, False, False),
    ],
)
def test_due(st: GunState, now: datetime, timeout: bool, resend: bool) -> None:
    d = due(st, now, confirm_timeout_s=10, resend_every_s=5)
    assert (d.timeout, d.resend) == (timeout, resend)


@pytest.mark.parametrize(
    ("st", "want"),
    [
        (state(), True),
        (state(reported=rep(True, 5)), False),
        (state(reported=rep(True, 4)), True),
        (state(version=0, locked=False, command=None), False),
    ],
)
def test_needs_publish(st: GunState, want: bool) -> None:
    assert needs_publish(st) is want


@pytest.mark.parametrize(
    ("d", "want"),
    [
        (Desired(True, 5, "", None), "ours"),
        (Desired(False, 4, "", None), "stale"),
        (Desired(True, 1, "", None), "stale"),
        (Desired(False, 5, "", None), "foreign"),
        (Desired(False, 6, "", None), "foreign"),
    ],
)
def test_judge_desired(d: Desired, want: str) -> None:
    assert judge_desired(state(), d) == want
