"""The alert policy per rule (holds, ack timeout, latching) and who is not to be notified.

Pure values built from ``alerts`` configuration; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from monitor.alerts.model import CONDITION_RULES
from monitor.config import AlertsConfig


@dataclass(frozen=True)
class RulePolicy:
    raise_hold: timedelta
    clear_hold: timedelta
    latched: bool
    ack_timeout: dict[str, timedelta]  # by severity


@dataclass(frozen=True)
class Policy:
    default_raise_hold: timedelta = timedelta(0)
    default_clear_hold: timedelta = timedelta(seconds=30)
    ack_timeout: dict[str, timedelta] = field(default_factory=lambda: {
        "info": timedelta(hours=1), "warning": timedelta(minutes=10), "critical": timedelta(minutes=2)})
    remind_after: timedelta = timedelta(hours=1)
    max_escalation: int = 3
    rules: dict[str, RulePolicy] = field(default_factory=dict)

    @classmethod
    def from_config(cls, c: AlertsConfig) -> Policy:
        base_ack: dict[str, timedelta] = {k: timedelta(seconds=v) for k, v in c.ack_timeout_s.items()}
        for sev, dflt in (("info", 3600.0), ("warning", 600.0), ("critical", 120.0)):
            base_ack.setdefault(sev, timedelta(seconds=dflt))
        rules: dict[str, RulePolicy] = {}
        for rule, o in c.rules.items():
            ack = dict(base_ack)
            if o.ack_timeout_s is not None:
                ack = {k: timedelta(seconds=o.ack_timeout_s) for k in ack}
            rules[rule] = RulePolicy(
                raise_hold=timedelta(seconds=o.raise_hold_s if o.raise_hold_s is not None else c.raise_hold_s),
                clear_hold=timedelta(seconds=o.clear_hold_s if o.clear_hold_s is not None else c.clear_hold_s),
                latched=o.latched if o.latched is not None else rule not in CONDITION_RULES,
                ack_timeout=ack,
            )
        return cls(
            default_raise_hold=timedelta(seconds=c.raise_hold_s),
            default_clear_hold=timedelta(seconds=c.clear_hold_s),
            ack_timeout=base_ack,
            remind_after=timedelta(seconds=c.remind_after_s),
            max_escalation=c.max_escalation,
            rules=rules,
        )

    def for_rule(self, rule: str) -> RulePolicy:
        p = self.rules.get(rule)
        if p is not None:
            return p
        return RulePolicy(self.default_raise_hold, self.default_clear_hold, rule not in CONDITION_RULES,
                          self.ack_timeout)

    def raise_hold(self, rule: str) -> timedelta:
        return self.for_rule(rule).raise_hold

    def clear_hold(self, rule: str) -> timedelta:
        return self.for_rule(rule).clear_hold

    def latched(self, rule: str) -> bool:
        return self.for_rule(rule).latched

    def ack_timeout_for(self, rule: str, severity: str) -> timedelta:
        return self.for_rule(rule).ack_timeout.get(severity, timedelta(minutes=10))


@dataclass(frozen=True)
class Silence:
    """Stop notifying for a site (one rule, or every rule when ``rule`` is None) until ``expires_at``."""

    id: int
    site: str
    rule: str | None
    starts_at: datetime
    expires_at: datetime

    def covers(self, site: str, rule: str, now: datetime) -> bool:
        return self.site == site and (self.rule is None or self.rule == rule) and (
            self.starts_at <= now < self.expires_at)


@dataclass(frozen=True)
class Maintenance:
    id: int
    site: str
    starts_at: datetime
    ends_at: datetime

    def covers(self, site: str, rule: str, now: datetime) -> bool:
        return self.site == site and self.starts_at <= now < self.ends_at


@dataclass
class Suppressions:
    """The silences and maintenance windows in force (a set small enough to scan)."""

    silences: list[Silence] = field(default_factory=list)
    maintenance: list[Maintenance] = field(default_factory=list)

    def replace(self, silences: Iterable[Silence], maintenance: Iterable[Maintenance]) -> None:
        self.silences = list(silences)
        self.maintenance = list(maintenance)

    def why(self, site: str, rule: str, now: datetime) -> str | None:
        """``silence:<id>`` or ``maintenance:<id>`` when notifying is suppressed, else None."""
        for s in self.silences:
            if s.covers(site, rule, now):
                return f"silence:{s.id}"
        for m in self.maintenance:
            if m.covers(site, rule, now):
                return f"maintenance:{m.id}"
        return None

    def suppressed(self, site: str, rule: str, now: datetime) -> bool:
        return self.why(site, rule, now) is not None
