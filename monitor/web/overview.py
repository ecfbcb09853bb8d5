"""The city overview for the wall: the sites with their counts, the city's counts, charts.

- ``GET /api/v1/sites``  viewer+: every configured site with kind, name, district,
  location ``[lon, lat]``, capacity, guns, cameras (id, name, rules, zones, state), ``counts`` (``alerts_open``,
  ``alerts_critical``, ``cameras_offline``, ``guns_locked``) and its map ``state``.
- ``GET /api/v1/overview``  viewer+: ``{"timezone", "settings", "wallboard_version", "counts"}``:
  the city's counts and what the wall needs to know (its time zone, the snapshot refresh,
  the fingerprint of its files so a long-running wall reloads after an upgrade).
- ``GET /api/v1/charts/fills?hours=24&site=``  viewer+: fills per hour per station
  (``{"hours": [iso...], "stations": [{"site", "name", "counts": [...]}]}``).
- ``GET /api/v1/charts/stock?site=``  viewer+: each outlet's scan-derived stock, the
  cylinders its storage camera counts, and its licensed capacity.
- Hub topic ``counts``: the city's counts, pushed when they change (a new subscriber is
  greeted with the current ones).

The counts come from the alerts (``alerts``), control (``gun_state``) and series
(``fills_hourly``, ``outlet_stock_hourly``) tables and the detectors' ``camera_counts``;
camera states from whichever service offers ``camera_states()`` (the video part). A
table that is not there yet (its part not installed) counts as empty.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import psycopg
from aiohttp import web

from monitor.config import Config, SiteConfig
from monitor.errors import InputError, NotFound
from monitor.web import auth
from monitor.web.core_api import WALLBOARD
from monitor.web.keys import CONFIG, DB, HUB, OVERVIEW, ROLES, SERVICES, TASKS
from monitor.web.security import require_role

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

ACTIVE_STATES = ("open", "acknowledged")
SNAPSHOT_REFRESH_S = 2.0   # the wall's default: each visible tile's snapshot this often
PAGE_SIZE = 24             # tiles per page on the wall by default
COUNTS_EVERY_S = 3.0       # how often the city's counts are re-read for the ``counts`` topic
SESSIONS_EVERY_S = 30.0    # how often open WebSockets are checked against their sessions
MAX_HOURS = 24 * 14


# --- pure logic ------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteCounts:
    alerts_open: int = 0
    alerts_critical: int = 0
    cameras_offline: int = 0
    guns_locked: int = 0

    def as_json(self) -> dict[str, int]:
        return {"alerts_open": self.alerts_open, "alerts_critical": self.alerts_critical,
                "cameras_offline": self.cameras_offline, "guns_locked": self.guns_locked}


def site_state(c: SiteCounts) -> str:
    """The colour of a site on the map, most urgent first."""
    if c.alerts_critical:
        return "critical"
    if c.guns_locked:
        return "locked"
    if c.alerts_open:
        return "warning"
    if c.cameras_offline:
        return "offline"
    return "ok"


@dataclass(frozen=True)
class Tallies:
    """What the database and the video part say, per site."""

    alerts_open: Mapping[str, int] = field(default_factory=dict)
    alerts_critical: Mapping[str, int] = field(default_factory=dict)
    guns_locked: Mapping[str, int] = field(default_factory=dict)
    camera_states: Mapping[str, str] = field(default_factory=dict)  # camera id -> online|offline|degraded


def site_counts(site: SiteConfig, t: Tallies) -> SiteCounts:
    offline = sum(1 for c in site.cameras if t.camera_states.get(c.id) == "offline")
    return SiteCounts(
        alerts_open=t.alerts_open.get(site.id, 0), alerts_critical=t.alerts_critical.get(site.id, 0),
        cameras_offline=offline, guns_locked=t.guns_locked.get(site.id, 0),
    )


def site_json(site: SiteConfig, t: Tallies) -> dict[str, Any]:
    c = site_counts(site, t)
    return {
        "id": site.id, "kind": site.kind, "name": site.name or site.id, "district": site.district,
        "location": list(site.location) if site.location else None, "capacity": site.storage_capacity,
        "guns": list(site.guns),
        "cameras": [
            {"id": cam.id, "name": cam.name or cam.id, "rules": list(cam.rules),
             "zones": {k: [list(p) for p in v] for k, v in cam.zones.items()},
             "state": t.camera_states.get(cam.id, "unknown")}
            for cam in site.cameras
        ],
        "counts": c.as_json(), "state": site_state(c),
    }


def city_counts(cfg: Config, t: Tallies) -> dict[str, int]:
    sites = cfg.sites
    cams = [c for s in sites for c in s.cameras]
    return {
        "sites": len(sites),
        "stations": sum(1 for s in sites if s.kind == "station"),
        "outlets": sum(1 for s in sites if s.kind == "outlet"),
        "cameras": len(cams),
        "cameras_online": sum(1 for c in cams if t.camera_states.get(c.id) == "online"),
        "cameras_offline": sum(1 for c in cams if t.camera_states.get(c.id) == "offline"),
        "alerts_open": sum(t.alerts_open.values()),
        "alerts_critical": sum(t.alerts_critical.values()),
        "guns": sum(len(s.guns) for s in sites),
        "guns_locked": sum(t.guns_locked.values()),
    }


def hour_buckets(now: datetime, hours: int) -> list[datetime]:
    """The last ``hours`` whole UTC hours ending with the current one, oldest first."""
    top = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return [top - timedelta(hours=hours - 1 - i) for i in range(hours)]


def dense_series(
    rows: Iterable[tuple[str, datetime, int]], sites: Sequence[str], buckets: Sequence[datetime]
) -> dict[str, list[int]]:
    """Rows of (site, bucket, value) laid out per site on every bucket (missing = 0)."""
    index = {b: i for i, b in enumerate(buckets)}
    out = {s: [0] * len(buckets) for s in sites}
    for site, b, v in rows:
        i = index.get(b.astimezone(UTC))
        if i is not None and site in out:
            out[site][i] += int(v)
    return out


def parse_hours(raw: str | None) -> int:
    if raw is None or raw == "":
        return 24
    try:
        h = int(raw)
    except ValueError as e:
        raise InputError(f"hours: a whole number of hours, got {raw!r}", field="hours") from e
    if not 1 <= h <= MAX_HOURS:
        raise InputError(f"hours: between 1 and {MAX_HOURS}, got {h}", field="hours")
    return h


# --- the database -------------------------------------------------------------------------


Conn = psycopg.AsyncConnection[dict[str, Any]]


async def _optional(conn: Conn, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Rows of ``sql``, or none when its table is not there (that part is not installed)."""
    try:
        async with conn.transaction():
            cur = await conn.execute(sql, params)
            return list(await cur.fetchall())
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as e:
        log.debug("overview: %s", str(e).splitlines()[0])
        return []


