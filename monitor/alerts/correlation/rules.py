"""The correlation rules: pure functions over the scale and scan series.

Each rule takes values (fills, scans, registry records, counts, times) and returns
``Finding`` values whose ``details`` carry the evidence they rest on: scan ids, fill
start and end, the scale, the cylinder, the figures compared. No I/O, no clock: ``now``
is an argument. The live engine (``engine.py``) and the day-long batch evaluation
(``evaluate_day``) call the same functions.

Detail keys the alerts' evidence planner reads: ``scan_ids``, ``cylinder``, ``scale``,
``fill_start``, ``fill_end``, ``camera``, ``snapshot_at``.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any

from monitor.findings import Finding
from monitor.series.model import Fill, ScanRecord
from monitor.series.validity import Cylinder

UNIDENTIFIED = "unidentified"  # the subject of a fill whose cylinder nobody identified


@dataclass(frozen=True)
class Params:
    prefill_window_s: float = 600.0
    postfill_window_s: float = 900.0
    overfill_tolerance_kg: float = 0.5
    stock_hold_s: float = 120.0
    silent_after_s: float = 120.0
    tare_match_kg: float = 2.0
    scan_lead_s: float = 5.0  # a scan stamped this much after the fill start still counts (clocks differ)


def _iso(t: datetime) -> str:
    return t.isoformat()


def fill_details(f: Fill) -> dict[str, Any]:
    return {"fill_id": f.id, "fill_start": _iso(f.started_at), "fill_end": _iso(f.ended_at), "scale": f.scale,
            "gun": f.gun, "tare_kg": f.tare_kg, "gross_kg": f.gross_kg, "net_kg": f.net_kg,
            "readings": f.readings, "flags": list(f.flags), "cylinder": f.cylinder}


# --- matching fills to their pre-fill scans ------------------------------------------------


@dataclass
class ScanIndex:
    """Pre-fill scans per site, sorted by time, for matching fills to them."""

    by_site: dict[str, list[ScanRecord]] = field(default_factory=dict)
    times: dict[str, list[datetime]] = field(default_factory=dict)

    @classmethod
    def of(cls, scans: Iterable[ScanRecord]) -> ScanIndex:
        by: dict[str, list[ScanRecord]] = defaultdict(list)
        for s in scans:
            if s.step == "prefill_check":
                by[s.site].append(s)
        idx = cls()
        for site, ss in by.items():
            ss.sort(key=attrgetter("ts", "id"))
            idx.by_site[site] = ss
            idx.times[site] = [s.ts for s in ss]
        return idx

    def window(self, site: str, start: datetime, end: datetime) -> list[ScanRecord]:
        ts = self.times.get(site)
        if not ts:
            return []
        lo = bisect.bisect_left(ts, start)
        hi = bisect.bisect_right(ts, end)
        return self.by_site[site][lo:hi]


@dataclass(frozen=True)
class Match:
    fill: Fill
    scan: ScanRecord | None  # the pre-fill scan of a valid cylinder this fill rests on
    considered: tuple[ScanRecord, ...]  # scans in the window that did not fit (evidence)
    why: str  # how it matched, or why not

    @property
    def cylinder(self) -> str | None:
        return self.fill.cylinder or (self.scan.cylinder if self.scan else None)


def match_fill(fill: Fill, candidates: Sequence[ScanRecord], cylinders: Mapping[str, Cylinder],
               used: set[str], p: Params) -> Match:
    """The pre-fill scan a fill rests on: the latest of the fill's cylinder when the scale
    reported its code; otherwise, of the unused scans of valid cylinders whose registered
    tare agrees with the measured one within ``tare_match_kg``, the closest tare (then the
    latest): a fill does not take the scan of a different-sized cylinder filled next to it."""
    considered: list[ScanRecord] = []
    best: tuple[float, int] | None = None
    best_scan: ScanRecord | None = None
    for k, s in enumerate(reversed(candidates)):  # latest first
        if s.id in used:
            continue
        if fill.cylinder is not None and s.cylinder != fill.cylinder:
            continue
        if s.validity != "ok":
            considered.append(s)
            continue
        if fill.cylinder is not None:
            return Match(fill, s, tuple(considered), "code")
        cyl = cylinders.get(s.cylinder)
        diff = abs(cyl.tare_kg - fill.tare_kg) if cyl is not None else p.tare_match_kg
        if diff > p.tare_match_kg:
            considered.append(s)
            continue
        if best is None or (diff, k) < best:
            best, best_scan = (diff, k), s
    if best_scan is not None:
        return Match(fill, best_scan, tuple(x for x in considered), "tare")
    if considered:
        why = "only scans of invalid cylinders or of cylinders of another tare"
    elif fill.cylinder:
        why = f"no pre-fill scan of {fill.cylinder} at {fill.site} in the {p.prefill_window_s:.0f}s before"
    else:
        why = f"no pre-fill scan at {fill.site} in the {p.prefill_window_s:.0f}s before"
    return Match(fill, None, tuple(considered), why)


def match_fills(fills: Iterable[Fill], index: ScanIndex, cylinders: Mapping[str, Cylinder], p: Params,
                used: set[str] | None = None) -> list[Match]:
    """Match fills to pre-fill scans, each scan to one fill at most: first the fills whose
    scale reported the code (exact), then the others (in start order) from what is left,
    so an unidentified fill never takes the scan an identified one rests on."""
    used = set() if used is None else used
    ordered = sorted(fills, key=attrgetter("started_at", "site", "scale"))
    found: dict[int, Match] = {}
    for pass_coded in (True, False):
        for i, f in enumerate(ordered):
            if (f.cylinder is not None) != pass_coded:
                continue
            cands = index.window(f.site, f.started_at - timedelta(seconds=p.prefill_window_s),
                                 f.started_at + timedelta(seconds=p.scan_lead_s))
            m = match_fill(f, cands, cylinders, used, p)
            if m.scan is not None:
                used.add(m.scan.id)
            found[i] = m
    return [found[i] for i in range(len(ordered))]


# --- the rules -----------------------------------------------------------------------------


def fill_without_scan(matches: Iterable[Match]) -> list[Finding]:
    """A fill with no pre-fill scan of a valid cylinder at that station shortly before."""
    out = []
    for m in matches:
        if m.scan is not None:
            continue
        f = m.fill
        d = fill_details(f)
        d.update(scan_ids=[s.id for s in m.considered], why=m.why,
                 scans_considered=[{"id": s.id, "cylinder": s.cylinder, "validity": s.validity,
                                    "ts": _iso(s.ts)} for s in m.considered])
        what = f"cylinder {f.cylinder}" if f.cylinder else "an unidentified cylinder"
        out.append(Finding(
            rule="fill_without_scan", site=f.site, source=f.scale, subject=f.cylinder or UNIDENTIFIED,
            ts=f.started_at, summary=f"fill of {what} on scale {f.scale} without a pre-fill scan ({m.why})",
            details=d,
        ))
    return out


def overfill_limit(cyl: Cylinder, p: Params) -> float:
    return cyl.nominal_kg + p.overfill_tolerance_kg


def overfill(matches: Iterable[Match], cylinders: Mapping[str, Cylinder], p: Params) -> list[Finding]:
    """Net filled weight above the cylinder's rated fill plus the tolerance."""
    out = []
    for m in matches:
        code = m.cylinder
        cyl = cylinders.get(code) if code else None
        if cyl is None or code is None:
            continue
        f = m.fill
        if f.net_kg > overfill_limit(cyl, p):
            out.append(overfill_finding(f.site, f.scale, code, cyl, f.net_kg, p, at=f.ended_at,
                                        details=fill_details(f), scan=m.scan))
    return out


