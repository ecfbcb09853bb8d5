"""Series benchmark: scale readings through MQTT into PostgreSQL, scans over HTTP, the
correlation rules over a simulated day of the Haikou city, and live latency to a finding.

    .venv/bin/python -m bench.series              # full (about 6 minutes)
    BENCH_QUICK=1 .venv/bin/python -m bench.series   # quick (under a minute)

Everything runs against the real service (``build_app``: scale ingest with manual MQTT
acks, the writer, the scans API, the live correlation engine) on loopback, with the
machine's PostgreSQL (a fresh database, dropped afterwards) and Mosquitto.

- **copy_baseline**: the binary COPY path alone (``series.store.copy_readings``, batches
  of 5000) into ``scale_readings``: rows/s.
- **mqtt_ingest** (two baselines: the COPY path alone, and the MQTT transport alone: the
  same publisher and broker with a subscriber that only acks): a publisher in another process sends readings (QoS 1) of all the city's
  scales through a private Mosquitto with the settings the centre needs (``BROKER_CONF``); (a) flat out for the run: rows/s committed; (b) at a fixed offered rate: delay
  from publish to the commit of the row's batch, p50/p99 (the writer's commit times are
  recorded in-process; the k-th row committed is matched to the k-th published, FIFO).
  Every published row is counted in the database at the end.
- **scans_http**: single-scan requests (8 concurrent) against batches of 100 (4 concurrent):
  scans/s and request latency p50/p99; the single request is the baseline.
- **correlation_day**: the 1.18 M registry (quick: 200 k) loaded with binary COPY; a day
  of ~40 k fills and ~240 k scans (``monitor.sim.apps.city_day``) loaded; then every rule
  for the day: the series read back from the database and ``correlation.batch.evaluate``.
  Baseline: "fill without scan" answered the naive way, one ``last_scan``-style query
  per fill.
- **live_latency**: from the POST of a scan of a scrapped cylinder to its
  ``invalid_cylinder`` finding, and from the publish of the first gun-open reading of an
  unscanned fill to its ``fill_without_scan`` finding: p50/p99.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import multiprocessing as mp
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from psycopg.rows import dict_row

from bench import common

ROOT = Path(__file__).resolve().parent.parent
QUICK = os.environ.get("BENCH_QUICK") == "1"
PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
MQTT = "mqtt://127.0.0.1:1883"  # replaced by a private broker below
# The broker settings the centre needs (docker/mosquitto.conf should carry them): Mosquitto's
# default max_queued_messages (1000 per client) drops QoS 1 messages for a subscriber that
# falls behind during a burst; the centre acks only what is durable, so it can fall behind.
BROKER_CONF = "max_inflight_messages 1000\nmax_queued_messages 1000000\nmax_queued_bytes 0\n"
CONFIG = ROOT / "config" / "haikou.yaml"
OUT = ROOT / "bench" / "results" / "series.json"


def summary_ms(xs: Sequence[float]) -> dict[str, float]:
    """The shared summary under the keys series.json has always had: n, p50_ms, p99_ms, max_ms
    (NaN where there are no samples)."""
    s = common.summary_ms(xs)
    return {"n": s["n"], "p50_ms": s["p50"], "p99_ms": s["p99"], "max_ms": s["max"] if xs else float("nan")}


# --- publishers (another process) ------------------------------------------------------------


def _publisher(url: str, prefix: str, scales: list[tuple[str, str]], rate: float, seconds: float,
               out: Any) -> None:
    asyncio.run(_publish(url, prefix, scales, rate, seconds, out))


async def _publish(url: str, prefix: str, scales: list[tuple[str, str]], rate: float, seconds: float,
                   out: Any) -> None:
    import logging

    import aiomqtt

    logging.getLogger("mqtt").setLevel(logging.ERROR)
    host, port = url.removeprefix("mqtt://").split(":")
    times: list[float] = []
    last: dict[tuple[str, str], datetime] = {}
    async with aiomqtt.Client(host, int(port), identifier=f"bench-pub-{uuid.uuid4().hex[:8]}",
                              max_inflight_messages=200, logger=logging.getLogger("mqtt")) as c:
        window: list[asyncio.Task[None]] = []
        async for i in common.paced(rate, seconds):
            site, scale = scales[i % len(scales)]
            _, body = common.idle_reading(last, site, scale, i)
            times.append(time.time())
            window.append(asyncio.ensure_future(c.publish(f"{prefix}/{site}/scale/{scale}/reading", body, qos=1)))
            if len(window) >= 50:
                await asyncio.gather(*window)
                window.clear()
        await asyncio.gather(*window)
    out.put(times)


# --- the service in-process ---------------------------------------------------------------------


def make_config(db_url: str, prefix: str, port: int, spool: Path) -> Any:
    from monitor.config import load_config

    cfg = load_config(CONFIG)
    c = cfg.rules.correlation.model_copy(update={"spool_dir": str(spool)})
    return cfg.model_copy(update={
        "database": cfg.database.model_copy(update={"url": db_url, "pool_max": 6}),
        "mqtt": cfg.mqtt.model_copy(update={"url": MQTT, "prefix": prefix, "client_id": f"bench-{prefix}"}),
        "server": cfg.server.model_copy(update={"port": port, "public_rate_per_min": 1_000_000}),
        "rules": cfg.rules.model_copy(update={"correlation": c}),
    })


class Service:
    def __init__(self, cfg: Any) -> None:
        from aiohttp import web

        from monitor.app import build_app

        self.cfg = cfg
        self.app = build_app(cfg, roles=frozenset({"api", "control"}))
        self.runner = web.AppRunner(self.app, shutdown_timeout=5.0)
        self.url = f"http://127.0.0.1:{cfg.server.port}"

    async def __aenter__(self) -> Service:
        from aiohttp import web

        from monitor.app import wait_db_ready

        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.cfg.server.port).start()
        await wait_db_ready(self.app, 60)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.wait_for(self.runner.cleanup(), 30)


async def wait_until(pred: Callable[[], bool], limit_s: float, step_s: float = 0.001) -> bool:
    end = time.perf_counter() + limit_s
    for _ in itertools.count():
        if pred() or time.perf_counter() >= end:
            break
        await asyncio.sleep(step_s)
    return pred()


def owner_of(i: int) -> str:
    return f"st-{i % 17 + 1:02d}"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the measurements ------------------------------------------------------------------------------


async def bench_copy(db_url: str, n: int) -> dict[str, Any]:
    from monitor.series import store
    from monitor.series.model import Reading

    base = datetime.now(UTC) - timedelta(days=2)
    rows = [Reading(ts=base + timedelta(milliseconds=i), site="bench-copy", scale=f"s{i % 100}",
                    gross_kg=16.0 + (i % 60) * 0.25, gun_open=i % 3 == 0) for i in range(n)]
    async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row) as conn:
        t0 = time.perf_counter()
        for i in range(0, n, 5000):
            await store.copy_readings(conn, rows[i: i + 5000], base)
            await conn.commit()
        dt = time.perf_counter() - t0
    return {"rows": n, "seconds": round(dt, 3), "rows_per_s": round(n / dt)}


async def bench_mqtt(svc: Service, db_url: str, *, seconds: float, rate: float, procs: int) -> dict[str, Any]:
    from monitor.web.keys import SERIES

    series = svc.app[SERIES]
    await asyncio.wait_for(series.subscriber.connected.wait(), 30)
    commits: list[tuple[float, int]] = []
    orig = series.writer._to_db

    async def timed(values: Any) -> None:
        await orig(values)
        commits.append((time.time(), sum(1 for v in values if type(v).__name__ == "Reading")))

    series.writer._to_db = timed  # type: ignore[method-assign]
    scales = [(s.id, sc.id) for s in svc.cfg.sites for sc in s.scales]
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    ps = [ctx.Process(target=_publisher, args=(MQTT, svc.cfg.mqtt.prefix, scales[i::procs], rate / procs, seconds, q))
          for i in range(procs)]
    written0 = series.writer.stats.readings_written
    t_start = time.time()
    for p in ps:
        p.start()
    pub_times: list[float] = []
    for _ in ps:
        pub_times += await asyncio.to_thread(q.get, True, seconds + 120)
    for p in ps:
        await asyncio.to_thread(p.join, 30)
    published = len(pub_times)
    await wait_until(lambda: series.writer.stats.readings_written - written0 >= published, 120, 0.05)
    t_end = commits[-1][0] if commits else time.time()
    series.writer._to_db = orig  # type: ignore[method-assign]
    written = series.writer.stats.readings_written - written0
    pub_times.sort()
    delays: list[float] = []
    k = 0
    for t, n in commits:
        for _ in range(n):
            if k < len(pub_times):
                delays.append(max(0.0, t - pub_times[k]))
            k += 1
    in_db = await count_rows(db_url, "SELECT count(*) FROM scale_readings WHERE site_id <> 'bench-copy'")
    return {"offered_per_s": rate or "flat out", "seconds": round(t_end - t_start, 2), "published": published,
            "written": written, "rows_per_s": round(written / max(1e-9, t_end - t_start)),
            "publish_to_commit": summary_ms(delays), "batches": len(commits),
            "mean_batch": round(statistics.mean(n for _, n in commits), 1) if commits else 0,
            "rows_in_db_total": in_db, "refused": series.refusals.total}


async def bench_bare_mqtt(seconds: float) -> dict[str, Any]:
    """The transport's ceiling: the same publisher, a subscriber that only acks (manual)."""
    import aiomqtt

    prefix = f"bare{uuid.uuid4().hex[:6]}"
    host, port = MQTT.removeprefix("mqtt://").split(":")
    sub = aiomqtt.Client(host, int(port), identifier=f"bench-bare-{prefix}", clean_session=False,
                         max_queued_incoming_messages=1_000_000)
    sub._client.manual_ack_set(True)
    got: list[float] = []
    async with sub:
        await sub.subscribe(f"{prefix}/+/scale/+/reading", qos=1)

        async def consume() -> None:
            async for m in sub.messages:
                sub._client.ack(m.mid, m.qos)
                got.append(time.time())

        task = asyncio.ensure_future(consume())
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        scales = [("st-01", f"s{i}") for i in range(100)]
        p = ctx.Process(target=_publisher, args=(MQTT, prefix, scales, 0, seconds, q))
        p.start()
        pub_times: list[float] = await asyncio.to_thread(q.get, True, seconds + 120)
        await asyncio.to_thread(p.join, 30)
        await wait_until(lambda: len(got) >= len(pub_times), 60, 0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    dt = (got[-1] - pub_times[0]) if got else float("nan")
    return {"published": len(pub_times), "received": len(got), "msgs_per_s": round(len(got) / dt)}


async def count_rows(db_url: str, sql: str, *args: Any) -> int:
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        cur = await conn.execute(sql, args)  # type: ignore[arg-type]
        row = await cur.fetchone()
        return int(row[0]) if row else 0


async def make_key(db_url: str) -> str:
    from monitor.store.audit import Actor
    from monitor.web import auth

    async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row) as conn:
        return await auth.add_api_key(conn, Actor.system("bench"), f"bench-{uuid.uuid4().hex[:6]}", None)


