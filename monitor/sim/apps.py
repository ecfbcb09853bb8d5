"""Simulated station and outlet apps: scans posted over HTTP with an API key, and a
simulated day of the city's scans and fills.

``AppSim`` posts scans the way the real apps do (one, or a batch, retried on failure with
the same ids). ``city_day`` builds one day of a city's life from a registry sample: per
fill a pre-fill scan, the fill, a post-fill check; then the outlets receive the full
cylinders and deliver them; with injectable faults (unscanned fills, overfills,
invalid cylinders scanned, missing post-fill checks). Used by the demo, the tests and
the benchmarks; no product module imports it.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from monitor.config import Config
from monitor.series.model import Fill, ScanRecord
from monitor.series.validity import Cylinder


def scan(cylinder: str, site: str, step: str, *, ts: datetime | None = None, operator: str = "sim",
         scan_id: str | None = None, photos: Sequence[str] = ()) -> dict[str, Any]:
    """One scan as the apps post it (DESIGN.md)."""
    out: dict[str, Any] = {"id": scan_id or uuid.uuid4().hex, "cylinder": cylinder, "site": site, "step": step,
                           "ts": (ts or datetime.now(UTC)).isoformat(), "operator": operator}
    if photos:
        out["photos"] = list(photos)
    return out


class AppSim:
    """One app: posts scans with its API key; a failed upload is retried with the same ids."""

    def __init__(self, base_url: str, key: str, http: aiohttp.ClientSession, *, retries: int = 3) -> None:
        self.url = base_url.rstrip("/") + "/api/v1/scans"
        self.headers = {"Authorization": f"Bearer {key}"}
        self.http = http
        self.retries = retries
        self.posted = 0

    async def post(self, scans: Sequence[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        body: Any = scans[0] if len(scans) == 1 else {"scans": list(scans)}
        status, reply = 0, {}
        for attempt in range(self.retries + 1):
            try:
                async with self.http.post(self.url, json=body, headers=self.headers,
                                          timeout=aiohttp.ClientTimeout(total=30)) as r:
                    status, reply = r.status, await r.json()
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            if status and status < 500:
                break
            await asyncio.sleep(0.2 * 2**attempt)
        self.posted += len(scans)
        return status, reply


@dataclass
class DayFaults:
    unscanned_fill: float = 0.01  # fills with no pre-fill scan
    overfill: float = 0.005
    invalid_scanned: float = 0.01  # pre-fill scans of an invalid cylinder (refused: not filled)
    missing_postfill: float = 0.01


@dataclass
class Day:
    fills: list[Fill] = field(default_factory=list)
    scans: list[ScanRecord] = field(default_factory=list)
    truth: dict[str, int] = field(default_factory=dict)


def city_day(cfg: Config, cylinders: Sequence[Cylinder], invalid: Sequence[str], *, day: datetime, fills: int,
             seed: int = 1, faults: DayFaults | None = None) -> Day:
    """One simulated day: ``fills`` fills over the stations' scales, 06:00-22:00 local,
    each with its scans; ``cylinders`` are valid registry records to fill, ``invalid``
    codes of invalid (or unregistered) cylinders that get scanned and refused."""
    rng = random.Random(seed)
    faults = faults or DayFaults()
    stations = [s for s in cfg.sites if s.kind == "station" and s.scales]
    outlets = [s.id for s in cfg.sites if s.kind == "outlet"] or [stations[0].id]
    out = Day(truth={"unscanned_fill": 0, "overfill": 0, "invalid_scanned": 0, "missing_postfill": 0})
    by_owner: dict[str, list[Cylinder]] = {}
    for c in cylinders:
        by_owner.setdefault(c.owner_site, []).append(c)
    scales = [(s.id, sc.id, sc.gun) for s in stations for sc in s.scales]
    per_scale = max(1, fills // len(scales))
    span = 16 * 3600.0
    for site, scale, gun in scales:
        own = by_owner.get(site) or list(cylinders)
        gap = span / per_scale
        for k in range(per_scale):
            start = day + timedelta(seconds=k * gap + rng.uniform(0, gap * 0.3))
            cyl = rng.choice(own)
            net = cyl.nominal_kg + rng.uniform(-0.3, 0.2)
            if rng.random() < faults.overfill:
                net = cyl.nominal_kg + rng.uniform(1.0, 3.0)
                out.truth["overfill"] += 1
            code = cyl.code if rng.random() < 0.7 else None  # not every scale reads the code
            dur = net / 0.25
            f = Fill(site=site, scale=scale, gun=gun, started_at=start + timedelta(seconds=40),
                     ended_at=start + timedelta(seconds=40 + dur), tare_kg=cyl.tare_kg,
                     gross_kg=round(cyl.tare_kg + net, 2), cylinder=code, readings=int(dur) + 10)
            out.fills.append(f)
            if rng.random() < faults.unscanned_fill:
                out.truth["unscanned_fill"] += 1
            else:
                out.scans.append(_rec(cyl.code, site, "prefill_check", start, rng))
            if rng.random() < faults.missing_postfill:
                out.truth["missing_postfill"] += 1
            else:
                out.scans.append(_rec(cyl.code, site, "postfill_check", f.ended_at + timedelta(seconds=90), rng))
            ol = rng.choice(outlets)
            t = f.ended_at + timedelta(hours=rng.uniform(1, 4))
            out.scans.append(_rec(cyl.code, ol, "outlet_receive", t, rng))
            t2 = t + timedelta(hours=rng.uniform(0.5, 6))
            out.scans.append(_rec(cyl.code, ol, "deliver", t2, rng))
            out.scans.append(_rec(cyl.code, ol, "install", t2 + timedelta(minutes=20), rng))
            out.scans.append(_rec(cyl.code, ol, "empty_return", t2 + timedelta(minutes=25), rng))
            if invalid and rng.random() < faults.invalid_scanned:
                out.truth["invalid_scanned"] += 1
                out.scans.append(_rec(rng.choice(invalid), site, "prefill_check",
                                      start - timedelta(seconds=rng.uniform(60, 300)), rng))
    out.scans.sort(key=lambda s: s.ts)
    return out


def _rec(code: str, site: str, step: str, ts: datetime, rng: random.Random) -> ScanRecord:
    """A scan not yet judged (``pending``): the caller judges it against the registry."""
    return ScanRecord(id=f"{rng.getrandbits(64):016x}", ts=ts, cylinder=code, site=site, step=step,
                      validity="pending", operator="sim", app="sim")
