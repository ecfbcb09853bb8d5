"""Video workers on several machines: how fast a dead worker's cameras are analysed again.

    .venv/bin/python -m bench.scaleout              # 5 kills
    BENCH_QUICK=1 .venv/bin/python -m bench.scaleout   # 3 kills

Three ``monitor run --role video`` processes share six simulated cameras (the GStreamer
RTSP server looping rendered scenes, with the shipped detector) through leases in
PostgreSQL, at the default lease TTL and renewal. Each round SIGKILLs one worker at a
random moment (no lease given back) and measures the seconds from the kill until every
camera it held is leased by a survivor and analysed there (the survivor's per-camera
frame counter moves), and the cameras per worker before and after; then a new worker is
started and the time until the shares are even again is measured. A last round pauses a
worker (SIGSTOP) for longer than the TTL and resumes it: its cameras are taken over, and
it must analyse nothing for them after it wakes (fencing).

The reference in the same run is the lease arithmetic: a lease left by a dead worker
runs out ``lease_ttl_s - lease_renew_s`` to ``lease_ttl_s`` after the kill, and a survivor
claims it at its next renewal (up to ``lease_renew_s`` later).

Writes ``bench/results/scaleout.json``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.workers import VideoWorker, leases  # noqa: E402

WORKERS = 3
CAMERAS = 6


def _config(path: Path, db: str, mqtt: str, urls: dict[str, str], media: Path) -> None:
    import yaml

    from monitor.sim.scenes import OUTLET_ZONES, STATION_ZONES
    from tests.detectors.clips import EXPORTS, WEIGHTS

    def zones(zs: dict[str, list[tuple[float, float]]]) -> dict[str, list[list[float]]]:
        return {k: [list(p) for p in v] for k, v in zs.items()}

    sites = []
    for cam, url in urls.items():
        station = "station" in cam
        sites.append({
            "id": f"s-{cam}", "kind": "station" if station else "outlet", "storage_capacity": 100 if station else 1,
            "cameras": [{"id": cam, "url": url, "detect": {"fps": 2 if station else 1},
                         "zones": zones(STATION_ZONES if station else OUTLET_ZONES),
                         "rules": ["antistatic" if station else "storage"]}],
        })
    path.write_text(yaml.safe_dump({
        "database": {"url": db},
        "mqtt": {"url": mqtt, "prefix": f"bench{os.getpid()}"},
        "media": {"dir": str(media), "ring_s": 10},
        "detector": {"weights": str(WEIGHTS), "backend": "openvino", "imgsz": 640, "export_dir": str(EXPORTS)},
        "rules": {"storage": {"window_s": 3, "hold_s": 3}},
        "sites": sites,
    }, sort_keys=False))


def _analysing(w: VideoWorker, cams: set[str], since: dict[str, float]) -> bool:
    """Has ``w`` analysed a frame of every camera of ``cams`` since its counters stood at ``since``?"""
    frames = w.camera_frames()
    return all(frames.get(c, 0) > since.get(c, 0) for c in cams)


def _taken_over(db: str, lost: set[str], survivors: list[VideoWorker], marks: dict[str, dict[str, float]]) -> bool:
    """Is every camera of ``lost`` leased by one of ``survivors`` and analysed there since ``marks``?"""
    ls = leases(db)
    for cam in lost:
        holder = next((w for w in survivors if w.name == ls[cam]["worker"] and ls[cam]["live"]), None)
        if holder is None or not _analysing(holder, {cam}, marks[holder.name]):
            return False
    return True


def run(kills: int) -> dict[str, Any]:
    from monitor.config import MediaConfig, load_config
    from monitor.detectors.runner import resolve_weights
    from monitor.store.migrate import migrate_url
    from monitor.store.sites import sync_sites
    from tests.detectors.clips import EXPORTS, OUTLET, WEIGHTS, clip
    from tests.support.rtsp import RtspServer
    from tests.support.services import fresh_database, mosquitto_server, postgres_server
    from tests.support.workers import RtspViewers, held_by, wait_until
    from tests.test_scaleout import STATION

    media_defaults = MediaConfig()
    ttl, renew = media_defaults.lease_ttl_s, media_defaults.lease_renew_s
    resolve_weights(WEIGHTS, "openvino", 640, export_dir=EXPORTS)
    station, outlet = clip(STATION, ".h264"), clip(OUTLET, ".h264")
    files = {f"cam-{i}-{'station' if i % 2 else 'outlet'}": station if i % 2 else outlet
             for i in range(1, CAMERAS + 1)}
    rng = random.Random(9)
    rounds: list[dict[str, Any]] = []
    paused: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp_s, postgres_server() as pg, \
            mosquitto_server() as mqtt, fresh_database(pg, prefix="monitor_bench") as db, \
            RtspServer(files=files) as srv, RtspViewers([srv.url(c) for c in files]):
        tmp = Path(tmp_s)
        cfgfile = tmp / "city.yaml"
        _config(cfgfile, db, mqtt, {c: srv.url(c) for c in files}, tmp / "media")

        async def prepare() -> None:  # as the compose file's migrate service does
            await migrate_url(db)
            async with await psycopg.AsyncConnection.connect(db) as conn:
                await sync_sites(conn, load_config(cfgfile))
                await conn.commit()

        asyncio.run(prepare())
        env = {**os.environ, "DATABASE_URL": db, "MQTT_URL": mqtt}
        n_started = 0

        def start() -> VideoWorker:
            nonlocal n_started
            n_started += 1
            return VideoWorker(cfgfile, env, log=tmp / f"worker-{n_started}.log").start()

        workers = [start() for _ in range(WORKERS)]
        try:
            def even() -> bool:
                shares = held_by(db)
                live = {w.name for w in workers if w.alive}
                return set(shares) == live and sorted(len(c) for c in shares.values()) == [CAMERAS // WORKERS] * WORKERS

            wait_until(even, 120, "the cameras shared evenly")
            wait_until(lambda: all(_analysing(w, held_by(db).get(w.name, set()), {}) for w in workers), 120,
                       "every worker analyses its cameras")
            for k in range(kills):
                before = {w: set(c) for w, c in held_by(db).items()}
                victim = workers[k % len(workers)]
                lost = before[victim.name]
                survivors = [w for w in workers if w is not victim]
                marks = {w.name: w.camera_frames() for w in survivors}
                time.sleep(rng.uniform(0, renew))  # a random moment of the victim's renewal cycle
                t0 = time.monotonic()
                victim.kill()
                took = wait_until(functools.partial(_taken_over, db, lost, survivors, marks), 60,
                                  f"round {k + 1}: the dead worker's cameras analysed again", 0.1)
                after = {w: sorted(c) for w, c in held_by(db).items()}
                workers.remove(victim)
                fresh = start()
                workers.append(fresh)
                t1 = time.monotonic()
                wait_until(even, 120, f"round {k + 1}: the new worker gets its share")
                rebalance = time.monotonic() - t1
                rounds.append({
                    "takeover_s": round(took, 2), "cameras_taken": len(lost),
                    "cameras_per_worker_before": sorted(len(c) for c in before.values()),
                    "cameras_per_worker_after": sorted(len(c) for c in after.values()),
                    "new_worker_to_even_shares_s": round(rebalance, 1),
                })
                print(json.dumps(rounds[-1]), flush=True)
            wait_until(lambda: all(_analysing(w, held_by(db).get(w.name, set()), {}) for w in workers), 120,
                       "every worker analyses its cameras")
            # The paused worker: SIGSTOP past the TTL, then SIGCONT.
            sleeper = workers[0]
            lost = held_by(db)[sleeper.name]
            others = [w for w in workers if w is not sleeper]
            marks = {w.name: w.camera_frames() for w in others}
            sleeper.pause()
            t0 = time.monotonic()

            took = wait_until(functools.partial(_taken_over, db, lost, others, marks), 60,
                              "the paused worker's cameras taken over", 0.1)
            time.sleep(max(0.0, ttl + 4 - (time.monotonic() - t0)))
            sleeper.resume()
            resumed = time.monotonic()
            wait_until(lambda: bool(sleeper.metrics()), 20, "the paused worker answers again")
            first = sleeper.metrics()
            time.sleep(renew * 2 + 1)
            later = sleeper.metrics()
            analysed_after = {c: later.get("monitor_detector_camera_frames_total", {}).get(c, 0)
                              - first.get("monitor_detector_camera_frames_total", {}).get(c, 0) for c in lost}
            ls = leases(db)
            paused = {
                "paused_s": round(resumed - t0, 1), "cameras": len(lost), "taken_over_s": round(took, 2),
                "held_after_resume": sorted(c for c, r in ls.items() if r["worker"] == sleeper.name and r["live"]),
                "frames_analysed_after_resume_for_lost_cameras": analysed_after,
                "frames_skipped_not_leased": later.get("monitor_detector_frames_skipped_total", {}).get("not_leased", 0),
            }
        finally:
            for w in workers:
                w.stop()
    took_all = [r["takeover_s"] for r in rounds]
    return {
        "area": "scaleout",
        "quick": kills < 5,
        "command": f"{'BENCH_QUICK=1 ' if kills < 5 else ''}.venv/bin/python -m bench.scaleout",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_at_end": list(os.getloadavg())},
        "setup": {"workers": WORKERS, "cameras": CAMERAS, "detect_fps": {"station": 2, "outlet": 1},
                  "lease_ttl_s": ttl, "lease_renew_s": renew, "kills": kills,
                  "what": "seconds from SIGKILL of a video worker until every camera it held is leased by a "
                          "survivor and analysed there (its per-camera analysed-frame counter moved)"},
        "figures": {
            "takeover_s": {"median": round(statistics.median(took_all), 2), "max": max(took_all),
                           "min": min(took_all), "all": took_all, "bound_in_issue_s": 15.0},
            "rounds": rounds,
            "paused_worker": paused,
        },
        "baseline": {"what": "lease arithmetic: a dead worker's lease runs out ttl-renew..ttl after the kill and "
                             "is claimed at a survivor's next renewal",
                     "lease_runs_out_s": [ttl - renew, ttl], "claimed_by_s": ttl + renew,
                     "ratio_median_to_claimed_by": round(statistics.median(took_all) / (ttl + renew), 2)},
        "time": datetime.now(UTC).isoformat(),
    }


def main() -> None:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(ROOT / "var" / "yolo"))
    kills = int(os.environ.get("BENCH_KILLS", "3" if os.environ.get("BENCH_QUICK") else "5"))
    out = run(kills)
    text = json.dumps(out, indent=1, ensure_ascii=False, default=str)
    print(text)
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "scaleout.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
