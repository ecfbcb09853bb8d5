"""Core routes: login, logout, who am I, health, metrics, the WebSocket and the wallboard."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from monitor.errors import DatabaseUnavailable
from monitor.web import auth
from monitor.web.errors import error_response, parse_body
from monitor.web.keys import BUS, CONFIG, DB, HUB, ROLES, TASKS, THROTTLE
from monitor.web.security import TOKEN, client_address, require_role

routes = web.RouteTableDef()
WALLBOARD = Path(__file__).resolve().parent.parent.parent / "wallboard"


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


@routes.post("/api/v1/login")
async def login(request: web.Request) -> web.Response:
    body = await parse_body(request, LoginBody)
    addr = client_address(request)
    throttle = request.app[THROTTLE]
    wait = throttle.retry_after(addr, body.username)
    if wait > 0:
        resp = error_response(429, "rate_limited", f"too many failed logins; try again in {wait:.0f}s")
        resp.headers["Retry-After"] = str(int(wait) + 1)
        return resp
    async with request.app[DB].connection() as conn:
        res = await auth.login(conn, body.username, body.password, addr)
    if res is None:
        throttle.failed(addr, body.username)
        return error_response(401, "bad_credentials", "wrong username or password")
    throttle.succeeded(addr, body.username)
    token, p = res
    resp = web.json_response({"username": p.name, "role": p.role, "csrf": p.csrf})
    resp.set_cookie(
        auth.COOKIE, token, httponly=True, samesite="Strict", path="/",
        secure=request.app[CONFIG].server.secure_cookies, max_age=int(auth.SESSION_TTL.total_seconds()),
    )
    return resp


@routes.post("/api/v1/logout")
async def logout(request: web.Request) -> web.Response:
    p = require_role(request, "viewer")
    async with request.app[DB].connection() as conn:
        await auth.logout(conn, request[TOKEN], p, client_address(request))
    await request.app[HUB].close_session(auth.sha256(request[TOKEN]))  # its WebSockets end with it
    resp = web.json_response({"ok": True})
    resp.del_cookie(auth.COOKIE, path="/")
    return resp


@routes.get("/api/v1/me")
async def me(request: web.Request) -> web.Response:
    p = require_role(request, "viewer")
    return web.json_response({"username": p.name, "role": p.role, "csrf": p.csrf})


@routes.get("/api/v1/ws")
async def websocket(request: web.Request) -> web.StreamResponse:
    p = require_role(request, "viewer")
    origin = request.headers.get("Origin")
    if origin is not None and not origin_allowed(request, origin):
        return error_response(403, "bad_origin", f"Origin {origin} not allowed")
    token = request.get(TOKEN)
    return await request.app[HUB].serve(request, p, session=auth.sha256(token) if token else None)


def origin_allowed(request: web.Request, origin: str) -> bool:
    allowed = set(request.app[CONFIG].server.allowed_origins)
    allowed.add(f"{request.scheme}://{request.host}")
    return origin in allowed


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    app = request.app
    db = app[DB]
    try:
        db_ok = await db.ping()
    except DatabaseUnavailable:
        db_ok = False
    bus = app[BUS]
    roles: frozenset[str] = app[ROLES]
    body: dict[str, Any] = {
        "status": "ok" if db_ok and bus.state.connected else "degraded",
        "roles": sorted(roles),
        "database": {
            "up": db_ok, "timescale": db.state.timescale, "error": db.state.last_error,
            "since": db.state.since,
        },
        "broker": {
            "up": bus.state.connected, "error": bus.state.last_error, "since": bus.state.since,
            "connects": bus.state.connects,
        },
        "tasks": {
            name: {"restarts": st.restarts, "last_error": st.last_error}
            for name, st in app[TASKS].stats.items()
        },
        "time": time.time(),
    }
    return web.json_response(body, status=200 if body["status"] == "ok" else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    resp = web.Response(body=generate_latest())
    resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return resp


@routes.get("/")
async def index(request: web.Request) -> web.StreamResponse:
    index = WALLBOARD / "index.html"
    if not index.exists():
        return web.Response(text="monitor: wallboard not installed", content_type="text/plain")
    # The lock buttons must not be clickable through someone else's frame (clickjacking).
    return web.FileResponse(index, headers={"Cache-Control": "no-cache", "X-Frame-Options": "DENY",
                                            "Content-Security-Policy": "frame-ancestors 'none'"})


def add_static(app: web.Application) -> None:
    if WALLBOARD.is_dir():
        app.router.add_static("/wallboard/", WALLBOARD, follow_symlinks=False, append_version=False)

