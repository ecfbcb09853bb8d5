"""Control's queries over ``gun_state``, ``gun_commands``, ``gun_events`` and
``interlock_decisions`` (migration 0005).

Each state-changing function runs in its own transaction on the caller's connection and
returns the rows it changed; the table's trigger announces every change (NOTIFY
``monitor_guns``). Lock and unlock write their audit row in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from monitor.control.model import MAX_VERSION, GunId, GunState, Reported
from monitor.series.store import cylinder_from_row
from monitor.series.validity import Cylinder
from monitor.store.audit import Actor, record

Conn = psycopg.AsyncConnection[Any]
CHANNEL = "monitor_guns"


async def ensure_guns(conn: Conn, guns: Iterable[GunId]) -> None:
    """A state row for every configured gun (a new gun starts unlocked at version 0)."""
    gl = list(guns)
    if not gl:
        return
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO gun_state (site_id, gun_id)
               SELECT s, g FROM unnest(%s::text[], %s::text[]) AS t(s, g)
               ON CONFLICT (site_id, gun_id) DO NOTHING""",
            ([g.site for g in gl], [g.gun for g in gl]),
        )


async def load(conn: Conn, *, site: str | None = None) -> list[GunState]:
    if site is None:
        cur = await conn.execute("SELECT * FROM gun_state ORDER BY site_id, gun_id")
    else:
        cur = await conn.execute("SELECT * FROM gun_state WHERE site_id = %s ORDER BY gun_id", (site,))
    return [GunState.from_row(r) for r in await cur.fetchall()]


async def set_desired(
    conn: Conn,
    guns: Sequence[GunId],
    *,
    locked: bool,
    reason: str,
    ref: str | None,
    actor: Actor,
    now: datetime,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
) -> list[GunState]:
    """Set the desired lock state of ``guns`` that are not already in it, each with a new
    version, and audit it, in one transaction. Returns the rows changed (empty: nothing
    to do, and nothing is audited)."""
    changed: list[GunState] = []
    async with conn.transaction():
        cur = await conn.execute(
            """SELECT site_id, gun_id FROM gun_state
               WHERE (site_id, gun_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
                 AND locked IS DISTINCT FROM %s
               ORDER BY site_id, gun_id FOR UPDATE""",
            ([g.site for g in guns], [g.gun for g in guns], locked),
        )
        todo = [GunId(r["site_id"], r["gun_id"]) for r in await cur.fetchall()]
        for g in todo:
            changed.append(await _new_version(conn, g, locked=locked, reason=reason, ref=ref,
                                              actor=actor.name, now=now))
        if changed:
            await record(
                conn, actor, action, target, reason=reason,
                details={**(details or {}), "ref": ref,
                         "guns": [{"gun": s.gun, "version": s.version} for s in changed]},
            )
    return changed


async def _new_version(
    conn: Conn, g: GunId, *, locked: bool, reason: str | None, ref: str | None, actor: str, now: datetime,
    above: int = 0,
) -> GunState:
    cur = await conn.execute(
        """UPDATE gun_state SET locked = %s, version = greatest(version, %s) + 1, reason = %s, ref = %s,
                  actor = %s, since = %s, command = 'requested', requested_at = %s, sent_at = NULL,
                  last_sent_at = NULL, sends = 0, confirmed_at = NULL, seq = seq + 1
           WHERE site_id = %s AND gun_id = %s RETURNING *""",
        (locked, above, reason, ref, actor, now, now, g.site, g.gun),
    )
    row = await cur.fetchone()
    assert row is not None
    s = GunState.from_row(row)
    await conn.execute(
        """INSERT INTO gun_commands (site_id, gun_id, version, locked, reason, ref, actor, ts)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
        (g.site, g.gun, s.version, s.locked, s.reason, s.ref, actor, now),
    )
    return s


async def reassert(conn: Conn, g: GunId, *, above: int, actor: Actor, now: datetime, why: str) -> GunState | None:
    """Publish the same desired state under a version above ``above`` (a device may hold a
    version the centre never sent). Audited; None when ``above`` is out of range."""
    if above >= MAX_VERSION:
        return None
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT locked, reason, ref FROM gun_state WHERE site_id = %s AND gun_id = %s FOR UPDATE", (g.site, g.gun)
        )
        row = await cur.fetchone()
        if row is None:
            return None
        s = await _new_version(conn, g, locked=row["locked"], reason=row["reason"], ref=row["ref"],
                               actor=actor.name, now=now, above=above)
        await record(conn, actor, "gun.reassert", g.target, reason=why,
                     details={"version": s.version, "locked": s.locked, "above": above})
    return s


async def mark_sent(conn: Conn, g: GunId, version: int, now: datetime) -> GunState | None:
    """The broker acknowledged ``version``: requested → sent (other states kept)."""
    async with conn.transaction():
        cur = await conn.execute(
            """UPDATE gun_state SET command = CASE WHEN command = 'requested' THEN 'sent' ELSE command END,
                      sent_at = coalesce(sent_at, %s), last_sent_at = %s, sends = sends + 1, seq = seq + 1
               WHERE site_id = %s AND gun_id = %s AND version = %s RETURNING *""",
            (now, now, g.site, g.gun, version),
        )
        row = await cur.fetchone()
    return None if row is None else GunState.from_row(row)


async def mark_unconfirmed(conn: Conn, g: GunId, version: int, now: datetime) -> GunState | None:
    async with conn.transaction():
        cur = await conn.execute(
            """UPDATE gun_state SET command = 'unconfirmed', seq = seq + 1
               WHERE site_id = %s AND gun_id = %s AND version = %s AND command IN ('requested', 'sent')
               RETURNING *""",
            (g.site, g.gun, version),
        )
        row = await cur.fetchone()
        if row is not None:
            await _event(conn, g, "unconfirmed", {"version": version}, now)
    return None if row is None else GunState.from_row(row)


async def record_report(
    conn: Conn, g: GunId, rep: Reported, now: datetime, *, expect_version: int, command: str | None, rearm: bool,
    event: str | None,
) -> GunState | None:
    """Store a device's (legitimate) report, and the command state it leads to."""
    async with conn.transaction():
        cur = await conn.execute(
            """UPDATE gun_state SET reported_locked = %s, reported_version = %s, reported_ts = %s, reported_at = %s,
                      command = coalesce(%s, command),
                      confirmed_at = CASE WHEN %s = 'confirmed' THEN %s ELSE confirmed_at END,
                      requested_at = CASE WHEN %s THEN %s ELSE requested_at END,
                      seq = seq + 1
               WHERE site_id = %s AND gun_id = %s AND version = %s RETURNING *""",
            (rep.locked, rep.version, rep.ts, rep.at or now, command, command, now, rearm, now,
             g.site, g.gun, expect_version),
        )
        row = await cur.fetchone()
        if row is not None and event is not None:
            await _event(conn, g, event, {"reported": rep.as_json()}, now)
    return None if row is None else GunState.from_row(row)


async def record_anomaly(conn: Conn, g: GunId, kind: str, details: dict[str, Any], now: datetime) -> GunState | None:
    """Record something unexpected about a gun and show it on the gun's state."""
    async with conn.transaction():
        await _event(conn, g, kind, details, now)
        cur = await conn.execute(
            """UPDATE gun_state SET anomaly = %s, seq = seq + 1 WHERE site_id = %s AND gun_id = %s RETURNING *""",
            (Jsonb({"kind": kind, "at": now.isoformat(), **details}), g.site, g.gun),
        )
        row = await cur.fetchone()
    return None if row is None else GunState.from_row(row)


async def add_event(conn: Conn, g: GunId, kind: str, details: dict[str, Any], now: datetime) -> None:
    async with conn.transaction():
        await _event(conn, g, kind, details, now)


async def _event(conn: Conn, g: GunId, kind: str, details: dict[str, Any], now: datetime) -> None:
    await conn.execute(
        "INSERT INTO gun_events (ts, site_id, gun_id, kind, details) VALUES (%s, %s, %s, %s, %s)",
        (now, g.site[:64], g.gun[:64], kind, Jsonb(details)),
    )


async def events(conn: Conn, g: GunId, *, limit: int = 50) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT ts, kind, details FROM gun_events WHERE site_id = %s AND gun_id = %s ORDER BY id DESC LIMIT %s",
        (g.site, g.gun, limit),
    )
    return [dict(r) for r in await cur.fetchall()]


