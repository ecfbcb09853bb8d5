"""HTTP API of control: lock and unlock (operators lock, supervisors unlock), the guns'
state, and the interlock's authorize for devices that speak HTTP.

- ``POST /api/v1/sites/{site}/lock``               operator+, ``{"reason", "alert_id"?}``
- ``POST /api/v1/sites/{site}/unlock``             supervisor+, ``{"note"}`` (rectification)
- ``POST /api/v1/sites/{site}/guns/{gun}/lock``    as above, one gun
- ``POST /api/v1/sites/{site}/guns/{gun}/unlock``
- ``GET  /api/v1/sites/{site}/guns``               viewer+
- ``GET  /api/v1/sites/{site}/guns/{gun}``         viewer+: the gun, its events and last decisions
- ``GET  /api/v1/guns``                            viewer+
- ``POST /api/v1/interlock/authorize``             API key bound to the site:
  ``{"site", "gun", "cylinder", "request_id"?}`` → ``{"request_id", "allow", "reason", "message"}``
"""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from monitor.control import store
from monitor.control.model import MAX_REASON, MAX_REQUEST_ID, GunId
from monitor.web.errors import parse_body
from monitor.web.keys import CONTROL, INTERLOCK
from monitor.web.security import client_address, require_app, require_role

routes = web.RouteTableDef()

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_REASON)]
IdText = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]


class LockBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text = Field(description="why: usually the alert that led to it")
    alert_id: int | Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None


class UnlockBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Text = Field(description="the rectification note: what the station put right")


class AuthorizeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site: IdText
    gun: IdText
    cylinder: Any = Field(description="the cylinder's body QR code (checked by the interlock)")
    request_id: Annotated[str, StringConstraints(min_length=1, max_length=MAX_REQUEST_ID)] | None = None


async def _set(request: web.Request, *, locked: bool, gun: str | None) -> web.Response:
    svc = request.app[CONTROL]
    site = request.match_info["site"]
    if locked:
        p = require_role(request, "operator")
        svc.resolve(site, gun)  # 404 before the body is read
        body = await parse_body(request, LockBody)
        reason, ref = body.reason, None if body.alert_id is None else str(body.alert_id)
    else:
        p = require_role(request, "supervisor")
        svc.resolve(site, gun)
        ub = await parse_body(request, UnlockBody)
        reason, ref = ub.note, None
    changed = await svc.set_lock(site, gun, locked=locked, reason=reason, ref=ref,
                                 actor=p.actor(client_address(request)))
    return web.json_response({"site": site, "changed": [s.as_json() for s in changed], "guns": svc.views(site)})


@routes.post("/api/v1/sites/{site}/lock")
async def lock_site(request: web.Request) -> web.Response:
    return await _set(request, locked=True, gun=None)


@routes.post("/api/v1/sites/{site}/unlock")
async def unlock_site(request: web.Request) -> web.Response:
    return await _set(request, locked=False, gun=None)


@routes.post("/api/v1/sites/{site}/guns/{gun}/lock")
async def lock_gun(request: web.Request) -> web.Response:
    return await _set(request, locked=True, gun=request.match_info["gun"])


@routes.post("/api/v1/sites/{site}/guns/{gun}/unlock")
async def unlock_gun(request: web.Request) -> web.Response:
    return await _set(request, locked=False, gun=request.match_info["gun"])


@routes.get("/api/v1/sites/{site}/guns")
async def site_guns(request: web.Request) -> web.Response:
    require_role(request, "viewer")
    svc = request.app[CONTROL]
    site = request.match_info["site"]
    svc.resolve(site)
    await svc.wait_ready()
    return web.json_response({"site": site, "guns": svc.views(site)})


@routes.get("/api/v1/sites/{site}/guns/{gun}")
async def one_gun(request: web.Request) -> web.Response:
    require_role(request, "viewer")
    svc = request.app[CONTROL]
    g = svc.resolve(request.match_info["site"], request.match_info["gun"])[0]
    await svc.wait_ready()
    s = svc.state(g)
    async with svc.db.connection() as conn:
        events = await store.events(conn, g, limit=50)
        decisions = await store.decisions(conn, site=g.site, gun=g.gun, limit=50)
    return web.json_response(
        {"gun": None if s is None else s.as_json(), "events": events, "decisions": decisions}, dumps=_dumps
    )


@routes.get("/api/v1/guns")
async def all_guns(request: web.Request) -> web.Response:
    require_role(request, "viewer")
    svc = request.app[CONTROL]
    await svc.wait_ready()
    return web.json_response({"guns": svc.views()})


@routes.post("/api/v1/interlock/authorize")
async def authorize(request: web.Request) -> web.Response:
    body = await parse_body(request, AuthorizeBody)
    require_app(request, body.site)
    d = await request.app[INTERLOCK].authorize(GunId(body.site, body.gun), body.cylinder, via="http",
                                               request_id=body.request_id)
    return web.json_response(d.as_json(body.request_id))


def _dumps(obj: Any) -> str:
    import json

    return json.dumps(obj, default=str, ensure_ascii=False)
