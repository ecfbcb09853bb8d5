"""Control: remote lock of filling guns and the scan-before-fill interlock, over MQTT.

``setup(app)`` plugs the part into the service: with the ``api`` role it serves the HTTP
API and pushes gun changes to the WebSocket topic ``guns``; with the ``control`` role it
talks to the gun controllers (desired/reported shadow, reconciliation, authorize) and
applies the auto-lock policy. Other parts call ``app[CONTROL].set_lock(...)`` and
``app[INTERLOCK].authorize(...)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web


def setup(app: web.Application) -> None:
    from monitor.app import DB_READY
    from monitor.control import api
    from monitor.control.authorizer import Authorizer
    from monitor.control.service import ControlService
    from monitor.web.keys import BUS, CONFIG, CONTROL, DB, FINDINGS, HUB, INTERLOCK, ROLES, TASKS

    roles = app[ROLES]
    if not roles & {"api", "control"}:
        return
    svc = ControlService(
        app[CONFIG], bus=app[BUS], hub=app[HUB] if "api" in roles else None, findings=app[FINDINGS],
        tasks=app[TASKS], roles=roles, db_ready=app[DB_READY],
    )
    interlock = Authorizer(svc)
    svc.attach()
    interlock.attach()
    app[CONTROL] = svc
    app[INTERLOCK] = interlock

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        svc.start(app[DB])
        interlock.start()
        yield
        await interlock.flush()
        await svc.close()

    app.cleanup_ctx.append(ctx)
    if "api" in roles:
        app.add_routes(api.routes)
