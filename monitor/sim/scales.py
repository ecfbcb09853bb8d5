"""Simulated filling scales speaking the real MQTT contract.

``fill_readings`` is pure: the readings one fill produces (empty scale, tare, the filling
curve with noise, gun closed, removal), with injectable faults: ``overfill_kg``, no
pre-fill scan (the caller simply does not post one), ``lift_at_s`` (a cylinder lifted
mid-fill), ``drop`` (missing readings), ``gun_signal=False`` (a bypassed gun controller).
``ScaleSim`` publishes such readings on ``{prefix}/{site}/scale/{scale}/reading`` (QoS 1)
and can fall silent. Used by the demo, the tests and the benchmarks; no product module
imports it.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from monitor.series.model import Reading

Publish = Callable[[str, bytes], Awaitable[None]]


@dataclass(frozen=True)
class FillPlan:
    cylinder: str | None  # the code the scale reports (None: a scale without a reader)
    tare_kg: float
    nominal_kg: float
    start: datetime  # when the cylinder is placed
    rate_kg_s: float = 0.25
    overfill_kg: float = 0.0
    lift_at_s: float | None = None  # seconds after the gun opens
    lift_s: float = 4.0
    drop: float = 0.0  # share of readings lost
    gun_signal: bool = True
    report_code: bool = True


def fill_readings(site: str, scale: str, plan: FillPlan, *, period_s: float = 1.0, noise_kg: float = 0.03,
                  rng: random.Random | None = None, settle_s: float = 5.0) -> list[Reading]:
    """The readings of one fill, every ``period_s`` from the placement to the removal."""
    rng = rng or random.Random(0)
    out: list[Reading] = []
    code = plan.cylinder if plan.report_code else None
    target = plan.nominal_kg + plan.overfill_kg
    fill_s = target / plan.rate_kg_s
    t = 0.0
    timeline: list[tuple[float, float, bool, str | None]] = []  # (t, weight, gun, code)
    # before: the empty scale
    for _ in range(2):
        timeline.append((t, 0.0, False, None))
        t += period_s
    # placed: tare
    while t < 2 * period_s + settle_s:
        timeline.append((t, plan.tare_kg, False, code))
        t += period_s
    gun_at = t
    while t - gun_at < fill_s:
        dt = t - gun_at
        lifted = plan.lift_at_s is not None and plan.lift_at_s <= dt < plan.lift_at_s + plan.lift_s
        w = 0.0 if lifted else plan.tare_kg + plan.rate_kg_s * dt
        timeline.append((t, w, plan.gun_signal, None if lifted else code))
        t += period_s
    gross = plan.tare_kg + target
    closed_at = t
    while t - closed_at < settle_s:
        timeline.append((t, gross, False, code))
        t += period_s
    for _ in range(3):
        timeline.append((t, 0.0, False, None))
        t += period_s
    for i, (dt, w, gun, c) in enumerate(timeline):
        if 0 < i < len(timeline) - 1 and plan.drop > 0 and rng.random() < plan.drop:
            continue
        noisy = w + rng.gauss(0, noise_kg) if w > 0 else abs(rng.gauss(0, noise_kg / 2))
        out.append(Reading(ts=plan.start + timedelta(seconds=dt), site=site, scale=scale,
                           gross_kg=round(noisy, 3), gun_open=gun, cylinder=c))
    return out


def payload(r: Reading) -> bytes:
    return json.dumps({"ts": r.ts.astimezone(UTC).isoformat(), "gross_kg": r.gross_kg, "gun_open": r.gun_open,
                       "cylinder": r.cylinder}).encode()


def topic(prefix: str, r: Reading) -> str:
    return f"{prefix}/{r.site}/scale/{r.scale}/reading"


class ScaleSim:
    """One simulated scale: publishes readings in real time (or as fast as asked)."""

    def __init__(self, prefix: str, site: str, scale: str, publish: Publish) -> None:
        self.prefix = prefix
        self.site = site
        self.scale = scale
        self.publish = publish
        self.silent = False
        self.sent = 0

    async def play(self, readings: Iterable[Reading], *, speed: float = 1.0, retime: bool = True) -> None:
        """Publish ``readings``; ``retime`` stamps them with the wall clock at sending.

        ``speed`` > 1 plays faster than real time; ``speed`` <= 0 sends back to back.
        """
        prev: datetime | None = None
        for r in readings:
            if prev is not None and speed > 0:
                await asyncio.sleep(max(0.0, (r.ts - prev).total_seconds() / speed))
            prev = r.ts
            if self.silent:
                continue
            out = Reading(ts=datetime.now(UTC), site=r.site, scale=r.scale, gross_kg=r.gross_kg,
                          gun_open=r.gun_open, cylinder=r.cylinder) if retime else r
            await self.publish(topic(self.prefix, out), payload(out))
            self.sent += 1

    async def heartbeat(self, period_s: float, stop: asyncio.Event) -> None:
        """Idle readings (empty scale) every ``period_s`` until ``stop`` is set."""
        while not stop.is_set():
            if not self.silent:
                r = Reading(ts=datetime.now(UTC), site=self.site, scale=self.scale, gross_kg=0.0, gun_open=False)
                await self.publish(topic(self.prefix, r), payload(r))
                self.sent += 1
            try:
                await asyncio.wait_for(stop.wait(), period_s)
            except TimeoutError:
                pass