async def sent_locked(conn: Conn, g: GunId, version: int) -> bool | None:
    """The lock state the centre published as ``version`` of gun ``g``; None if it never did."""
    cur = await conn.execute(
        "SELECT locked FROM gun_commands WHERE site_id = %s AND gun_id = %s AND version = %s",
        (g.site, g.gun, version),
    )
    row = await cur.fetchone()
    return None if row is None else bool(row["locked"])


# --- interlock ---------------------------------------------------------------------------

_FACTS = """
SELECT c.code, c.valve_code, c.owner_site, c.nominal_kg, c.tare_kg, c.manufactured, c.last_inspection,
       c.inspection_passed, c.status,
       (SELECT s.ts FROM scans s
         WHERE s.cylinder = %(code)s AND s.site_id = %(site)s AND s.step = 'prefill_check' AND s.ts >= %(since)s
         ORDER BY s.ts DESC LIMIT 1) AS prefill_ts,
       (SELECT g.locked FROM gun_state g WHERE g.site_id = %(site)s AND g.gun_id = %(gun)s) AS gun_locked
FROM (SELECT 1) AS one LEFT JOIN cylinders c ON c.code = %(code)s
"""


async def facts(
    conn: Conn, code: str, g: GunId, since: datetime
) -> tuple[Cylinder | None, datetime | None, bool]:
    """In one query: the registry's record of ``code``, its newest pre-fill scan at the
    gun's site at or after ``since`` (the same answers as ``series.store.get_cylinder`` and
    ``series.store.last_scan``) and whether the database holds the gun locked."""
    cur = await conn.execute(_FACTS, {"code": code, "site": g.site, "gun": g.gun, "since": since}, prepare=True)
    row = await cur.fetchone()
    if row is None:
        return None, None, False
    cyl = None if row["code"] is None else cylinder_from_row(row)
    return cyl, row["prefill_ts"], bool(row["gun_locked"])


DECISION_COLS = ("ts", "site_id", "gun_id", "request_id", "cylinder", "allow", "reason", "via", "gun_version",
                 "scan_ts")


async def insert_decisions(conn: Conn, rows: Sequence[tuple[Any, ...]]) -> None:
    if not rows:
        return
    cols = ", ".join(DECISION_COLS)
    async with conn.transaction(), conn.cursor() as cur:
        await cur.executemany(
            f"INSERT INTO interlock_decisions ({cols}) VALUES ({', '.join(['%s'] * len(DECISION_COLS))})", rows
        )


async def decisions(conn: Conn, *, site: str, gun: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    if gun is None:
        cur = await conn.execute(
            "SELECT * FROM interlock_decisions WHERE site_id = %s ORDER BY ts DESC LIMIT %s", (site, limit)
        )
    else:
        cur = await conn.execute(
            "SELECT * FROM interlock_decisions WHERE site_id = %s AND gun_id = %s ORDER BY ts DESC LIMIT %s",
            (site, gun, limit),
        )
    return [dict(r) for r in await cur.fetchall()]