async def read_tallies(conn: Conn) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    alerts = await _optional(
        conn,
        """SELECT site, count(*) AS open, count(*) FILTER (WHERE severity = 'critical') AS critical
           FROM alerts WHERE state IN ('open', 'acknowledged') GROUP BY site""",
    )
    guns = await _optional(
        conn, "SELECT site_id, count(*) AS locked FROM gun_state WHERE locked GROUP BY site_id"
    )
    return (
        {r["site"]: int(r["open"]) for r in alerts},
        {r["site"]: int(r["critical"]) for r in alerts if r["critical"]},
        {r["site_id"]: int(r["locked"]) for r in guns},
    )


async def read_fills(conn: Conn, sites: Sequence[str], start: datetime) -> list[tuple[str, datetime, int]]:
    rows = await _optional(
        conn,
        "SELECT site_id, bucket, fills FROM fills_hourly WHERE bucket >= %s AND site_id = ANY(%s)",
        (start, list(sites)),
    )
    return [(r["site_id"], r["bucket"], int(r["fills"])) for r in rows]


async def read_stock(conn: Conn, sites: Sequence[str], now: datetime) -> tuple[dict[str, int], dict[str, int]]:
    """Scan-derived stock per outlet, and the latest smoothed camera count (last hour)."""
    stock = await _optional(
        conn,
        """SELECT site_id, coalesce(sum(received - delivered), 0)::bigint AS n FROM outlet_stock_hourly
           WHERE site_id = ANY(%s) GROUP BY site_id""",
        (list(sites),),
    )
    counts = await _optional(
        conn,
        """SELECT site_id, sum(count)::bigint AS n FROM (
               SELECT DISTINCT ON (camera_id) camera_id, site_id, count FROM camera_counts
               WHERE site_id = ANY(%s) AND ts > %s ORDER BY camera_id, ts DESC) latest
           GROUP BY site_id""",
        (list(sites), now - timedelta(hours=1)),
    )
    return ({r["site_id"]: int(r["n"]) for r in stock}, {r["site_id"]: int(r["n"]) for r in counts})


# --- the service ---------------------------------------------------------------------------


@runtime_checkable
class CameraStates(Protocol):
    """What the video part offers: each camera's state (``online``, ``offline``, ``degraded``)."""

    def camera_states(self) -> Mapping[str, str]: ...