async def bench_scans(svc: Service, key: str, codes: list[str], *, singles: int, batches: int) -> dict[str, Any]:
    from monitor.sim.apps import scan

    url = f"{svc.url}/api/v1/scans"
    headers = {"Authorization": f"Bearer {key}"}
    rng = random.Random(3)

    def one() -> dict[str, Any]:  # a valid cylinder scanned at its own station
        i = rng.randrange(len(codes))
        return scan(codes[i], owner_of(i), "prefill_check",
                    ts=datetime.now(UTC) - timedelta(seconds=rng.uniform(0, 60)))

    async def run(bodies: list[Any], conc: int, per: int) -> dict[str, Any]:
        lat: list[float] = []
        sem = asyncio.Semaphore(conc)
        async with aiohttp.ClientSession() as http:
            async def post(b: Any) -> None:
                async with sem:
                    t = time.perf_counter()
                    async with http.post(url, json=b, headers=headers) as r:
                        await r.read()
                        assert r.status == 200, r.status
                    lat.append(time.perf_counter() - t)

            t0 = time.perf_counter()
            await asyncio.gather(*(post(b) for b in bodies))
            dt = time.perf_counter() - t0
        return {"requests": len(bodies), "scans": len(bodies) * per, "seconds": round(dt, 2),
                "scans_per_s": round(len(bodies) * per / dt), "latency": summary_ms(lat)}

    single = await run([one() for _ in range(singles)], 8, 1)
    batched = await run([{"scans": [one() for _ in range(100)]} for _ in range(batches)], 4, 100)
    return {"single": single, "batch_100": batched,
            "ratio_batched_over_single": round(batched["scans_per_s"] / single["scans_per_s"], 1)}


