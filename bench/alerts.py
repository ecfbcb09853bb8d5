"""Alerts benchmark: from a finding to its alert event on a subscribed WebSocket, and alert
throughput at 1,000 findings/s of mixed keys.

    .venv/bin/python -m bench.alerts                 # full
    BENCH_QUICK=1 .venv/bin/python -m bench.alerts   # under a minute

The real service runs in this process on loopback (api role) against the machine's
PostgreSQL (a fresh database, dropped afterwards); a browser stand-in (aiohttp client,
logged in, subscribed to ``alerts`` with batched frames as the wallboard does) runs in its own
process, as a browser would, and notes when each event arrives (CLOCK_MONOTONIC, the same
clock in both processes).

- latency: findings handed to the service's FindingBus at 20/s; the time until the
  event naming it arrives on the WebSocket (a new alert: insert, finding row, timeline,
  evidence rows, NOTIFY, commit; and an update of a live one), p50/p95/p99.
- baseline, same run: the same findings through the raw path without the engine (a
  FindingBus subscriber that publishes straight to the hub): what the bus, hub and socket
  cost on their own.
- throughput: findings offered at 1,000/s for a while over a pool of mixed keys (video,
  correlated and condition rules, some clearing), then drained: findings written per
  second, alerts made, the largest inbox, event latency under that load (sampled),
  and a check that every finding offered is in the database.
- core only: the pure AlertBook on the same mixed findings, without the database.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from aiohttp import web
from psycopg.rows import dict_row

from bench.common import machine, summary_ms

ROOT = Path(__file__).resolve().parent.parent
QUICK = os.environ.get("BENCH_QUICK") == "1"
OUT = ROOT / "bench" / "results" / "alerts.json"
PG = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MQTT = os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883")
PASSWORD = "bench-password-1"


MIX = [  # rule, site, source, subject pattern, weight
    ("antistatic_skipped", "st-minwang", "st-minwang-entry", "track-{}", 4),
    ("overfill", "st-ganghua", "s1", "CYL{:08d}", 2),
    ("fill_without_scan", "st-xiuying", "s2", "CYL{:08d}", 2),
    ("device_silent", "st-minwang", "s{}", "scale-{}", 1),
    ("storage_over_capacity", "ol-qingnian", "ol-qingnian-store", "storage-{}", 1),
]


def mixed_findings(n: int, keys: int, t0: datetime, seed: int = 6) -> list[Any]:
    from monitor.findings import Finding

    rng = random.Random(seed)
    weights = [m[4] for m in MIX]
    out = []
    for i in range(n):
        rule, site, source, subj, _ = rng.choices(MIX, weights)[0]
        k = rng.randrange(keys)
        active = not (rule in ("device_silent", "storage_over_capacity") and rng.random() < 0.2)
        out.append(Finding(rule=rule, site=site, source=source.format(k % 4), subject=subj.format(k),
                           ts=t0 + timedelta(milliseconds=i), summary=f"{rule} #{k}", active=active,
                           details={"bench": i}))
    return out


async def add_viewer(db_url: str) -> None:
    from monitor.store.audit import Actor
    from monitor.web import auth

    async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row) as conn:
        await auth.add_user(conn, Actor.system("bench"), "bench-viewer", "viewer", PASSWORD)


# --- the subscriber: its own process, as a browser would be --------------------------------


async def subscriber(base: str) -> dict[str, Any]:
    """Log in, subscribe to ``alerts``, and note when each event arrives (CLOCK_MONOTONIC, the
    same clock in every process), until an alert with subject ``bench-stop`` or 60 s of quiet."""
    arrivals: dict[str, float] = {}
    dropped = events = 0
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        r = await http.post(base + "/api/v1/login", json={"username": "bench-viewer", "password": PASSWORD})
        assert r.status == 200, await r.text()
        async with http.ws_connect(base + "/api/v1/ws", origin=base, max_msg_size=0) as ws:
            await ws.receive_json(timeout=10)
            await ws.send_json({"op": "subscribe", "topics": ["alerts"], "batch": True})  # as the wallboard does
            print("SUBSCRIBED", flush=True)
            stop = False
            while not stop:
                msg = await ws.receive(timeout=60)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                t = time.monotonic()
                for line in msg.data.split("\n"):
                    ev = json.loads(line)
                    events += 1
                    if ev.get("type") == "overflow":
                        dropped = int(ev.get("dropped", 0))
                    elif ev.get("type") == "raw":
                        arrivals.setdefault(f"raw:{ev['subject']}", t)
                    elif ev.get("type") == "alert":
                        subj = ev["alert"]["subject"]
                        arrivals.setdefault(f"{ev['change']}:{subj}", t)
                        stop = stop or subj.startswith("bench-stop")
    return {"arrivals": arrivals, "dropped": dropped, "events": events}


class Subscriber:
    """The subscriber process: started, told to stop (a finding), and read back."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.out = ROOT / "var" / "bench" / f"alerts-sub-{os.getpid()}-{uuid.uuid4().hex[:6]}.json"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.alerts", "--subscriber", self.base, str(self.out),
            stdout=asyncio.subprocess.PIPE, cwd=str(ROOT))
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        assert line.strip() == b"SUBSCRIBED", line

    async def finish(self, app: web.Application) -> dict[str, Any]:
        from monitor.findings import Finding
        from monitor.web.keys import FINDINGS

        await app[FINDINGS].submit(Finding(rule="device_silent", site="st-minwang", source="bench",
                                           subject=f"bench-stop-{uuid.uuid4().hex[:6]}", ts=datetime.now(UTC),
                                           summary="stop"))
        assert self.proc is not None
        try:
            await asyncio.wait_for(self.proc.wait(), 90)
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()
        doc: dict[str, Any] = json.loads(self.out.read_text())
        self.out.unlink(missing_ok=True)
        return doc


