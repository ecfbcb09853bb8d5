"""Camera leases in PostgreSQL, for video workers spread over machines.

Each worker calls ``LeaseKeeper.tick()`` every ``renew_s`` seconds. A tick renews the
worker's leases (those it lost are reported), claims free or expired cameras up to its
fair share with ``FOR UPDATE SKIP LOCKED`` (so two workers never claim the same row;
anti-static cameras first, ``PRIORITY``), and gives back cameras above its share (the
least important first) so a newly started worker gets some. A worker
that dies stops renewing; its leases expire after ``ttl_s`` and the others take them.
Nothing home-made where PostgreSQL gives the guarantee: the row lock decides who wins.

Capacity: a worker started with ``capacity`` (``media.max_cameras``, sized from the
detectors bench) never holds more cameras than that. Shares are water-filled
(``shares``): workers of small capacity are filled first, the rest split evenly among
the others. Cameras beyond every live worker's capacity stay unassigned; each tick
counts them (``unassigned``, the metric ``monitor_video_cameras_unassigned``) and names
them in a warning, so an operator sees "these cameras are not analysed: add a worker"
instead of a worker that claims every camera and analyses almost none of their frames.

Fencing: ``generation(camera)`` says, without a round trip, whether this worker may still
report for a camera: it holds the lease, and the lease cannot have expired yet. A tick
notes the monotonic time before its transaction began; the database's ``now()`` is that
transaction's start, so the lease it wrote lasts at least ``ttl_s`` from the noted time.
A worker that was paused or cut off past that (another may have taken the camera) reports
nothing for the camera until a tick has renewed it. ``still_holds`` asks the database.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from prometheus_client import Gauge

log = logging.getLogger(__name__)

# Which cameras a worker claims first, and gives back last, when capacity is short: those
# watching people at the discharge post (a skipped discharge is a fire risk), then any with
# rules, then cameras that are only recorded.
PRIORITY = "(CASE WHEN 'antistatic' = ANY(c.rules) THEN 0 WHEN cardinality(c.rules) > 0 THEN 1 ELSE 2 END)"


def camera_priority(rules: Sequence[str]) -> int:
    """``PRIORITY`` for a camera's rules, in Python (one process without leases)."""
    return 0 if "antistatic" in rules else 1 if rules else 2

UNASSIGNED = Gauge("monitor_video_cameras_unassigned",
                   "active cameras no live video worker holds (every worker at its max_cameras, or none running)")
HELD = Gauge("monitor_video_cameras_leased", "cameras this video worker holds a lease on")


def shares(cameras: int, capacities: dict[str, int | None], held: dict[str, int] | None = None) -> dict[str, int]:
    """Each live worker's share of ``cameras``: even, but never above a worker's capacity
    (None: no limit); what a small worker cannot take goes to the others (water-filling,
    smallest capacity first). Where even shares differ by one, the workers holding more
    now get the larger ones (fewer cameras move). Every worker computes the same answer
    from the same rows."""
    now = held or {}
    order = sorted(capacities, key=lambda w: (math.inf if capacities[w] is None else capacities[w],
                                              -now.get(w, 0), w))
    out: dict[str, int] = {}
    left = cameras
    for i, w in enumerate(order):
        even = math.ceil(left / (len(order) - i)) if left > 0 else 0
        cap = capacities[w]
        out[w] = even if cap is None else min(cap, even)
        left -= out[w]
    return out


@dataclass
class LeaseChange:
    gained: dict[str, int] = field(default_factory=dict)  # camera -> generation
    lost: set[str] = field(default_factory=set)


