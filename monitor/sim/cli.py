"""``monitor simulate``: the simulated city's command line.

monitor simulate scenes --out DIR --count N --kind station|outlet --seed S
    [--seconds 40] [--fps 10] [--size 640x360] [--difficulty 0.3] [--capacity N] [--format h264|mp4]

Writes ``DIR/<kind>-<seed>.h264`` (or ``.mp4``) and ``.truth.json`` beside each, seeds
S, S+1, ... S+N-1, and prints one JSON line per clip with its events summary.

monitor simulate cameras --dir DIR [--port 8554]
    Serves every ``.h264`` in DIR as a live, looping camera at rtsp://127.0.0.1:PORT/<name>
    (the GStreamer RTSP server, run with /usr/bin/python3).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from monitor.errors import ConfigError


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from e
    return w, h


def cmd_scenes(args: argparse.Namespace) -> int:
    from monitor.sim.scenes import SceneSpec, load_truth, write_clip

    out = Path(args.out)
    if args.count < 1:
        raise ConfigError(f"--count: expected >= 1, got {args.count}")
    for i in range(args.count):
        seed = args.seed + i
        try:
            spec = SceneSpec(
                kind=args.kind, seed=seed, seconds=args.seconds, fps=args.fps, size=args.size,
                capacity=args.capacity, difficulty=args.difficulty,
            )
        except ValueError as e:
            raise ConfigError(str(e).replace("SceneSpec.", "--")) from e
        clip = out / f"{args.kind}-{seed}.{args.format}"
        tpath = write_clip(spec, clip)
        ev = load_truth(tpath)["events"]
        summary: dict[str, Any] = {"clip": str(clip), "truth": str(tpath), "seed": seed}
        if args.kind == "station":
            summary["people"] = len(ev["people"])
            summary["violations"] = sum(1 for p in ev["people"] if p["violation"])
        else:
            summary["capacity"] = ev["capacity"]
            summary["over_capacity"] = ev["over_capacity"]
        print(json.dumps(summary), flush=True)
    return 0


def cmd_cameras(args: argparse.Namespace) -> int:
    d = Path(args.dir)
    if not d.is_dir():
        raise ConfigError(f"--dir: not a folder: {d}")
    server = Path(__file__).with_name("rtsp_server.py")
    cmd = [args.python, str(server), "--port", str(args.port), "--dir", str(d)]
    env = {**os.environ}
    env.pop("PYTHONPATH", None)
    try:
        return subprocess.call(cmd, env=env)
    except FileNotFoundError as e:
        raise ConfigError(f"--python: cannot run {args.python}: {e.strerror}") from e
    except KeyboardInterrupt:
        return 130


def register(sub: Any) -> None:
    p = sub.add_parser("simulate", help="the simulated city: camera scenes and cameras")
    ss = p.add_subparsers(dest="sim_command", required=True, metavar="WHAT")

    c = ss.add_parser("scenes", help="render scenes to H.264 with ground truth")
    c.add_argument("--out", required=True, help="folder for the clips")
    c.add_argument("--count", type=int, default=1)
    c.add_argument("--kind", choices=["station", "outlet"], default="station")
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--seconds", type=float, default=40.0)
    c.add_argument("--fps", type=float, default=10.0)
    c.add_argument("--size", type=_size, default=(640, 360), help="WIDTHxHEIGHT")
    c.add_argument("--difficulty", type=float, default=0.3)
    c.add_argument("--capacity", type=int, default=None)
    c.add_argument("--format", choices=["h264", "mp4"], default="h264")
    c.set_defaults(func=cmd_scenes)

    c = ss.add_parser("cameras", help="serve a folder of .h264 clips as looping RTSP cameras")
    c.add_argument("--dir", required=True)
    c.add_argument("--port", type=int, default=8554)
    c.add_argument("--python", default="/usr/bin/python3", help="a Python with python3-gi (GStreamer)")
    c.set_defaults(func=cmd_cameras)


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="monitor-simulate")
    register(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args()
    sys.exit(ns.func(ns))
