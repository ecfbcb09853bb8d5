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
    to do, and nothing is audited). Two requests racing for a gun: the second finds it
    already in that state (the UPDATE re-checks its condition on the locked row)."""
    async with conn.transaction():
        cur = await conn.execute(
            """WITH upd AS (
                   UPDATE gun_state g SET locked = %(locked)s, version = g.version + 1, reason = %(reason)s,
                          ref = %(ref)s, actor = %(actor)s, since = %(now)s, command = 'requested',
                          requested_at = %(now)s, sent_at = NULL, last_sent_at = NULL, sends = 0,
                          confirmed_at = NULL, seq = g.seq + 1
                   FROM unnest(%(sites)s::text[], %(guns)s::text[]) AS t(site_id, gun_id)
                   WHERE g.site_id = t.site_id AND g.gun_id = t.gun_id AND g.locked IS DISTINCT FROM %(locked)s
                   RETURNING g.*),
               cmd AS (
                   INSERT INTO gun_commands (site_id, gun_id, version, locked, reason, ref, actor, ts)
                   SELECT site_id, gun_id, version, locked, reason, ref, actor, %(now)s FROM upd)
               SELECT * FROM upd ORDER BY site_id, gun_id""",
            {"locked": locked, "reason": reason, "ref": ref, "actor": actor.name, "now": now,
             "sites": [g.site for g in guns], "guns": [g.gun for g in guns]},
        )
        changed = [GunState.from_row(r) for r in await cur.fetchall()]
        if changed:
            await record(
                conn, actor, action, target, reason=reason,
                details={**(details or {}), "ref": ref,
                         "guns": [{"gun": s.gun, "version": s.version} for s in changed]},
            )
    return changed


async def reassert(conn: Conn, g: GunId, *, above: int, actor: Actor, now: datetime, why: str) -> GunState | None:
    """Publish the same desired state under a version above ``above`` (a device may hold a
    version the centre never sent). Audited; None when ``above`` is out of range."""
    if above >= MAX_VERSION:
        return None
    async with conn.transaction():
        cur = await conn.execute(
            """WITH upd AS (
                   UPDATE gun_state SET version = greatest(version, %(above)s) + 1, actor = %(actor)s,
                          command = 'requested', requested_at = %(now)s, sent_at = NULL, last_sent_at = NULL,
                          sends = 0, confirmed_at = NULL, seq = seq + 1
                   WHERE site_id = %(site)s AND gun_id = %(gun)s RETURNING *),
               cmd AS (
                   INSERT INTO gun_commands (site_id, gun_id, version, locked, reason, ref, actor, ts)
                   SELECT site_id, gun_id, version, locked, reason, ref, actor, %(now)s FROM upd)
               SELECT * FROM upd""",
            {"above": above, "actor": actor.name, "now": now, "site": g.site, "gun": g.gun},
        )
        row = await cur.fetchone()
        if row is None:
            return None
        s = GunState.from_row(row)
        await record(conn, actor, "gun.reassert", g.target, reason=why,
                     details={"version": s.version, "locked": s.locked, "above": above})
    return s


async def mark_sent(conn: Conn, sent: Sequence[tuple[GunId, int]], now: datetime) -> list[GunState]:
    """The broker acknowledged these (gun, version)s: requested → sent (other states kept).
    One statement for a whole batch."""
    if not sent:
        return []
    cur = await conn.execute(
        """UPDATE gun_state g SET command = CASE WHEN g.command = 'requested' THEN 'sent' ELSE g.command END,
                  sent_at = coalesce(g.sent_at, %(now)s), last_sent_at = %(now)s, sends = g.sends + 1,
                  seq = g.seq + 1
           FROM unnest(%(sites)s::text[], %(guns)s::text[], %(versions)s::bigint[]) AS t(site_id, gun_id, version)
           WHERE g.site_id = t.site_id AND g.gun_id = t.gun_id AND g.version = t.version RETURNING g.*""",
        {"now": now, "sites": [g.site for g, _ in sent], "guns": [g.gun for g, _ in sent],
         "versions": [v for _, v in sent]},
    )
    return [GunState.from_row(r) for r in await cur.fetchall()]


# One statement each below: the row's change and its event land together (autocommit or not).
_EVENT = """, ev AS (INSERT INTO gun_events (ts, site_id, gun_id, kind, details)
                    SELECT %(now)s, site_id, gun_id, %(kind)s, %(details)s FROM u WHERE %(kind)s::text IS NOT NULL)
            SELECT * FROM u"""


async def mark_unconfirmed(conn: Conn, g: GunId, version: int, now: datetime) -> GunState | None:
    cur = await conn.execute(
        """WITH u AS (UPDATE gun_state SET command = 'unconfirmed', seq = seq + 1
                      WHERE site_id = %(site)s AND gun_id = %(gun)s AND version = %(version)s
                        AND command IN ('requested', 'sent') RETURNING *)""" + _EVENT,
        {"site": g.site, "gun": g.gun, "version": version, "now": now, "kind": "unconfirmed",
         "details": Jsonb({"version": version})},
    )
    row = await cur.fetchone()
    return None if row is None else GunState.from_row(row)


async def record_report(
    conn: Conn, g: GunId, rep: Reported, now: datetime, *, expect_version: int, command: str | None, rearm: bool,
    event: str | None,
) -> GunState | None:
    """Store a device's (legitimate) report and the command state it leads to, if the
    desired version is still ``expect_version`` (None otherwise: judge again)."""
    cur = await conn.execute(
        """WITH u AS (
               UPDATE gun_state SET reported_locked = %(locked)s, reported_version = %(version)s,
                      reported_ts = %(ts)s, reported_at = %(at)s, command = coalesce(%(command)s, command),
                      confirmed_at = CASE WHEN %(command)s = 'confirmed' THEN %(now)s ELSE confirmed_at END,
                      requested_at = CASE WHEN %(rearm)s THEN %(now)s ELSE requested_at END, seq = seq + 1
               WHERE site_id = %(site)s AND gun_id = %(gun)s AND version = %(expect)s RETURNING *)""" + _EVENT,
        {"locked": rep.locked, "version": rep.version, "ts": rep.ts, "at": rep.at or now, "command": command,
         "now": now, "rearm": rearm, "site": g.site, "gun": g.gun, "expect": expect_version, "kind": event,
         "details": Jsonb({"reported": rep.as_json()})},
    )
    row = await cur.fetchone()
    return None if row is None else GunState.from_row(row)


async def record_anomaly(conn: Conn, g: GunId, kind: str, details: dict[str, Any], now: datetime) -> GunState | None:
    """Record something unexpected about a gun and show it on the gun's state."""
    cur = await conn.execute(
        """WITH u AS (UPDATE gun_state SET anomaly = %(anomaly)s, seq = seq + 1
                      WHERE site_id = %(site)s AND gun_id = %(gun)s RETURNING *)""" + _EVENT,
        {"anomaly": Jsonb({"kind": kind, "at": now.isoformat(), **details}), "site": g.site, "gun": g.gun,
         "now": now, "kind": kind, "details": Jsonb(details)},
    )
    row = await cur.fetchone()
    return None if row is None else GunState.from_row(row)


async def add_event(conn: Conn, g: GunId, kind: str, details: dict[str, Any], now: datetime) -> None:
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
    """Append decisions in one statement (one array per column)."""
    if not rows:
        return
    cols = list(zip(*rows, strict=True))
    await conn.execute(
        f"""INSERT INTO interlock_decisions ({", ".join(DECISION_COLS)})
            SELECT * FROM unnest(%s::timestamptz[], %s::text[], %s::text[], %s::text[], %s::text[], %s::boolean[],
                                 %s::text[], %s::text[], %s::bigint[], %s::timestamptz[])""",
        [list(c) for c in cols],
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
