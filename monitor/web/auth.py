"""People, sessions, CSRF, API keys and roles.

Passwords are argon2id hashes. A session is a random token in an HttpOnly, SameSite=Strict
cookie; the database keeps only its SHA-256. Every state-changing request made with a
session carries the session's CSRF token in ``X-CSRF-Token``. Apps and devices use
``Authorization: Bearer KEY`` with a key that ``monitor apikeys add`` printed once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from monitor.errors import Conflict, InputError, NotFound
from monitor.store.audit import Actor, record

ROLES = ("viewer", "operator", "supervisor", "admin")
RANK = {r: i for i, r in enumerate(ROLES)}
COOKIE = "monitor_session"
SESSION_TTL = timedelta(hours=12)
_hasher = PasswordHasher()


@dataclass(frozen=True)
class Principal:
    kind: str  # "user" | "apikey"
    name: str
    role: str  # a person's role, or "app" for an API key
    user_id: int | None = None
    site_id: str | None = None
    csrf: str | None = None

    def actor(self, address: str | None) -> Actor:
        return Actor(self.name, self.role, address, self.user_id)

    def at_least(self, role: str) -> bool:
        return self.kind == "user" and RANK.get(self.role, -1) >= RANK[role]


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def check_password_rules(password: str) -> None:
    if len(password) < 8:
        raise InputError("password: at least 8 characters", field="password")
    if len(password) > 256:
        raise InputError("password: at most 256 characters", field="password")


# --- users ----------------------------------------------------------------------


async def add_user(conn: psycopg.AsyncConnection[Any], actor: Actor, username: str, role: str, password: str) -> int:
    if role not in ROLES:
        raise InputError(f"role: one of {', '.join(ROLES)}; got {role!r}", field="role")
    check_password_rules(password)
    async with conn.transaction():
        try:
            cur = await conn.execute(
                "INSERT INTO users (username, role, password_hash) VALUES (%s, %s, %s) RETURNING id",
                (username, role, hash_password(password)),
            )
        except psycopg.errors.UniqueViolation as e:
            raise Conflict(f"user {username!r} exists") from e
        except psycopg.errors.CheckViolation as e:
            raise InputError("username: letters, digits, '_', '.', '-', at most 64", field="username") from e
        row = await cur.fetchone()
        assert row is not None
        await record(conn, actor, "user.add", f"user/{username}", details={"role": role})
        return int(row["id"])


async def set_password(conn: psycopg.AsyncConnection[Any], actor: Actor, username: str, password: str) -> None:
    check_password_rules(password)
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE users SET password_hash = %s, updated_at = now() WHERE username = %s RETURNING id",
            (hash_password(password), username),
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"no user {username!r}", field="username")
        await conn.execute("DELETE FROM sessions WHERE user_id = %s", (row["id"],))
        await record(conn, actor, "user.passwd", f"user/{username}")


async def set_user(
    conn: psycopg.AsyncConnection[Any], actor: Actor, username: str, *, role: str | None = None,
    disabled: bool | None = None,
) -> None:
    if role is not None and role not in ROLES:
        raise InputError(f"role: one of {', '.join(ROLES)}; got {role!r}", field="role")
    async with conn.transaction():
        cur = await conn.execute(
            """UPDATE users SET role = coalesce(%s, role), disabled = coalesce(%s, disabled), updated_at = now()
               WHERE username = %s RETURNING id""",
            (role, disabled, username),
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"no user {username!r}", field="username")
        if disabled:
            await conn.execute("DELETE FROM sessions WHERE user_id = %s", (row["id"],))
        await record(conn, actor, "user.change", f"user/{username}", details={"role": role, "disabled": disabled})


async def list_users(conn: psycopg.AsyncConnection[Any]) -> list[dict[str, Any]]:
    cur = await conn.execute("SELECT id, username, role, disabled, created_at FROM users ORDER BY username")
    return [dict(r) for r in await cur.fetchall()]


# --- sessions ---------------------------------------------------------------------


async def login(
    conn: psycopg.AsyncConnection[Any], username: str, password: str, address: str | None
) -> tuple[str, Principal] | None:
    """Check the password; on success create a session and return (token, principal)."""
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT id, username, role, password_hash, disabled FROM users WHERE username = %s", (username,)
        )
        row = await cur.fetchone()
        ok = row is not None and not row["disabled"] and verify_password(row["password_hash"], password)
        if row is None:
            verify_password(_DUMMY_HASH, password)  # same time whether the user exists or not
        if not ok or row is None:
            await record(conn, Actor(username[:64], "unknown", address), "login.failed", f"user/{username[:64]}")
            return None
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24)
        await conn.execute(
            "INSERT INTO sessions (token_hash, user_id, csrf, expires_at, address) VALUES (%s, %s, %s, %s, %s)",
            (sha256(token), row["id"], csrf, datetime.now(UTC) + SESSION_TTL, address),
        )
        await conn.execute("DELETE FROM sessions WHERE expires_at < now()")
        p = Principal("user", row["username"], row["role"], row["id"], csrf=csrf)
        await record(conn, p.actor(address), "login", f"user/{username}")
        return token, p


_DUMMY_HASH = _hasher.hash("not-a-real-password")


async def session_principal(conn: psycopg.AsyncConnection[Any], token: str) -> Principal | None:
    cur = await conn.execute(
        """SELECT u.id, u.username, u.role, s.csrf FROM sessions s JOIN users u ON u.id = s.user_id
           WHERE s.token_hash = %s AND s.expires_at > now() AND NOT u.disabled""",
        (sha256(token),),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return Principal("user", row["username"], row["role"], row["id"], csrf=row["csrf"])


async def session_roles(conn: psycopg.AsyncConnection[Any], hashes: list[str]) -> dict[str, str]:
    """Of these session hashes, the ones still valid, with their user's current role."""
    cur = await conn.execute(
        """SELECT s.token_hash, u.role FROM sessions s JOIN users u ON u.id = s.user_id
           WHERE s.token_hash = ANY(%s) AND s.expires_at > now() AND NOT u.disabled""",
        (hashes,),
    )
    return {r["token_hash"]: r["role"] for r in await cur.fetchall()}


