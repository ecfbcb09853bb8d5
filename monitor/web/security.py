"""Who is calling: session cookie or API key; role checks; CSRF on state changes."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from monitor.errors import DatabaseUnavailable
from monitor.web import auth
from monitor.web.auth import Principal
from monitor.web.errors import error_response
from monitor.web.keys import DB

PRINCIPAL: web.RequestKey[Principal | None] = web.RequestKey("principal", object)  # type: ignore[arg-type]
TOKEN: web.RequestKey[str] = web.RequestKey("token", str)
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


class KeyCache:
    """API keys seen valid recently (by hash), for use only while the database is unreachable."""

    def __init__(self, ttl_s: float = 3600.0, size: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._seen: dict[str, tuple[Principal, float]] = {}

    def remember(self, key: str, p: Principal | None) -> None:
        h = auth.sha256(key)
        if p is None:
            self._seen.pop(h, None)  # revoked or unknown: forget at once
            return
        if len(self._seen) >= self.size and h not in self._seen:
            self._seen.pop(next(iter(self._seen)))
        self._seen[h] = (p, time.monotonic())

    def recall(self, key: str) -> Principal | None:
        got = self._seen.get(auth.sha256(key))
        if got is None or time.monotonic() - got[1] > self.ttl_s:
            return None
        return got[0]


_KEYS = KeyCache()


def client_address(request: web.Request) -> str:
    return request.remote or "unknown"


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    p: Principal | None = None
    authz = request.headers.get("Authorization", "")
    token = request.cookies.get(auth.COOKIE)
    if authz.startswith("Bearer "):
        key = authz[7:].strip()
        try:
            async with request.app[DB].connection() as conn:
                p = await auth.api_key_principal(conn, key)
            _KEYS.remember(key, p)
        except DatabaseUnavailable:
            # Devices and apps keep working while the database is away: a key seen valid
            # recently is trusted, so their scans reach the on-disk spool instead of failing.
            p = _KEYS.recall(key)
            if p is None:
                raise
        if p is None:
            return error_response(401, "unauthorized", "API key unknown or revoked")
    elif token:
        async with request.app[DB].connection() as conn:
            p = await auth.session_principal(conn, token)
        if p is not None:
            request[TOKEN] = token
    request[PRINCIPAL] = p
    if p is not None and request.method not in SAFE and not auth.csrf_ok(p, request.headers.get("X-CSRF-Token")):
        return error_response(403, "csrf", "missing or wrong X-CSRF-Token header")
    return await handler(request)


def principal(request: web.Request) -> Principal | None:
    p = request.get(PRINCIPAL)
    return p if isinstance(p, Principal) else None


def require_role(request: web.Request, role: str) -> Principal:
    """The calling person, who must hold ``role`` or a higher one (401 / 403 otherwise)."""
    p = principal(request)
    if p is None:
        raise web.HTTPUnauthorized(text="log in first")
    if not p.at_least(role):
        raise web.HTTPForbidden(text=f"needs role {role} or higher; you are {p.role}")
    return p


def require_app(request: web.Request, site_id: str | None = None) -> Principal:
    """An app or device with an API key (or staff); a site-bound key may act only for its site."""
    p = principal(request)
    if p is None:
        raise web.HTTPUnauthorized(text="Authorization: Bearer KEY required")
    if p.kind == "apikey" and site_id is not None and p.site_id is not None and p.site_id != site_id:
        raise web.HTTPForbidden(text=f"this API key is for site {p.site_id}, not {site_id}")
    if p.kind == "user" and not p.at_least("operator"):
        raise web.HTTPForbidden(text="needs an API key or role operator")
    return p
