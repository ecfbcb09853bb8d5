"""The alert: its states, dispositions, the transitions people may make, and its JSON.

States: ``open`` → ``acknowledged`` (operator, optional note; stops escalation) →
``resolved`` (the condition cleared; condition alerts only) → ``closed`` (supervisor,
disposition and note). Safety violations are *latched*: they never resolve by themselves
and stay open or acknowledged until a supervisor closes them. A resolved alert whose
condition comes back is reopened; a new finding for a closed alert's key opens a new one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from monitor.errors import Conflict, Forbidden
from monitor.findings import SEVERITIES, Finding, Severity

State = Literal["open", "acknowledged", "resolved", "closed"]
STATES: tuple[State, ...] = get_args(State)
LIVE_STATES: tuple[State, ...] = ("open", "acknowledged", "resolved")
Disposition = Literal["confirmed_violation", "false_alarm", "rectified"]
DISPOSITIONS: tuple[Disposition, ...] = get_args(Disposition)
Key = tuple[str, str, str, str]  # rule, site, source, subject

# Conditions resolve by themselves after the clear hold; everything else is a safety
# violation (or an event) and is latched until a supervisor closes it.
CONDITION_RULES = frozenset(
    {"device_silent", "storage_over_capacity", "camera_offline", "stock_mismatch", "lock_unconfirmed",
     "detector_behind"}
)
SEV_RANK: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}

# What people may do: action -> (the least role, the states it starts from, the state it leads to).
Action = Literal["ack", "close"]
TRANSITIONS: dict[Action, tuple[str, frozenset[State], State]] = {
    "ack": ("operator", frozenset({"open"}), "acknowledged"),
    "close": ("supervisor", frozenset({"open", "acknowledged", "resolved"}), "closed"),
}
ROLE_RANK = {"viewer": 0, "operator": 1, "supervisor": 2, "admin": 3}


class TransitionRefused(Conflict):
    """The alert's state does not allow the action (HTTP 409 with the current state)."""

    code = "invalid_transition"

    def __init__(self, alert_id: int, action: str, state: str) -> None:
        allowed = ", ".join(sorted(TRANSITIONS[action][1])) if action in TRANSITIONS else "-"
        super().__init__(f"alert {alert_id} is {state}: {action} needs state {allowed}")
        self.alert_id = alert_id
        self.action = action
        self.state = state


def check_transition(action: Action, state: str, role: str, *, alert_id: int = 0) -> State:
    """The state ``action`` leads to from ``state`` for a person of ``role``; raises when refused.

    The role is checked first: a viewer learns nothing about the state from a refusal.
    """
    need, sources, target = TRANSITIONS[action]
    if ROLE_RANK.get(role, -1) < ROLE_RANK[need]:
        raise Forbidden(f"{action} needs role {need} or higher; you are {role}")
    if state not in sources:
        raise TransitionRefused(alert_id, action, state)
    return target


def max_severity(a: str, b: str) -> Severity:
    return SEVERITIES[max(SEV_RANK.get(a, 0), SEV_RANK.get(b, 0))]


@dataclass
class Alert:
    """One alert as the engine holds it (a mirror of its row)."""

    id: int | None
    rule: str
    site: str
    source: str
    subject: str
    severity: Severity
    summary: str
    latched: bool
    first_seen: datetime
    last_seen: datetime
    opened_at: datetime
    state: State = "open"
    reason: str | None = None
    count: int = 1
    condition_active: bool = True
    cleared_at: datetime | None = None
    escalation: int = 0
    escalated_at: datetime | None = None
    acked_at: datetime | None = None
    acked_by: str | None = None
    ack_note: str | None = None
    reminded_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    closed_by: str | None = None
    disposition: str | None = None
    close_note: str | None = None
    silenced: bool = False
    rev: int = 1
    # engine-only: findings of this alert not yet written (count delta since the last write),
    # and the state the database held at the last write or read (None: not stored yet)
    pending: int = field(default=0, compare=False)
    stored_state: str | None = field(default=None, compare=False)

    @property
    def key(self) -> Key:
        return (self.rule, self.site, self.source, self.subject)

    @classmethod
    def from_finding(cls, f: Finding, *, latched: bool, now: datetime, count: int = 1,
                     first_seen: datetime | None = None) -> Alert:
        assert f.severity is not None
        return cls(
            id=None, rule=f.rule, site=f.site, source=f.source, subject=f.subject, severity=f.severity,
            summary=f.summary, latched=latched, first_seen=first_seen or f.ts, last_seen=f.ts, opened_at=now,
            reason=f.reason, count=count, pending=count,
        )

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> Alert:
        a = cls(**{k: v for k, v in r.items() if k in _STORED})
        a.stored_state = a.state
        return a

    def refresh(self, r: dict[str, Any]) -> None:
        """Take every stored field from the row ``r`` (the database is the authority)."""
        for k, v in r.items():
            if k in _STORED:
                setattr(self, k, v)
        self.stored_state = self.state

    def as_json(self) -> dict[str, Any]:
        return alert_json(self.__dict__)


_STORED = frozenset(Alert.__dataclass_fields__) - {"pending", "stored_state"}

ALERT_FIELDS = (
    "id", "rule", "severity", "state", "site", "source", "subject", "first_seen", "last_seen", "count",
    "summary", "reason", "latched", "escalation", "escalated_at", "opened_at", "condition_active",
    "cleared_at", "acked_at", "acked_by", "ack_note", "reminded_at", "resolved_at", "closed_at",
    "closed_by", "disposition", "close_note", "silenced", "rev",
)


def iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.astimezone(UTC).isoformat()


def alert_json(r: dict[str, Any]) -> dict[str, Any]:
    """The contract's alert object (DESIGN.md) plus the lifecycle fields; times in ISO UTC."""
    out: dict[str, Any] = {}
    for k in ALERT_FIELDS:
        v = r.get(k)
        out[k] = iso(v) if isinstance(v, datetime) else v
    out["incident"] = r.get("id")
    return out
