"""A plausible cylinder registry for a simulated city (1.18 M cylinders for Haikou).

Cylinders belong to the stations, in proportion to their guns. Sizes: 15 kg (most), 5 kg,
50 kg; tares to match. Manufacture dates spread over 12.8 years, skewed young, so a share is past
12 years (``over_age``), a share is past 8 years without a passed inspection
(``inspection_due``), and a share is ``scrapped``. Deterministic for a seed.

``monitor simulate registry --config C --count N --out FILE.csv`` writes the CSV of
DESIGN.md; ``--load`` loads it straight into the database with binary COPY instead.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

from monitor.config import Config, load_config
from monitor.series.registry import COLUMNS, Row
from monitor.series.validity import add_years

SIZES = ((15.0, 0.80, 16.5, 0.6), (5.0, 0.12, 7.2, 0.3), (50.0, 0.08, 47.0, 1.5))  # nominal, share, tare, sd


def code_of(i: int) -> str:
    return f"HK{i:09d}"


def generate(cfg: Config, count: int, *, seed: int = 1, today: date | None = None) -> Iterator[Row]:
    """``count`` registry rows for the stations of ``cfg``."""
    rng = random.Random(seed)
    today = today or date.today()
    stations = [s for s in cfg.sites if s.kind == "station"]
    if not stations:
        raise ValueError("the configuration has no stations to own cylinders")
    weights = [max(1, len(s.guns)) for s in stations]
    owners = rng.choices([s.id for s in stations], weights=weights, k=min(count, 100_000))
    span = int(12.8 * 365)  # ages skewed young: about 5 % past 12 years
    for i in range(count):
        r = rng.random()
        nominal, tare, sd = SIZES[0][0], SIZES[0][2], SIZES[0][3]
        acc = 0.0
        for nom, share, t, s in SIZES:
            acc += share
            if r < acc:
                nominal, tare, sd = nom, t, s
                break
        made = today - timedelta(days=int(rng.random() ** 1.3 * span))
        age_y = (today - made).days / 365.25
        insp: date | None = None
        passed: bool | None = None
        if age_y >= 7.5 and rng.random() < 0.85:
            insp = min(today, add_years(made, 8) - timedelta(days=rng.randint(0, 200)))
            passed = rng.random() < 0.93
        elif age_y >= 3 and rng.random() < 0.3:
            insp = made + timedelta(days=rng.randint(365, int(age_y * 365) - 1))
            passed = True
        status = "scrapped" if rng.random() < (0.10 if age_y >= 10 else 0.005) else "in_service"
        yield (code_of(i + 1), f"V{rng.getrandbits(40):010X}", owners[i % len(owners)], nominal,
               round(rng.gauss(tare, sd), 1), made, insp, passed, status)


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def write_csv(rows: Iterator[Row], out: Any) -> int:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(COLUMNS)
    n = 0
    for r in rows:
        w.writerow([_fmt(x) for x in r])
        n += 1
    return n


def cmd_registry(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    rows = generate(cfg, args.count, seed=args.seed)
    if args.load:
        from monitor.cli import _cli_actor, _with_conn
        from monitor.series.registry import ImportReport, load_rows

        async def load(conn: Any) -> int:
            rep = await load_rows(conn, rows, ImportReport(), actor=_cli_actor(), source="simulate registry")
            print(f"rows loaded: {rep.loaded} (new {rep.new}, updated {rep.updated}, unchanged {rep.unchanged}) "
                  f"in {rep.seconds:.1f}s")
            return 0

        return asyncio.run(_with_conn(args.database_url or cfg.database.url, load))
    if args.out in (None, "-"):
        n = write_csv(rows, sys.stdout)
    else:
        with open(args.out, "w", encoding="utf-8", newline="") as f:
            n = write_csv(rows, f)
    print(f"{n} cylinders written to {args.out or 'standard output'}", file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    from monitor.cli import simulate_actions

    a = simulate_actions(sub).add_parser("registry", help="a plausible cylinder registry (CSV or straight to the DB)")
    a.add_argument("--config", required=True)
    a.add_argument("--count", type=int, default=1_180_000, help="cylinders (default: 1.18 M, Haikou)")
    a.add_argument("--seed", type=int, default=1)
    a.add_argument("--out", help="CSV file to write ('-' for standard output)")
    a.add_argument("--load", action="store_true", help="load into the database instead of writing a CSV")
    a.add_argument("--database-url")
    a.set_defaults(func=cmd_registry)