async def logout(conn: psycopg.AsyncConnection[Any], token: str, p: Principal, address: str | None) -> None:
    async with conn.transaction():
        await conn.execute("DELETE FROM sessions WHERE token_hash = %s", (sha256(token),))
        await record(conn, p.actor(address), "logout", f"user/{p.name}")


# --- API keys ----------------------------------------------------------------------


async def add_api_key(
    conn: psycopg.AsyncConnection[Any], actor: Actor, name: str, site_id: str | None
) -> str:
    prefix = secrets.token_hex(4)
    key = f"mk_{prefix}_{secrets.token_urlsafe(32)}"
    async with conn.transaction():
        if site_id is not None:
            cur = await conn.execute("SELECT 1 FROM sites WHERE id = %s", (site_id,))
            if await cur.fetchone() is None:
                raise NotFound(f"no site {site_id!r} (run the service once with the config, or migrate)", field="site")
        try:
            await conn.execute(
                "INSERT INTO api_keys (name, key_hash, prefix, site_id) VALUES (%s, %s, %s, %s)",
                (name, sha256(key), prefix, site_id),
            )
        except psycopg.errors.UniqueViolation as e:
            raise Conflict(f"API key {name!r} exists") from e
        await record(conn, actor, "apikey.add", f"apikey/{name}", details={"site": site_id, "prefix": prefix})
    return key


async def revoke_api_key(conn: psycopg.AsyncConnection[Any], actor: Actor, name: str) -> None:
    async with conn.transaction():
        cur = await conn.execute("UPDATE api_keys SET revoked = true WHERE name = %s RETURNING id", (name,))
        if await cur.fetchone() is None:
            raise NotFound(f"no API key {name!r}", field="name")
        await record(conn, actor, "apikey.revoke", f"apikey/{name}")


async def list_api_keys(conn: psycopg.AsyncConnection[Any]) -> list[dict[str, Any]]:
    cur = await conn.execute("SELECT name, prefix, site_id, revoked, created_at FROM api_keys ORDER BY name")
    return [dict(r) for r in await cur.fetchall()]


async def api_key_principal(conn: psycopg.AsyncConnection[Any], key: str) -> Principal | None:
    cur = await conn.execute(
        "SELECT name, site_id FROM api_keys WHERE key_hash = %s AND NOT revoked", (sha256(key),)
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return Principal("apikey", row["name"], "app", site_id=row["site_id"])


# --- login throttle -------------------------------------------------------------------


class LoginThrottle:
    """At most ``limit`` failures per (address, username) in ``window_s``; then refuse for the rest."""

    def __init__(self, limit: int = 5, window_s: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._fails: dict[tuple[str, str], deque[float]] = defaultdict(deque)

    def _prune(self, key: tuple[str, str]) -> deque[float]:
        q = self._fails[key]
        now = self.clock()
        while q and now - q[0] > self.window_s:
            q.popleft()
        if not q:
            del self._fails[key]
            return deque()
        return q

    def retry_after(self, address: str, username: str) -> float:
        q = self._prune((address, username))
        if len(q) >= self.limit:
            return max(1.0, self.window_s - (self.clock() - q[0]))
        return 0.0

    def failed(self, address: str, username: str) -> None:
        self._fails[(address, username)].append(self.clock())
        if len(self._fails) > 100_000:  # bounded memory under a spray of names
            self._fails.pop(next(iter(self._fails)))

    def succeeded(self, address: str, username: str) -> None:
        self._fails.pop((address, username), None)


def csrf_ok(p: Principal, header: str | None) -> bool:
    return p.kind != "user" or (header is not None and p.csrf is not None and hmac.compare_digest(header, p.csrf))


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
