"""Plugs the live correlation engine into the service (after the series part)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from monitor.alerts.correlation.engine import LiveCorrelation
from monitor.web.keys import CONFIG, CORRELATION, DB, FINDINGS, ROLES, SERIES, SERVICES, TASKS


def setup(app: web.Application) -> None:
    if app[ROLES] & {"api", "control"}:
        app.cleanup_ctx.append(_ctx)


async def _ctx(app: web.Application) -> AsyncIterator[None]:
    from monitor.app import DB_READY

    series = app.get(SERIES)
    engine = LiveCorrelation(app[CONFIG], app[DB], app[FINDINGS], db_ready=app[DB_READY],
                             settled=(lambda: series.spool.empty) if series is not None else (lambda: True))
    app[CORRELATION] = engine
    app[SERVICES]["correlation"] = engine
    if series is not None:
        series.listeners.append(engine)
    if "control" in app[ROLES]:
        app[FINDINGS].subscribe(engine.on_finding)
        app[TASKS].supervise("correlation-worker", engine.run)
        app[TASKS].supervise("correlation-sweep", engine.sweep_loop)
    yield
