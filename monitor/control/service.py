"""The control service: lock state per gun, kept true between the database, the broker,
the devices and the operators' screens.

- The database is the truth. Every change of a gun's row is announced by the table's
  trigger (NOTIFY); each process keeps an in-memory copy fed by its own writes and by
  those announcements (a row with a higher ``seq`` wins), and pushes each announced
  change to the WebSocket topic ``guns``.
- With the ``control`` role the service also talks to the devices: it publishes desired
  states (retained, QoS 1, one publish in flight per gun, the newest state each time),
  judges reports (``lifecycle``), marks overdue confirmations ``unconfirmed`` (a
  ``lock_unconfirmed`` finding) and keeps re-sending, and reconciles desired against
  reported on start, on every broker (re)connection and every ``reconcile_every_s``.
- Lock and unlock (operators, supervisors, the auto-lock policy) are one transaction
  each: new versions, the command history and the audit row.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from prometheus_client import Counter

from monitor.config import Config
from monitor.control import store
from monitor.control.clock import Clock, SystemClock
from monitor.control.conns import Connections
from monitor.control.lifecycle import due, judge_desired, needs_publish, on_report
from monitor.control.model import (
    MAX_REASON,
    GunId,
    GunState,
    desired_payload,
    parse_desired,
    parse_report,
    parse_topic,
    topic,
)
from monitor.control.policy import ACTOR as AUTO_LOCK_ACTOR
from monitor.control.policy import auto_lock_for
from monitor.errors import (
    BrokerUnavailable,
    Conflict,
    DatabaseUnavailable,
    InputError,
    MonitorError,
    NotFound,
)
from monitor.findings import Finding, FindingBus
from monitor.mqtt import MqttBus
from monitor.store.audit import Actor
from monitor.store.db import Database
from monitor.tasks import Backoff, TaskGroup

log = logging.getLogger(__name__)

PUBLISHED = Counter("monitor_gun_desired_published_total", "desired states published to gun controllers")
REPORTS = Counter("monitor_gun_reports_total", "gun reports judged, by verdict", ["verdict"])
DROPPED = Counter("monitor_control_dropped_total", "messages dropped because a control queue was full", ["queue"])
RECONCILER = Actor.system("system:reconcile")


class EventSink(Protocol):
    """Where gun events go (the WebSocket hub): ``publish`` to a topic, ``send_to`` one
    client, and ``snapshots`` that greet a new subscriber with the current state."""

    snapshots: dict[str, Callable[[Any, str], Any]]

    def publish(self, topic: str, event: dict[str, Any]) -> int: ...

    def send_to(self, client: Any, topic: str, event: dict[str, Any]) -> None: ...


@dataclass
class ControlStats:
    published: int = 0
    publish_failed: int = 0
    reports: int = 0
    forged: int = 0
    anomalies: int = 0
    dropped_messages: int = 0
    reconciles: int = 0


class ControlService:
    """One per process. ``attach()`` before the broker connects; ``start()`` at startup."""

    def __init__(
        self,
        cfg: Config,
        *,
        bus: MqttBus | None,
        hub: EventSink | None,
        findings: FindingBus | None,
        tasks: TaskGroup,
        roles: frozenset[str],
        db_ready: asyncio.Event,
        clock: Clock | None = None,
    ) -> None:
        self.cfg = cfg
        self.bus = bus
        self.hub = hub
        self.findings = findings
        self.tasks = tasks
        self.roles = roles
        self.db_ready = db_ready
        self.clock: Clock = clock or SystemClock()
        self._db: Database | None = None
        self._conns: Connections | None = None
        self.devices = "control" in roles  # this process talks to the gun controllers
        self.prefix = cfg.mqtt.prefix
        self.sites = {s.id: s for s in cfg.sites if s.kind == "station"}
        self.configured: list[GunId] = [GunId(s.id, g) for s in self.sites.values() for g in s.guns]
        self._known = frozenset(self.configured)
        self.guns: dict[GunId, GunState] = {}
        self.ready = asyncio.Event()
        self.stats = ControlStats()
        self._dirty: set[GunId] = set()
        self._dirty_event = asyncio.Event()
        # Messages from the devices, one queue per shard of guns: a gun's messages keep their
        # order, different guns are handled side by side.
        self._inboxes: list[asyncio.Queue[tuple[str, GunId, bytes, bool]]] = [
            asyncio.Queue(5_000) for _ in range(4)]
        self._tick_lock = asyncio.Lock()
        self._last_reconcile: Any = None
        self.tick_s = min(1.0, cfg.control.resend_every_s / 2, cfg.control.confirm_timeout_s / 4)

    # --- wiring -------------------------------------------------------------------------

    @property
    def db(self) -> Database:
        if self._db is None:
            raise DatabaseUnavailable("database not opened yet")
        return self._db

    @property
    def conns(self) -> Connections:
        """Connections of control's own (see ``conns``): the hot paths' round trips are few."""
        if self._conns is None:
            raise DatabaseUnavailable("database not opened yet")
        return self._conns

    def attach(self) -> None:
        """Subscribe to the devices' topics (control role) and serve the ``guns`` snapshot."""
        if self.devices and self.bus is not None:
            self.bus.subscribe(f"{self.prefix}/+/gun/+/reported", self._on_message)
            self.bus.subscribe(f"{self.prefix}/+/gun/+/desired", self._on_message)
            self.bus.on_connect(self._on_connect)
        if self.hub is not None:
            self.hub.snapshots["guns"] = self._snapshot

    def start(self, db: Database) -> None:
        self._db = db
        self._conns = Connections(self.cfg.database.url, self.cfg.control.interlock_workers + 4)
        self.tasks.spawn("control-init", self._init())
        self.tasks.supervise("control-listen", self._listen)
        if self.devices:
            self.tasks.supervise("control-sender", self._sender)
            self.tasks.supervise("control-timer", self._timer)
            for i in range(len(self._inboxes)):
                self.tasks.supervise(f"control-inbox-{i}", functools.partial(self._inbox_worker, i))
            if self.findings is not None:
                self.findings.subscribe(self.on_finding)

    async def wait_ready(self, timeout_s: float = 10.0) -> None:
        try:
            await asyncio.wait_for(self.ready.wait(), timeout_s)
        except TimeoutError as e:
            raise DatabaseUnavailable(f"gun states not loaded after {timeout_s:.0f}s (database unavailable?)") from e

    async def _init(self) -> None:
        await self.db_ready.wait()
        backoff = Backoff(0.2, 5.0)
        while True:
            try:
                async with self.conns.connection() as conn:
                    await store.ensure_guns(conn, self.configured)
                    rows = await store.load(conn)
                break
            except MonitorError as e:
                log.warning("control: loading gun states failed (%s); retrying", e)
                await asyncio.sleep(backoff.next())
        for s in rows:
            self._apply(s)
        self.ready.set()
        log.info("control: %d guns loaded (%d locked)", len(self.guns), sum(1 for s in self.guns.values() if s.locked))
        if self.devices:
            await self.reconcile("start")

    # --- the cache ------------------------------------------------------------------------

    def _apply(self, s: GunState | None) -> None:
        """Take a row into the cache if it is newer; queue a publish when it asks for one."""
        if s is None:
            return
        g = s.id
        if g not in self._known:
            return
        cur = self.guns.get(g)
        if cur is not None and cur.seq >= s.seq:
            return
        self.guns[g] = s
        if self.devices and s.commanded and s.command == "requested" and not s.in_effect:
            self.mark_dirty(g)

    def state(self, g: GunId) -> GunState | None:
        return self.guns.get(g)

    def views(self, site: str | None = None) -> list[dict[str, Any]]:
        return [
            self.guns[g].as_json() for g in self.configured
            if g in self.guns and (site is None or g.site == site)
        ]

    def _snapshot(self, client: Any, topic_: str) -> None:
        if self.hub is not None:
            self.hub.send_to(client, "guns", {"type": "snapshot", "guns": self.views()})

    async def _listen(self) -> None:
        """Follow every committed change of ``gun_state`` (any process's) and announce it."""
        await self.db_ready.wait()
        conn = await psycopg.AsyncConnection.connect(self.cfg.database.url, autocommit=True, connect_timeout=10)
        async with conn:
            await conn.execute(f"LISTEN {store.CHANNEL}")
            await self.resync()
            async for n in conn.notifies():
                try:
                    s = GunState.from_row(json.loads(n.payload))
                except (ValueError, KeyError, TypeError):
                    log.exception("control: bad notification %r", n.payload[:200])
                    continue
                self._apply(s)
                if self.hub is not None and s.id in self.guns:
                    self.hub.publish("guns", {"type": "gun", "gun": s.as_json()})

    async def resync(self) -> None:
        """Reload every gun from the database (after missing announcements) and resend the
        whole picture to the screens."""
        async with self.conns.connection() as conn:
            rows = await store.load(conn)
        for s in rows:
            self._apply(s)
        if self.hub is not None:
            self.hub.publish("guns", {"type": "snapshot", "guns": self.views()})

    # --- locks ----------------------------------------------------------------------------

    def resolve(self, site: str, gun: str | None = None) -> list[GunId]:
        """The configured guns of a station (or one of them); NotFound names the field."""
        sc = self.sites.get(site)
        if sc is None:
            raise NotFound(f"no station {site!r} with filling guns", field="site")
        if gun is None:
            return [GunId(site, g) for g in sc.guns]
        if gun not in sc.guns:
            raise NotFound(f"no gun {gun!r} at station {site}; guns: {', '.join(sc.guns)}", field="gun")
        return [GunId(site, gun)]

    async def set_lock(
        self,
        site: str,
        gun: str | None,
        *,
        locked: bool,
        reason: str,
        actor: Actor,
        ref: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> list[GunState]:
        """Lock or unlock a station (gun None) or one gun. Returns the guns changed;
        Conflict when every gun named is already in that state."""
        guns = self.resolve(site, gun)
        reason = reason.strip()
        if not reason:
            raise InputError("reason: must not be empty", field="reason" if locked else "note")
        await self.wait_ready()
        scope = "gun" if gun is not None else "station"
        action = f"{scope}.{'lock' if locked else 'unlock'}"
        target = guns[0].target if gun is not None else f"site/{site}"
        async with self.conns.connection() as conn:
            changed = await store.set_desired(
                conn, guns, locked=locked, reason=reason[:MAX_REASON], ref=ref, actor=actor,
                now=self.clock.now(), action=action, target=target, details=details,
            )
        for s in changed:
            self._apply(s)
        if not changed:
            what = f"gun {site}/{gun} is" if gun is not None else f"every gun of {site} is"
            raise Conflict(f"{what} already {'locked' if locked else 'unlocked'}")
        log.info("%s %s by %s: versions %s", action, target, actor.name, [s.version for s in changed])
        return changed

    async def on_finding(self, f: Finding) -> None:
        """The auto-lock policy (control role): lock what the policy says, at once."""
        al = auto_lock_for(f, self.cfg)
        if al is None:
            return
        try:
            await self.set_lock(
                al.site, al.guns[0] if al.scope == "gun" else None, locked=True, reason=al.reason,
                actor=Actor.system(AUTO_LOCK_ACTOR), details={"finding": f.as_json(), "note": al.note},
            )
        except Conflict:
            log.debug("auto-lock on %s: %s already locked", f.rule, al.site)

    # --- publishing -------------------------------------------------------------------------

    def mark_dirty(self, g: GunId) -> None:
        self._dirty.add(g)
        self._dirty_event.set()

    async def _sender(self) -> None:
        """Publish the newest desired state of every dirty gun; one batch at a time, so a
        gun never has two publishes in flight (an older one cannot land last). The sends
        the broker acknowledged are recorded in one statement."""
        while True:
            await self._dirty_event.wait()
            self._dirty_event.clear()
            batch, self._dirty = self._dirty, set()
            sent = [x for x in await asyncio.gather(*(self._publish(g) for g in sorted(batch))) if x is not None]
            if not sent:
                continue
            try:
                async with self.conns.connection() as conn:
                    for row in await store.mark_sent(conn, sent, self.clock.now()):
                        self._apply(row)
            except MonitorError as e:
                log.warning("control: could not record %d send(s): %s", len(sent), e)

    async def _publish(self, g: GunId) -> tuple[GunId, int] | None:
        s = self.guns.get(g)
        if s is None or not s.commanded or self.bus is None:
            return None
        try:
            await self.bus.publish(topic(self.prefix, g, "desired"), desired_payload(s, self.clock.now()),
                                   qos=1, retain=True, timeout_s=5.0)
        except BrokerUnavailable as e:
            self.stats.publish_failed += 1
            log.warning("control: desired v%d for %s not published: %s", s.version, g, e)
            return None
        self.stats.published += 1
        PUBLISHED.inc()
        return g, s.version

    async def _on_connect(self) -> None:
        """Broker (re)connected: re-publish wherever desired and reported differ."""
        if self.ready.is_set():
            self._reconcile_cache("broker connect")

    def _reconcile_cache(self, why: str) -> int:
        n = 0
        for g, s in self.guns.items():
            if needs_publish(s):
                self.mark_dirty(g)
                n += 1
        self.stats.reconciles += 1
        if n:
            log.info("control: reconcile (%s): %d gun(s) differ from their desired state", why, n)
        return n

    async def reconcile(self, why: str = "periodic") -> int:
        """Reload from the database (the truth) and re-publish where desired and reported differ."""
        self._last_reconcile = self.clock.now()
        async with self.conns.connection() as conn:
            rows = await store.load(conn)
        for s in rows:
            self._apply(s)
        return self._reconcile_cache(why)

    # --- time -------------------------------------------------------------------------------

    async def _timer(self) -> None:
        await self.ready.wait()
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                await self.tick()
            except MonitorError as e:
                log.warning("control: tick failed: %s", e)

    async def tick(self) -> None:
        """Overdue confirmations become ``unconfirmed`` (an alert); unconfirmed guns are
        re-sent every ``resend_every_s``; a reconciliation every ``reconcile_every_s``."""
        async with self._tick_lock:
            c = self.cfg.control
            now = self.clock.now()
            if self._last_reconcile is None or (now - self._last_reconcile).total_seconds() >= c.reconcile_every_s:
                await self.reconcile()
            for g, s in list(self.guns.items()):
                d = due(s, now, confirm_timeout_s=c.confirm_timeout_s, resend_every_s=c.resend_every_s)
                if d.timeout:
                    async with self.conns.connection() as conn:
                        row = await store.mark_unconfirmed(conn, g, s.version, now)
                    self._apply(row)
                    if row is not None:
                        self._finding(
                            "lock_unconfirmed", g, g.gun,
                            f"gun {g} has not confirmed {'lock' if s.locked else 'unlock'} v{s.version} "
                            f"within {c.confirm_timeout_s:.0f} s; re-sending",
                            details={"version": s.version, "locked": s.locked, "sends": s.sends},
                        )
                if d.resend:
                    self.mark_dirty(g)

    # --- messages from the broker ---------------------------------------------------------------

    async def _on_message(self, t: str, payload: bytes, retain: bool) -> None:
        parsed = parse_topic(self.prefix, t)
        if parsed is None:
            return
        g, kind = parsed
        try:
            self._inboxes[hash(g) % len(self._inboxes)].put_nowait((kind, g, payload, retain))
        except asyncio.QueueFull:
            self.stats.dropped_messages += 1
            DROPPED.labels("inbox").inc()

    async def _inbox_worker(self, shard: int) -> None:
        await self.ready.wait()
        inbox = self._inboxes[shard]
        while True:
            kind, g, payload, retain = await inbox.get()
            try:
                if kind == "reported":
                    await self.handle_report(g, payload)
                elif kind == "desired":
                    await self.handle_desired(g, payload, retain)
            except MonitorError as e:
                log.warning("control: %s message for %s not handled: %s", kind, g, e)

    async def handle_report(self, g: GunId, payload: bytes) -> None:
        now = self.clock.now()
        self.stats.reports += 1
        s = self.guns.get(g)
        if s is None:
            async with self.conns.connection() as conn:
                await store.add_event(conn, g, "unknown_gun_report", {"payload": _text(payload)}, now)
            REPORTS.labels("unknown_gun").inc()
            return
        try:
            rep = parse_report(payload, now)
        except InputError as e:
            REPORTS.labels("malformed").inc()
            await self._anomaly(g, "malformed_report", {"error": e.message, "payload": _text(payload)})
            return
        for _ in range(3):
            sent: bool | None = None
            if rep.version > s.version:  # another process may have set a newer version: ask the truth
                async with self.conns.connection() as conn:
                    fresh = [r for r in await store.load(conn, site=g.site) if r.gun == g.gun]
                if fresh:
                    self._apply(fresh[0])
                    s = self.guns[g]
            if 0 < rep.version < s.version:
                async with self.conns.connection() as conn:
                    sent = await store.sent_locked(conn, g, rep.version)
            out = on_report(s, rep, sent)
            REPORTS.labels(out.verdict).inc()
            if out.verdict == "repeat":
                return
            if out.verdict == "forged":
                self.stats.forged += 1
                await self._anomaly(g, "forged_report", {"reported": rep.as_json(), "desired_version": s.version})
                self._finding(
                    "lock_unconfirmed", g, f"{g.gun}/forged",
                    f"gun {g}: a report claims v{rep.version} {'locked' if rep.locked else 'unlocked'}, "
                    f"which the centre never sent; it confirms nothing",
                    reason="forged_report", details={"reported": rep.as_json(), "desired_version": s.version},
                )
                if out.reassert_above is not None:
                    async with self.conns.connection() as conn:
                        self._apply(await store.reassert(
                            conn, g, above=out.reassert_above, actor=RECONCILER, now=now,
                            why=f"a report claimed version {rep.version}, never sent",
                        ))
                self.mark_dirty(g)
                return
            async with self.conns.connection() as conn:
                row = await store.record_report(
                    conn, g, rep, now, expect_version=s.version, command=out.command, rearm=out.rearm,
                    event=out.event,
                )
            if row is None:  # the desired state changed meanwhile: judge again against it
                async with self.conns.connection() as conn:
                    fresh = [r for r in await store.load(conn, site=g.site) if r.gun == g.gun]
                if not fresh:
                    return
                self._apply(fresh[0])
                s = self.guns[g]
                continue
            self._apply(row)
            if out.cleared:
                self._finding("lock_unconfirmed", g, g.gun, f"gun {g} confirmed v{row.version} at last",
                              active=False, details={"version": row.version})
            if out.republish:
                self.mark_dirty(g)
            return

    async def handle_desired(self, g: GunId, payload: bytes, retain: bool) -> None:
        """A message on a gun's ``desired`` topic: our own echo, an older retained state
        (overwritten with ours), or one the centre never published (re-asserted above)."""
        s = self.guns.get(g)
        if s is None:
            return
        try:
            d = parse_desired(payload)
        except InputError as e:
            await self._anomaly(g, "malformed_desired", {"error": e.message, "payload": _text(payload)})
            if s.commanded:
                self.mark_dirty(g)
            return
        verdict = judge_desired(s, d)
        if verdict == "ours":
            return
        if verdict == "stale":
            # An older state: a replay (retained now at the broker, where a factory-fresh
            # device would take it), or the echo of an earlier publish of ours. Either way
            # ours goes back on top; only a retained one is worth reporting.
            if retain:
                await self._anomaly(g, "stale_desired", {"seen_version": d.version, "desired_version": s.version})
            if s.commanded:
                self.mark_dirty(g)
            return
        await self._anomaly(g, "foreign_desired",
                            {"seen_version": d.version, "seen_locked": d.locked, "desired_version": s.version})
        self._finding(
            "lock_unconfirmed", g, f"{g.gun}/forged",
            f"gun {g}: a desired state v{d.version} {'locked' if d.locked else 'unlocked'} was published "
            "by someone other than the centre; the centre's state is re-asserted",
            reason="foreign_desired", details={"seen_version": d.version, "seen_locked": d.locked},
        )
        async with self.conns.connection() as conn:
            self._apply(await store.reassert(conn, g, above=max(d.version, s.version), actor=RECONCILER,
                                             now=self.clock.now(),
                                             why=f"a desired state v{d.version} was published by someone else"))
        self.mark_dirty(g)

    async def close(self) -> None:
        if self._conns is not None:
            await self._conns.close()

    async def _anomaly(self, g: GunId, kind: str, details: dict[str, Any]) -> None:
        self.stats.anomalies += 1
        log.warning("control: %s on %s: %s", kind, g, details)
        async with self.conns.connection() as conn:
            self._apply(await store.record_anomaly(conn, g, kind, details, self.clock.now()))

    def _finding(
        self, rule: str, g: GunId, subject: str, summary: str, *, active: bool = True, reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        if self.findings is None:
            return
        self.findings.submit_nowait(Finding(
            rule=rule, site=g.site, source=g.gun, subject=subject, ts=self.clock.now(), summary=summary,
            active=active, reason=reason, details=details or {},
        ))


def _text(payload: bytes) -> str:
    return payload[:300].decode("utf-8", "replace")

