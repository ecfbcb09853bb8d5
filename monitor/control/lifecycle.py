"""The command lifecycle of a gun's lock, as pure functions of (state, message, time).

``requested`` (stored, not yet acknowledged by the broker) → ``sent`` (PUBACK) →
``confirmed`` (the device reported the desired version) or ``unconfirmed`` (no
confirmation within the timeout: an alert, and re-sending continues until it comes).

A report is judged against what the centre actually sent: a version it never published,
or a known version with the other lock state, is *forged* and confirms nothing. A forged
version above the desired one is answered by re-asserting the desired state above it, so
a device that believed the forgery is brought back. A device that falls back from a
confirmed state (reset, replaced) re-opens the lifecycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from monitor.control.model import Command, Desired, GunState, Reported

Verdict = Literal["confirms", "repeat", "behind", "factory", "forged"]


@dataclass(frozen=True)
class ReportOutcome:
    verdict: Verdict
    store_reported: bool = False  # record it as the gun's reported state
    command: Command | None = None  # the new command state; None: unchanged
    rearm: bool = False  # requested_at := now (the lifecycle starts again)
    republish: bool = False  # publish the desired state again at once
    reassert_above: int | None = None  # bump the desired version above this one
    cleared: bool = False  # a lock that was unconfirmed is now confirmed
    event: str | None = None  # what to record in gun_events


def judge_report(state: GunState, rep: Reported, sent_locked: bool | None) -> Verdict:
    """``sent_locked``: the lock state the centre published as ``rep.version``; None if never."""
    if rep.version == 0:
        return "factory"
    if rep.version == state.version:
        sent_locked = state.locked
    if sent_locked is None or sent_locked != rep.locked or rep.version > state.version:
        return "forged"
    if rep.version < state.version:
        return "behind"
    if state.command == "confirmed" and state.reported is not None and state.in_effect:
        return "repeat"
    return "confirms"


def on_report(state: GunState, rep: Reported, sent_locked: bool | None) -> ReportOutcome:
    verdict = judge_report(state, rep, sent_locked)
    if verdict == "forged":
        return ReportOutcome(
            verdict, republish=True, event="forged_report",
            reassert_above=rep.version if rep.version >= state.version else None,
        )
    if verdict == "repeat":
        return ReportOutcome(verdict)
    if verdict == "confirms":
        return ReportOutcome(
            verdict, store_reported=True, command="confirmed", cleared=state.command == "unconfirmed",
            event="confirmed_late" if state.command == "unconfirmed" else None,
        )
    # behind or factory: the device holds an older state than desired
    if state.commanded and state.command == "confirmed":
        return ReportOutcome(verdict, store_reported=True, command="requested", rearm=True, republish=True,
                             event="regressed")
    return ReportOutcome(verdict, store_reported=True)


@dataclass(frozen=True)
class Due:
    timeout: bool = False  # the confirmation is overdue: mark unconfirmed and raise an alert
    resend: bool = False  # publish the desired state again


def due(state: GunState, now: datetime, *, confirm_timeout_s: float, resend_every_s: float) -> Due:
    if not state.commanded or state.command in (None, "confirmed"):
        return Due()
    timeout = (
        state.command in ("requested", "sent")
        and state.requested_at is not None
        and (now - state.requested_at).total_seconds() >= confirm_timeout_s
    )
    resend = state.last_sent_at is None or (now - state.last_sent_at).total_seconds() >= resend_every_s
    return Due(timeout, resend)


def needs_publish(state: GunState) -> bool:
    """Reconciliation: desired and reported differ."""
    return state.commanded and not state.in_effect


DesiredVerdict = Literal["ours", "stale", "foreign"]


def judge_desired(state: GunState, d: Desired) -> DesiredVerdict:
    """A message seen on a gun's ``desired`` topic: ours, an older one, or one the centre
    never published (a higher version, or our version with another lock state)."""
    if d.version == state.version and d.locked == state.locked:
        return "ours"
    if d.version > state.version or d.version == state.version:
        return "foreign"
    return "stale"