async def bench_day(db_url: str, *, registry: int, fills: int) -> dict[str, Any]:
    from zoneinfo import ZoneInfo

    from monitor.alerts.correlation import rules
    from monitor.alerts.correlation.batch import evaluate, load_span
    from monitor.config import load_config
    from monitor.series import store
    from monitor.series.model import ScanRecord
    from monitor.series.registry import ImportReport, load_rows
    from monitor.series.scans import fill_site
    from monitor.series.validity import Cylinder, validity
    from monitor.sim.apps import city_day
    from monitor.sim.registry import generate
    from monitor.store.audit import Actor

    cfg = load_config(CONFIG)
    tz = ZoneInfo(cfg.timezone)
    today = date.today()
    rows = list(generate(cfg, registry, seed=9, today=today))
    cyls = [Cylinder(*r) for r in rows]  # type: ignore[arg-type]
    valid = [c for c in cyls if validity(c, at=today) == "ok"]
    invalid = [c.code for c in cyls if validity(c, at=today) != "ok"][:5000] + [f"HKX{i:08d}" for i in range(200)]
    out: dict[str, Any] = {}
    async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row) as conn:
        rep = await load_rows(conn, iter(rows), ImportReport(), actor=Actor.system("bench"), source="bench")
        out["registry"] = {"rows": rep.loaded, "seconds": round(rep.seconds, 2),
                           "rows_per_s": round(rep.loaded / rep.seconds)}
        day0 = datetime.combine(today - timedelta(days=1), datetime.min.time(), tz).replace(hour=6)
        day = city_day(cfg, valid, invalid, day=day0.astimezone(UTC), fills=fills, seed=4)
        by_code = {c.code: c for c in cyls}
        scans = [ScanRecord(s.id, s.ts, s.cylinder, s.site, s.step,
                            validity(by_code.get(s.cylinder), at=s.ts.astimezone(tz).date(), fill_site=fill_site(s)),
                            s.operator, s.app) for s in day.scans]
        t0 = time.perf_counter()
        async with conn.cursor() as cur:
            async with cur.copy("COPY scans (ts, id, cylinder, site_id, step, validity, operator, app) "
                                "FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["timestamptz", "text", "text", "text", "text", "text", "text", "text"])
                for s in scans:
                    await cp.write_row((s.ts, s.id, s.cylinder, s.site, s.step, s.validity, s.operator, s.app))
            async with cur.copy("COPY scan_ids (id, ts) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["text", "timestamptz"])
                for s in scans:
                    await cp.write_row((s.id, s.ts))
        await store.insert_fills(conn, day.fills)
        await conn.commit()
        out["day"] = {"fills": len(day.fills), "scans": len(scans), "load_seconds": round(time.perf_counter() - t0, 2),
                      "injected": day.truth}
        start, end = day0.astimezone(UTC) - timedelta(hours=1), day0.astimezone(UTC) + timedelta(hours=26)
        now = end + timedelta(hours=1)
        p = rules.Params()
        t0 = time.perf_counter()
        span = await load_span(conn, start, end, p)
        d_fills = list(span.fills)
        t_read = time.perf_counter() - t0
        t1 = time.perf_counter()
        found = evaluate(span, now=now, p=p)
        t_rules = time.perf_counter() - t1
        out["evaluate"] = {"read_seconds": round(t_read, 2), "rules_seconds": round(t_rules, 2),
                           "total_seconds": round(t_read + t_rules, 2),
                           "findings": {k: len(v) for k, v in found.items()}}
        # baseline: "fill without scan" the naive way, one query per fill
        t2 = time.perf_counter()
        naive_missing = 0
        for f in d_fills:
            if f.cylinder:
                cur2 = await conn.execute(
                    """SELECT 1 FROM scans WHERE cylinder = %s AND site_id = %s AND step = 'prefill_check'
                       AND validity = 'ok' AND ts BETWEEN %s AND %s LIMIT 1""",
                    (f.cylinder, f.site, f.started_at - timedelta(seconds=p.prefill_window_s),
                     f.started_at + timedelta(seconds=p.scan_lead_s)))
            else:
                cur2 = await conn.execute(
                    """SELECT 1 FROM scans WHERE site_id = %s AND step = 'prefill_check' AND validity = 'ok'
                       AND ts BETWEEN %s AND %s LIMIT 1""",
                    (f.site, f.started_at - timedelta(seconds=p.prefill_window_s),
                     f.started_at + timedelta(seconds=p.scan_lead_s)))
            naive_missing += await cur2.fetchone() is None
        t_naive = time.perf_counter() - t2
        out["baseline_per_fill_queries"] = {"seconds": round(t_naive, 2), "fills": len(d_fills),
                                            "fill_without_scan_only": True, "found": naive_missing}
        out["ratio_baseline_over_all_rules"] = round(t_naive / (t_read + t_rules), 2)
    return out


async def bench_live(svc: Service, key: str, db_url: str, *, samples: int) -> dict[str, Any]:
    import aiomqtt

    from monitor.findings import Finding
    from monitor.series.model import Reading
    from monitor.sim.scales import payload, topic
    from monitor.web.keys import FINDINGS

    arrived: dict[tuple[str, str], float] = {}

    async def on(f: Finding) -> None:
        arrived.setdefault((f.rule, f.subject if f.rule == "invalid_cylinder" else f"{f.site}/{f.source}"),
                           time.perf_counter())

    svc.app[FINDINGS].subscribe(on)
    codes = [f"HKSCRAP{i:06d}" for i in range(samples)]
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        for c in codes:
            await conn.execute(
                "INSERT INTO cylinders (code, owner_site, nominal_kg, tare_kg, manufactured, status) "
                "VALUES (%s, 'st-01', 15, 16, '2020-01-01', 'scrapped') ON CONFLICT DO NOTHING", (c,))
        await conn.commit()
    scan_lat: list[float] = []
    async with aiohttp.ClientSession() as http:
        for c in codes:
            body = {"id": uuid.uuid4().hex, "cylinder": c, "site": "st-01", "step": "prefill_check",
                    "ts": datetime.now(UTC).isoformat(), "operator": "bench"}
            t = time.perf_counter()
            async with http.post(f"{svc.url}/api/v1/scans", json=body, headers={"Authorization": f"Bearer {key}"}) as r:
                await r.read()
            if await wait_until(lambda c=c: ("invalid_cylinder", c) in arrived, 5):  # type: ignore[misc]
                scan_lat.append(arrived[("invalid_cylinder", c)] - t)
    scales = [(s.id, sc.id) for s in svc.cfg.sites for sc in s.scales][-samples:]
    fill_lat: list[float] = []
    host, port = MQTT.removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(host, int(port), identifier=f"bench-live-{uuid.uuid4().hex[:6]}") as cli:
        for site, scale in scales:
            now = datetime.now(UTC)
            # a 5 kg cylinder (tare 7.1): the 15 kg cylinders scanned by the scans benchmark do not fit it
            pre = [Reading(now - timedelta(milliseconds=(8 - i) * 50), site, scale, 0.0 if i < 2 else 7.1, False)
                   for i in range(8)]
            for rd in pre:
                await cli.publish(topic(svc.cfg.mqtt.prefix, rd), payload(rd), qos=1)
            go = Reading(datetime.now(UTC), site, scale, 7.3, True)
            t = time.perf_counter()
            await cli.publish(topic(svc.cfg.mqtt.prefix, go), payload(go), qos=1)
            key2 = ("fill_without_scan", f"{site}/{scale}")
            if await wait_until(lambda k=key2: k in arrived, 5):  # type: ignore[misc]
                fill_lat.append(arrived[key2] - t)
    return {"scan_to_invalid_cylinder": summary_ms(scan_lat), "reading_to_fill_without_scan": summary_ms(fill_lat),
            "aim_ms": 1000}


_BROKER: list[Any] = []


def start_broker() -> str:
    """A private Mosquitto with the settings the centre needs; sets MQTT for the run."""
    import shutil
    import subprocess
    import tempfile

    global MQTT
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="bench-mqtt-")
    conf = Path(tmp) / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n{BROKER_CONF}")
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _BROKER.extend([proc, tmp])
    import socket

    end = time.time() + 10
    while time.time() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    MQTT = f"mqtt://127.0.0.1:{port}"
    return MQTT


def stop_broker() -> None:
    import shutil

    if _BROKER:
        proc, tmp = _BROKER
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
        _BROKER.clear()


async def main() -> dict[str, Any]:
    from urllib.parse import urlparse, urlunparse

    from monitor.store.migrate import migrate_url

    os.environ.setdefault("MONITOR_LOG_LEVEL", "WARNING")
    import logging

    logging.basicConfig(level=logging.WARNING)
    name = f"bench_series_{os.getpid()}"
    with psycopg.connect(PG, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    db_url = urlunparse(urlparse(PG)._replace(path="/" + name))
    results: dict[str, Any] = {}
    try:
        await migrate_url(db_url)
        results["copy_baseline"] = await bench_copy(db_url, 100_000 if QUICK else 500_000)
        prefix = f"bench{uuid.uuid4().hex[:6]}"
        spool = ROOT / "var" / "bench" / f"series-spool-{os.getpid()}"
        start_broker()
        cfg = make_config(db_url, prefix, free_port(), spool)
        secs = 10.0 if QUICK else 60.0
        bare = await bench_bare_mqtt(secs / 2)
        async with Service(cfg) as svc:
            flat = await bench_mqtt(svc, db_url, seconds=secs, rate=0, procs=1)
            paced = await bench_mqtt(svc, db_url, seconds=secs / 2, rate=1000, procs=1)
            results["mqtt_ingest"] = {"flat_out": flat, "paced_1000_per_s": paced, "transport_only": bare,
                                      "ratio_to_copy_baseline": round(flat["rows_per_s"]
                                                                      / results["copy_baseline"]["rows_per_s"], 3),
                                      "ratio_to_transport_only": round(flat["rows_per_s"] / bare["msgs_per_s"], 2)}
            key = await make_key(db_url)
            codes = [f"HKB{i:08d}" for i in range(2000)]
            async with await psycopg.AsyncConnection.connect(db_url) as conn:
                async with conn.cursor() as cur, cur.copy(
                        "COPY cylinders (code, owner_site, nominal_kg, tare_kg, manufactured, status) FROM STDIN") as cp:
                    for i, code in enumerate(codes):
                        await cp.write_row((code, owner_of(i), 15, 16.4, date(2021, 1, 1), "in_service"))
                await conn.commit()
            results["scans_http"] = await bench_scans(svc, key, codes, singles=400 if QUICK else 3000,
                                                      batches=10 if QUICK else 100)
            results["live_latency"] = await bench_live(svc, key, db_url, samples=10 if QUICK else 40)
        async with await psycopg.AsyncConnection.connect(db_url) as conn:
            await conn.execute("TRUNCATE cylinders, scans, scan_ids, fills")
            await conn.commit()
        results["correlation_day"] = await bench_day(db_url, registry=200_000 if QUICK else 1_180_000,
                                                     fills=5000 if QUICK else 40_000)
    finally:
        stop_broker()
        with psycopg.connect(PG, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    results["broker"] = {"mosquitto_conf": BROKER_CONF.strip().split("\n")}
    return results


def run() -> None:
    t0 = time.time()
    res = asyncio.run(main())
    doc = {
        "area": "series",
        "quick": QUICK,
        "command": ("BENCH_QUICK=1 " if QUICK else "") + ".venv/bin/python -m bench.series",
        "machine": common.machine(note="2 cores shared with other engineers' work: figures are noisy"),
        "figures": res,
        "baseline": {"copy_rows_per_s": res["copy_baseline"]["rows_per_s"],
                     "mqtt_transport_only_msgs_per_s": res["mqtt_ingest"]["transport_only"]["msgs_per_s"],
                     "scans_single_per_s": res["scans_http"]["single"]["scans_per_s"],
                     "day_per_fill_queries_s": res["correlation_day"]["baseline_per_fill_queries"]["seconds"]},
        "ratios": {"mqtt_ingest_over_copy": res["mqtt_ingest"]["ratio_to_copy_baseline"],
                   "mqtt_ingest_over_transport_only": res["mqtt_ingest"]["ratio_to_transport_only"],
                   "scans_batched_over_single": res["scans_http"]["ratio_batched_over_single"],
                   "day_baseline_over_rules": res["correlation_day"]["ratio_baseline_over_all_rules"]},
        "seconds": round(time.time() - t0, 1),
        "when": datetime.now(UTC).isoformat(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(doc, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    run()
    sys.exit(0)
