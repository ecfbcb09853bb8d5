"""The correlation rules on made-up series: each case a row."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from monitor.alerts.correlation import rules
from monitor.alerts.correlation.batch import Span, evaluate
from monitor.findings import Finding
from monitor.series import inventory
from monitor.series.model import Fill, ScanRecord
from monitor.series.validity import Cylinder

T0 = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)
P = rules.Params()


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def cyl(code: str, nominal: float = 15.0, tare: float = 16.5) -> Cylinder:
    return Cylinder(code=code, valve_code=None, owner_site="st-a", nominal_kg=nominal, tare_kg=tare,
                    manufactured=date(2020, 1, 1), last_inspection=None, inspection_passed=None, status="in_service")


CYLS = {c.code: c for c in (cyl("HKA00001"), cyl("HKA00002"), cyl("HKSMALL1", 5.0, 7.2))}


def scan(sid: str, code: str, t: float, step: str = "prefill_check", site: str = "st-a",
         validity: str = "ok") -> ScanRecord:
    return ScanRecord(id=sid, ts=at(t), cylinder=code, site=site, step=step, validity=validity, app="app1")


def fill(t: float, code: str | None = "HKA00001", tare: float = 16.5, net: float = 15.0, scale: str = "s1",
         site: str = "st-a", dur: float = 60) -> Fill:
    return Fill(site=site, scale=scale, gun="g1", started_at=at(t), ended_at=at(t + dur), tare_kg=tare,
                gross_kg=tare + net, cylinder=code, readings=int(dur))


def run_fws(fills: list[Fill], scans: list[ScanRecord]) -> list[Finding]:
    return rules.fill_without_scan(rules.match_fills(fills, rules.ScanIndex.of(scans), CYLS, P))


@pytest.mark.parametrize(("name", "fills", "scans", "unscanned"), [
    ("code, scanned before", [fill(300)], [scan("a", "HKA00001", 100)], []),
    ("code, never scanned", [fill(300)], [], ["HKA00001"]),
    ("code, other cylinder scanned", [fill(300)], [scan("a", "HKA00002", 100)], ["HKA00001"]),
    ("code, scan too old", [fill(1000)], [scan("a", "HKA00001", 100)], ["HKA00001"]),
    ("code, scan long after the start", [fill(300)], [scan("a", "HKA00001", 320)], ["HKA00001"]),
    ("code, scan a few seconds after the start (clocks)", [fill(300)], [scan("a", "HKA00001", 303)], []),
    ("code, scanned at another station", [fill(300)], [scan("a", "HKA00001", 100, site="st-b")], ["HKA00001"]),
    ("code, scanned but scrapped", [fill(300)], [scan("a", "HKA00001", 100, validity="scrapped")], ["HKA00001"]),
    ("code, postfill scan is not a prefill", [fill(300)], [scan("a", "HKA00001", 100, step="postfill_check")],
     ["HKA00001"]),
    ("no code, a scan whose tare agrees", [fill(300, code=None)], [scan("a", "HKA00001", 100)], []),
    ("no code, only a scan of another size", [fill(300, code=None, tare=7.1, net=5)],
     [scan("a", "HKA00001", 100)], [rules.UNIDENTIFIED]),
    ("no code, an unregistered cylinder's scan is refused", [fill(300, code=None)],
     [scan("a", "HKBLACK01", 100, validity="unregistered")], [rules.UNIDENTIFIED]),
    ("one scan, two fills", [fill(300, code=None), fill(400, code=None)], [scan("a", "HKA00001", 100)],
     [rules.UNIDENTIFIED]),
    ("two scans, two fills", [fill(300, code=None), fill(400, code=None)],
     [scan("a", "HKA00001", 100), scan("b", "HKA00002", 350)], []),
    ("an unidentified fill does not take an identified fill's scan",
     [fill(300, code=None, scale="s2"), fill(320, code="HKA00001")],
     [scan("b", "HKA00002", 50), scan("a", "HKA00001", 100)], []),
])
def test_fill_without_scan(name: str, fills: list[Fill], scans: list[ScanRecord], unscanned: list[str]) -> None:
    found = run_fws(fills, scans)
    assert [f.subject for f in found] == unscanned, name
    for f in found:
        assert f.rule == "fill_without_scan" and f.severity == "critical" and f.source in ("s1", "s2")
        assert f.details["fill_start"] and f.details["scale"] == "s1" and "why" in f.details


def test_an_unidentified_fill_takes_the_closest_tare_then_the_latest() -> None:
    cyls = dict(CYLS, HKMID0001=cyl("HKMID0001", tare=18.0), HKA00003=cyl("HKA00003", tare=16.6))
    scans = [scan("a", "HKA00001", 100), scan("b", "HKMID0001", 250), scan("c", "HKA00003", 200)]
    [m] = rules.match_fills([fill(300, code=None, tare=16.5)], rules.ScanIndex.of(scans), cyls, P)
    assert m.scan is not None and m.scan.id == "a" and m.why == "tare"
    [m] = rules.match_fills([fill(300, code=None, tare=16.55)], rules.ScanIndex.of(scans[1:]), cyls, P)
    assert m.scan is not None and m.scan.id == "c"


def test_fill_without_scan_names_the_scans_it_refused() -> None:
    [f] = run_fws([fill(300)], [scan("bad", "HKA00001", 100, validity="inspection_due")])
    assert f.details["scan_ids"] == ["bad"] and f.details["scans_considered"][0]["validity"] == "inspection_due"


@pytest.mark.parametrize(("code", "net", "over"), [
    ("HKA00001", 15.0, False), ("HKA00001", 15.5, False), ("HKA00001", 15.6, True),
    ("HKSMALL1", 5.6, True), ("HKUNKNOWN", 40.0, False),
])
def test_overfill(code: str, net: float, over: bool) -> None:
    m = rules.match_fills([fill(300, code=code, net=net)], rules.ScanIndex.of([scan("a", code, 100)]), CYLS, P)
    found = rules.overfill(m, CYLS, P)
    assert bool(found) == over
    if found:
        d = found[0].details
        assert found[0].subject == code and d["net_kg"] == pytest.approx(net) and d["scan_ids"] == ["a"]
        assert d["nominal_kg"] == CYLS[code].nominal_kg


@pytest.mark.parametrize("validity", ["ok", "unregistered", "scrapped", "over_age", "inspection_due", "foreign"])
def test_invalid_cylinder_one_finding_per_reason(validity: str) -> None:
    found = rules.invalid_cylinder([scan("x", "HKA00001", 0, validity=validity)])
    if validity == "ok":
        assert found == []
    else:
        [f] = found
        assert f.reason == validity and f.subject == "HKA00001" and f.details["scan_ids"] == ["x"]


@pytest.mark.parametrize(("name", "post", "now", "missing"), [
    ("checked in time", [scan("p", "HKA00001", 500, step="postfill_check")], 2000, False),
    ("checked too late", [scan("p", "HKA00001", 1100, step="postfill_check")], 2000, True),
    ("never checked", [], 2000, True),
    ("window not over yet", [], 900, False),
    ("checked at another station", [scan("p", "HKA00001", 500, step="postfill_check", site="st-b")], 2000, True),
    ("another cylinder checked", [scan("p", "HKA00002", 500, step="postfill_check")], 2000, True),
])
def test_missing_postfill_check(name: str, post: list[ScanRecord], now: float, missing: bool) -> None:
    pre = [scan("a", "HKA00001", 100)]
    found = rules.missing_postfill_check(pre, post, now=at(now), p=P)
    assert bool(found) == missing, name
    if found:
        assert found[0].ts == at(100 + P.postfill_window_s) and found[0].details["scan_ids"] == ["a"]
    assert rules.missing_postfill_check(pre, post, now=at(now), p=P, filled=set()) == []


def counts(*pairs: tuple[float, int]) -> list[rules.CountSample]:
    return [rules.CountSample(at(t), "cam1", n) for t, n in pairs]


@pytest.mark.parametrize(("name", "samples", "moves", "expect"), [
    ("never above", counts((0, 3), (200, 5)), [(at(-10), 5)], []),
    ("above, not long enough", counts((0, 6), (60, 6), (100, 5)), [(at(-10), 5)], []),
    ("above long enough: raised once", counts((0, 6), (60, 7), (120, 7), (180, 7)), [(at(-10), 5)], [True]),
    ("raised, then cleared", counts((0, 6), (130, 6), (200, 4)), [(at(-10), 5)], [True, False]),
    ("the scans catch up: no mismatch", counts((0, 6), (60, 6), (130, 6)), [(at(-10), 5), (at(50), 1)], []),
])
def test_stock_mismatch(name: str, samples: list[rules.CountSample], moves: list[tuple[datetime, int]],
                        expect: list[bool]) -> None:
    mv = [(t, 1) for t, n in moves for _ in range(n)]
    found = rules.stock_mismatch("ol-a", samples, mv, opening=0, p=P)
    assert [f.active for f in found] == expect, name
    if found:
        assert found[0].details["camera"] == "cam1" and found[0].details["scan_stock"] >= 5


def test_stock_mismatch_episode_spans_calls() -> None:
    eps: dict[str, rules.Episode] = {}
    mv = [(at(-10), 1)] * 2
    assert rules.stock_mismatch("ol-a", counts((0, 3), (60, 3)), mv, opening=0, p=P, episodes=eps) == []
    [f] = rules.stock_mismatch("ol-a", counts((125, 3)), mv, opening=0, p=P, episodes=eps)
    assert f.active and f.details["since"] == at(0).isoformat()


def antistatic(t: float, site: str = "st-a") -> Finding:
    return Finding(rule="antistatic_skipped", site=site, source="st-a-entry", subject="track-7", ts=at(t),
                   summary="person entered the filling area without discharging", details={"track": 7})


@pytest.mark.parametrize(("name", "finding", "intervals", "raised"), [
    ("during a fill", antistatic(30), [rules.Interval("st-a", "s2", at(0), at(60))], ["s2"]),
    ("fill still under way", antistatic(30), [rules.Interval("st-a", "s1", at(0), None)], ["s1"]),
    ("after the fill", antistatic(90), [rules.Interval("st-a", "s1", at(0), at(60))], []),
    ("another station filling", antistatic(30, site="st-b"), [rules.Interval("st-a", "s1", at(0), at(60))], []),
])
def test_antistatic_during_fill(name: str, finding: Finding, intervals: list[rules.Interval],
                                raised: list[str]) -> None:
    found = rules.antistatic_during_fill([finding], intervals)
    assert [f.details["scales"] for f in found] == ([raised] if raised else []), name
    for f in found:
        assert f.severity == "critical" and f.subject == "track-7" and f.details["track"] == 7


def test_device_silent() -> None:
    seen = {("st-a", "s1"): at(0), ("st-a", "s2"): at(100)}
    found = rules.device_silent(seen, now=at(200), p=P)
    assert [(f.source, f.rule) for f in found] == [("s1", "device_silent")]


def test_inventory_series() -> None:
    scans = [scan("1", "A", 0, "outlet_receive", "ol-a"), scan("2", "B", 10, "outlet_receive", "ol-a"),
             scan("3", "A", 20, "deliver", "ol-a"), scan("4", "C", 5, "empty_return", "ol-a")]
    mv = inventory.moves(scans)
    assert inventory.series(mv["ol-a"], opening=2) == [(at(0), 3), (at(10), 4), (at(20), 3)]


def test_evaluate_a_span() -> None:
    span = Span(
        fills=[fill(300), fill(400, code="HKA00002", net=17.0)],
        scans=[scan("a", "HKA00001", 100), scan("b", "HKBLACK01", 120, validity="unregistered"),
               scan("c", "HKA00001", 500, step="postfill_check")],
        cylinders=CYLS, antistatic=[antistatic(310)],
        last_seen={("st-a", "s1"): at(0)},
    )
    found = evaluate(span, now=at(3000), p=P)
    assert {k: len(v) for k, v in found.items()} == {
        "fill_without_scan": 1, "overfill": 1, "invalid_cylinder": 1, "missing_postfill_check": 0,
        "stock_mismatch": 0, "antistatic_during_fill": 1, "device_silent": 1}


def test_a_simulated_day_finds_exactly_the_injected_faults() -> None:
    """The rules over a small simulated day (monitor.sim.apps.city_day) find each injected
    unscanned fill, overfill and invalid scan, and no more."""
    from pathlib import Path
    from zoneinfo import ZoneInfo

    from monitor.config import load_config
    from monitor.series.scans import fill_site
    from monitor.series.validity import validity
    from monitor.sim.apps import DayFaults, city_day
    from monitor.sim.registry import generate

    cfg = load_config(Path(__file__).resolve().parents[2] / "config" / "example-city.yaml")
    today = date(2026, 3, 1)
    cyls = [Cylinder(*r) for r in generate(cfg, 3000, seed=2, today=today)]  # type: ignore[arg-type]
    valid = [c for c in cyls if validity(c, at=today) == "ok"]
    invalid = [c.code for c in cyls if validity(c, at=today) != "ok"]
    day = city_day(cfg, valid, invalid, day=datetime(2026, 2, 27, 22, 0, tzinfo=UTC), fills=700, seed=3,
                   faults=DayFaults(unscanned_fill=0.03, overfill=0.02, invalid_scanned=0.03, missing_postfill=0.0))
    by = {c.code: c for c in cyls}
    tz = ZoneInfo(cfg.timezone)
    scans = [ScanRecord(s.id, s.ts, s.cylinder, s.site, s.step,
                        validity(by.get(s.cylinder), at=s.ts.astimezone(tz).date(), fill_site=fill_site(s)), app="a")
             for s in day.scans]
    found = evaluate(Span(fills=day.fills, scans=scans, cylinders=by), now=datetime(2026, 3, 1, tzinfo=UTC), p=P)
    assert len(found["fill_without_scan"]) == day.truth["unscanned_fill"] > 0
    assert len(found["overfill"]) == day.truth["overfill"] > 0
    assert len(found["invalid_cylinder"]) == day.truth["invalid_scanned"] > 0
    assert found["missing_postfill_check"] == []
