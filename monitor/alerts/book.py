"""The alert engine's pure core: findings and the clock in, changes out.

``AlertBook`` keeps the live alerts (not closed) by dedup key and the pending raise holds.
``observe(finding, now)`` files one finding; ``tick(now)`` does what only time does: hold
expiries, clear holds, escalations and reminders. Nothing here awaits or touches I/O; the
async edge (``engine.py``) persists the changes and tells the wall. Hold times are measured
on the engine's clock (``now``), so a producer's late timestamps cannot shorten them;
``first_seen``/``last_seen`` are the findings' own times.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from monitor.alerts.model import Alert, Key, max_severity
from monitor.alerts.policy import Policy, Suppressions
from monitor.findings import Finding

ChangeKind = Literal[
    "raised", "updated", "reopened", "cleared", "resolved", "escalated", "reminded", "acknowledged", "closed",
]
# Changes worth a line in the alert's timeline (``updated`` is only a count going up).
TIMELINE = frozenset({"raised", "reopened", "cleared", "resolved", "escalated", "reminded"})


@dataclass
class Change:
    kind: ChangeKind
    alert: Alert
    at: datetime
    notify: bool = True  # False while a silence or maintenance window covers the alert
    level: int | None = None  # escalated: the new level
    held_since: datetime | None = None  # raised / reopened after a hold: first held finding's time
    finding: Finding | None = None  # raised / reopened: the finding that did it (evidence)


@dataclass
class Hold:
    """A key seen active but not yet long enough to raise (or reopen) its alert."""

    first: Finding
    since: datetime  # engine clock at the first finding
    last: Finding
    count: int = 1


@dataclass
class Observation:
    finding: Finding
    alert: Alert | None  # the alert the finding was filed under (None: held, or nothing live)
    change: Change | None


class AlertBook:
    def __init__(self, policy: Policy, suppressions: Suppressions | None = None) -> None:
        self.policy = policy
        self.suppressions = suppressions or Suppressions()
        self.live: dict[Key, Alert] = {}
        self.by_id: dict[int, Alert] = {}
        self.holds: dict[Key, Hold] = {}

    # -- state ------------------------------------------------------------------------
    def load(self, alerts: Iterable[Alert]) -> None:
        """Take the live alerts as stored (after a restart)."""
        self.live.clear()
        self.by_id.clear()
        for a in alerts:
            if a.state != "closed":
                self.live[a.key] = a
                if a.id is not None:
                    self.by_id[a.id] = a

    def bind(self, a: Alert) -> None:
        """``a`` now has its id (it was stored)."""
        if a.id is not None:
            self.by_id[a.id] = a
        if a.state == "closed":
            self.forget(a)
        else:
            self.live[a.key] = a

    def forget(self, a: Alert) -> None:
        if self.live.get(a.key) is a:
            del self.live[a.key]
        if a.id is not None and self.by_id.get(a.id) is a:
            del self.by_id[a.id]

    def _notify(self, a: Alert, now: datetime) -> bool:
        a.silenced = self.suppressions.suppressed(a.site, a.rule, now)
        return not a.silenced

    # -- findings ---------------------------------------------------------------------
    def observe(self, f: Finding, now: datetime) -> Observation:
        key = f.key
        a = self.live.get(key)
        if not f.active:
            self.holds.pop(key, None)
            if a is None or a.state == "resolved":
                return Observation(f, a, None)
            if not a.condition_active:
                return Observation(f, a, None)  # already clearing
            a.condition_active = False
            a.cleared_at = now
            if not a.latched and self.policy.clear_hold(a.rule).total_seconds() <= 0:
                return Observation(f, a, self._resolve(a, now))
            return Observation(f, a, Change("cleared", a, now, self._notify(a, now)))

        if a is not None and a.state != "resolved":
            self._merge(a, f, 1)
            a.condition_active = True
            a.cleared_at = None
            return Observation(f, a, Change("updated", a, now, self._notify(a, now)))

        # Nothing live (or only a resolved alert): the raise hold applies.
        if self.policy.raise_hold(f.rule).total_seconds() <= 0:
            return Observation(f, *self._open(key, f, f, 1, now, None))
        h = self.holds.get(key)
        if h is None:
            self.holds[key] = Hold(first=f, since=now, last=f)
            return Observation(f, None, None)
        h.count += 1
        h.last = f
        if now - h.since >= self.policy.raise_hold(f.rule):
            del self.holds[key]
            return Observation(f, *self._open(key, h.first, f, h.count, now, h.first.ts))
        return Observation(f, None, None)

    def _merge(self, a: Alert, f: Finding, n: int) -> None:
        a.count += n
        a.pending += n
        if f.ts > a.last_seen:
            a.last_seen = f.ts
            a.summary = f.summary
        if f.ts < a.first_seen:
            a.first_seen = f.ts
        assert f.severity is not None
        a.severity = max_severity(a.severity, f.severity)
        if f.reason:
            a.reason = f.reason

    def _open(
        self, key: Key, first: Finding, last: Finding, n: int, now: datetime, held_since: datetime | None
    ) -> tuple[Alert, Change]:
        a = self.live.get(key)
        if a is not None:  # resolved: the condition is back
            self._merge(a, last, n)
            if first.ts < a.first_seen:
                a.first_seen = first.ts
            a.state = "open"
            a.opened_at = now
            a.condition_active = True
            a.cleared_at = None
            a.escalation = 0
            a.escalated_at = None
            a.acked_at = a.acked_by = a.ack_note = None
            a.reminded_at = a.resolved_at = None
            return a, Change("reopened", a, now, self._notify(a, now), held_since=held_since, finding=last)
        a = Alert.from_finding(last, latched=self.policy.latched(last.rule), now=now, count=n, first_seen=first.ts)
        self.live[key] = a
        return a, Change("raised", a, now, self._notify(a, now), held_since=held_since, finding=last)

    def _resolve(self, a: Alert, now: datetime) -> Change:
        a.state = "resolved"
        a.resolved_at = now
        return Change("resolved", a, now, self._notify(a, now))

    # -- time -------------------------------------------------------------------------
    def tick(self, now: datetime, *, escalate: bool = True) -> list[Change]:
        """What time alone does; ``escalate=False`` leaves escalations and reminders to another
        process (the one elected to send them)."""
        out: list[Change] = []
        for key, h in list(self.holds.items()):
            if now - h.since >= self.policy.raise_hold(key[0]):
                del self.holds[key]
                out.append(self._open(key, h.first, h.last, h.count, now, h.first.ts)[1])
        for a in list(self.live.values()):
            if a.id is None:
                continue  # not stored yet; the next tick sees it
            if (a.state in ("open", "acknowledged") and not a.latched and not a.condition_active
                    and a.cleared_at is not None and now - a.cleared_at >= self.policy.clear_hold(a.rule)):
                out.append(self._resolve(a, now))
                continue
            if not escalate:
                continue
            if a.state == "open" and a.escalation < self.policy.max_escalation:
                due = (a.escalated_at or a.opened_at) + self.policy.ack_timeout_for(a.rule, a.severity)
                if now >= due and not self.suppressions.suppressed(a.site, a.rule, now):
                    a.escalation += 1
                    a.escalated_at = now
                    a.silenced = False
                    out.append(Change("escalated", a, now, True, level=a.escalation))
            elif a.state == "acknowledged" and a.acked_at is not None:
                due = (a.reminded_at or a.acked_at) + self.policy.remind_after
                if now >= due and not self.suppressions.suppressed(a.site, a.rule, now):
                    a.reminded_at = now
                    a.silenced = False
                    out.append(Change("reminded", a, now, True))
        return out
