"""Camera states across processes, through PostgreSQL (roles run apart).

A video worker (``--role video``, cameras shared through leases) knows its cameras'
states; the API process that serves the wall runs none. ``StateWriter`` (video workers)
writes each state change to ``camera_states``, only while the worker holds the camera's
lease under the generation it ran it with (the write checks it: a worker that lost a
camera cannot overwrite its new holder's state). Changes are coalesced per camera (the
latest wins) and kept while the database is away. ``StateView`` (API processes) reads the
table every ``every_s`` joined with the leases: a state counts only while its writer still
holds the lease; a camera no live worker holds is ``unassigned``. Changes go to the hub's
``cameras`` topic (the same events the video part publishes in one process), and the
overview's camera tallies and ``GET /api/v1/cameras`` read ``camera_states()``/``get``;
the camera's pictures (snapshots, MJPEG) are relayed from the worker's ``url``
(``video_workers.url``, its ``server.advertise_url``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from monitor.errors import MonitorError
from monitor.store.db import Database
from monitor.tasks import Backoff

log = logging.getLogger(__name__)

UNASSIGNED_REASON = "no video worker runs this camera (every worker at its max_cameras, or none running)"


@dataclass(frozen=True)
class CameraState:
    camera: str
    site: str
    state: str
    reason: str
    since: datetime | None
    worker: str | None
    url: str | None = None  # the worker's HTTP address (it serves the camera's pictures)

    def event(self) -> dict[str, Any]:
        return {"camera": self.camera, "site": self.site, "state": self.state, "reason": self.reason,
                "since": self.since.isoformat() if self.since else None, "worker": self.worker}


class StateWriter:
    """Video worker → ``camera_states``; ``note`` from the loop, ``run`` supervised."""

    def __init__(self, db: Database, worker: Callable[[], str | None]) -> None:
        self.db = db
        self.worker = worker
        self.pending: dict[str, tuple[str, str, datetime, int]] = {}  # camera -> state, reason, since, generation
        self._wake = asyncio.Event()
        self.refused = 0  # not written: the lease had passed on

    def note(self, camera: str, state: str, reason: str, since: datetime, generation: int) -> None:
        self.pending[camera] = (state, reason, since, generation)
        self._wake.set()

    async def run(self) -> None:
        backoff = Backoff(0.5, 10.0)
        while True:
            if not self.pending:
                self._wake.clear()
                await self._wake.wait()
            batch, self.pending = self.pending, {}
            try:
                await self.write(batch)
                backoff.reset()
            except MonitorError as e:
                for cam, v in batch.items():  # keep them, unless a newer state came meanwhile
                    self.pending.setdefault(cam, v)
                delay = backoff.next()
                log.warning("camera states not written (%s); %d kept, retrying in %.1fs", e, len(batch), delay)
                await asyncio.sleep(delay)

    async def write(self, batch: Mapping[str, tuple[str, str, datetime, int]]) -> int:
        worker = self.worker()
        if worker is None or not batch:
            return 0
        n = 0
        async with self.db.connection() as conn:
            for cam, (state, reason, since, gen) in batch.items():
                cur = await conn.execute(
                    """INSERT INTO camera_states (camera_id, state, reason, since, worker, generation)
                       SELECT %(c)s, %(s)s, %(r)s, %(t)s, %(w)s, %(g)s
                       WHERE EXISTS (SELECT 1 FROM camera_leases WHERE camera_id = %(c)s AND worker = %(w)s
                                     AND generation = %(g)s AND expires_at > now())
                       ON CONFLICT (camera_id) DO UPDATE SET state = EXCLUDED.state, reason = EXCLUDED.reason,
                           since = EXCLUDED.since, worker = EXCLUDED.worker, generation = EXCLUDED.generation,
                           updated_at = now()""",
                    {"c": cam, "s": state, "r": reason, "t": since, "w": worker, "g": gen},
                )
                if cur.rowcount:
                    n += 1
                else:
                    self.refused += 1
        return n


class StateView:
    """API process ← ``camera_states`` (+ leases); publishes changes on the hub."""

    def __init__(self, db: Database, sites: Mapping[str, str], publish: Callable[[dict[str, Any]], Any] | None = None,
                 *, every_s: float = 2.0) -> None:
        self.db = db
        self.sites = dict(sites)  # camera -> site
        self.publish = publish
        self.every_s = every_s
        self.states: dict[str, CameraState] = {}
        self._http: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        """For relaying the pictures of cameras the video workers run (``monitor.video.api``)."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=3.0, sock_read=10.0))
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    def camera_states(self) -> Mapping[str, str]:
        return {c: s.state for c, s in self.states.items()}

    def get(self, camera: str) -> CameraState | None:
        return self.states.get(camera)

    async def refresh(self) -> list[CameraState]:
        """Read every camera's state; returns those that changed (and publishes them)."""
        async with self.db.connection() as conn:
            cur = await conn.execute(
                """SELECT c.id AS camera, s.state, s.reason, s.since, s.worker, w.url,
                          (l.worker IS NOT NULL AND l.worker = s.worker AND l.generation = s.generation
                           AND l.expires_at > now()) AS held,
                          (l.worker IS NOT NULL AND l.expires_at > now()) AS leased
                   FROM cameras c
                   LEFT JOIN camera_states s ON s.camera_id = c.id
                   LEFT JOIN camera_leases l ON l.camera_id = c.id
                   LEFT JOIN video_workers w ON w.worker = s.worker
                   WHERE c.active AND c.id = ANY(%s)""",
                (sorted(self.sites),),
            )
            rows = await cur.fetchall()
        changed = []
        for r in rows:
            cam = r["camera"]
            if r["held"]:
                st = CameraState(cam, self.sites[cam], r["state"], r["reason"], r["since"], r["worker"], r["url"])
            elif r["leased"]:  # its new holder has not written yet
                st = CameraState(cam, self.sites[cam], "connecting", "taken over by another video worker",
                                 None, None)
            else:
                st = CameraState(cam, self.sites[cam], "unassigned", UNASSIGNED_REASON, None, None)
            old = self.states.get(cam)
            if old is None or (old.state, old.reason, old.since, old.worker) != (st.state, st.reason, st.since,
                                                                                st.worker):
                changed.append(st)
            self.states[cam] = st
        if self.publish is not None:
            for st in changed:
                self.publish(st.event())
        return changed

    async def run(self) -> None:
        backoff = Backoff(self.every_s, 30.0)
        while True:
            try:
                await self.refresh()
                backoff.reset()
                await asyncio.sleep(self.every_s)
            except MonitorError as e:
                log.warning("camera states not read (%s)", e)
                await asyncio.sleep(backoff.next())
