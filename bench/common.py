"""What the benchmarks share: percentiles, a latency summary, and the machine a run was on."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Sequence
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
