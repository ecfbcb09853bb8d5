"""The interlock's edges: authorize requests over MQTT and HTTP, and the decision log.

A request is answered from the gun state kept in memory (no query for an unknown gun, a
malformed code or a locked gun) and otherwise from one query (``store.facts``: the
registry record, the newest pre-fill scan and the gun's lock in the database, which is
the truth). MQTT requests go through a bounded queue to ``interlock_workers`` workers,
so the broker's message loop never waits on the database; when the queue is full a
request is answered ``busy`` at once, and so is one that waited longer than a gun would
(``stale_after_s``): under overload the fresh requests are decided, not the old.
Decisions are written to ``interlock_decisions`` in batches by one writer (bounded queue;
overflow dropped and counted). Every refusal is an ``interlock_refused`` finding (info)
for the alerts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from prometheus_client import Counter, Histogram

from monitor.control import store
from monitor.control.interlock import Decision, code_ok, decide, refuse
from monitor.control.model import GunId, parse_auth_request, parse_topic, reply_payload, reply_topic
from monitor.control.service import DROPPED, ControlService
from monitor.errors import BrokerUnavailable, InputError, MonitorError
from monitor.findings import Finding

log = logging.getLogger(__name__)

DECISIONS = Counter("monitor_interlock_decisions_total", "interlock decisions", ["via", "reason"])
LATENCY = Histogram(
    "monitor_interlock_seconds", "time to decide an authorize request", ["via"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
)


class Authorizer:
    def __init__(self, svc: ControlService, *, queue_size: int = 2_000, log_size: int = 100_000,
                 stale_after_s: float = 3.0) -> None:
        self.svc = svc
        self.stale_after_s = stale_after_s
        self.cfg = svc.cfg
        self.tz = ZoneInfo(svc.cfg.timezone)
        self.requests: asyncio.Queue[tuple[GunId, bytes, float]] = asyncio.Queue(queue_size)
        self.log_queue: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue(log_size)
        self.answered = 0
        self.busy = 0
        self.log_dropped = 0
        self.logged = 0

    def attach(self) -> None:
        if self.svc.devices and self.svc.bus is not None:
            self.svc.bus.subscribe(f"{self.svc.prefix}/+/gun/+/authorize", self._on_request)

    def start(self) -> None:
        tasks = self.svc.tasks
        tasks.supervise("interlock-log", self._writer)
        if self.svc.devices:
            for i in range(self.cfg.control.interlock_workers):
                tasks.supervise(f"interlock-{i}", self._worker)

    # --- the decision -----------------------------------------------------------------------

    async def authorize(self, g: GunId, code: Any, *, via: str, request_id: str | None) -> Decision:
        t0 = time.perf_counter()
        svc = self.svc
        now = svc.clock.now()
        window = self.cfg.rules.correlation.prefill_window_s
        if not svc.ready.is_set():
            d = refuse("unavailable", "the centre is starting; gun states not loaded yet")
        else:
            gun = svc.state(g)
            args: dict[str, Any] = {
                "site": g.site, "gun": gun, "gun_name": g.gun, "code": code, "now": now, "window_s": window,
                "skew_s": self.cfg.rules.correlation.clock_skew_s, "tz": self.tz,
            }
            if gun is None or not code_ok(code) or gun.locked:
                d = decide(cylinder=None, last_prefill=None, **args)
            else:
                try:
                    async with self.svc.conns.connection() as conn:
                        cyl, scan_ts, locked = await store.facts(conn, code, g, now - timedelta(seconds=window))
                    if locked and not gun.locked:  # the database knows of a lock not yet announced here
                        gun = gun.with_(locked=True)
                        args["gun"] = gun
                    d = decide(cylinder=cyl, last_prefill=scan_ts, **args)
                except MonitorError as e:
                    d = refuse("unavailable", f"the registry cannot be read now: {e}")
        self._record(g, code, d, via=via, request_id=request_id, now=now)
        DECISIONS.labels(via, d.reason).inc()
        LATENCY.labels(via).observe(time.perf_counter() - t0)
        return d

    def _record(self, g: GunId, code: Any, d: Decision, *, via: str, request_id: str | None, now: Any) -> None:
        gun = self.svc.state(g)
        shown = code[:64] if isinstance(code, str) else (None if code is None else repr(code)[:64])
        try:
            self.log_queue.put_nowait(
                (now, g.site, g.gun, request_id, shown, d.allow, d.reason, via,
                 None if gun is None else gun.version, d.scan_ts)
            )
        except asyncio.QueueFull:
            self.log_dropped += 1
            DROPPED.labels("interlock_log").inc()
        if not d.allow and self.svc.findings is not None:
            self.svc.findings.submit_nowait(Finding(
                rule="interlock_refused", site=g.site, source=g.gun, subject=shown or "-", ts=now,
                summary=d.message, reason=d.reason,
                details={"via": via, "request_id": request_id, "cylinder": shown},
            ))

    # --- MQTT ---------------------------------------------------------------------------------

    async def _on_request(self, t: str, payload: bytes, retain: bool) -> None:
        if retain:  # a retained request is a stale one: never answer it again
            return
        parsed = parse_topic(self.svc.prefix, t)
        if parsed is None or parsed[1] != "authorize":
            return
        try:
            self.requests.put_nowait((parsed[0], payload, time.perf_counter()))
        except asyncio.QueueFull:
            self.busy += 1
            DROPPED.labels("authorize").inc()
            self.svc.tasks.spawn("interlock-busy", self._reply_busy(parsed[0], payload))

    async def _reply_busy(self, g: GunId, payload: bytes) -> None:
        try:
            rid = parse_auth_request(payload).request_id
        except InputError:
            return
        await self._reply(g, rid, refuse("busy", "the centre is overloaded; ask again"))

    async def _worker(self) -> None:
        while True:
            g, payload, t0 = await self.requests.get()
            try:
                req = parse_auth_request(payload)
            except InputError as e:
                d = refuse("malformed_request", e.message)
                self._record(g, None, d, via="mqtt", request_id=None, now=self.svc.clock.now())
                await self._reply(g, None, d)
                continue
            if time.perf_counter() - t0 > self.stale_after_s:
                # The gun has given up on this one long ago; deciding it would only delay
                # the fresh ones behind it. Said so, counted.
                self.busy += 1
                DROPPED.labels("authorize_stale").inc()
                await self._reply(g, req.request_id, refuse("busy", "the centre is overloaded; ask again"))
                continue
            d = await self.authorize(g, req.cylinder, via="mqtt", request_id=req.request_id)
            await self._reply(g, req.request_id, d)

    async def _reply(self, g: GunId, request_id: str | None, d: Decision) -> None:
        bus = self.svc.bus
        if bus is None:
            return
        try:
            await bus.publish(reply_topic(self.svc.prefix, g), reply_payload(request_id, d.allow, d.reason, d.message),
                              qos=1, timeout_s=2.0)
            self.answered += 1
        except BrokerUnavailable as e:
            log.warning("interlock: reply to %s (%s) lost: %s", g, request_id, e)

    # --- the decision log ---------------------------------------------------------------------

    async def _writer(self) -> None:
        """Write decisions in batches (one statement each); a failed batch is retried while
        the queue stays bounded."""
        while True:
            batch = [await self.log_queue.get()]
            await asyncio.sleep(0.05)  # let a busy second's decisions gather into one statement
            while len(batch) < 2000:
                try:
                    batch.append(self.log_queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            delay = 0.2
            while True:
                try:
                    async with self.svc.conns.connection() as conn:
                        await store.insert_decisions(conn, batch)
                    self.logged += len(batch)
                    break
                except (MonitorError, psycopg.Error) as e:
                    log.warning("interlock: %d decisions not written yet: %s", len(batch), e)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)

    async def flush(self, timeout_s: float = 5.0) -> None:
        """Write what is queued now (at shutdown), bounded."""
        batch: list[tuple[Any, ...]] = []
        while not self.log_queue.empty():
            batch.append(self.log_queue.get_nowait())
        if not batch:
            return
        try:
            async with asyncio.timeout(timeout_s), self.svc.conns.connection() as conn:
                await store.insert_decisions(conn, batch)
            self.logged += len(batch)
        except (MonitorError, psycopg.Error, TimeoutError) as e:
            log.error("interlock: %d decisions lost at shutdown: %s", len(batch), e)