async def paced(app: web.Application, findings: list[Any], per_s: float) -> dict[str, float]:
    """Hand ``findings`` to the bus at ``per_s``; the time each was handed over, by subject."""
    from monitor.web.keys import FINDINGS

    bus = app[FINDINGS]
    sent: dict[str, float] = {}
    t_start = time.monotonic()
    for i, f in enumerate(findings):
        delay = t_start + i / per_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sent[f.subject] = time.monotonic()
        await bus.submit(f)
    return sent


def latencies(sent: dict[str, float], arrivals: dict[str, float], change: str) -> tuple[list[float], int]:
    got, missed = [], 0
    for subj, t0 in sent.items():
        t1 = arrivals.get(f"{change}:{subj}")
        if t1 is None:
            missed += 1
        else:
            got.append(t1 - t0)
    return got, missed


async def bench_latency(app: web.Application, n: int, per_s: float, tag: str = "lat") -> dict[str, Any]:
    """New alerts, then (after the per-alert announcement interval) an update of each, paced."""
    from monitor.findings import Finding
    from monitor.web.keys import CONFIG

    sub = Subscriber(f"http://127.0.0.1:{app[CONFIG].server.port}")
    await sub.start()
    now = datetime.now(UTC)
    new = [Finding(rule="antistatic_skipped", site="st-minwang", source="st-minwang-entry", subject=f"{tag}-{i}",
                   ts=now, summary="latency probe", details={"track": i}) for i in range(n)]
    sent_new = await paced(app, new, per_s)
    # a count going up is announced at most every update_event_min_s per alert (by design):
    # let that pass so that the update itself is timed, not the hold-back
    await asyncio.sleep(app[CONFIG].alerts.update_event_min_s + 0.2)
    again = [Finding(rule="antistatic_skipped", site="st-minwang", source="st-minwang-entry", subject=f"{tag}-{i}",
                     ts=now + timedelta(seconds=1), summary="latency probe again") for i in range(n)]
    sent_upd = await paced(app, again, per_s)
    doc = await sub.finish(app)
    raised, m1 = latencies(sent_new, doc["arrivals"], "raised")
    updated, m2 = latencies(sent_upd, doc["arrivals"], "updated")
    return {"paced_per_s": per_s, "new_alert": summary_ms(raised), "update": summary_ms(updated),
            "all": summary_ms(raised + updated), "missed": m1 + m2, "dropped_for_the_client": doc["dropped"]}


