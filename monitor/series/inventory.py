"""Inventory per outlet from scans: received full (``outlet_receive``) minus delivered
(``deliver``), as a step series. Pure; the database's ``outlet_stock_hourly`` rollup
(continuous aggregate on TimescaleDB) gives the same figures per hour."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from monitor.series.model import ScanRecord

MOVES = {"outlet_receive": 1, "deliver": -1}


def moves(scans: Iterable[ScanRecord]) -> dict[str, list[tuple[datetime, int]]]:
    """Per outlet, the stock moves in time order: (time, +1 received / -1 delivered)."""
    out: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for s in scans:
        d = MOVES.get(s.step)
        if d is not None:
            out[s.site].append((s.ts, d))
    for v in out.values():
        v.sort(key=lambda m: m[0])
    return dict(out)


def series(site_moves: Iterable[tuple[datetime, int]], opening: int = 0) -> list[tuple[datetime, int]]:
    """The stock after each move: [(time, stock)], starting from ``opening``."""
    out = []
    stock = opening
    for t, d in site_moves:
        stock += d
        out.append((t, stock))
    return out
