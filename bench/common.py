"""What the benchmarks share: percentiles, a latency summary, the machine a run was on, and
the paced load (a steady rate, idle scale readings)."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any


def pct(xs: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``xs``, interpolated linearly between the two nearest samples
    (numpy's default); NaN where there are none."""
    s = sorted(xs)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary_ms(xs: Sequence[float]) -> dict[str, Any]:
    """Seconds in, milliseconds out: n, p50, p95, p99, max and mean (max and mean None for none)."""
    ms = [x * 1000 for x in xs]
    return {"n": len(ms), "p50": round(pct(ms, 0.5), 2), "p95": round(pct(ms, 0.95), 2),
            "p99": round(pct(ms, 0.99), 2), "max": round(max(ms), 2) if ms else None,
            "mean": round(statistics.fmean(ms), 2) if ms else None}


def machine(**extra: Any) -> dict[str, Any]:
    """The machine a run was on (platform, Python, CPU count), then what the bench adds in the
    order given: a load average, a note on the figures."""
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            **extra}


async def paced(rate: float, seconds: float) -> AsyncIterator[int]:
    """0, 1, 2, ... for ``seconds``, the i-th not before ``i / rate`` seconds from the start (never
    ahead of the rate, catching up when behind); as fast as the consumer goes when ``rate`` is 0."""
    t0 = time.time()
    i = 0
    while time.time() - t0 < seconds:
        if rate > 0:
            due = t0 + i / rate
            if due > time.time():
                await asyncio.sleep(due - time.time())
        yield i
        i += 1


async def fire_paced(rate: float, seconds: float, start: Callable[[int], Awaitable[None]], *,
                     drain_s: float = 60.0) -> tuple[int, float]:
    """Start ``start(i)`` at each step of ``paced`` without waiting for the earlier ones (an open
    load: a slow service does not slow the offer), then wait at most ``drain_s`` for those still
    running. ``start`` runs at its step; what it returns is awaited in a task. Returns (how many
    were started, the seconds the offer took)."""
    pending: set[asyncio.Future[None]] = set()
    t0 = time.time()
    offered = 0
    async for i in paced(rate, seconds):
        task = asyncio.ensure_future(start(i))
        pending.add(task)
        task.add_done_callback(pending.discard)
        offered = i + 1
    wall = time.time() - t0
    if pending:
        await asyncio.wait(list(pending), timeout=drain_s)
    return offered, wall


def idle_reading(last: dict[tuple[str, str], datetime], site: str, scale: str, i: int) -> tuple[datetime, bytes]:
    """An idle scale's reading (no fill: the load measures ingest, not the rules), timed now but
    strictly after the scale's previous one (``last`` is updated)."""
    ts = datetime.now(UTC)
    prev = last.get((site, scale))
    if prev is not None and ts <= prev:
        ts = prev + timedelta(microseconds=1)
    last[(site, scale)] = ts
    body = json.dumps({"ts": ts.isoformat(), "gross_kg": round((i % 7) * 0.01, 2), "gun_open": False,
                       "cylinder": None}).encode()
    return ts, body
