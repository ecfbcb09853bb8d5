"""``monitor analyze``: run one camera's detectors over a recording (or a live URL).

    monitor analyze --config city.yaml --camera st-minwang-entry --source clip.mp4 --json

prints one JSON object per finding::

    {"rule": "antistatic_skipped", "camera": ..., "ts": 12.4, "track": 3, "active": true, ...}
    {"rule": "storage_over_capacity", "camera": ..., "ts": 81.0, "count": 34, "capacity": 30, ...}

(``ts`` in seconds from the start of the source), then one summary line
(``{"summary": true, "frames": ..., "findings": ...}``), and exits 0. An unknown camera or
an unreadable source is one line on standard error and exit 2.

The frames go through the same code as the live service: decoded with PyAV, sampled to
the camera's ``detect.fps``, motion-gated, batched into the model runner, then the
camera's ``CameraPipeline`` (tracker, rules, snapshots).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from monitor.config import Config, load_config
from monitor.detectors.pipeline import CameraPipeline
from monitor.detectors.runner import FrameRequest, ModelRunner
from monitor.errors import NotFound, SourceError
from monitor.findings import Finding

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # the source's time zero, for findings' timestamps


def decode(source: str, fps: float, *, source_fps: float | None = None, open_timeout_s: float = 10.0
           ) -> Iterator[tuple[float, npt.NDArray[np.uint8]]]:
    """(seconds from the start, BGR image) of the source's frames, sampled to ``fps``."""
    import av

    opts: dict[str, str] = {}
    if source.startswith(("rtsp://", "rtsps://")):
        opts = {"rtsp_transport": "tcp"}
    if source_fps and not source.startswith(("rtsp://", "rtsps://", "http://", "https://")):
        opts["framerate"] = f"{source_fps:g}"
    fmt = "h264" if source.lower().endswith((".h264", ".264")) else None
    try:
        container = av.open(source, format=fmt, options=opts, timeout=(open_timeout_s, open_timeout_s))
    except (av.error.FFmpegError, OSError) as e:  # type: ignore[attr-defined]
        raise SourceError(f"cannot read {source}: {e}") from e
    with container:
        if not container.streams.video:
            raise SourceError(f"cannot read {source}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or source_fps or 25.0)
        step = 1.0 / fps
        next_t = 0.0
        t0: float | None = None
        n = 0
        try:
            for frame in container.decode(stream):
                t = frame.time if frame.time is not None and not source_fps else n / (source_fps or rate)
                n += 1
                if t0 is None:
                    t0 = t
                rel = t - t0
                if rel + 1e-6 < next_t:
                    continue
                next_t = max(next_t + step, rel + step * 0.5)
                yield rel, np.asarray(frame.to_ndarray(format="bgr24"), np.uint8)
        except av.error.FFmpegError as e:  # type: ignore[attr-defined]
            if n == 0:
                raise SourceError(f"cannot read {source}: {e}") from e


@dataclass
class Analysis:
    camera: str
    frames: int = 0
    analysed: int = 0
    findings: list[Finding] = field(default_factory=list)
    counts: list[tuple[float, int, int]] = field(default_factory=list)  # (t, raw, smoothed)
    seconds: float = 0.0
    wall_s: float = 0.0
    infer_s: float = 0.0


def finding_json(f: Finding, camera: str) -> dict[str, Any]:
    out: dict[str, Any] = {"rule": f.rule, "camera": camera, "ts": round((f.ts - EPOCH).total_seconds(), 2),
                           "active": f.active}
    if "track" in f.details:
        out["track"] = f.details["track"]
        out["dwell_s"] = f.details.get("dwell_s")
    if "count" in f.details:
        out["count"] = f.details["count"]
        out["capacity"] = f.details["capacity"]
    out["summary"] = f.summary
    return out


def analyse(cfg: Config, camera: str, frames: Iterator[tuple[float, npt.NDArray[np.uint8]]], *,
            runner: ModelRunner, gate: bool = True, snapshots: bool = False,
            on_finding: Any = None) -> Analysis:
    """Run ``camera``'s pipeline over (t, image) frames, batching the model calls."""
    pipe = CameraPipeline.for_camera(cfg, camera, gate=gate, snapshots=snapshots)
    res = Analysis(camera)
    t_wall = time.perf_counter()
    pending: list[tuple[datetime, npt.NDArray[np.uint8], bool]] = []

    def flush() -> None:
        wanted = [FrameRequest(camera, ts, img) for ts, img, w in pending if w]
        dets = iter(runner.detect(wanted)) if wanted else iter(())
        for ts, img, w in pending:
            r = pipe.process(ts, img, next(dets) if w else None)
            res.analysed += int(w)
            if r.count is not None:
                res.counts.append(((ts - EPOCH).total_seconds(), r.count.raw, r.count.count))
            for f in r.findings:
                res.findings.append(f)
                if on_finding is not None:
                    on_finding(f)
        pending.clear()

    for t, image in frames:
        ts = EPOCH + timedelta(seconds=t)
        res.frames += 1
        res.seconds = t
        pending.append((ts, image, pipe.wants(ts, image)))
        if sum(1 for p in pending if p[2]) >= runner.cfg.batch:
            flush()
    flush()
    res.wall_s = time.perf_counter() - t_wall
    res.infer_s = runner.infer_s
    return res


# --- command line ---------------------------------------------------------------------


def register(sub: Any) -> None:
    c = sub.add_parser("analyze", help="run one camera's detectors over a recording or URL")
    c.add_argument("--config", required=True)
    c.add_argument("--camera", required=True, help="camera id from the config (its zones and rules apply)")
    c.add_argument("--source", required=True, help="a video file (.mp4, .h264, ...) or an rtsp:// URL")
    c.add_argument("--json", action="store_true", help="one JSON object per line")
    c.add_argument("--backend", choices=["torch", "onnx", "openvino"], help="override detector.backend")
    c.add_argument("--weights", help="override detector.weights")
    c.add_argument("--no-gate", action="store_true", help="analyse every sampled frame (no motion gate)")
    c.add_argument("--source-fps", type=float, help="frame rate of a raw .h264 file (it carries no times)")
    c.add_argument("--snapshots", metavar="DIR", help="write each finding's annotated JPEG here")
    c.set_defaults(func=cmd_analyze)


def cmd_analyze(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    try:
        site, cam = cfg.camera(args.camera)
    except KeyError:
        known = ", ".join(c.id for _, c in cfg.cameras()) or "none"
        raise NotFound(f"unknown camera {args.camera!r} (cameras in {args.config}: {known})",
                       field="camera") from None
    src = args.source
    if "://" not in src and not Path(src).is_file():
        raise SourceError(f"cannot read {src}: no such file")
    det = cfg.detector_for(cam)
    upd = {k: v for k, v in (("backend", args.backend), ("weights", args.weights)) if v}
    if upd:
        det = det.model_copy(update=upd)
    frames = decode(src, cam.detect.fps, source_fps=args.source_fps)
    first = next(frames, None)  # open and decode before loading the model: a bad source fails fast
    if first is None:
        raise SourceError(f"cannot read {src}: no frames")
    runner = ModelRunner(det)
    snap_dir = Path(args.snapshots) if args.snapshots else None
    if snap_dir is not None:
        snap_dir.mkdir(parents=True, exist_ok=True)
    n = 0

    def emit(f: Finding) -> None:
        nonlocal n
        n += 1
        j = finding_json(f, cam.id)
        if snap_dir is not None and f.image is not None:
            p = snap_dir / f"{n:04d}-{f.rule}-{j['ts']:.1f}.jpg"
            p.write_bytes(f.image)
            j["snapshot"] = str(p)
        print(json.dumps(j, ensure_ascii=False) if args.json else f"{j['ts']:8.1f}s  {f.rule:<22} {f.summary}",
              flush=True)

    def all_frames() -> Iterator[tuple[float, npt.NDArray[np.uint8]]]:
        yield first
        yield from frames

    res = analyse(cfg, cam.id, all_frames(), runner=runner, snapshots=snap_dir is not None, on_finding=emit)
    by_rule: dict[str, int] = {}
    for f in res.findings:
        by_rule[f.rule] = by_rule.get(f.rule, 0) + 1
    summary = {
        "summary": True, "camera": cam.id, "site": site.id, "source": src, "seconds": round(res.seconds, 2),
        "frames": res.frames, "analysed": res.analysed, "findings": len(res.findings), "by_rule": by_rule,
        "max_count": max((c for _, _, c in res.counts), default=None) if res.counts else None,
        "capacity": site.storage_capacity if "storage" in cam.rules else None,
        "wall_s": round(res.wall_s, 2), "inference_s": round(res.infer_s, 2),
        "backend": det.backend, "weights": det.weights,
    }
    print(json.dumps(summary, ensure_ascii=False) if args.json else
          f"{res.frames} frames ({res.analysed} analysed) over {res.seconds:.1f}s: {len(res.findings)} finding(s)",
          file=sys.stdout)
    return 0