def overfill_finding(site: str, scale: str, code: str, cyl: Cylinder, net: float, p: Params, *, at: datetime,
                     details: dict[str, Any], scan: ScanRecord | None) -> Finding:
    d = dict(details)
    d.update(cylinder=code, nominal_kg=cyl.nominal_kg, tolerance_kg=p.overfill_tolerance_kg,
             net_kg=round(net, 3), scan_ids=[scan.id] if scan else [])
    return Finding(
        rule="overfill", site=site, source=scale, subject=code, ts=at,
        summary=f"overfill: {net:.1f} kg into a {cyl.nominal_kg:g} kg cylinder {code} (limit "
                f"{overfill_limit(cyl, p):.1f} kg)",
        details=d,
    )


def invalid_cylinder(scans: Iterable[ScanRecord]) -> list[Finding]:
    """A scan of a cylinder that may not be filled or used, one finding per reason."""
    out = []
    for s in scans:
        if s.validity in ("ok", "pending"):
            continue
        out.append(Finding(
            rule="invalid_cylinder", site=s.site, source=s.app or "app", subject=s.cylinder, ts=s.ts,
            reason=s.validity,
            summary=f"{s.step} scan of cylinder {s.cylinder} at {s.site}: {s.validity.replace('_', ' ')}",
            details={"scan_ids": [s.id], "cylinder": s.cylinder, "step": s.step, "scan_ts": _iso(s.ts),
                     "app": s.app},
        ))
    return out


def missing_postfill_check(prefill: Iterable[ScanRecord], postfill: Iterable[ScanRecord], *, now: datetime,
                           p: Params, filled: set[str] | None = None) -> list[Finding]:
    """A pre-fill scan of a valid cylinder with no post-fill check of it at that station
    within ``postfill_window_s`` (judged once the window is over). ``filled``: when given,
    only pre-fill scans that a fill rested on count (a cylinder refused at inspection is
    not filled, so not checked after)."""
    window = timedelta(seconds=p.postfill_window_s)
    post: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for s in postfill:
        if s.step == "postfill_check":
            post[(s.site, s.cylinder)].append(s.ts)
    for v in post.values():
        v.sort()
    out = []
    for s in prefill:
        if s.step != "prefill_check" or s.validity != "ok" or s.ts + window > now:
            continue
        if filled is not None and s.id not in filled:
            continue
        times = post.get((s.site, s.cylinder), [])
        i = bisect.bisect_right(times, s.ts)
        if i < len(times) and times[i] <= s.ts + window:
            continue
        out.append(Finding(
            rule="missing_postfill_check", site=s.site, source=s.app or "app", subject=s.cylinder,
            ts=s.ts + window,
            summary=f"cylinder {s.cylinder}: no post-fill check within {p.postfill_window_s / 60:.0f} min "
                    f"of its pre-fill scan",
            details={"scan_ids": [s.id], "cylinder": s.cylinder, "prefill_ts": _iso(s.ts),
                     "due_by": _iso(s.ts + window)},
        ))
    return out


