"""The pure core of the alert engine: dedup, holds, latching, escalation, silences, transitions.

Time is a plain ``datetime`` handed in; nothing sleeps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor.alerts.book import AlertBook
from monitor.alerts.model import Alert, TransitionRefused, check_transition
from monitor.alerts.policy import Maintenance, Policy, Silence, Suppressions
from monitor.config import AlertsConfig
from monitor.errors import Forbidden
from monitor.findings import Finding

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def finding(rule: str = "antistatic_skipped", *, subject: str = "track-1", t: float = 0.0, active: bool = True,
            site: str = "st-a", source: str = "cam-1", severity: str | None = None) -> Finding:
    return Finding(rule=rule, site=site, source=source, subject=subject, ts=at(t), summary=f"{rule} {subject}",
                   active=active, severity=severity,  # type: ignore[arg-type]
                   reason="scrapped" if rule == "invalid_cylinder" else None)


def book(**alerts: object) -> AlertBook:
    return AlertBook(Policy.from_config(AlertsConfig.model_validate(alerts)))


def stored(b: AlertBook, a: Alert, aid: int) -> None:
    """What the engine does after a commit: the alert has its id."""
    a.id = aid
    a.stored_state = a.state
    a.pending = 0
    b.bind(a)


def test_repeated_findings_update_one_alert_per_key() -> None:
    b = book()
    o1 = b.observe(finding(t=0), at(0))
    assert o1.change is not None and o1.change.kind == "raised" and o1.alert is not None
    stored(b, o1.alert, 1)
    kinds = [b.observe(finding(t=i), at(i)).change.kind for i in range(1, 6)]  # type: ignore[union-attr]
    assert kinds == ["updated"] * 5
    assert o1.alert.count == 6 and o1.alert.pending == 5
    assert o1.alert.first_seen == at(0) and o1.alert.last_seen == at(5)
    other = b.observe(finding(subject="track-2", t=6), at(6))
    assert other.change is not None and other.change.kind == "raised" and other.alert is not o1.alert
    assert len(b.live) == 2


def test_severity_only_rises_and_late_findings_keep_the_latest_summary() -> None:
    b = book()
    a = b.observe(finding("device_silent", t=10), at(10)).alert
    assert a is not None and a.severity == "warning"
    b.observe(finding("device_silent", t=5, severity="critical"), at(11))
    assert a.severity == "critical" and a.first_seen == at(5) and a.last_seen == at(10)
    b.observe(finding("device_silent", t=12, severity="info"), at(12))
    assert a.severity == "critical" and a.last_seen == at(12)


@pytest.mark.parametrize(
    ("events", "raised_at"),
    [
        # (seconds, active?) findings, then ticks (None); hold 10 s
        ([(0, True), (5, True), ("tick", 9)], None),
        ([(0, True), (5, True), ("tick", 10)], 10),
        ([(0, True), (10, True)], 10),  # a finding at the hold's end raises it at once
        ([(0, True), (4, False), ("tick", 30)], None),  # cleared inside the hold: never raised
        ([(0, True), (4, False), (6, True), ("tick", 15)], None),  # the hold starts again at 6
        ([(0, True), (4, False), (6, True), ("tick", 16)], 16),
    ],
)
def test_raise_hold(events: list[tuple[object, object]], raised_at: float | None) -> None:
    b = book(raise_hold_s=10)
    got: float | None = None
    for ev, val in events:
        if ev == "tick":
            assert isinstance(val, (int, float))
            if any(c.kind == "raised" for c in b.tick(at(val))):
                got = val
        else:
            assert isinstance(ev, (int, float)) and isinstance(val, bool)
            o = b.observe(finding("storage_over_capacity", subject="storage", t=ev, active=val), at(ev))
            if o.change is not None and o.change.kind == "raised":
                got = ev
    assert got == raised_at
    if raised_at is not None:
        a = next(iter(b.live.values()))
        assert a.state == "open" and a.opened_at == at(raised_at)


def test_raise_hold_counts_every_held_finding_and_keeps_the_first_time() -> None:
    b = book(raise_hold_s=10)
    for s in (0, 3, 6):
        b.observe(finding("camera_offline", subject="cam", t=s), at(s))
    (c,) = b.tick(at(10))
    assert c.kind == "raised" and c.alert.count == 3 and c.alert.first_seen == at(0)
    assert c.held_since == at(0) and c.finding is not None


@pytest.mark.parametrize(
    ("rule", "clear_at", "tick_at", "state"),
    [
        ("storage_over_capacity", 100, 129, "open"),  # clear hold 30 s not yet over
        ("storage_over_capacity", 100, 130, "resolved"),  # a condition resolves by itself
        ("camera_offline", 100, 130, "resolved"),
        ("device_silent", 100, 130, "resolved"),
        ("stock_mismatch", 100, 130, "resolved"),
        ("antistatic_skipped", 100, 10_000, "open"),  # safety violations are latched
        ("fill_without_scan", 100, 10_000, "open"),
        ("overfill", 100, 10_000, "open"),
        ("invalid_cylinder", 100, 10_000, "open"),
    ],
)
def test_clear_hold_and_latching(rule: str, clear_at: float, tick_at: float, state: str) -> None:
    b = book(clear_hold_s=30, ack_timeout_s={"info": 1e6, "warning": 1e6, "critical": 1e6})
    o = b.observe(finding(rule, t=0), at(0))
    assert o.alert is not None
    stored(b, o.alert, 1)
    c = b.observe(finding(rule, t=clear_at, active=False), at(clear_at)).change
    assert c is not None and c.kind == "cleared"
    b.tick(at(tick_at))
    assert o.alert.state == state
    assert o.alert.condition_active is False


def test_a_latched_alert_stays_acknowledged_after_its_condition_clears() -> None:
    b = book(clear_hold_s=0)
    a = b.observe(finding("antistatic_during_fill", t=0), at(0)).alert
    assert a is not None and a.latched
    stored(b, a, 7)
    a.state, a.acked_at = "acknowledged", at(5)
    assert b.observe(finding("antistatic_during_fill", t=10, active=False), at(10)).change.kind == "cleared"  # type: ignore[union-attr]
    b.tick(at(100_000))
    assert a.state == "acknowledged" and a.id in b.by_id


def test_an_active_finding_inside_the_clear_hold_keeps_the_condition_open() -> None:
    b = book(clear_hold_s=30)
    a = b.observe(finding("camera_offline", subject="cam", t=0), at(0)).alert
    assert a is not None
    stored(b, a, 1)
    b.observe(finding("camera_offline", subject="cam", t=10, active=False), at(10))
    b.observe(finding("camera_offline", subject="cam", t=20), at(20))  # flapped back
    b.tick(at(45))
    assert a.state == "open" and a.condition_active and a.cleared_at is None


def test_a_resolved_condition_that_comes_back_reopens_its_alert() -> None:
    b = book(clear_hold_s=0)
    a = b.observe(finding("device_silent", subject="s1", t=0), at(0)).alert
    assert a is not None
    stored(b, a, 3)
    a.state, a.acked_at, a.acked_by, a.escalation = "acknowledged", at(1), "op", 2
    assert b.observe(finding("device_silent", subject="s1", t=5, active=False), at(5)).change.kind == "resolved"  # type: ignore[union-attr]
    c = b.observe(finding("device_silent", subject="s1", t=50), at(50)).change
    assert c is not None and c.kind == "reopened" and c.alert is a
    assert a.state == "open" and a.opened_at == at(50) and a.escalation == 0 and a.acked_by is None
    assert a.count == 2


@pytest.mark.parametrize(
    ("severity", "ticks", "levels"),
    [
        ("critical", [119, 120, 200, 240, 360, 480, 600], [None, 1, None, 2, 3, None, None]),
        ("warning", [599, 600, 1199, 1200], [None, 1, None, 2]),
        ("info", [3599, 3600], [None, 1]),
    ],
)
def test_escalation_by_severity(severity: str, ticks: list[float], levels: list[int | None]) -> None:
    b = book()  # defaults: critical 120 s, warning 600 s, info 3600 s; at most level 3
    a = b.observe(finding("device_silent", severity=severity), at(0)).alert
    assert a is not None
    stored(b, a, 1)
    got = []
    for s in ticks:
        cs = [c for c in b.tick(at(s)) if c.kind == "escalated"]
        got.append(cs[0].level if cs else None)
    assert got == levels


def test_acknowledging_stops_escalation_and_reminds_later() -> None:
    b = book(remind_after_s=600)
    a = b.observe(finding("overfill", subject="CYL001"), at(0)).alert
    assert a is not None
    stored(b, a, 1)
    a.state, a.acked_at = "acknowledged", at(60)
    assert b.tick(at(500)) == []
    (c,) = b.tick(at(660))
    assert c.kind == "reminded" and a.reminded_at == at(660)
    assert b.tick(at(1000)) == []
    assert [c.kind for c in b.tick(at(1260))] == ["reminded"]


@pytest.mark.parametrize("kind", ["silence_rule", "silence_site", "maintenance"])
def test_suppressed_alerts_record_but_do_not_notify_or_escalate(kind: str) -> None:
    sup = Suppressions()
    if kind == "silence_rule":
        sup.replace([Silence(1, "st-a", "overfill", at(-10), at(300))], [])
    elif kind == "silence_site":
        sup.replace([Silence(1, "st-a", None, at(-10), at(300))], [])
    else:
        sup.replace([], [Maintenance(1, "st-a", at(-10), at(300))])
    b = AlertBook(Policy(), sup)
    o = b.observe(finding("overfill", subject="CYL9"), at(0))
    assert o.change is not None and o.change.kind == "raised" and o.change.notify is False
    assert o.alert is not None and o.alert.silenced
    stored(b, o.alert, 1)
    assert b.tick(at(200)) == []  # critical, 2 min: would escalate, but silenced
    (c,) = b.tick(at(301))  # the silence expired
    assert c.kind == "escalated" and c.notify and not o.alert.silenced
    # another site or (for a rule silence) another rule is not covered
    other = b.observe(finding("overfill", subject="CYL9", site="st-b"), at(1)).change
    assert other is not None and other.notify is True


def test_escalation_waits_for_an_id_and_can_be_left_to_another_process() -> None:
    b = book()
    a = b.observe(finding("overfill", subject="C1"), at(0)).alert
    assert a is not None
    assert b.tick(at(1000)) == []  # not stored yet
    stored(b, a, 1)
    assert b.tick(at(1000), escalate=False) == []
    assert [c.kind for c in b.tick(at(1000))] == ["escalated"]


@pytest.mark.parametrize(
    ("action", "state", "role", "outcome"),
    [
        ("ack", "open", "operator", "acknowledged"),
        ("ack", "open", "supervisor", "acknowledged"),
        ("ack", "open", "admin", "acknowledged"),
        ("ack", "open", "viewer", Forbidden),
        ("ack", "acknowledged", "operator", TransitionRefused),
        ("ack", "resolved", "operator", TransitionRefused),
        ("ack", "closed", "supervisor", TransitionRefused),
        ("close", "open", "supervisor", "closed"),
        ("close", "acknowledged", "supervisor", "closed"),
        ("close", "resolved", "supervisor", "closed"),
        ("close", "acknowledged", "admin", "closed"),
        ("close", "acknowledged", "operator", Forbidden),
        ("close", "open", "viewer", Forbidden),
        ("close", "closed", "supervisor", TransitionRefused),
        ("close", "closed", "operator", Forbidden),  # the role is checked before the state
    ],
)
def test_transitions_by_role(action: str, state: str, role: str, outcome: object) -> None:
    if isinstance(outcome, str):
        assert check_transition(action, state, role, alert_id=5) == outcome  # type: ignore[arg-type]
    else:
        assert isinstance(outcome, type)
        with pytest.raises(outcome) as ei:
            check_transition(action, state, role, alert_id=5)  # type: ignore[arg-type]
        if outcome is TransitionRefused:
            assert ei.value.state == state and "alert 5" in str(ei.value)  # type: ignore[attr-defined]


def test_policy_per_rule_overrides() -> None:
    p = Policy.from_config(AlertsConfig.model_validate({
        "clear_hold_s": 30, "rules": {"storage_over_capacity": {"raise_hold_s": 60, "clear_hold_s": 5},
                                      "interlock_refused": {"latched": False, "ack_timeout_s": 10}}}))
    assert p.raise_hold("storage_over_capacity") == timedelta(seconds=60)
    assert p.clear_hold("storage_over_capacity") == timedelta(seconds=5)
    assert p.clear_hold("camera_offline") == timedelta(seconds=30)
    assert p.latched("interlock_refused") is False and p.latched("overfill") is True
    assert p.latched("camera_offline") is False
    assert p.ack_timeout_for("interlock_refused", "critical") == timedelta(seconds=10)
    assert p.ack_timeout_for("overfill", "critical") == timedelta(seconds=120)


@pytest.mark.parametrize(
    ("bad", "where"),
    [
        ({"rules": {"no_such_rule": {}}}, "no_such_rule"),
        ({"ack_timeout_s": {"critical": 0}}, "critical"),
        ({"rules": {"overfill": {"raise_hold_s": -1}}}, "raise_hold_s"),
        ({"clear_hold": 3}, "clear_hold"),
    ],
)
def test_alerts_config_refuses_bad_values(bad: dict[str, object], where: str) -> None:
    import yaml

    from monitor.config import config_errors

    cfg, errs = config_errors(yaml.safe_dump({"alerts": bad}))
    assert cfg is None and errs and where in str(errs[0]) and errs[0].line is not None
