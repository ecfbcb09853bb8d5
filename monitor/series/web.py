"""HTTP: ``POST /api/v1/scans`` (apps), ``GET /api/v1/cylinders/{code}`` (public,
rate-limited) and ``GET /api/v1/cylinders/{code}/trace`` (staff)."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from monitor.errors import InputError
from monitor.series import store
from monitor.series.model import CODE_RE, ScanRecord
from monitor.series.scans import ScanIn, ScanProblem, check_scan, reply_item, split_body, to_record
from monitor.series.service import utcnow
from monitor.series.validity import MAX_AGE_YEARS, PLAIN_WORDS, add_years, validity
from monitor.web.errors import error_response, read_json
from monitor.web.keys import CONFIG, CORRELATION, DB, SERIES
from monitor.web.security import client_address, require_app, require_role

routes = web.RouteTableDef()


class RateLimiter:
    """At most ``per_min`` requests per client address in any 60 s (sliding window).

    Tracks at most ``max_clients`` addresses (the least recently seen are forgotten).
    """

    def __init__(self, per_min: int, *, clock: Callable[[], float] = time.monotonic, max_clients: int = 50_000) -> None:
        self.per_min = per_min
        self.clock = clock
        self.max_clients = max_clients
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> float:
        """0 when the request may go ahead (and counts it); else seconds to wait."""
        now = self.clock()
        q = self._seen.get(client)
        if q is None:
            q = self._seen[client] = deque()
            if len(self._seen) > self.max_clients:
                self._seen.popitem(last=False)
        else:
            self._seen.move_to_end(client)
        while q and now - q[0] >= 60.0:
            q.popleft()
        if len(q) >= self.per_min:
            return max(0.001, 60.0 - (now - q[0]))
        q.append(now)
        return 0.0


LIMITER: web.AppKey[RateLimiter] = web.AppKey("series_public_limiter")


def add_routes(app: web.Application) -> None:
    app[LIMITER] = RateLimiter(app[CONFIG].server.public_rate_per_min)
    app.add_routes(routes)


@routes.post("/api/v1/scans")
async def post_scans(request: web.Request) -> web.Response:
    p = require_app(request)
    data = await read_json(request)
    split = split_body(data)
    if isinstance(split, ScanProblem):
        raise InputError(split.message, field=split.field)
    items, batch = split
    cfg = request.app[CONFIG]
    now = utcnow()
    key_site = p.site_id if p.kind == "apikey" else None
    checked = [check_scan(raw, i, batch=batch, cfg=cfg, now=now, key_site=key_site) for i, raw in enumerate(items)]
    problems = [c for c in checked if isinstance(c, ScanProblem)]
    good = [(i, to_record(c, p.name)) for i, c in enumerate(checked) if isinstance(c, ScanIn)]
    if not batch and problems:
        pr = problems[0]
        return error_response(pr.status, pr.code, pr.message, pr.field)
    results: dict[int, dict[str, Any]] = {pr.index: pr.as_json() for pr in problems}
    if good:
        svc = request.app[SERIES]
        judged, stored, spooled = await svc.post_scans([rec for _, rec in good])
        for (i, _), s, new in zip(good, judged, stored, strict=True):
            results[i] = reply_item(i, s, stored_now=new, spooled=spooled)
    if not batch:
        one = results[0]
        one.pop("index", None)
        return web.json_response(one)
    body: dict[str, Any] = {"scans": [results[i] for i in sorted(results)], "stored": len(good),
                            "refused": len(problems)}
    if not good:
        first = problems[0]
        body["error"] = {"code": first.code, "message": first.message, "field": first.field}
        return web.json_response(body, status=first.status)
    return web.json_response(body)


def _check_code(code: str) -> None:
    if not CODE_RE.match(code):
        raise InputError(f"code: {code!r} is not a cylinder code (6-32 upper-case letters and digits)", field="code")


def _site_name(request: web.Request, site_id: str) -> str | None:
    try:
        return request.app[CONFIG].site(site_id).name
    except KeyError:
        return None


def _d(x: Any) -> str | None:
    return None if x is None else x.isoformat()


@routes.get("/api/v1/cylinders/{code}")
async def cylinder_lookup(request: web.Request) -> web.Response:
    """For a citizen or an inspector: may this cylinder be used? No personal data."""
    wait = request.app[LIMITER].retry_after(client_address(request))
    if wait > 0:
        raise web.HTTPTooManyRequests(text=f"too many look-ups; try again in {wait:.0f}s",
                                      headers={"Retry-After": str(int(wait) + 1)})
    code = request.match_info["code"]
    _check_code(code)
    cfg = request.app[CONFIG]
    from zoneinfo import ZoneInfo

    today = datetime.now(ZoneInfo(cfg.timezone)).date()
    async with request.app[DB].connection() as conn:
        cyl = await store.get_cylinder(conn, code)
        last = await store.last_fill(conn, code) if cyl is not None else None
    v = validity(cyl, at=today)
    body: dict[str, Any] = {"code": code, "registered": cyl is not None, "status": v, "words": PLAIN_WORDS[v]}
    if cyl is not None:
        body.update({
            "owner": {"site": cyl.owner_site, "name": _site_name(request, cyl.owner_site)},
            "nominal_kg": cyl.nominal_kg, "manufactured": _d(cyl.manufactured),
            "last_inspection": _d(cyl.last_inspection), "inspection_passed": cyl.inspection_passed,
            "scrap_by": _d(add_years(cyl.manufactured, MAX_AGE_YEARS)),
            "last_fill": None if last is None else {
                "at": _d(last.ended_at), "station": last.site, "station_name": _site_name(request, last.site),
                "net_kg": last.net_kg},
        })
    return web.json_response(body)


def _scan_event(request: web.Request, s: ScanRecord) -> dict[str, Any]:
    return {"kind": "scan", "ts": _d(s.ts), "site": s.site, "site_name": _site_name(request, s.site),
            "step": s.step, "scan_id": s.id, "validity": s.validity, "operator": s.operator, "app": s.app,
            "photos": list(s.photos)}


@routes.get("/api/v1/cylinders/{code}/trace")
async def cylinder_trace(request: web.Request) -> web.Response:
    """For staff: the cylinder's whole history, newest first."""
    require_role(request, "viewer")
    code = request.match_info["code"]
    _check_code(code)
    cfg = request.app[CONFIG]
    from zoneinfo import ZoneInfo

    today = datetime.now(ZoneInfo(cfg.timezone)).date()
    async with request.app[DB].connection() as conn:
        cyl = await store.get_cylinder(conn, code)
        scans, fills = await store.cylinder_history(conn, code)
    timed = [(s.ts, _scan_event(request, s)) for s in scans] + [
        (f.started_at, {"kind": "fill", "ts": _d(f.started_at), "ended_at": _d(f.ended_at), "site": f.site,
                        "site_name": _site_name(request, f.site), "scale": f.scale, "gun": f.gun,
                        "tare_kg": f.tare_kg, "gross_kg": f.gross_kg, "net_kg": f.net_kg, "flags": list(f.flags)})
        for f in fills]
    timed.sort(key=lambda te: te[0], reverse=True)
    events = [e for _, e in timed]
    body: dict[str, Any] = {"code": code, "registered": cyl is not None, "status": validity(cyl, at=today),
                            "events": events, "scans": len(scans), "fills": len(fills)}
    if cyl is not None:
        body["cylinder"] = {
            "valve_code": cyl.valve_code, "owner_site": cyl.owner_site,
            "owner_name": _site_name(request, cyl.owner_site), "nominal_kg": cyl.nominal_kg, "tare_kg": cyl.tare_kg,
            "manufactured": _d(cyl.manufactured), "last_inspection": _d(cyl.last_inspection),
            "inspection_passed": cyl.inspection_passed, "status": cyl.status}
    return web.json_response(body)


@routes.get("/api/v1/series/health")
async def series_health(request: web.Request) -> web.Response:
    """For staff: ingest mode, queue and spool, refusals by reason, the live rules' state."""
    require_role(request, "viewer")
    body: dict[str, Any] = {"series": request.app[SERIES].health()}
    engine = request.app.get(CORRELATION)
    if engine is not None:
        body["correlation"] = engine.health()
    return web.json_response(body)
