"""Findings: what a detector or a correlation rule saw, the one value every producer returns.

Producers (detectors, series rules, the interlock) return ``Finding`` values; the entry
hands them to a ``FindingBus`` that stores each one and passes it to the subscribers
(the alerts engine). Producers never know who consumes them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

log = logging.getLogger(__name__)

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")

# Rule ids (DESIGN.md, "Alerts"), with the severity a finding of that rule has by default.
RULES: dict[str, Severity] = {
    "antistatic_skipped": "warning",
    "antistatic_during_fill": "critical",
    "storage_over_capacity": "warning",
    "stock_mismatch": "warning",
    "fill_without_scan": "critical",
    "overfill": "critical",
    "invalid_cylinder": "critical",
    "missing_postfill_check": "warning",
    "device_silent": "warning",
    "lock_unconfirmed": "critical",
    "interlock_refused": "info",
    "camera_offline": "warning",
    "detector_behind": "warning",
}
INVALID_REASONS = ("unregistered", "scrapped", "over_age", "inspection_due", "foreign")


@dataclass(frozen=True)
class Finding:
    """One observation. ``active=False`` says a condition (over capacity, offline) has cleared."""

    rule: str
    site: str
    source: str  # camera, scale or gun id
    subject: str  # a track, a cylinder code, a gun
    ts: datetime  # when it was seen (UTC)
    summary: str
    severity: Severity | None = None
    active: bool = True
    reason: str | None = None  # invalid_cylinder: one of INVALID_REASONS
    details: dict[str, Any] = field(default_factory=dict)  # evidence: tracks, frame times, scan ids, readings
    # An annotated JPEG of the moment (detectors: boxes, track ids, zones drawn); not in as_json.
    image: bytes | None = field(default=None, repr=False, compare=False)
    # Video workers sharing cameras through leases: (camera, worker, lease generation) the
    # finding was observed under. The alert engine files it only if that lease still holds,
    # checked in the transaction that writes it (``camera_leases`` row locked FOR SHARE); not
    # in as_json. None: no lease involved (one process runs every camera, or not a camera).
    fence: tuple[str, str, int] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"Finding.rule: expected one of {sorted(RULES)}, got {self.rule!r}")
        if self.ts.tzinfo is None:
            raise ValueError(f"Finding.ts: expected an aware UTC datetime, got naive {self.ts!r}")
        if self.severity is None:
            object.__setattr__(self, "severity", RULES[self.rule])
        elif self.severity not in SEVERITIES:
            raise ValueError(f"Finding.severity: expected one of {SEVERITIES}, got {self.severity!r}")
        if self.rule == "invalid_cylinder" and self.reason not in INVALID_REASONS:
            raise ValueError(f"Finding.reason: invalid_cylinder needs one of {INVALID_REASONS}, got {self.reason!r}")
        for name in ("site", "source", "subject"):
            if not getattr(self, name):
                raise ValueError(f"Finding.{name}: must not be empty")

    @property
    def key(self) -> tuple[str, str, str, str]:
        """The dedup key of the alert this finding belongs to."""
        return (self.rule, self.site, self.source, self.subject)

    def as_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule, "site": self.site, "source": self.source, "subject": self.subject,
            "ts": self.ts.astimezone(UTC).isoformat(), "summary": self.summary, "severity": self.severity,
            "active": self.active, "reason": self.reason, "details": self.details,
        }


class FindingSink(Protocol):
    async def __call__(self, finding: Finding) -> None: ...


class FindingBus:
    """Hands each submitted finding to every subscriber, in order, one at a time.

    A bounded queue sits between producers and subscribers; ``submit`` waits (bounded)
    when it is full, so findings are never dropped silently.
    """

    def __init__(self, maxsize: int = 10_000) -> None:
        self.queue: asyncio.Queue[Finding] = asyncio.Queue(maxsize)
        self.subscribers: list[Callable[[Finding], Awaitable[None]]] = []
        self.submitted = 0
        self.failed = 0

    def subscribe(self, fn: Callable[[Finding], Awaitable[None]]) -> None:
        self.subscribers.append(fn)

    async def submit(self, finding: Finding, timeout_s: float = 5.0) -> None:
        await asyncio.wait_for(self.queue.put(finding), timeout_s)
        self.submitted += 1

    def submit_nowait(self, finding: Finding) -> bool:
        try:
            self.queue.put_nowait(finding)
        except asyncio.QueueFull:
            log.error("finding queue full; finding %s for %s kept waiting", finding.rule, finding.site)
            return False
        self.submitted += 1
        return True

    async def run(self) -> None:
        while True:
            f = await self.queue.get()
            try:
                for fn in self.subscribers:
                    try:
                        await fn(f)
                    except Exception:
                        self.failed += 1
                        log.exception("finding subscriber failed on %s/%s", f.rule, f.site)
            finally:
                self.queue.task_done()

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait until every finding submitted so far has been handled (bounded)."""
        await asyncio.wait_for(self.queue.join(), timeout_s)


def utcnow() -> datetime:
    return datetime.now(UTC)