async def bench_baseline(app: web.Application, n: int, per_s: float) -> dict[str, Any]:
    """The raw path: FindingBus -> a subscriber publishing to the hub -> the socket; no engine."""
    from monitor.findings import Finding
    from monitor.web.keys import CONFIG, FINDINGS, HUB

    bus, hub = app[FINDINGS], app[HUB]
    sub = Subscriber(f"http://127.0.0.1:{app[CONFIG].server.port}")
    await sub.start()
    saved = list(bus.subscribers)

    async def raw(f: Any) -> None:
        hub.publish("alerts", {"type": "raw", "subject": f.subject, "finding": f.as_json()})

    bus.subscribers[:] = [raw]
    try:
        now = datetime.now(UTC)
        fs = [Finding(rule="antistatic_skipped", site="st-minwang", source="st-minwang-entry", subject=f"raw-{i}",
                      ts=now, summary="baseline probe") for i in range(2 * n)]
        sent = await paced(app, fs, per_s)
        await bus.drain(10)
    finally:
        bus.subscribers[:] = saved
    doc = await sub.finish(app)
    got, missed = latencies(sent, doc["arrivals"], "raw")
    return {**summary_ms(got), "missed": missed}


async def bench_throughput(app: web.Application, db_url: str, *, rate: int, seconds: float,
                           keys: int) -> dict[str, Any]:
    from monitor.findings import Finding
    from monitor.web.keys import ALERTS, CONFIG, FINDINGS

    bus = app[FINDINGS]
    engine = app[ALERTS].engine
    sub = Subscriber(f"http://127.0.0.1:{app[CONFIG].server.port}")
    await sub.start()
    n = int(rate * seconds)
    fs = mixed_findings(n, keys, datetime.now(UTC))
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        f0 = (await (await conn.execute("SELECT count(*) FROM findings")).fetchone())[0]  # type: ignore[index]
        a0 = (await (await conn.execute("SELECT count(*) FROM alerts")).fetchone())[0]  # type: ignore[index]
    probes: dict[str, float] = {}
    max_inbox = 0
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    b0 = engine.stats.batches
    t_start = time.monotonic()
    chunk = max(1, rate // 50)  # 20 ms ticks
    for i in range(0, n, chunk):
        delay = t_start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        for f in fs[i:i + chunk]:
            await bus.submit(f, timeout_s=30)
        if (i // chunk) % 25 == 0:  # a probe every half second: a new key, its raised event timed
            subj = f"probe-{i}"
            probes[subj] = time.monotonic()
            await bus.submit(Finding(rule="overfill", site="st-ganghua", source="s1", subject=subj,
                                     ts=datetime.now(UTC), summary="probe"), timeout_s=30)
        max_inbox = max(max_inbox, engine.inbox.qsize() + bus.queue.qsize())
    t_offered = time.monotonic()
    await bus.drain(120)
    await engine.drain(120)
    t_done = time.monotonic()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    doc = await sub.finish(app)
    lat, missed = latencies(probes, doc["arrivals"], "raised")
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        f1 = (await (await conn.execute("SELECT count(*) FROM findings")).fetchone())[0]  # type: ignore[index]
        a1 = (await (await conn.execute("SELECT count(*) FROM alerts")).fetchone())[0]  # type: ignore[index]
    written = f1 - f0 - 1  # less the subscriber's stop
    cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    return {
        "offered": n + len(probes), "offered_per_s": round((n + len(probes)) / (t_offered - t_start), 1),
        "written": written, "lost": n + len(probes) - written,
        "seconds_to_drain_after_offer": round(t_done - t_offered, 3),
        "written_per_s": round(written / (t_done - t_start), 1),
        "alerts_made": a1 - a0 - 1, "keys_per_rule": keys, "largest_backlog": max_inbox,
        "batches": engine.stats.batches - b0, "batch_max": engine.cfg.alerts.batch_max,
        "event_latency_under_load_ms": summary_ms(lat), "probe_events_missed": missed,
        "ws_events_received": doc["events"], "ws_events_dropped_for_the_client": doc["dropped"],
        "service_cpu_s": round(cpu, 2), "service_cpu_ms_per_1000_findings": round(cpu / (n / 1000) * 1000, 1),
    }


def bench_core(n: int, keys: int) -> dict[str, Any]:
    """The pure engine alone (no database, no socket)."""
    from monitor.alerts.book import AlertBook
    from monitor.alerts.policy import Policy
    from monitor.config import AlertsConfig

    fs = mixed_findings(n, keys, datetime.now(UTC), seed=7)
    book = AlertBook(Policy.from_config(AlertsConfig()))
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    for i, f in enumerate(fs):
        o = book.observe(f, now)
        if o.alert is not None and o.alert.id is None:
            o.alert.id = i + 1
            book.bind(o.alert)
    t1 = time.perf_counter()
    book.tick(now + timedelta(hours=1))
    t2 = time.perf_counter()
    return {"findings": n, "findings_per_s": round(n / (t1 - t0)), "live_alerts": len(book.live),
            "tick_ms": round((t2 - t1) * 1000, 2)}


async def main() -> dict[str, Any]:
    import logging
    from urllib.parse import urlparse, urlunparse

    from monitor.app import build_app, wait_db_ready
    from monitor.config import load_config
    from monitor.store.migrate import migrate_url
    from monitor.web.keys import ALERTS
    from tests.support.net import free_port

    logging.basicConfig(level=logging.ERROR)
    name = f"bench_alerts_{os.getpid()}"
    with psycopg.connect(PG, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    db_url = urlunparse(urlparse(PG)._replace(path="/" + name))
    results: dict[str, Any] = {}
    try:
        await migrate_url(db_url)
        base_cfg = load_config(ROOT / "config" / "example-city.yaml")
        port = free_port()
        cfg = base_cfg.model_copy(update={
            "database": base_cfg.database.model_copy(update={"url": db_url, "pool_max": 6}),
            "mqtt": base_cfg.mqtt.model_copy(update={"url": MQTT, "prefix": f"bench{uuid.uuid4().hex[:6]}"}),
            "server": base_cfg.server.model_copy(update={"port": port}),
            "media": base_cfg.media.model_copy(update={"dir": str(ROOT / "var" / "bench" / f"alerts-{os.getpid()}")}),
            "alerts": base_cfg.alerts.model_copy(update={"evidence_attempts": 1}),
        })
        app = build_app(cfg, roles=frozenset({"api"}), client_id=f"bench-{uuid.uuid4().hex[:6]}")
        runner = web.AppRunner(app, shutdown_timeout=5.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        try:
            await wait_db_ready(app, 30)
            await asyncio.wait_for(app[ALERTS].engine.ready.wait(), 30)
            await add_viewer(db_url)
            n = 40 if QUICK else 300
            await bench_latency(app, 5, 20.0, "warm")  # warm-up
            results["baseline_raw_bus_hub_ws_ms"] = await bench_baseline(app, n, 20.0)
            results["latency_finding_to_ws_event_ms"] = await bench_latency(app, n, 20.0)
            results["throughput"] = await bench_throughput(
                app, db_url, rate=1000, seconds=6.0 if QUICK else 30.0, keys=2000)
        finally:
            await asyncio.wait_for(runner.cleanup(), 30)
        results["core_only"] = bench_core(50_000 if QUICK else 300_000, 2000)
    finally:
        with psycopg.connect(PG, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return results


def run() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--subscriber":
        doc = asyncio.run(subscriber(sys.argv[2]))
        Path(sys.argv[3]).write_text(json.dumps(doc))
        return 0
    t0 = time.time()
    load_before = os.getloadavg()
    res = asyncio.run(main())
    load_after = os.getloadavg()
    lat = res["latency_finding_to_ws_event_ms"]["all"]
    base = res["baseline_raw_bus_hub_ws_ms"]
    tp = res["throughput"]
    doc = {
        "area": "alerts",
        "quick": QUICK,
        "command": ("BENCH_QUICK=1 " if QUICK else "") + ".venv/bin/python -m bench.alerts",
        "machine": machine(note="2 cores shared with other engineers' work: figures are noisy",
                           load_average_1m_before_after=[round(load_before[0], 2), round(load_after[0], 2)]),
        "figures": res,
        "targets": {"latency_p95_ms": 200, "findings_per_s": 1000},
        "baseline": {"raw_path_p95_ms": base["p95"], "core_only_findings_per_s": res["core_only"]["findings_per_s"]},
        "ratios": {
            "latency_p95_over_raw_path_p95": round(lat["p95"] / base["p95"], 2) if base["p95"] else None,
            "written_per_s_over_offered_per_s": round(tp["written_per_s"] / tp["offered_per_s"], 3),
            "core_only_over_written_per_s": round(res["core_only"]["findings_per_s"] / tp["written_per_s"], 1),
        },
        "met": {"latency_p95_under_200ms": lat["p95"] < 200, "kept_up_with_1000_per_s":
                tp["written_per_s"] >= 0.95 * tp["offered_per_s"] and tp["lost"] == 0},
        "seconds": round(time.time() - t0, 1),
        "when": datetime.now(UTC).isoformat(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(doc, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(run())
