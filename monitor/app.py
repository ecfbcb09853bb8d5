"""The entry: builds the aiohttp application from cleanup contexts and wires the parts.

Each part is one cleanup context (setup, ``yield``, teardown), torn down in reverse.
Roles let the work spread over processes: ``api`` (HTTP, WebSocket, ingest of scans),
``video`` (cameras and detectors), ``control`` (locks, interlock, scale ingest,
correlation). ``all`` runs every role.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from monitor.config import Config
from monitor.errors import DatabaseUnavailable
from monitor.findings import FindingBus
from monitor.mqtt import MqttBus
from monitor.store.db import Database, detect_timescale
from monitor.store.migrate import migrate
from monitor.store.sites import sync_sites
from monitor.tasks import TaskGroup
from monitor.web import core_api
from monitor.web.auth import LoginThrottle
from monitor.web.errors import error_middleware
from monitor.web.hub import Hub
from monitor.web.keys import ADVERTISED, BUS, CONFIG, DB, FINDINGS, HUB, ROLES, SERVICES, TASKS, THROTTLE
from monitor.web.security import auth_middleware

log = logging.getLogger(__name__)

ALL_ROLES = frozenset({"api", "video", "control"})
DB_READY: web.AppKey[asyncio.Event] = web.AppKey("db_ready")

# Parts plug in here: each is a function that adds its routes and cleanup contexts.
AreaSetup = Callable[[web.Application], None]


def area_setups() -> list[AreaSetup]:
    """The parts of the product, in the order their contexts start."""
    setups: list[AreaSetup] = []
    from monitor.alerts.correlation.service import setup as correlation_setup  # the correlation rules, live
    from monitor.series.service import setup as series_setup  # scans, scale ingest, spool, fills, look-ups

    setups += [series_setup, correlation_setup]
    from monitor.alerts import setup as alerts_setup  # alerts, incidents, evidence, audit reads

    setups.append(alerts_setup)
    from monitor.control import setup as control_setup  # gun locks and the interlock

    setups.append(control_setup)
    from monitor.video import setup as video_setup  # cameras, ring and clips, snapshots, live relay

    setups.append(video_setup)
    from monitor.detectors import setup as detectors_setup  # detector, tracking, anti-static, storage

    setups.append(detectors_setup)
    from monitor.web import overview  # the wallboard's sites, counts and charts

    setups.append(overview.setup)
    return setups


async def _db_ctx(app: web.Application) -> AsyncIterator[None]:
    cfg = app[CONFIG]
    db = Database(cfg.database.url, min_size=cfg.database.pool_min, max_size=cfg.database.pool_max)
    app[DB] = db
    await db.open()
    ready = app[DB_READY]

    async def init() -> None:
        await db.wait_up(deadline_s=1e9)
        async with db.connection() as conn:
            await migrate(conn)
            db.state.timescale = await detect_timescale(conn)
            await sync_sites(conn, cfg)
        log.info("database ready (%s path)", "TimescaleDB" if db.state.timescale else "plain PostgreSQL")
        ready.set()

    app[TASKS].spawn("db-init", init())
    yield
    await db.close()


async def _bus_ctx(app: web.Application) -> AsyncIterator[None]:
    bus = app[BUS]
    app[TASKS].supervise("mqtt", bus.run)
    yield


async def _tasks_ctx(app: web.Application) -> AsyncIterator[None]:
    app[TASKS].supervise("findings", app[FINDINGS].run)
    yield
    await app[TASKS].stop(timeout_s=5.0)


async def _on_shutdown(app: web.Application) -> None:
    await app[HUB].close_all()


def build_app(cfg: Config, *, roles: frozenset[str] = ALL_ROLES, client_id: str = "monitor-centre") -> web.Application:
    app = web.Application(middlewares=[error_middleware, auth_middleware], client_max_size=8 * 1024 * 1024)
    app[CONFIG] = cfg
    app[ROLES] = roles
    app[TASKS] = TaskGroup()
    app[HUB] = Hub()
    app[THROTTLE] = LoginThrottle()
    # One persistent session per role set: mqtt.client_id (default "monitor-centre") plus the roles.
    app[BUS] = MqttBus(cfg.mqtt, client_id=f"{cfg.mqtt.client_id or client_id}-{'-'.join(sorted(roles))}")
    app[DB_READY] = asyncio.Event()
    app[SERVICES] = {}
    app[FINDINGS] = FindingBus()
    # Contexts are torn down in reverse: tasks stop first, then the bus, then the pool.
    app.cleanup_ctx.append(_db_ctx)
    app.cleanup_ctx.append(_bus_ctx)
    for setup in area_setups():
        setup(app)
    app.cleanup_ctx.append(_tasks_ctx)
    app.on_shutdown.append(_on_shutdown)
    app.add_routes(core_api.routes)
    core_api.add_static(app)
    return app


async def wait_db_ready(app: web.Application, timeout_s: float) -> None:
    try:
        await asyncio.wait_for(app[DB_READY].wait(), timeout_s)
    except TimeoutError as e:
        raise DatabaseUnavailable(f"database not ready after {timeout_s:.0f}s") from e


def advertised_url(cfg: Config, host: str, port: int) -> str:
    """How other processes reach this one: ``server.advertise_url``, else the bound host (this
    machine's name when bound to every address) and port."""
    import socket

    if cfg.server.advertise_url:
        return cfg.server.advertise_url.rstrip("/")
    name = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    return f"http://{'[' + name + ']' if ':' in name else name}:{port}"


def run(cfg: Config, *, roles: frozenset[str] = ALL_ROLES, host: str | None = None, port: int | None = None,
        **kw: Any) -> None:
    app = build_app(cfg, roles=roles)
    bind_host = host or cfg.server.host
    bind_port = port if port is not None else cfg.server.port
    app[ADVERTISED] = advertised_url(cfg, bind_host, bind_port)
    web.run_app(
        app,
        host=bind_host,
        port=bind_port,
        shutdown_timeout=8.0,
        access_log=None,
        print=lambda s: log.info("%s", s.strip()),
        **kw,
    )