class LeaseKeeper:
    def __init__(self, worker: str | None = None, *, ttl_s: float = 10.0, renew_s: float = 3.0,
                 capacity: int | None = None, url: str | None = None) -> None:
        if capacity is not None and capacity < 1:
            raise ValueError(f"capacity must be at least 1 camera, got {capacity}")
        self.worker = worker or f"{socket.gethostname()}-{os.getpid()}"
        self.ttl_s = ttl_s
        self.renew_s = renew_s
        self.capacity = capacity
        self.url = url  # where this worker's HTTP routes are reached (the API relays its cameras' pictures)
        self.unassigned: list[str] = []  # active cameras no live worker held at the last tick
        self.short = 0  # cameras beyond every live worker's capacity at the last tick
        self.held: dict[str, int] = {}
        self.valid_until = -math.inf  # monotonic: every lease in ``held`` lasts at least until then

    def generation(self, camera: str) -> int | None:
        """The generation of our lease on ``camera`` if it is certainly still ours, else None."""
        gen = self.held.get(camera)
        if gen is None or time.monotonic() >= self.valid_until:
            return None
        return gen

    async def register(self, conn: psycopg.AsyncConnection[Any]) -> None:
        async with conn.transaction():
            await conn.execute(
                """INSERT INTO video_workers (worker, host, pid, capacity, url) VALUES (%s, %s, %s, %s, %s)
                   ON CONFLICT (worker) DO UPDATE SET seen_at = now(), capacity = EXCLUDED.capacity,
                                                      url = EXCLUDED.url""",
                (self.worker, socket.gethostname(), os.getpid(), self.capacity, self.url),
            )
            await conn.execute(
                """INSERT INTO camera_leases (camera_id)
                   SELECT id FROM cameras WHERE active ON CONFLICT (camera_id) DO NOTHING"""
            )

    async def tick(self, conn: psycopg.AsyncConnection[Any]) -> LeaseChange:
        ch = LeaseChange()
        ttl = f"{self.ttl_s} seconds"
        began = time.monotonic()  # before the transaction (and its now()) begins
        async with conn.transaction():
            await conn.execute("UPDATE video_workers SET seen_at = now() WHERE worker = %s", (self.worker,))
            cur = await conn.execute(
                """UPDATE camera_leases l SET expires_at = now() + %s::interval FROM cameras c
                   WHERE c.id = l.camera_id AND l.worker = %s AND l.expires_at > now()
                   RETURNING l.camera_id, l.generation, """ + PRIORITY + """ AS prio""",
                (ttl, self.worker),
            )
            rows_r = await cur.fetchall()
            renewed = {r["camera_id"]: r["generation"] for r in rows_r}
            prio = {r["camera_id"]: r["prio"] for r in rows_r}
            ch.lost = {c for c in self.held if renewed.get(c) != self.held[c]}
            for c in ch.lost:
                log.warning("lease on camera %s lost by %s", c, self.worker)
            self.held = renewed
            cur = await conn.execute(
                """SELECT count(*) AS cams FROM camera_leases l JOIN cameras c ON c.id = l.camera_id WHERE c.active"""
            )
            row = await cur.fetchone()
            assert row is not None
            cur = await conn.execute(
                """SELECT w.worker, w.capacity,
                          (SELECT count(*) FROM camera_leases l
                            WHERE l.worker = w.worker AND l.expires_at > now()) AS held
                   FROM video_workers w WHERE w.worker = %s OR w.seen_at > now() - %s::interval""",
                (self.worker, ttl),
            )
            rows = await cur.fetchall()
            caps: dict[str, int | None] = {r["worker"]: r["capacity"] for r in rows}
            caps[self.worker] = self.capacity
            split = shares(row["cams"], caps, {r["worker"]: int(r["held"]) for r in rows})
            share = split[self.worker]
            short = row["cams"] - sum(split.values())  # beyond every live worker's capacity
            want = share - len(self.held)
            if want > 0:
                cur = await conn.execute(
                    """WITH free AS (
                           SELECT l.camera_id FROM camera_leases l JOIN cameras c ON c.id = l.camera_id
                           WHERE c.active AND (l.worker IS NULL OR l.expires_at <= now())
                           ORDER BY """ + PRIORITY + """, l.camera_id FOR UPDATE OF l SKIP LOCKED LIMIT %s)
                       UPDATE camera_leases l SET worker = %s, generation = l.generation + 1,
                              claimed_at = now(), expires_at = now() + %s::interval
                       FROM free WHERE l.camera_id = free.camera_id
                       RETURNING l.camera_id, l.generation""",
                    (want, self.worker, ttl),
                )
                for r in await cur.fetchall():
                    ch.gained[r["camera_id"]] = r["generation"]
                    self.held[r["camera_id"]] = r["generation"]
            elif want < 0:
                extra = sorted(self.held, key=lambda c: (prio.get(c, 9), c))[share:]  # least important
                await conn.execute(
                    """UPDATE camera_leases SET worker = NULL, expires_at = '-infinity'
                       WHERE worker = %s AND camera_id = ANY(%s)""",
                    (self.worker, extra),
                )
                for c in extra:
                    ch.lost.add(c)
                    del self.held[c]
            cur = await conn.execute(
                """SELECT l.camera_id FROM camera_leases l JOIN cameras c ON c.id = l.camera_id
                   WHERE c.active AND (l.worker IS NULL OR l.expires_at <= now()) ORDER BY 1"""
            )
            unassigned = [r["camera_id"] for r in await cur.fetchall()]
        self.valid_until = began + self.ttl_s
        HELD.set(len(self.held))
        UNASSIGNED.set(len(unassigned))
        if short > 0 and unassigned != self.unassigned:
            log.warning("video leases: %d camera(s) beyond the capacity of every live video worker "
                        "(media.max_cameras): not analysed: %s; start another video worker", len(unassigned),
                        ", ".join(unassigned[:20]) + (" …" if len(unassigned) > 20 else ""))
        self.unassigned = unassigned
        self.short = short
        if ch.gained:
            log.info("worker %s claimed %s", self.worker, ", ".join(sorted(ch.gained)))
        return ch

    async def release_all(self, conn: psycopg.AsyncConnection[Any]) -> None:
        async with conn.transaction():
            await conn.execute(
                "UPDATE camera_leases SET worker = NULL, expires_at = '-infinity' WHERE worker = %s", (self.worker,)
            )
            await conn.execute("DELETE FROM video_workers WHERE worker = %s", (self.worker,))
        self.drop()

    def drop(self) -> None:
        """Forget every lease (they may have expired: the database could not be reached)."""
        self.held.clear()
        self.valid_until = -math.inf

    async def still_holds(self, conn: psycopg.AsyncConnection[Any], camera: str, generation: int) -> bool:
        """Fencing check before reporting for ``camera``."""
        cur = await conn.execute(
            "SELECT 1 FROM camera_leases WHERE camera_id = %s AND worker = %s AND generation = %s AND expires_at > now()",
            (camera, self.worker, generation),
        )
        return await cur.fetchone() is not None


async def live_alerts_of(conn: psycopg.AsyncConnection[Any], camera: str) -> list[dict[str, Any]]:
    """The camera's live alerts (rule, subject, state, condition_active): what a worker taking
    the camera over continues rather than raises again."""
    cur = await conn.execute(
        """SELECT rule, subject, state, condition_active FROM alerts
           WHERE source = %s AND state <> 'closed'""",
        (camera,),
    )
    return list(await cur.fetchall())
