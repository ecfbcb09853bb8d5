"""The interlock ("no scan, no gas"): may this gun open for this cylinder, now?

A pure decision over the gun's state, the registry's record of the cylinder, and the
time of its last pre-fill scan at the station. Allowed only when the gun is known and not
locked, the code is well formed, the cylinder is valid for filling at this station, and
it was scanned for the pre-fill check there within the window. Every refusal names its
reason; the first failing check wins, in the order above.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from monitor.control.model import GunState
from monitor.series.model import CODE_RE
from monitor.series.validity import PLAIN_WORDS, Cylinder, validity

Reason = Literal[
    "ok", "unknown_gun", "malformed_code", "malformed_request", "gun_locked", "unregistered", "scrapped",
    "over_age", "inspection_due", "foreign", "no_prefill_scan", "unavailable", "busy",
]
REFUSALS: tuple[str, ...] = (
    "unknown_gun", "malformed_code", "malformed_request", "gun_locked", "unregistered", "scrapped", "over_age",
    "inspection_due", "foreign", "no_prefill_scan", "unavailable", "busy",
)


@dataclass(frozen=True)
class Decision:
    allow: bool
    reason: Reason
    message: str
    scan_ts: datetime | None = None  # the pre-fill scan that allowed it

    def as_json(self, request_id: str | None) -> dict[str, Any]:
        return {"request_id": request_id, "allow": self.allow, "reason": self.reason, "message": self.message}


def code_ok(code: Any) -> bool:
    return isinstance(code, str) and CODE_RE.match(code) is not None


def refuse(reason: Reason, message: str) -> Decision:
    return Decision(False, reason, message)


def decide(
    *,
    site: str,
    gun: GunState | None,
    gun_name: str,
    code: Any,
    cylinder: Cylinder | None,
    last_prefill: datetime | None,
    now: datetime,
    window_s: float,
    skew_s: float = 120.0,
    tz: ZoneInfo | None = None,
) -> Decision:
    """``gun`` None: not a configured gun. ``last_prefill``: the newest pre-fill scan of
    ``code`` at ``site`` (any scan the caller found at or after ``now - window_s``)."""
    if gun is None:
        return refuse("unknown_gun", f"no gun {gun_name!r} at site {site!r}")
    if not code_ok(code):
        shown = repr(code)[:48]
        return refuse("malformed_code", f"cylinder: expected 6-32 upper-case letters and digits, got {shown}")
    if gun.locked:
        why = f": {gun.reason}" if gun.reason else ""
        return refuse("gun_locked", f"gun {site}/{gun.gun} is locked{why}")
    today = now.astimezone(tz).date() if tz is not None else now.date()
    v = validity(cylinder, at=today, fill_site=site)
    if v != "ok":
        return refuse(v, f"cylinder {code}: {PLAIN_WORDS[v]['en']}")
    if (
        last_prefill is None
        or last_prefill < now - timedelta(seconds=window_s)
        or last_prefill > now + timedelta(seconds=skew_s)
    ):
        return refuse(
            "no_prefill_scan", f"cylinder {code}: no pre-fill scan at {site} in the last {window_s:.0f} s"
        )
    return Decision(True, "ok", f"cylinder {code} may be filled at {site}/{gun.gun}", scan_ts=last_prefill)
