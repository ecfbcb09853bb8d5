"""``monitor registry import FILE.csv``: load or update the cylinder registry."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def cmd_registry(args: argparse.Namespace) -> int:
    from monitor.cli import _cli_actor, _db_url, _run, _with_conn
    from monitor.series.registry import import_csv

    async def run(conn: Any) -> int:
        rep = await import_csv(conn, args.file, actor=_cli_actor(), check_sites=not args.any_owner)
        print(f"rows loaded: {rep.loaded} (new {rep.new}, updated {rep.updated}, unchanged {rep.unchanged}) "
              f"in {rep.seconds:.1f}s")
        print(f"rows refused: {len(rep.refused)}")
        for line, why in rep.refused[: args.show]:
            print(f"  line {line}: {why}")
        if len(rep.refused) > args.show:
            print(f"  ... and {len(rep.refused) - args.show} more (--show N to list them)")
        if args.refused_out:
            with open(args.refused_out, "w", encoding="utf-8") as f:  # noqa: ASYNC230 (a CLI)
                for line, why in rep.refused:
                    f.write(f"{line}\t{why}\n")
        return 1 if rep.refused else 0

    return _run(_with_conn(_db_url(args), run))


def register(sub: Any) -> None:
    c = sub.add_parser("registry", help="the cylinder registry")
    acts = c.add_subparsers(dest="action", required=True)
    a = acts.add_parser("import", help="load or update cylinders from a CSV (header: see DESIGN.md)")
    a.add_argument("file")
    a.add_argument("--config", help="the city's configuration (for database.url)")
    a.add_argument("--database-url")
    a.add_argument("--show", type=int, default=50, help="refused rows to list (default 50)")
    a.add_argument("--refused-out", help="write every refused line and why to this file")
    a.add_argument("--any-owner", action="store_true", help="do not check owner_site against the known stations")
    c.set_defaults(func=cmd_registry)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: monitor registry import FILE.csv")
