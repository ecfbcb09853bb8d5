"""The whole city under load: a soak of the simulated city against the real service.

    .venv/bin/python -m bench.city            # 10 minutes (BENCH_SECONDS to change)
    BENCH_QUICK=1 .venv/bin/python -m bench.city   # 60 s

Runs the example city (3 stations, 6 outlets, their cameras at 5 fps detection, scales,
gun controllers and apps, violations on a schedule) through the real RTSP server, broker
and database, in this process beside the service, and reports: memory growth of the
process, frames decoded / dropped, alert latency from the planted violation to its alert
(p50/p95), and rows lost (scans accepted and readings published against rows stored:
must be 0). The baseline in the same run is the first minute's memory and rates.

Writes ``bench/results/city.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from bench.common import machine, pct

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pct(xs: list[float], q: float) -> float | None:
    return round(pct(xs, q), 3) if xs else None


async def run(seconds: float) -> dict[str, Any]:
    from monitor.app import build_app, wait_db_ready
    from monitor.sim.city import CitySim, Schedule
    from monitor.store.migrate import migrate
    from monitor.store.sites import sync_sites
    from monitor.web.keys import VIDEO
    from tests.conftest import city_config
    from tests.support.net import free_port
    from tests.support.services import fresh_database

    with fresh_database("postgresql://postgres@127.0.0.1:5432/postgres", prefix="monitor_bench") as db:
        cfg = city_config(db, os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883"))
        rtsp_port, flaky_port = free_port(), free_port()
        sites = []
        for s in cfg.sites:
            cams = [c.model_copy(update={"url": f"rtsp://127.0.0.1:{rtsp_port}/{c.id}"}) for c in s.cameras]
            sites.append(s.model_copy(update={"cameras": cams}))
        cfg = cfg.model_copy(update={"sites": sites, "media": cfg.media.model_copy(
            update={"dir": str(ROOT / "var" / "bench-city-media")})})
        async with await psycopg.AsyncConnection.connect(db, row_factory=dict_row) as conn:
            await migrate(conn)
            await conn.set_autocommit(False)
            await sync_sites(conn, cfg)
            await conn.commit()
        sched = Schedule(repeat_every_s=max(60.0, seconds / 3), black_cylinder_at_s=20, unscanned_fill_at_s=35,
                         overfill_at_s=50, fill_gap_s=(5.0, 15.0), fill_rate_kg_s=1.0)
        city = CitySim(cfg, f"http://127.0.0.1:{cfg.server.port}", db, ROOT / "var" / "demo", schedule=sched,
                       registry_size=3000, rtsp_port=rtsp_port, flaky_port=flaky_port)
        await city.prepare()
        await city.start_cameras()
        from aiohttp import web

        app = build_app(cfg)
        runner = web.AppRunner(app, shutdown_timeout=5.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", cfg.server.port).start()
        try:
            await wait_db_ready(app, 60)
            await city.start_actors()
            t0 = time.monotonic()
            cpu0 = time.process_time()
            samples: list[tuple[float, float]] = []
            while time.monotonic() - t0 < seconds:
                await asyncio.sleep(5)
                samples.append((time.monotonic() - t0, _rss_mb()))
            cpu = time.process_time() - cpu0
            wall = time.monotonic() - t0
            video = app.get(VIDEO)
            counters = [c.summary()["counters"] for c in video.cameras.values()] if video else []
            ledger = list(city.ledger)
            stats = dict(city.stats)
            await city.stop_actors()
            await asyncio.sleep(5)
            async with await psycopg.AsyncConnection.connect(db, row_factory=dict_row) as conn:
                scans = (await (await conn.execute("SELECT count(*) AS n FROM scan_ids")).fetchone() or {"n": 0})["n"]
                readings = (await (await conn.execute("SELECT count(*) AS n FROM scale_readings")).fetchone()
                            or {"n": 0})["n"]
                alerts = [dict(r) for r in await (await conn.execute(
                    "SELECT rule, site, source, subject, first_seen, opened_at FROM alerts")).fetchall()]
        finally:
            await city.stop()
            await runner.cleanup()
    lat: list[float] = []
    for p in ledger:
        hits = [a for a in alerts if a["rule"] == p.rule and a["site"] == p.site
                and (a["subject"] == p.subject or a["source"] == p.source) and a["opened_at"] >= p.at]
        if hits:
            lat.append(min((a["opened_at"] - p.at).total_seconds() for a in hits))
    first_min = [m for t, m in samples if t <= 60] or [samples[0][1]]
    last = [m for t, m in samples if t >= wall - 60] or [samples[-1][1]]
    return {
        "area": "city",
        "quick": seconds < 300,
        "command": f"{'BENCH_QUICK=1 ' if seconds < 300 else ''}.venv/bin/python -m bench.city",
        "machine": machine(load_avg_at_end=list(os.getloadavg())),
        "setup": {"seconds": round(wall, 1), "sites": len(cfg.sites), "cameras": len(cfg.cameras()),
                  "detect_fps": 5, "scales": sum(len(s.scales) for s in cfg.sites)},
        "figures": {
            "memory_mb": {"first_minute_median": _pct(first_min, 0.5), "last_minute_median": _pct(last, 0.5),
                          "growth_mb": round((_pct(last, 0.5) or 0) - (_pct(first_min, 0.5) or 0), 1)},
            "process_cpu_cores": round(cpu / wall, 3),
            "frames": {"decoded": sum(c.get("frames_decoded", 0) for c in counters),
                       "sent_to_detector": sum(c.get("frames_sent", 0) for c in counters),
                       "dropped": sum(c.get("frames_dropped", 0) for c in counters)},
            "planted_to_alert_s": {"n": len(lat), "of": len(ledger), "p50": _pct(lat, 0.5), "p95": _pct(lat, 0.95)},
            "rows": {"scans_accepted": stats["scans_accepted"], "scans_stored": scans,
                     "scans_lost": stats["scans_accepted"] - scans, "readings_published": stats["readings"],
                     "readings_stored": readings, "readings_lost": stats["readings"] - readings},
        },
        "baseline": {"note": "memory growth and rates are measured against the first minute of the same run"},
        "time": datetime.now(UTC).isoformat(),
    }


def main() -> None:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(ROOT / "var" / "yolo"))
    seconds = float(os.environ.get("BENCH_SECONDS", "60" if os.environ.get("BENCH_QUICK") else "600"))
    out = asyncio.run(run(seconds))
    text = json.dumps(out, indent=1, ensure_ascii=False, default=str)
    print(text)
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "city.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
