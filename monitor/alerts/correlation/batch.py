"""Every correlation rule over a span of the series at once (a day, for the benchmark and
for re-examining a day): the same pure functions the live engine calls."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from monitor.alerts.correlation import rules
from monitor.findings import Finding
from monitor.series import inventory, store
from monitor.series.model import Fill, ScanRecord
from monitor.series.validity import Cylinder


@dataclass
class Span:
    fills: Sequence[Fill]
    scans: Sequence[ScanRecord]
    cylinders: Mapping[str, Cylinder]
    counts: Mapping[str, Sequence[rules.CountSample]] = field(default_factory=dict)  # outlet -> samples
    opening_stock: Mapping[str, int] = field(default_factory=dict)
    antistatic: Sequence[Finding] = ()
    last_seen: Mapping[tuple[str, str], datetime] = field(default_factory=dict)


def evaluate(span: Span, *, now: datetime, p: rules.Params) -> dict[str, list[Finding]]:
    """Findings of every rule, by rule id."""
    index = rules.ScanIndex.of(span.scans)
    matches = rules.match_fills(span.fills, index, span.cylinders, p)
    prefill = [s for s in span.scans if s.step == "prefill_check"]
    post = [s for s in span.scans if s.step == "postfill_check"]
    filled = {m.scan.id for m in matches if m.scan is not None}
    intervals = [rules.Interval(f.site, f.scale, f.started_at, f.ended_at) for f in span.fills]
    stock: list[Finding] = []
    mv = inventory.moves(span.scans)
    for site, samples in span.counts.items():
        stock += rules.stock_mismatch(site, samples, mv.get(site, []), opening=span.opening_stock.get(site, 0), p=p)
    return {
        "fill_without_scan": rules.fill_without_scan(matches),
        "overfill": rules.overfill(matches, span.cylinders, p),
        "invalid_cylinder": rules.invalid_cylinder(span.scans),
        "missing_postfill_check": rules.missing_postfill_check(prefill, post, now=now, p=p, filled=filled),
        "stock_mismatch": stock,
        "antistatic_during_fill": rules.antistatic_during_fill(span.antistatic, intervals),
        "device_silent": rules.device_silent(span.last_seen, now=now, p=p),
    }


async def load_span(conn: Any, start: datetime, end: datetime, p: rules.Params) -> Span:
    """The series of [start, end) from the database, with the pre-fill window before it and
    the post-fill window after it, and the registry records the rules need (the cylinders
    of pre-fill scans and of fills; invalid scans carry their judgement already)."""
    fills = await store.fills_between(conn, start, end)
    scans = await store.scans_between(conn, start - timedelta(seconds=p.prefill_window_s),
                                      end + timedelta(seconds=p.postfill_window_s))
    codes = {s.cylinder for s in scans if s.step == "prefill_check"} | {f.cylinder for f in fills if f.cylinder}
    return Span(fills=fills, scans=scans, cylinders=await store.get_cylinders(conn, codes))
