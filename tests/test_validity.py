from __future__ import annotations

from datetime import date

import pytest

from monitor.series.validity import Cylinder, validity


def cyl(**kw: object) -> Cylinder:
    base: dict[str, object] = dict(code="HK0000001", valve_code="V1", owner_site="st-a", nominal_kg=15.0, tare_kg=16.0,
                                   manufactured=date(2020, 1, 1), last_inspection=None, inspection_passed=None,
                                   status="in_service")
    base.update(kw)
    return Cylinder(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("c", "at", "site", "expected"), [
    (None, date(2026, 1, 1), None, "unregistered"),
    (cyl(), date(2026, 1, 1), None, "ok"),
    (cyl(), date(2026, 1, 1), "st-a", "ok"),
    (cyl(), date(2026, 1, 1), "st-b", "foreign"),
    (cyl(status="scrapped"), date(2026, 1, 1), "st-a", "scrapped"),
    (cyl(manufactured=date(2014, 1, 1)), date(2026, 1, 1), None, "over_age"),
    (cyl(manufactured=date(2014, 1, 2)), date(2026, 1, 1), None, "inspection_due"),
    (cyl(manufactured=date(2017, 6, 1)), date(2026, 1, 1), None, "inspection_due"),
    (cyl(manufactured=date(2017, 6, 1), last_inspection=date(2025, 3, 1), inspection_passed=True),
     date(2026, 1, 1), None, "ok"),
    (cyl(manufactured=date(2017, 6, 1), last_inspection=date(2025, 3, 1), inspection_passed=False),
     date(2026, 1, 1), None, "inspection_due"),
    (cyl(manufactured=date(2017, 6, 1), last_inspection=date(2019, 3, 1), inspection_passed=True),
     date(2026, 1, 1), None, "inspection_due"),  # an inspection long before the 8 years does not count
    (cyl(manufactured=date(2018, 1, 2)), date(2026, 1, 1), "st-a", "ok"),  # the day before 8 years
    (cyl(manufactured=date(2016, 2, 29), last_inspection=date(2024, 1, 5), inspection_passed=True),
     date(2028, 2, 29), None, "over_age"),
])
def test_validity(c: Cylinder | None, at: date, site: str | None, expected: str) -> None:
    assert validity(c, at=at, fill_site=site) == expected