def wallboard_version(root: Path = WALLBOARD) -> str:
    """A fingerprint of the wallboard's files: a wall that has run for weeks reloads itself
    when the service was upgraded under it (its ES modules are cached by the browser)."""
    h = hashlib.sha256()
    if root.is_dir():
        for f in sorted(root.rglob("*")):
            if f.is_file():
                st = f.stat()
                h.update(f"{f.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


class Overview:
    """Reads the tallies, answers the routes, and pushes the city's counts on change."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.cfg: Config = app[CONFIG]
        self.version = wallboard_version()
        self.last_counts: dict[str, int] | None = None
        self.pushed = 0

    def camera_states(self) -> Mapping[str, str]:
        for svc in self.app[SERVICES].values():
            if isinstance(svc, CameraStates):
                try:
                    return dict(svc.camera_states())
                except Exception:  # a part's failure must not take the overview down
                    log.exception("camera_states() failed")
        return {}

    async def tallies(self) -> Tallies:
        async with self.app[DB].connection() as conn:
            open_, critical, locked = await read_tallies(conn)
        return Tallies(open_, critical, locked, self.camera_states())

    async def counts(self) -> dict[str, int]:
        return city_counts(self.cfg, await self.tallies())

    async def push_counts(self) -> bool:
        """Publish the counts on the hub when they differ from the last ones pushed."""
        c = await self.counts()
        if c == self.last_counts:
            return False
        self.last_counts = c
        self.app[HUB].publish("counts", {"type": "counts", "counts": c})
        self.pushed += 1
        return True

    async def run(self) -> None:
        """Watch the counts for ever (supervised); the DB may come later."""
        from monitor.app import DB_READY

        await self.app[DB_READY].wait()
        while True:
            if self.app[HUB].clients:
                await self.push_counts()
            await asyncio.sleep(COUNTS_EVERY_S)

    async def watch_sessions(self) -> None:
        """Close WebSockets whose session ended or whose user's role changed (supervised)."""
        from monitor.app import DB_READY

        await self.app[DB_READY].wait()
        hub = self.app[HUB]

        async def check(hashes: list[str]) -> dict[str, str]:
            async with self.app[DB].connection() as conn:
                return await auth.session_roles(conn, hashes)

        while True:
            await asyncio.sleep(SESSIONS_EVERY_S)
            n = await hub.revalidate(check)
            if n:
                log.info("closed %d WebSocket(s) whose session ended or whose role changed", n)

    async def greet(self, client: Any, topic: str) -> None:
        """A new ``counts`` subscriber gets the current counts at once."""
        c = self.last_counts if self.last_counts is not None else await self.counts()
        self.app[HUB].send_to(client, "counts", {"type": "counts", "counts": c})


async def _ctx(app: web.Application) -> AsyncIterator[None]:
    ov = app[OVERVIEW]
    if "api" in app[ROLES]:
        app[HUB].snapshots["counts"] = ov.greet
        app[TASKS].supervise("overview-counts", ov.run)
        app[TASKS].supervise("ws-sessions", ov.watch_sessions)
    yield


def setup(app: web.Application) -> None:
    app[OVERVIEW] = Overview(app)
    app.add_routes(routes)
    app.cleanup_ctx.append(_ctx)


# --- routes --------------------------------------------------------------------------------


@routes.get("/api/v1/sites")
async def sites(request: web.Request) -> web.Response:
    require_role(request, "viewer")
    ov = request.app[OVERVIEW]
    t = await ov.tallies()
    return web.json_response({"sites": [site_json(s, t) for s in ov.cfg.sites]})


@routes.get("/api/v1/overview")
async def overview(request: web.Request) -> web.Response:
    require_role(request, "viewer")
    ov = request.app[OVERVIEW]
    return web.json_response({
        "timezone": ov.cfg.timezone,
        "settings": {"snapshot_refresh_s": SNAPSHOT_REFRESH_S, "page_size": PAGE_SIZE},
        "wallboard_version": ov.version,
        "counts": await ov.counts(),
        "time": datetime.now(UTC).isoformat(),
    })


def _site_filter(cfg: Config, raw: str | None, kind: str) -> list[SiteConfig]:
    if raw:
        try:
            s = cfg.site(raw)
        except KeyError as e:
            raise NotFound(f"site: no site {raw!r}", field="site") from e
        if s.kind != kind:
            raise InputError(f"site: {raw} is a {s.kind}, not a {kind}", field="site")
        return [s]
    return [s for s in cfg.sites if s.kind == kind]


@routes.get("/api/v1/charts/fills")
async def chart_fills(request: web.Request) -> web.Response:
    require_role(request, "viewer")
    ov = request.app[OVERVIEW]
    hours = parse_hours(request.query.get("hours"))
    stations = _site_filter(ov.cfg, request.query.get("site"), "station")
    buckets = hour_buckets(datetime.now(UTC), hours)
    async with request.app[DB].connection() as conn:
        rows = await read_fills(conn, [s.id for s in stations], buckets[0])
    series = dense_series(rows, [s.id for s in stations], buckets)
    return web.json_response({
        "hours": [b.isoformat() for b in buckets],
        "stations": [{"site": s.id, "name": s.name or s.id, "counts": series[s.id]} for s in stations],
    })


@routes.get("/api/v1/charts/stock")
async def chart_stock(request: web.Request) -> web.Response:
    require_role(request, "viewer")
    ov = request.app[OVERVIEW]
    outlets = _site_filter(ov.cfg, request.query.get("site"), "outlet")
    async with request.app[DB].connection() as conn:
        stock, seen = await read_stock(conn, [s.id for s in outlets], datetime.now(UTC))
    return web.json_response({"outlets": [
        {"site": s.id, "name": s.name or s.id, "capacity": s.storage_capacity, "stock": stock.get(s.id, 0),
         "video_count": seen.get(s.id)}
        for s in outlets
    ]})
