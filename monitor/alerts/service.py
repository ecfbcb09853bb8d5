"""The alerts part as the entry wires it: engine, evidence gatherer, WebSocket snapshot."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from monitor.alerts import store
from monitor.alerts.clock import Clock, SystemClock
from monitor.alerts.engine import AlertEngine
from monitor.alerts.evidence import EvidenceGatherer
from monitor.alerts.model import alert_json
from monitor.config import Config
from monitor.errors import DatabaseUnavailable
from monitor.evidence import EvidenceSource
from monitor.store.db import Database
from monitor.web.hub import Client, Hub
from monitor.web.keys import ALERTS, CONFIG, DB, FINDINGS, HUB, ROLES, SERVICES, TASKS

log = logging.getLogger(__name__)

SNAPSHOT_LIMIT = 500
# Where a test or the demo may put a clock for the alerts before the app starts.
CLOCK_SERVICE = "alerts.clock"
EVIDENCE_SERVICE = "evidence"  # an EvidenceSource put there on purpose (tests, another video backend)
VIDEO_SERVICE = "video"  # the video part's VideoService, which is one


class AlertsService:
    def __init__(self, *, db: Database, cfg: Config, hub: Hub, clock: Clock,
                 services: dict[str, Any]) -> None:
        self.db = db
        self.cfg = cfg
        self.hub = hub
        self.clock = clock
        self.media_dir = Path(cfg.media.dir)
        self.gatherer = EvidenceGatherer(db=db, cfg=cfg, clock=clock, source=self._evidence_source,
                                         media_dir=self.media_dir)
        self.engine = AlertEngine(db=db, cfg=cfg, clock=clock, publish=hub.publish, gatherer=self.gatherer)
        self._services = services

    def _evidence_source(self) -> EvidenceSource | None:
        """Looked up at use time: the video part registers itself after this part starts
        (and a process without the video role has none)."""
        for name in (EVIDENCE_SERVICE, VIDEO_SERVICE):
            src = self._services.get(name)
            if src is not None and callable(getattr(src, "snapshot", None)) and callable(getattr(src, "clip", None)):
                return src  # type: ignore[no-any-return]
        return None

    async def snapshot(self, client: Client, topic: str) -> None:
        """A newly subscribed wall gets every live alert, most severe and newest first."""
        try:
            async with self.db.connection() as conn:
                cur = await conn.execute(
                    """SELECT * FROM alerts WHERE state <> 'closed'
                       ORDER BY sev_rank DESC, first_seen DESC, id DESC LIMIT %s""",
                    (SNAPSHOT_LIMIT,),
                )
                rows = await cur.fetchall()
        except DatabaseUnavailable as e:
            self.hub.send_to(client, topic, {"type": "snapshot", "alerts": [], "error": str(e)})
            return
        self.hub.send_to(client, topic, {"type": "snapshot", "alerts": [alert_json(r) for r in rows],
                                         "truncated": len(rows) >= SNAPSHOT_LIMIT})

    async def live_count(self) -> int:
        async with self.db.connection() as conn:
            cur = await conn.execute("SELECT count(*) AS n FROM alerts WHERE state <> 'closed'")
            row = await cur.fetchone()
        return int(row["n"]) if row else 0

    async def refresh_row(self, alert_id: int) -> dict[str, Any] | None:
        async with self.db.connection() as conn:
            return await store.get_alert(conn, alert_id)


async def alerts_ctx(app: web.Application) -> AsyncIterator[None]:
    from monitor.app import DB_READY  # the entry owns it; imported late (it imports the parts)

    services = app[SERVICES]
    clock = services.get(CLOCK_SERVICE) or SystemClock()
    svc = AlertsService(db=app[DB], cfg=app[CONFIG], hub=app[HUB], clock=clock, services=services)
    app[ALERTS] = svc
    services["alerts"] = svc
    app[FINDINGS].subscribe(svc.engine.submit)
    if "api" in app[ROLES]:
        app[HUB].snapshots["alerts"] = svc.snapshot
    tasks = app[TASKS]
    ready = app[DB_READY]

    async def start() -> None:
        await ready.wait()
        tasks.supervise("alerts-writer", svc.engine.run)
        tasks.supervise("alerts-listen", svc.engine.listen, backoff_s=1.0)
        tasks.supervise("evidence", svc.gatherer.run)
        tasks.supervise("evidence-sweep", svc.gatherer.sweeper)

    tasks.spawn("alerts-start", start())
    yield
