"""``make bench``: every benchmark in turn; each writes ``bench/results/<area>.json``.

    .venv/bin/python -m bench                 # full runs (long)
    BENCH_QUICK=1 .venv/bin/python -m bench   # quick runs, about a minute each
    .venv/bin/python -m bench video alerts    # some of them
"""

from __future__ import annotations

import subprocess
import sys

AREAS = ("video", "detectors", "series", "alerts", "control", "wallboard", "city", "scaleout")


def main(argv: list[str]) -> int:
    wanted = argv or list(AREAS)
    unknown = [a for a in wanted if a not in AREAS]
    if unknown:
        print(f"bench: unknown area(s) {', '.join(unknown)}; one of {', '.join(AREAS)}", file=sys.stderr)
        return 2
    failed = []
    for area in wanted:
        print(f"== bench.{area}", flush=True)
        if subprocess.call([sys.executable, "-m", f"bench.{area}"]) != 0:
            failed.append(area)
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