@dataclass(frozen=True)
class CountSample:
    ts: datetime
    camera: str
    count: int


@dataclass
class Episode:
    """One camera's run of "count above stock": since when, and whether it was raised."""

    since: datetime | None = None
    raised: bool = False


def stock_mismatch(site: str, counts: Sequence[CountSample], moves: Sequence[tuple[datetime, int]], *,
                   opening: int, p: Params, episodes: dict[str, Episode] | None = None) -> list[Finding]:
    """An outlet's video count above its scan-derived stock for longer than ``stock_hold_s``.

    ``moves``: (time, +1 for each outlet_receive, -1 for each deliver), sorted; ``opening``:
    the stock before the first move. Raises once per episode (when it has held long
    enough) and clears (``active=False``) when the count is back within the stock.
    ``episodes`` (by camera) carries an episode from one call to the next; the caller owns it.
    """
    hold = timedelta(seconds=p.stock_hold_s)
    episodes = {} if episodes is None else episodes
    times = [t for t, _ in moves]
    cum: list[int] = []
    acc = opening
    for _, d in moves:
        acc += d
        cum.append(acc)
    out: list[Finding] = []
    for smp in sorted(counts, key=lambda s: (s.ts, s.camera)):
        i = bisect.bisect_right(times, smp.ts)
        stock = cum[i - 1] if i else opening
        ep = episodes.setdefault(smp.camera, Episode())
        if smp.count > stock:
            if ep.since is None:
                ep.since = smp.ts
            if not ep.raised and smp.ts - ep.since >= hold:
                ep.raised = True
                out.append(Finding(
                    rule="stock_mismatch", site=site, source=smp.camera, subject=site, ts=smp.ts,
                    summary=f"{smp.count} cylinders seen at {site}, {stock} by the scans, for "
                            f"{(smp.ts - ep.since).total_seconds():.0f}s: unscanned cylinders on site",
                    details={"camera": smp.camera, "video_count": smp.count, "scan_stock": stock,
                             "since": _iso(ep.since), "snapshot_at": _iso(smp.ts)},
                ))
        else:
            if ep.raised:
                out.append(Finding(
                    rule="stock_mismatch", site=site, source=smp.camera, subject=site, ts=smp.ts, active=False,
                    summary=f"video count at {site} back within the scan-derived stock ({smp.count} <= {stock})",
                    details={"camera": smp.camera, "video_count": smp.count, "scan_stock": stock},
                ))
            ep.since = None
            ep.raised = False
    return out


@dataclass(frozen=True)
class Interval:
    site: str
    scale: str
    start: datetime
    end: datetime | None  # None: still filling

    def contains(self, t: datetime) -> bool:
        return self.start <= t and (self.end is None or t <= self.end)


def antistatic_during_fill(antistatic: Iterable[Finding], filling: Iterable[Interval]) -> list[Finding]:
    """An ``antistatic_skipped`` finding while one of that station's scales is filling:
    the same finding raised to critical as ``antistatic_during_fill``."""
    by_site: dict[str, list[Interval]] = defaultdict(list)
    for iv in filling:
        by_site[iv.site].append(iv)
    out = []
    for f in antistatic:
        if f.rule != "antistatic_skipped" or not f.active:
            continue
        scales = sorted({iv.scale for iv in by_site.get(f.site, []) if iv.contains(f.ts)})
        if not scales:
            continue
        d = dict(f.details)
        d.update(antistatic_source=f.source, scales=scales, scale=scales[0],
                 camera=f.details.get("camera", f.source), snapshot_at=f.details.get("snapshot_at", _iso(f.ts)))
        out.append(Finding(
            rule="antistatic_during_fill", site=f.site, source=f.source, subject=f.subject, ts=f.ts,
            summary=f"anti-static discharge skipped while scale(s) {', '.join(scales)} were filling: {f.summary}",
            details=d,
        ))
    return out


def device_silent(last_seen: Mapping[tuple[str, str], datetime], *, now: datetime, p: Params,
                  kind: str = "scale") -> list[Finding]:
    """Devices (site, id) whose last report is older than ``silent_after_s``."""
    out = []
    limit = timedelta(seconds=p.silent_after_s)
    for (site, dev), seen in sorted(last_seen.items()):
        if now - seen > limit:
            out.append(Finding(
                rule="device_silent", site=site, source=dev, subject=dev, ts=now,
                summary=f"{kind} {dev} at {site} silent for {(now - seen).total_seconds():.0f}s",
                details={"kind": kind, "last_seen": _iso(seen), "scale": dev if kind == "scale" else None},
            ))
    return out
