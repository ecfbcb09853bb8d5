"""Silences (site + rule, with expiry and reason) and maintenance windows (site): stored
and audited in one transaction. Both keep alerts recording; they only stop notifying."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from monitor.alerts.store import Conn
from monitor.errors import Conflict, InputError, NotFound
from monitor.store.audit import Actor, record

MAX_SPAN = timedelta(days=30)


def check_span(start: datetime, end: datetime, *, field: str) -> None:
    if end <= start:
        raise InputError(f"{field}: must be after the start ({start.isoformat()})", field=field)
    if end - start > MAX_SPAN:
        raise InputError(f"{field}: at most {MAX_SPAN.days} days after the start", field=field)


async def add_silence(
    conn: Conn, actor: Actor, *, site: str, rule: str | None, starts_at: datetime, expires_at: datetime,
    reason: str, now: datetime,
) -> dict[str, Any]:
    check_span(starts_at, expires_at, field="expires_at")
    if expires_at <= now:
        raise InputError("expires_at: must be in the future", field="expires_at")
    cur = await conn.execute(
        """INSERT INTO alert_silences (site, rule, starts_at, expires_at, reason, created_by, created_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING *""",
        (site, rule, starts_at, expires_at, reason, actor.name, now),
    )
    row = await cur.fetchone()
    assert row is not None
    await record(conn, actor, "silence.add", f"silence/{row['id']}", reason=reason,
                 details={"site": site, "rule": rule, "starts_at": starts_at.isoformat(),
                          "expires_at": expires_at.isoformat()})
    return row


async def update_silence(
    conn: Conn, actor: Actor, silence_id: int, *, expires_at: datetime | None, reason: str | None, now: datetime,
) -> dict[str, Any]:
    cur = await conn.execute("SELECT * FROM alert_silences WHERE id = %s FOR UPDATE", (silence_id,))
    old = await cur.fetchone()
    if old is None:
        raise NotFound(f"no silence {silence_id}", field="id")
    if old["lifted_at"] is not None or old["expires_at"] <= now:
        raise Conflict(f"silence {silence_id} is no longer in force")
    if expires_at is not None:
        check_span(old["starts_at"], expires_at, field="expires_at")
        if expires_at <= now:
            raise InputError("expires_at: must be in the future; lift the silence to end it", field="expires_at")
    cur = await conn.execute(
        """UPDATE alert_silences SET expires_at = coalesce(%s, expires_at), reason = coalesce(%s, reason)
           WHERE id = %s RETURNING *""",
        (expires_at, reason, silence_id),
    )
    row = await cur.fetchone()
    assert row is not None
    await record(conn, actor, "silence.update", f"silence/{silence_id}", reason=reason or old["reason"],
                 details={"expires_at": [old["expires_at"].isoformat(), row["expires_at"].isoformat()]})
    return row


async def lift_silence(conn: Conn, actor: Actor, silence_id: int, reason: str | None, now: datetime) -> dict[str, Any]:
    cur = await conn.execute(
        """UPDATE alert_silences SET lifted_at = %s, lifted_by = %s
           WHERE id = %s AND lifted_at IS NULL AND expires_at > %s RETURNING *""",
        (now, actor.name, silence_id, now),
    )
    row = await cur.fetchone()
    if row is None:
        cur = await conn.execute("SELECT id FROM alert_silences WHERE id = %s", (silence_id,))
        if await cur.fetchone() is None:
            raise NotFound(f"no silence {silence_id}", field="id")
        raise Conflict(f"silence {silence_id} is no longer in force")
    await record(conn, actor, "silence.lift", f"silence/{silence_id}", reason=reason,
                 details={"site": row["site"], "rule": row["rule"]})
    return row


async def list_silences(conn: Conn, *, now: datetime, include_past: bool, limit: int = 200) -> list[dict[str, Any]]:
    if include_past:
        cur = await conn.execute("SELECT * FROM alert_silences ORDER BY id DESC LIMIT %s", (limit,))
    else:
        cur = await conn.execute(
            """SELECT * FROM alert_silences WHERE lifted_at IS NULL AND expires_at > %s
               ORDER BY expires_at, id LIMIT %s""",
            (now, limit),
        )
    return await cur.fetchall()


async def add_maintenance(
    conn: Conn, actor: Actor, *, site: str, starts_at: datetime, ends_at: datetime, reason: str, now: datetime,
) -> dict[str, Any]:
    check_span(starts_at, ends_at, field="ends_at")
    if ends_at <= now:
        raise InputError("ends_at: must be in the future", field="ends_at")
    cur = await conn.execute(
        """INSERT INTO maintenance_windows (site, starts_at, ends_at, reason, created_by, created_at)
           VALUES (%s, %s, %s, %s, %s, %s) RETURNING *""",
        (site, starts_at, ends_at, reason, actor.name, now),
    )
    row = await cur.fetchone()
    assert row is not None
    await record(conn, actor, "maintenance.add", f"maintenance/{row['id']}", reason=reason,
                 details={"site": site, "starts_at": starts_at.isoformat(), "ends_at": ends_at.isoformat()})
    return row


async def end_maintenance(conn: Conn, actor: Actor, mw_id: int, reason: str | None, now: datetime) -> dict[str, Any]:
    cur = await conn.execute(
        """UPDATE maintenance_windows SET ended_at = %s, ended_by = %s
           WHERE id = %s AND ended_at IS NULL AND ends_at > %s RETURNING *""",
        (now, actor.name, mw_id, now),
    )
    row = await cur.fetchone()
    if row is None:
        cur = await conn.execute("SELECT id FROM maintenance_windows WHERE id = %s", (mw_id,))
        if await cur.fetchone() is None:
            raise NotFound(f"no maintenance window {mw_id}", field="id")
        raise Conflict(f"maintenance window {mw_id} is already over")
    await record(conn, actor, "maintenance.end", f"maintenance/{mw_id}", reason=reason,
                 details={"site": row["site"]})
    return row


async def list_maintenance(conn: Conn, *, now: datetime, include_past: bool, limit: int = 200) -> list[dict[str, Any]]:
    if include_past:
        cur = await conn.execute("SELECT * FROM maintenance_windows ORDER BY id DESC LIMIT %s", (limit,))
    else:
        cur = await conn.execute(
            """SELECT * FROM maintenance_windows WHERE ended_at IS NULL AND ends_at > %s
               ORDER BY starts_at, id LIMIT %s""",
            (now, limit),
        )
    return await cur.fetchall()
