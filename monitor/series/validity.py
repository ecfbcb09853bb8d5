"""Validity of a cylinder at a given time: one function for the scan check, the interlock
and the public look-up.

Rules (GB 5842 and the seed): 8-year design life; a cylinder that passed inspection may
serve up to 4 more years; scrapped at 12.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

Validity = Literal["ok", "unregistered", "scrapped", "over_age", "inspection_due", "foreign"]
DESIGN_LIFE_YEARS = 8
MAX_AGE_YEARS = 12

PLAIN_WORDS: dict[str, dict[str, str]] = {
    "ok": {"zh": "合格，可以使用", "en": "valid: may be used"},
    "unregistered": {"zh": "未登记的钢瓶（黑瓶），禁止充装和使用", "en": "not registered (a 'black' cylinder): do not fill or use"},
    "scrapped": {"zh": "已报废，禁止充装和使用", "en": "scrapped: do not fill or use"},
    "over_age": {"zh": "超过12年使用年限，应报废", "en": "older than 12 years: must be scrapped"},
    "inspection_due": {"zh": "超过8年未经检验合格，需送检", "en": "over 8 years without a passed inspection: due for inspection"},
    "foreign": {"zh": "非本站自有产权钢瓶，本站不得充装", "en": "owned by another station: this station may not fill it"},
}


@dataclass(frozen=True)
class Cylinder:
    code: str
    valve_code: str | None
    owner_site: str
    nominal_kg: float
    tare_kg: float
    manufactured: date
    last_inspection: date | None
    inspection_passed: bool | None
    status: Literal["in_service", "scrapped"]


def add_years(d: date, years: int) -> date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February
        return d.replace(year=d.year + years, day=28)


def validity(cyl: Cylinder | None, *, at: date, fill_site: str | None = None) -> Validity:
    """``ok`` or the first reason the cylinder may not be filled or used.

    ``fill_site``: the station that would fill it (a fill at another owner's station is
    ``foreign``); None for a look-up or an outlet's scan.
    """
    if cyl is None:
        return "unregistered"
    if cyl.status == "scrapped":
        return "scrapped"
    if at >= add_years(cyl.manufactured, MAX_AGE_YEARS):
        return "over_age"
    if at >= add_years(cyl.manufactured, DESIGN_LIFE_YEARS):
        passed_after_design_life = (
            cyl.inspection_passed is True
            and cyl.last_inspection is not None
            and cyl.last_inspection >= add_years(cyl.manufactured, DESIGN_LIFE_YEARS - 1)
        )
        if not passed_after_design_life:
            return "inspection_due"
    if fill_site is not None and cyl.owner_site != fill_site:
        return "foreign"
    return "ok"
