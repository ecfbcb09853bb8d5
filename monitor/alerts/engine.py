"""The alert engine's async edge: findings in, alerts stored, the wall told.

``AlertEngine.submit`` (a ``FindingBus`` subscriber) puts each finding on a bounded inbox
(waiting, bounded by the bus, when it is full: findings are never dropped here). One
writer task takes what the inbox holds (up to ``batch_max``), files it in the pure
``AlertBook``, and writes the result in one transaction: new alerts, changed alerts,
every finding, the timeline and the evidence rows. Only after the commit are the
in-memory alerts updated, the WebSocket told and the evidence gathered, so a failed
write is simply written again (the database being away only delays, never loses).
Between batches the same task ticks the book (holds, escalations, reminders).

People's actions (ack, close) take the engine's lock, so they and the writer never
interleave in this process; across processes the conditional UPDATEs decide, and every
committed change is announced with NOTIFY so each process's wall hears it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg
from prometheus_client import Counter, Gauge, Histogram

from monitor.alerts import evidence as ev
from monitor.alerts import store
from monitor.alerts.book import TIMELINE, AlertBook, Change
from monitor.alerts.clock import Clock, SystemClock
from monitor.alerts.model import Alert, State, TransitionRefused, alert_json, check_transition
from monitor.alerts.policy import Maintenance, Policy, Silence, Suppressions
from monitor.alerts.store import ActionRow, Conn
from monitor.config import Config
from monitor.errors import DatabaseUnavailable, NotFound
from monitor.findings import Finding
from monitor.store.audit import Actor, record
from monitor.store.db import Database
from monitor.tasks import Backoff

log = logging.getLogger(__name__)

FINDINGS_IN = Counter("monitor_alert_findings_total", "findings filed by the alert engine")
ALERT_CHANGES = Counter("monitor_alert_changes_total", "alert changes committed", ["change"])
FENCED = Counter("monitor_alert_findings_fenced_total",
                 "findings not filed: observed under a camera lease that no longer held when written")
WRITE_FAILURES = Counter("monitor_alert_write_failures_total", "alert batches that failed to write")
INBOX = Gauge("monitor_alert_inbox", "findings waiting for the alert writer")
BATCH_SECONDS = Histogram("monitor_alert_batch_seconds", "time to write one batch of findings",
                          buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5))

NOTIFY_CHANNEL = "monitor_alerts"
LEADER_KEY = 0x6C706761  # advisory lock of the escalating process ("lpga")
UPDATES_PER_FLUSH = 100  # "updated" events sent per tick at most, all alerts together
# The change an event reports when one batch changed an alert several ways.
_RANK = {k: i for i, k in enumerate(
    ["updated", "cleared", "reminded", "escalated", "resolved", "acknowledged", "reopened", "raised", "closed"])}

Publisher = Callable[[str, dict[str, Any]], Any]


@dataclass
class EngineStats:
    received: int = 0
    filed: int = 0
    batches: int = 0
    write_retries: int = 0
    lost: int = 0  # findings of batches refused by the database for a reason other than its absence
    fenced: int = 0  # findings not filed: their camera's lease had passed to another worker
    events: int = 0
    last_batch: int = 0


@dataclass
class _Touch:
    alert: Alert
    kinds: list[Change] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


class AlertEngine:
    def __init__(
        self, *, db: Database, cfg: Config, clock: Clock | None = None, publish: Publisher | None = None,
        gatherer: ev.EvidenceGatherer | None = None, instance: str | None = None,
    ) -> None:
        self.db = db
        self.cfg = cfg
        self.clock: Clock = clock or SystemClock()
        self.publish_fn = publish
        self.gatherer = gatherer
        self.instance = instance or f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.suppressions = Suppressions()
        self.book = AlertBook(Policy.from_config(cfg.alerts), self.suppressions)
        self.inbox: asyncio.Queue[Finding] = asyncio.Queue(cfg.alerts.inbox_size)
        self.lock = asyncio.Lock()
        self.ready = asyncio.Event()
        self.stats = EngineStats()
        self._requeue: list[Finding] = []
        self._progress = asyncio.Event()  # set after every batch (drain waits on it)
        # Escalations and reminders are sent by one process of the city: the one holding an
        # advisory lock on its LISTEN connection. None: no election runs (one process, tests).
        self.leader: bool | None = None
        self.listening = asyncio.Event()  # LISTEN is in place and the election was held once
        # "updated" (a count going up) is announced at most every update_event_min_s per
        # alert; the latest state of those held back goes out at the next tick.
        self.update_min_s = cfg.alerts.update_event_min_s
        self._last_update: dict[int, float] = {}
        self._held_updates: dict[int, Alert] = {}
        self._update_budget = UPDATES_PER_FLUSH
        self.tick_s = cfg.alerts.tick_s

    # -- intake ---------------------------------------------------------------------------
    async def submit(self, f: Finding) -> None:
        """FindingBus subscriber: queue the finding (waits while the inbox is full)."""
        self.stats.received += 1
        await self.inbox.put(f)
        INBOX.set(self.inbox.qsize())

    # -- start ----------------------------------------------------------------------------
    async def rebuild(self) -> None:
        """Take the live alerts and the suppressions from the database (start, or after a refusal)."""
        now = self.clock.now()
        async with self.db.connection() as conn:
            rows = await store.load_live(conn)
            sil = await store.live_silences(conn, now)
            mw = await store.live_maintenance(conn, now)
        self.book.load(Alert.from_row(r) for r in rows)
        self._set_suppressions(sil, mw)
        self.ready.set()
        log.info("alert engine: %d live alert(s), %d silence(s), %d maintenance window(s)",
                 len(self.book.live), len(sil), len(mw))

    def _set_suppressions(self, sil: Iterable[dict[str, Any]], mw: Iterable[dict[str, Any]]) -> None:
        self.suppressions.replace(
            [Silence(int(r["id"]), r["site"], r["rule"], r["starts_at"], r["expires_at"]) for r in sil],
            [Maintenance(int(r["id"]), r["site"], r["starts_at"], r["ends_at"]) for r in mw],
        )

    async def refresh_suppressions(self) -> None:
        now = self.clock.now()
        async with self.db.connection() as conn:
            sil = await store.live_silences(conn, now)
            mw = await store.live_maintenance(conn, now)
        self._set_suppressions(sil, mw)

    # -- the writer -----------------------------------------------------------------------
    async def run(self) -> None:
        """Write findings as they come and tick every ``tick_s``; for ever."""
        await self.rebuild()  # also after a crash: start again from what the database holds
        next_tick = time.monotonic() + self.tick_s
        next_refresh = time.monotonic() + 30.0
        while True:
            batch = self._take()
            if not batch and not self._requeue:
                timeout = max(0.0, next_tick - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    first = await asyncio.wait_for(self.inbox.get(), timeout)
                    batch = [first, *self._take()]
            if batch or self._requeue:
                await self.process(batch)
            now_m = time.monotonic()
            if now_m >= next_tick:
                next_tick = now_m + self.tick_s
                if now_m >= next_refresh:
                    next_refresh = now_m + 30.0
                    with contextlib.suppress(DatabaseUnavailable):
                        await self.refresh_suppressions()
                await self.tick()
                self.flush_updates()

    def _take(self) -> list[Finding]:
        out: list[Finding] = []
        while len(out) < self.cfg.alerts.batch_max:
            try:
                out.append(self.inbox.get_nowait())
            except asyncio.QueueEmpty:
                break
        INBOX.set(self.inbox.qsize())
        return out

    async def process(self, batch: Sequence[Finding]) -> list[Change]:
        """File ``batch`` (after any findings put back by the last one) and write it, retrying
        while the database is away. A finding whose camera lease (``Finding.fence``) no longer
        holds when the batch is written is not filed: the transaction is rolled back, the live
        alerts are read again and the rest of the batch is filed without it."""
        while True:
            try:
                return await self._process(batch)
            except _Fenced as e:
                self.stats.fenced += len(e.findings)
                FENCED.inc(len(e.findings))
                for f in e.findings:
                    assert f.fence is not None
                    log.warning("alert engine: %s on %s not filed: observed under lease generation %d of worker %s, "
                                "which no longer holds the camera", f.rule, f.source, f.fence[2], f.fence[1])
                batch = []  # the rest of the batch waits in _requeue

    async def _process(self, batch: Sequence[Finding]) -> list[Change]:
        async with self.lock:
            if self._requeue:
                batch = [*self._requeue, *batch]
                self._requeue.clear()
            now = self.clock.now()
            touched: dict[int, _Touch] = {}
            filed: list[tuple[Finding, Alert | None]] = []
            for f in batch:
                o = self.book.observe(f, now)
                filed.append((f, o.alert))
                if o.alert is not None:
                    t = touched.setdefault(id(o.alert), _Touch(o.alert))
                    t.findings.append(f)
                    if o.change is not None:
                        t.kinds.append(o.change)
            try:
                changes = await self._commit(list(touched.values()), filed)
            except _Fenced as e:
                stale = {id(f) for f in e.findings}
                self._requeue = [f for f in batch if id(f) not in stale]
                await self.rebuild()  # the book observed them: start again from what the database holds
                raise
            self.stats.filed += len(batch)
            self.stats.batches += 1
            self.stats.last_batch = len(batch)
            FINDINGS_IN.inc(len(batch))
        self._after(changes)
        self._progress.set()
        return changes

    async def tick(self) -> list[Change]:
        """Holds, clear holds, escalations and reminders due at the clock's now."""
        async with self.lock:
            changes = self.book.tick(self.clock.now(), escalate=self.leader is not False)
            if not changes:
                return []
            touched: dict[int, _Touch] = {}
            for c in changes:
                touched.setdefault(id(c.alert), _Touch(c.alert)).kinds.append(c)
            out = await self._commit(list(touched.values()), [])
        self._after(out)
        self._progress.set()
        return out

    async def _check_fences(self, conn: Conn, findings: Sequence[Finding]) -> None:
        """Raise ``_Fenced`` (rolling the transaction back) if a fenced finding's lease has
        passed to another worker or run out. The rows stay locked FOR SHARE until the commit:
        a worker claiming the camera meanwhile skips it (``FOR UPDATE SKIP LOCKED``)."""
        fenced = [f for f in findings if f.fence is not None]
        if not fenced:
            return
        cur = await conn.execute(
            """SELECT camera_id, worker, generation FROM camera_leases
               WHERE camera_id = ANY(%s) AND expires_at > now() FOR SHARE""",
            (sorted({f.fence[0] for f in fenced if f.fence is not None}),),
        )
        live = {(r["camera_id"], r["worker"], int(r["generation"])) for r in await cur.fetchall()}
        stale = [f for f in fenced if f.fence not in live]
        if stale:
            raise _Fenced(stale)

    async def _commit(self, touched: list[_Touch], filed: list[tuple[Finding, Alert | None]]) -> list[Change]:
        backoff = Backoff(initial=0.2, cap=5.0)
        while True:
            t0 = time.monotonic()
            try:
                async with self.db.connection() as conn:
                    result = await self._write(conn, touched, filed)
                BATCH_SECONDS.observe(time.monotonic() - t0)
                return self._apply(result)
            except DatabaseUnavailable as e:
                self.stats.write_retries += 1
                WRITE_FAILURES.inc()
                delay = backoff.next()
                log.warning("alert write failed (%s); %d finding(s) kept, retrying in %.1fs", e, len(filed), delay)
                await asyncio.sleep(delay)
            except psycopg.Error:
                # Not the database's absence: this batch cannot be written as it is. Count it,
                # say so, and start again from what the database holds.
                WRITE_FAILURES.inc()
                self.stats.lost += len(filed)
                log.exception("alert write refused; %d finding(s) of this batch not filed", len(filed))
                for t in touched:
                    if t.alert.id is None:
                        self.book.forget(t.alert)
                with contextlib.suppress(DatabaseUnavailable):
                    await self.rebuild()
                return []

    async def _write(
        self, conn: Conn, touched: list[_Touch], filed: list[tuple[Finding, Alert | None]]
    ) -> _Result:
        """One transaction; touches no in-memory alert (the caller applies the result after commit)."""
        await self._check_fences(conn, [f for f, _ in filed])
        res = _Result()
        new = [t for t in touched if t.alert.id is None]
        old = [t for t in touched if t.alert.id is not None]
        ids: dict[int, int] = {}  # id(alert) -> row id
        for t, new_row in zip(new, await store.insert_alerts(conn, [t.alert for t in new]), strict=True):
            ids[id(t.alert)] = int(new_row["id"])
            res.rows.append((t, new_row))
            if not new_row["inserted"]:  # another process made it meanwhile: ours merged into theirs
                res.merged.add(id(t.alert))
        if old:
            writes = []
            for t in old:
                reset = any(c.kind == "reopened" for c in t.kinds)
                writes.append((t.alert, t.alert.stored_state or t.alert.state, reset))
            for t, row in zip(old, await store.write_alerts(conn, writes), strict=True):
                assert t.alert.id is not None
                ids[id(t.alert)] = t.alert.id
                if row is None:  # its state moved under us (a person, another process)
                    fresh = await store.get_alert(conn, t.alert.id, lock=True)
                    if fresh is None or fresh["state"] == "closed":
                        res.dropped.add(id(t.alert))
                        res.requeue.extend(t.findings)
                        if fresh is not None:
                            res.rows.append((t, fresh))
                        continue
                    row = (await store.add_count(conn, t.alert) if t.alert.pending else None) or fresh
                    res.conflicted.add(id(t.alert))
                assert row is not None
                res.rows.append((t, row))
        # the findings, filed under their alerts
        rows_f = [(f, ids.get(id(a)) if a is not None else None) for f, a in filed
                  if a is None or id(a) not in res.dropped]
        await store.insert_findings(conn, rows_f)
        # the timeline, the held findings, the evidence rows
        actions: list[ActionRow] = []
        plans: list[tuple[int, ev.EvidencePlan]] = []
        planned_by: dict[int, Finding] = {}
        for t, row in res.rows:
            if id(t.alert) in res.dropped or id(t.alert) in res.conflicted:
                continue
            aid = int(row["id"])
            for c in t.kinds:
                if c.kind == "raised" and id(t.alert) in res.merged:
                    continue
                if c.kind in TIMELINE:
                    actions.append(ActionRow(c.at, aid, c.kind, "system", None, row["site"], row["rule"],
                                             row["severity"], silenced=not c.notify, level=c.level))
                if c.kind in ("raised", "reopened") and c.held_since is not None:
                    await store.adopt_held_findings(conn, aid, t.alert, c.held_since)
                if c.kind == "raised" and id(t.alert) not in res.merged and c.finding is not None:
                    planned_by[aid] = c.finding
                    plans.extend((aid, p) for p in ev.plan_evidence(c.finding, self.cfg))
        for eid, aid, p in await ev.insert_plans(conn, plans):
            f = planned_by[aid]
            res.jobs.append(ev.Job(eid, aid, p.kind, p.request, p.camera, image=getattr(f, "image", None),
                                   details=f.details, summary=f.summary))
        await store.insert_actions(conn, actions)
        if res.rows:
            await self._notify(conn, {int(r["id"]): _top(t.kinds) for t, r in res.rows})
        return res

    async def _notify(self, conn: Conn, changes: dict[int, str]) -> None:
        """Tell other processes (their walls) which alerts changed, and how; at commit."""
        items = list(changes.items())
        for i in range(0, len(items), 200):  # NOTIFY payloads stay well under 8000 bytes
            payload = json.dumps({"origin": self.instance, "changes": dict(items[i:i + 200])})
            await conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, payload))

    def _apply(self, res: _Result) -> list[Change]:
        """After the commit: mirror the rows, and name the changes to announce."""
        out: list[Change] = []
        for t, row in res.rows:
            a = t.alert
            a.refresh(row)
            a.pending = 0
            if id(a) in res.dropped or a.state == "closed":
                self.book.forget(a)
                continue
            self.book.bind(a)
            kinds = [c for c in t.kinds if not (c.kind == "raised" and id(a) in res.merged)]
            if id(a) in res.conflicted or not kinds:
                out.append(Change("updated", a, self.clock.now(), not a.silenced))
                continue
            out.append(max(kinds, key=lambda c: _RANK[c.kind]))
        self._requeue.extend(res.requeue)
        if self.gatherer is not None:
            for job in res.jobs:
                self.gatherer.enqueue(job)
        return out

    def _after(self, changes: list[Change]) -> None:
        now_m = time.monotonic()
        for c in changes:
            ALERT_CHANGES.labels(c.kind).inc()
            aid = c.alert.id
            if aid is not None and self.update_min_s > 0:
                if c.kind == "updated" and (self._update_budget <= 0 or
                                            now_m - self._last_update.get(aid, -1e9) < self.update_min_s):
                    self._held_updates[aid] = c.alert
                    continue
                if c.kind == "updated":
                    self._update_budget -= 1
                self._held_updates.pop(aid, None)
                self._last_update[aid] = now_m
            self.announce(c.kind, c.alert.as_json(), notify=c.notify, level=c.level)

    def flush_updates(self, most: int = UPDATES_PER_FLUSH) -> int:
        """Announce (at most ``most`` of) the alerts whose count went up since they were last
        announced; the rest wait for the next flush. State changes never wait: a flood of
        counts must not push a new alert out of a wall's bounded queue."""
        if not self._held_updates:
            held: dict[int, Alert] = {}
        elif len(self._held_updates) <= most:
            held, self._held_updates = self._held_updates, {}
        else:
            keys = list(self._held_updates)[:most]  # the longest waiting first
            held = {k: self._held_updates.pop(k) for k in keys}
        self._update_budget = most - len(held)  # what is left may go out at once until the next flush
        now_m = time.monotonic()
        for aid, a in held.items():
            self._last_update[aid] = now_m
            self.announce("updated", a.as_json(), notify=not a.silenced)
        if len(self._last_update) > 10_000 or not held:  # forget the quiet ones
            self._last_update = {k: v for k, v in self._last_update.items() if now_m - v < self.update_min_s}
        return len(held)

    def announce(self, change: str, alert: dict[str, Any], *, notify: bool = True, level: int | None = None) -> None:
        if self.publish_fn is None:
            return
        event: dict[str, Any] = {"type": "alert", "change": change, "notify": notify, "alert": alert}
        if change == "escalated":
            event["level"] = level
            event["audience"] = "supervisor"
        elif change == "reminded":
            event["audience"] = "supervisor"
        self.stats.events += 1
        self.publish_fn("alerts", event)

    # -- people's actions -----------------------------------------------------------------
    async def ack(self, alert_id: int, actor: Actor, note: str | None) -> dict[str, Any]:
        check_transition("ack", "open", actor.role, alert_id=alert_id)  # the role, before anything
        return await self._transition(alert_id, actor, "ack", note=note)

    async def close(self, alert_id: int, actor: Actor, disposition: str, note: str) -> dict[str, Any]:
        check_transition("close", "open", actor.role, alert_id=alert_id)
        return await self._transition(alert_id, actor, "close", note=note, disposition=disposition)

    async def _transition(
        self, alert_id: int, actor: Actor, action: str, *, note: str | None, disposition: str | None = None
    ) -> dict[str, Any]:
        async with self.lock:
            now = self.clock.now()
            async with self.db.connection() as conn:
                if action == "ack":
                    row = await store.ack(conn, alert_id, actor.name, note, now)
                else:
                    assert disposition is not None and note is not None
                    sources: list[State] = ["open", "acknowledged", "resolved"]
                    row = await store.close(conn, alert_id, actor.name, disposition, note, now, sources)
                if row is None:
                    cur = await store.get_alert(conn, alert_id)
                    if cur is None:
                        raise NotFound(f"no alert {alert_id}", field="id")
                    raise TransitionRefused(alert_id, action, cur["state"])
                latency = (now - row["opened_at"]).total_seconds()
                kind = "acknowledged" if action == "ack" else "closed"
                details: dict[str, Any] = {"rule": row["rule"], "site": row["site"], "severity": row["severity"],
                                           "latency_s": round(latency, 3)}
                if disposition is not None:
                    details["disposition"] = disposition
                await record(conn, actor, f"alert.{action}", f"alert/{alert_id}", reason=note, details=details)
                await store.insert_actions(conn, [ActionRow(
                    now, alert_id, kind, actor.name, actor.role, row["site"], row["rule"], row["severity"],
                    silenced=bool(row["silenced"]), latency_s=latency,
                    details={"disposition": disposition} if disposition else None)])
                await self._notify(conn, {alert_id: kind})
            self.apply_row(row)
        self.announce(kind, alert_json(row), notify=not row["silenced"])
        return row

    def apply_row(self, row: dict[str, Any]) -> None:
        """Mirror a row committed outside the writer (a person's action, another process)."""
        a = self.book.by_id.get(int(row["id"]))
        if a is None:
            if row["state"] != "closed":
                self.book.bind(Alert.from_row(row))
            return
        a.refresh(row)
        if a.state == "closed":
            self.book.forget(a)

    # -- other processes ------------------------------------------------------------------
    async def listen(self) -> None:
        """Hear alert changes committed by other processes, mirror and announce them; and
        take part in the election of the process that escalates and reminds."""
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.db.url, autocommit=True, row_factory=psycopg.rows.dict_row, connect_timeout=10)
        except psycopg.OperationalError as e:
            raise DatabaseUnavailable(f"alerts listener: {e}") from e
        try:
            async with conn:
                await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                while True:
                    if not self.leader:
                        cur = await conn.execute("SELECT pg_try_advisory_lock(%s) AS got", (LEADER_KEY,))
                        row = await cur.fetchone()
                        got = bool(row and row["got"])
                        if got != bool(self.leader):
                            log.info("alert engine %s: %s escalations", self.instance,
                                     "sends" if got else "leaves to another process the")
                        self.leader = got
                    self.listening.set()
                    async for n in conn.notifies(timeout=5.0):
                        await self._heard(n.payload)
        finally:
            self.leader = False
            self.listening.clear()

    async def _heard(self, payload: str) -> None:
        try:
            msg = json.loads(payload)
        except json.JSONDecodeError:
            return
        if not isinstance(msg, dict) or msg.get("origin") == self.instance:
            return
        changes = {int(k): str(v) for k, v in (msg.get("changes") or {}).items() if str(k).isdigit()}
        async with self.db.connection() as conn:
            cur = await conn.execute("SELECT * FROM alerts WHERE id = ANY(%s)", (list(changes),))
            rows = await cur.fetchall()
        async with self.lock:
            for row in rows:
                self.apply_row(row)
        for row in rows:
            self.announce(changes.get(int(row["id"]), "updated"), alert_json(row), notify=not row["silenced"])

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait (bounded) until every finding submitted so far is written."""
        async def idle() -> None:
            while self.inbox.qsize() or self._requeue or self.lock.locked():
                self._progress.clear()
                await self._progress.wait()

        try:
            await asyncio.wait_for(idle(), timeout_s)
        except TimeoutError as e:
            raise TimeoutError(f"alert inbox not drained in {timeout_s:.1f}s") from e


def _top(changes: Sequence[Change]) -> str:
    return max((c.kind for c in changes), key=lambda k: _RANK[k], default="updated")


class _Fenced(Exception):
    """Some findings' camera leases no longer hold: the write is rolled back without them."""

    def __init__(self, findings: list[Finding]) -> None:
        super().__init__(f"{len(findings)} finding(s) observed under a lease that no longer holds")
        self.findings = findings


@dataclass
class _Result:
    rows: list[tuple[_Touch, dict[str, Any]]] = field(default_factory=list)
    merged: set[int] = field(default_factory=set)
    conflicted: set[int] = field(default_factory=set)
    dropped: set[int] = field(default_factory=set)
    requeue: list[Finding] = field(default_factory=list)
    jobs: list[ev.Job] = field(default_factory=list)


def hold_window(policy: Policy) -> timedelta:
    return max([policy.default_raise_hold, *(r.raise_hold for r in policy.rules.values())])
