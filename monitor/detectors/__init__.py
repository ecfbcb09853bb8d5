"""Detectors: the model runner, tracking, zones and the rules (anti-static, storage).

``setup(app)`` plugs the part into the service: with the ``video`` role it runs the
``DetectorService`` over the frames of this process's cameras (``app[VIDEO].feed``),
submits findings to ``app[FINDINGS]``, publishes ``detections:<camera>`` on the hub and
writes the ``camera_counts`` series. Pure logic lives in ``detections``, ``zones``,
``stitch``, ``antistatic``, ``storage``; ``pipeline`` ties one camera's together.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

from aiohttp import web

from monitor.errors import MonitorError

log = logging.getLogger(__name__)
RESUME_READ_S = 8.0  # reading a camera's live alerts when this process starts reporting for it


def setup(app: web.Application) -> None:
    from monitor.web.keys import CONFIG, ROLES

    if "video" not in app[ROLES]:
        return
    if not any(cam.rules for _, cam in app[CONFIG].cameras()):
        return
    app.cleanup_ctx.append(_ctx)


async def _ctx(app: web.Application) -> AsyncIterator[None]:
    from monitor.app import DB_READY
    from monitor.detectors.countstore import write_counts
    from monitor.detectors.service import CountRow, DetectorService, Takeover
    from monitor.store.leases import live_alerts_of
    from monitor.web.keys import CONFIG, DB, DETECTORS, FINDINGS, HUB, SERVICES, TASKS, VIDEO

    video = app.get(VIDEO)
    if video is None:
        log.warning("detectors: the video part is not running in this process; no detection")
        yield
        return
    db = app[DB]

    async def store(rows: Sequence[CountRow]) -> None:
        async with db.connection() as conn:
            await write_counts(conn, rows)

    async def resume(camera: str) -> Takeover | None:
        """What the camera's previous holder left live (its alerts in the database)."""
        try:
            async with asyncio.timeout(RESUME_READ_S):
                await app[DB_READY].wait()
                async with db.connection() as conn:
                    rows = await live_alerts_of(conn, camera)
        except (TimeoutError, MonitorError) as e:
            log.warning("detectors: %s: live alerts not read (%s); analysed afresh", camera, e or "timeout")
            return None
        return Takeover(
            conditions=frozenset(r["rule"] for r in rows if r["state"] in ("open", "acknowledged")
                                 and r["condition_active"]),
            subjects=frozenset(r["subject"] for r in rows),
        )

    # Findings and counts of a camera only while this process may report for it (its lease,
    # when video workers share the cameras); a camera this process starts reporting for
    # continues the live alerts its previous holder left.
    svc = DetectorService(app[CONFIG], video.feed, app[FINDINGS].submit, hub=app[HUB], write_counts=store,
                          cameras=set(video.cameras), leases=video, resume=resume,
                          replaced=lambda cam: video.feed.dropped.get(cam, 0))
    app[DETECTORS] = svc
    app[SERVICES]["detectors"] = svc
    app[TASKS].supervise("detectors", svc.run)
    app[TASKS].supervise("detector-counts", lambda: svc.run_counts(app[DB_READY]))
    yield
    try:  # the tasks have stopped; the pool is still open: write what is buffered
        await asyncio.wait_for(svc.flush_counts(), 3.0)
    except (TimeoutError, MonitorError) as e:
        log.warning("detectors: %d count row(s) not written at shutdown: %s", len(svc.rows), e)
    svc.close()
