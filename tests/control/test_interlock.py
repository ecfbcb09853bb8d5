"""The interlock's decision on made-up inputs: each refusal names its reason."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from monitor.control.interlock import REFUSALS, decide
from monitor.control.model import GunState
from monitor.series.validity import Cylinder

NOW = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
OPEN = GunState("st-a", "g1")
LOCKED = GunState("st-a", "g1", locked=True, version=2, reason="alert 5")


def cyl(**kw: Any) -> Cylinder:
    base: dict[str, Any] = {"code": "ABC12345", "valve_code": None, "owner_site": "st-a", "nominal_kg": 15.0,
                            "tare_kg": 16.0, "manufactured": date(2022, 1, 1), "last_inspection": None,
                            "inspection_passed": None, "status": "in_service"}
    base.update(kw)
    return Cylinder(**base)


M = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("gun", "code", "c", "scan", "allow", "reason"),
    [
        (OPEN, "ABC12345", cyl(), NOW - 2 * M, True, "ok"),
        (OPEN, "ABC12345", cyl(), NOW - 10 * M, True, "ok"),  # exactly at the window's edge
        (OPEN, "ABC12345", cyl(), NOW - 10 * M - timedelta(seconds=1), False, "no_prefill_scan"),
        (OPEN, "ABC12345", cyl(), None, False, "no_prefill_scan"),
        (OPEN, "ABC12345", cyl(), NOW + 10 * M, False, "no_prefill_scan"),  # beyond the clock skew
        (OPEN, "ABC12345", cyl(), NOW + M, True, "ok"),  # within the clock skew
        (None, "ABC12345", cyl(), NOW - M, False, "unknown_gun"),
        (None, "bad", None, None, False, "unknown_gun"),  # the first failing check wins
        (OPEN, "abc12345", cyl(), NOW - M, False, "malformed_code"),
        (OPEN, "ABC 12345", cyl(), NOW - M, False, "malformed_code"),
        (OPEN, "ABC12", cyl(), NOW - M, False, "malformed_code"),
        (OPEN, "A" * 33, cyl(), NOW - M, False, "malformed_code"),
        (OPEN, 12345678, cyl(), NOW - M, False, "malformed_code"),
        (OPEN, None, cyl(), NOW - M, False, "malformed_code"),
        (OPEN, ["ABC12345"], cyl(), NOW - M, False, "malformed_code"),
        (LOCKED, "ABC12345", cyl(), NOW - M, False, "gun_locked"),
        (LOCKED, "bad", None, None, False, "malformed_code"),
        (OPEN, "ABC12345", None, NOW - M, False, "unregistered"),
        (OPEN, "ABC12345", cyl(status="scrapped"), NOW - M, False, "scrapped"),
        (OPEN, "ABC12345", cyl(owner_site="st-b"), NOW - M, False, "foreign"),
        (OPEN, "ABC12345", cyl(manufactured=date(2014, 4, 1)), NOW - M, False, "over_age"),
        (OPEN, "ABC12345", cyl(manufactured=date(2017, 4, 1)), NOW - M, False, "inspection_due"),
        (OPEN, "ABC12345", cyl(manufactured=date(2017, 4, 1), last_inspection=date(2024, 6, 1),
                               inspection_passed=True), NOW - M, True, "ok"),
        (OPEN, "ABC12345", cyl(status="scrapped"), None, False, "scrapped"),  # validity before the scan
    ],
)
def test_decide(gun: GunState | None, code: Any, c: Cylinder | None, scan: datetime | None, allow: bool,
                reason: str) -> None:
    d = decide(site="st-a", gun=gun, gun_name="g1", code=code, cylinder=c, last_prefill=scan, now=NOW,
               window_s=600, skew_s=120)
    assert (d.allow, d.reason) == (allow, reason)
    assert d.message
    assert allow or reason in REFUSALS
    assert (d.scan_ts is not None) == allow


def test_validity_is_judged_on_the_local_date() -> None:
    """17:00 on 31 March UTC is already 1 April in Haikou, the day this cylinder turns 12."""
    c = cyl(manufactured=date(2014, 4, 1), last_inspection=date(2022, 6, 1), inspection_passed=True)
    late = datetime(2026, 3, 31, 17, 0, tzinfo=UTC)
    args: dict[str, Any] = {"site": "st-a", "gun": OPEN, "gun_name": "g1", "code": "ABC12345", "cylinder": c,
                            "last_prefill": late - M, "now": late, "window_s": 600}
    assert decide(**args).reason == "ok"
    assert decide(**args, tz=ZoneInfo("Asia/Shanghai")).reason == "over_age"


def test_locked_message_names_the_reason() -> None:
    d = decide(site="st-a", gun=LOCKED, gun_name="g1", code="ABC12345", cylinder=cyl(), last_prefill=NOW, now=NOW,
               window_s=600)
    assert "alert 5" in d.message
