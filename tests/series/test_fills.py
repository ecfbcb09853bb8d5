"""Fill segmentation (pure): noise, a cylinder lifted mid-fill, missing readings, swaps,
a bypassed gun controller — each case a row."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from monitor.series.fills import FillSegmenter, segment
from monitor.series.model import Reading
from monitor.sim.scales import FillPlan, fill_readings

T0 = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)
BASE = FillPlan(cylinder="HK000000123", tare_kg=16.4, nominal_kg=15.0, start=T0)


@pytest.mark.parametrize(("name", "plan", "noise", "flags"), [
    ("clean", BASE, 0.0, set()),
    ("noisy", BASE, 0.15, set()),
    ("lifted mid-fill", replace(BASE, lift_at_s=20.0, lift_s=6.0), 0.05, {"lifted"}),
    ("missing readings", replace(BASE, drop=0.3), 0.05, set()),
    ("no gun signal", replace(BASE, gun_signal=False), 0.05, {"no_gun_signal"}),
    ("no code reported", replace(BASE, report_code=False), 0.05, set()),
    ("overfill", replace(BASE, overfill_kg=2.0), 0.05, set()),
    ("small cylinder", replace(BASE, tare_kg=7.1, nominal_kg=5.0), 0.05, set()),
    ("big cylinder", replace(BASE, tare_kg=47.0, nominal_kg=50.0, rate_kg_s=0.5), 0.1, set()),
])
def test_one_fill(name: str, plan: FillPlan, noise: float, flags: set[str]) -> None:
    rs = fill_readings("st-a", "s1", plan, noise_kg=noise, rng=random.Random(7))
    fills = segment(rs, "g1", until=rs[-1].ts)
    assert len(fills) == 1, name
    f = fills[0]
    assert abs(f.tare_kg - plan.tare_kg) < 0.3, name
    assert abs(f.net_kg - (plan.nominal_kg + plan.overfill_kg)) < 0.6, name
    assert f.cylinder == (plan.cylinder if plan.report_code else None)
    assert flags <= set(f.flags), (name, f.flags)
    assert f.gun == "g1" and f.site == "st-a" and f.scale == "s1"
    assert T0 < f.started_at < f.ended_at < rs[-1].ts


def test_back_to_back_fills_and_swaps() -> None:
    """Three cylinders in a row, the second put on right after the first left (no empty
    reading in between): three fills, each with its own tare."""
    rng = random.Random(3)
    a = fill_readings("st-a", "s1", BASE, rng=rng)
    b_plan = replace(BASE, cylinder="HK000000124", tare_kg=17.0, start=a[-1].ts + timedelta(seconds=1))
    b = fill_readings("st-a", "s1", b_plan, rng=rng)
    a = a[:-3]  # the removal of the first is missed: its gross drops straight to b's tare
    b = b[2:]
    c_plan = replace(BASE, cylinder=None, report_code=False, tare_kg=7.0, nominal_kg=5.0,
                     start=b[-1].ts + timedelta(seconds=30))
    c = fill_readings("st-a", "s1", c_plan, rng=rng)
    fills = segment(a + b + c, "g1", until=c[-1].ts)
    assert [round(f.tare_kg) for f in fills] == [16, 17, 7]
    assert [round(f.net_kg) for f in fills] == [15, 15, 5]
    assert [f.cylinder for f in fills] == ["HK000000123", "HK000000124", None]


def r(t: float, kg: float, gun: bool = False) -> Reading:
    return Reading(ts=T0 + timedelta(seconds=t), site="st-a", scale="s1", gross_kg=kg, gun_open=gun)


@pytest.mark.parametrize(("name", "readings", "expect"), [
    ("weighing only: placed and removed, no gun", [r(0, 0), r(1, 16), r(2, 16), r(3, 16), r(4, 0), r(5, 0)], []),
    ("gun opened, nothing went in", [r(0, 0), r(1, 16), r(2, 16), r(3, 16, True), r(4, 16, True), r(5, 16),
                                     r(6, 0), r(7, 0), r(40, 0)], []),
    ("a single spike does not make a load", [r(0, 0), r(1, 90), r(2, 0), r(3, 0)], []),
    ("first reading already filling (tare estimated)",
     [r(0, 17, True), r(1, 20, True), r(2, 25, True), r(3, 31, True), r(4, 31), r(5, 31), r(6, 0), r(7, 0),
      r(40, 0)], [(17.0, 31.0, ("tare_estimated",))]),
    ("cylinder lifted and never back: ends at the lift",
     [r(0, 0), r(1, 16), r(2, 16), r(3, 16, True), r(4, 20, True), r(5, 24, True), r(6, 24, True), r(7, 0),
      r(8, 0), r(30, 0)],
     [(16.0, 24.0, ())]),
])
def test_edge_cases(name: str, readings: list[Reading], expect: list[tuple[float, float, tuple[str, ...]]]) -> None:
    fills = segment(readings, "g1", until=readings[-1].ts)
    assert [(f.tare_kg, f.gross_kg, f.flags) for f in fills] == expect, name


def test_live_events_and_filling_state() -> None:
    seg = FillSegmenter("st-a", "s1", "g1")
    rs = fill_readings("st-a", "s1", BASE, rng=random.Random(1))
    kinds: list[str] = []
    filling_seen = False
    for x in rs:
        for e in seg.feed(x):
            kinds.append(e.kind)
            if e.kind == "start":
                assert e.reading is x and x.gun_open and e.fill.started_at == x.ts
        filling_seen |= seg.filling
    kinds += [e.kind for e in seg.tick(rs[-1].ts + timedelta(seconds=60))]
    assert kinds == ["start", "end"] and filling_seen and not seg.filling


def test_out_of_order_readings_are_ignored() -> None:
    seg = FillSegmenter("st-a", "s1", "g1")
    seg.feed(r(5, 0))
    assert seg.feed(r(4, 16)) == [] and seg.out_of_order == 1 and seg.state == "empty"
