"""SQL of the alerts part: alerts, findings, timeline, silences, maintenance, audit reads.

Every function takes a connection inside the caller's transaction; the caller commits.
People's transitions are conditional UPDATEs (``WHERE state = ...``) so that a refused or
concurrent action changes nothing; the engine's writes are conditional on the state it
last stored, so a person's action made in another process always wins.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from monitor.alerts.model import Alert, State
from monitor.errors import InputError
from monitor.findings import Finding

Conn = psycopg.AsyncConnection[dict[str, Any]]
MAX_DETAILS_BYTES = 64 * 1024


def json_default(o: Any) -> Any:
    if isinstance(o, datetime):
        return o.astimezone(UTC).isoformat()
    if hasattr(o, "tolist"):  # numpy arrays and scalars
        return o.tolist()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if isinstance(o, bytes):
        return f"<{len(o)} bytes>"
    return str(o)


def dumps(o: Any) -> str:
    return json.dumps(o, default=json_default, ensure_ascii=False)


def jsonb(o: Any) -> Jsonb:
    return Jsonb(o, dumps=dumps)


def details_jsonb(d: dict[str, Any]) -> Jsonb:
    """A finding's details, capped in size (the cap is noted in the stored value)."""
    text = dumps(d)
    if len(text) > MAX_DETAILS_BYTES:
        return jsonb({"truncated": True, "bytes": len(text), "keys": sorted(d)[:50]})
    return Jsonb(d, dumps=lambda _o: text)


# --- the engine's writes -------------------------------------------------------------

_INSERT = """
INSERT INTO alerts (rule, severity, state, site, source, subject, reason, summary, latched, first_seen,
                    last_seen, count, opened_at, condition_active, cleared_at, silenced)
SELECT rule, severity, 'open', site, source, subject, reason, summary, latched, first_seen, last_seen, count,
       opened_at, condition_active, cleared_at, silenced
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::bool[],
            %s::timestamptz[], %s::timestamptz[], %s::int[], %s::timestamptz[], %s::bool[], %s::timestamptz[],
            %s::bool[])
     AS t(rule, severity, site, source, subject, reason, summary, latched, first_seen, last_seen, count,
          opened_at, condition_active, cleared_at, silenced)
ON CONFLICT (rule, site, source, subject) WHERE state <> 'closed' DO UPDATE SET
    count = alerts.count + EXCLUDED.count,
    last_seen = greatest(alerts.last_seen, EXCLUDED.last_seen),
    first_seen = least(alerts.first_seen, EXCLUDED.first_seen),
    rev = alerts.rev + 1
RETURNING *, (xmax = 0) AS inserted
"""
_INSERT_COLS = ("rule", "severity", "site", "source", "subject", "reason", "summary", "latched", "first_seen",
                "last_seen", "count", "opened_at", "condition_active", "cleared_at", "silenced")

# Engine-owned fields, written as the engine holds them, only where the row is still in
# the state the engine last stored (``expect``); one statement for the whole batch.
_WRITE = """
UPDATE alerts AS a SET
    count = a.count + v.delta,
    last_seen = greatest(a.last_seen, v.last_seen),
    first_seen = least(a.first_seen, v.first_seen),
    severity = v.severity, summary = v.summary, reason = coalesce(v.reason, a.reason),
    condition_active = v.condition_active, cleared_at = v.cleared_at, silenced = v.silenced,
    state = v.state, opened_at = v.opened_at, resolved_at = v.resolved_at,
    escalation = v.escalation, escalated_at = v.escalated_at, reminded_at = v.reminded_at,
    acked_at = CASE WHEN v.reset_ack THEN NULL ELSE a.acked_at END,
    acked_by = CASE WHEN v.reset_ack THEN NULL ELSE a.acked_by END,
    ack_note = CASE WHEN v.reset_ack THEN NULL ELSE a.ack_note END,
    rev = a.rev + 1
FROM unnest(%s::bigint[], %s::text[], %s::int[], %s::timestamptz[], %s::timestamptz[], %s::text[], %s::text[],
            %s::text[], %s::bool[], %s::timestamptz[], %s::bool[], %s::text[], %s::timestamptz[],
            %s::timestamptz[], %s::smallint[], %s::timestamptz[], %s::timestamptz[], %s::bool[])
     AS v(id, expect, delta, last_seen, first_seen, severity, summary, reason, condition_active, cleared_at,
          silenced, state, opened_at, resolved_at, escalation, escalated_at, reminded_at, reset_ack)
WHERE a.id = v.id AND a.state = v.expect
RETURNING a.*
"""
_WRITE_COLS = ("id", "expect", "delta", "last_seen", "first_seen", "severity", "summary", "reason",
               "condition_active", "cleared_at", "silenced", "state", "opened_at", "resolved_at", "escalation",
               "escalated_at", "reminded_at", "reset_ack")

# After a conflict: only the count and times, on whatever live state the row now has.
_COUNT = """
UPDATE alerts SET count = count + %(delta)s, last_seen = greatest(last_seen, %(last_seen)s),
                  rev = rev + 1
WHERE id = %(id)s AND state <> 'closed'
RETURNING *
"""


def _params(a: Alert) -> dict[str, Any]:
    return {
        "id": a.id, "rule": a.rule, "severity": a.severity, "site": a.site, "source": a.source,
        "subject": a.subject, "reason": a.reason, "summary": a.summary, "latched": a.latched,
        "first_seen": a.first_seen, "last_seen": a.last_seen, "count": a.count, "delta": a.pending,
        "opened_at": a.opened_at, "condition_active": a.condition_active, "cleared_at": a.cleared_at,
        "silenced": a.silenced, "state": a.state, "resolved_at": a.resolved_at, "escalation": a.escalation,
        "escalated_at": a.escalated_at, "reminded_at": a.reminded_at,
    }


async def insert_alerts(conn: Conn, alerts: Sequence[Alert]) -> list[dict[str, Any]]:
    """Insert new alerts in one statement (merging into a live one another process made);
    the rows in the order of ``alerts`` (their keys differ: one live alert per key)."""
    if not alerts:
        return []
    params = [_params(a) for a in alerts]
    cur = await conn.execute(_INSERT, [[p[c] for p in params] for c in _INSERT_COLS], binary=True)
    by_key = {(r["rule"], r["site"], r["source"], r["subject"]): r for r in await cur.fetchall()}
    return [by_key[a.key] for a in alerts]


async def write_alerts(
    conn: Conn, alerts: Sequence[tuple[Alert, str, bool]]
) -> list[dict[str, Any] | None]:
    """Write engine fields of (alert, expected stored state, reset ack); None where the state moved."""
    if not alerts:
        return []
    params = []
    for a, expect, reset in alerts:
        p = _params(a)
        p["expect"] = expect
        p["reset_ack"] = reset
        params.append(p)
    cur = await conn.execute(_WRITE, [[p[c] for p in params] for c in _WRITE_COLS], binary=True)
    by_id = {int(r["id"]): r for r in await cur.fetchall()}
    return [by_id.get(int(a.id)) if a.id is not None else None for a, _, _ in alerts]


async def add_count(conn: Conn, a: Alert) -> dict[str, Any] | None:
    cur = await conn.execute(_COUNT, {"id": a.id, "delta": a.pending, "last_seen": a.last_seen})
    return await cur.fetchone()


async def insert_findings(conn: Conn, rows: Iterable[tuple[Finding, int | None]]) -> int:
    """Every finding, with the alert it went to, by COPY."""
    n = 0
    cur = conn.cursor()
    async with cur.copy(
        """COPY findings (ts, alert_id, rule, site, source, subject, severity, active, reason, summary, details)
           FROM STDIN"""
    ) as cp:
        for f, aid in rows:
            await cp.write_row((f.ts, aid, f.rule, f.site, f.source, f.subject, f.severity, f.active, f.reason,
                                f.summary, details_jsonb(f.details)))
            n += 1
    return n


async def adopt_held_findings(conn: Conn, alert_id: int, a: Alert, since: datetime) -> None:
    """File the findings that waited in a raise hold under the alert they raised."""
    await conn.execute(
        """UPDATE findings SET alert_id = %s
           WHERE rule = %s AND site = %s AND source = %s AND subject = %s AND ts >= %s AND alert_id IS NULL""",
        (alert_id, a.rule, a.site, a.source, a.subject, since),
    )


@dataclass(frozen=True)
class ActionRow:
    ts: datetime
    alert_id: int
    action: str
    actor: str
    role: str | None
    site: str
    rule: str
    severity: str
    silenced: bool = False
    latency_s: float | None = None
    level: int | None = None
    details: dict[str, Any] | None = None


async def insert_actions(conn: Conn, rows: Sequence[ActionRow]) -> None:
    if not rows:
        return
    cur = conn.cursor()
    async with cur.copy(
        """COPY alert_actions (ts, alert_id, action, actor, role, site, rule, severity, silenced, latency_s,
                               level, details) FROM STDIN"""
    ) as cp:
        for r in rows:
            await cp.write_row((r.ts, r.alert_id, r.action, r.actor, r.role, r.site, r.rule, r.severity, r.silenced,
                                r.latency_s, r.level, jsonb(r.details or {})))


async def load_live(conn: Conn) -> list[dict[str, Any]]:
    cur = await conn.execute("SELECT * FROM alerts WHERE state <> 'closed' ORDER BY id")
    return await cur.fetchall()


async def get_alert(conn: Conn, alert_id: int, *, lock: bool = False) -> dict[str, Any] | None:
    cur = await conn.execute(
        "SELECT * FROM alerts WHERE id = %s" + (" FOR UPDATE" if lock else ""), (alert_id,)
    )
    return await cur.fetchone()


# --- people's transitions ------------------------------------------------------------


async def ack(conn: Conn, alert_id: int, who: str, note: str | None, now: datetime) -> dict[str, Any] | None:
    cur = await conn.execute(
        """UPDATE alerts SET state = 'acknowledged', acked_at = %s, acked_by = %s, ack_note = %s, rev = rev + 1
           WHERE id = %s AND state = 'open' RETURNING *""",
        (now, who, note, alert_id),
    )
    return await cur.fetchone()


async def close(
    conn: Conn, alert_id: int, who: str, disposition: str, note: str, now: datetime, sources: Sequence[State]
) -> dict[str, Any] | None:
    cur = await conn.execute(
        """UPDATE alerts SET state = 'closed', closed_at = %s, closed_by = %s, disposition = %s,
                             close_note = %s, rev = rev + 1
           WHERE id = %s AND state = ANY(%s) RETURNING *""",
        (now, who, disposition, note, alert_id, list(sources)),
    )
    return await cur.fetchone()


# --- queries -------------------------------------------------------------------------


def encode_cursor(parts: Sequence[Any]) -> str:
    raw = json.dumps([p.isoformat() if isinstance(p, datetime) else p for p in parts]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str, kinds: Sequence[type], field: str = "cursor") -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        parts = json.loads(raw)
        if not isinstance(parts, list) or len(parts) != len(kinds):
            raise ValueError("wrong shape")
        out: list[Any] = []
        for p, k in zip(parts, kinds, strict=True):
            if k is datetime:
                out.append(datetime.fromisoformat(p))
            elif k is int:
                if not isinstance(p, int):
                    raise ValueError("not an integer")
                out.append(p)
            else:
                out.append(k(p))
        return out
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{field}: not a cursor this server gave out", field=field) from e


@dataclass(frozen=True)
class AlertFilter:
    states: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    since: datetime | None = None


async def list_alerts(
    conn: Conn, flt: AlertFilter, *, after: tuple[int, datetime, int] | None, limit: int
) -> tuple[list[dict[str, Any]], tuple[int, datetime, int] | None]:
    """Most severe first, then newest; keyset pagination on (sev_rank, first_seen, id)."""
    where: list[str] = []
    args: list[Any] = []
    if flt.states:
        where.append("state = ANY(%s)")
        args.append(list(flt.states))
    if flt.sites:
        where.append("site = ANY(%s)")
        args.append(list(flt.sites))
    if flt.rules:
        where.append("rule = ANY(%s)")
        args.append(list(flt.rules))
    if flt.since is not None:
        where.append("last_seen >= %s")
        args.append(flt.since)
    if after is not None:
        where.append("(sev_rank, first_seen, id) < (%s, %s, %s)")
        args.extend(after)
    rows, more = await _page(conn, "SELECT * FROM alerts", where, args,
                             "sev_rank DESC, first_seen DESC, id DESC", limit)
    nxt = None
    if more:
        last = rows[-1]
        nxt = (int(last["sev_rank"]), last["first_seen"], int(last["id"]))
    return rows, nxt


async def _page(conn: Conn, select: str, where: list[str], args: list[Any], order: str,
                limit: int) -> tuple[list[Any], bool]:
    """One keyset page: ``limit`` rows and whether more follow."""
    sql = select
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {order} LIMIT %s"
    cur = await conn.execute(sql.encode(), [*args, limit + 1])
    rows = list(await cur.fetchall())
    return rows[:limit], len(rows) > limit


async def alert_findings(conn: Conn, alert_id: int, limit: int = 50) -> list[dict[str, Any]]:
    cur = await conn.execute(
        """SELECT id, ts, received_at, rule, site, source, subject, severity, active, reason, summary, details
           FROM findings WHERE alert_id = %s ORDER BY ts DESC, id DESC LIMIT %s""",
        (alert_id, limit),
    )
    return await cur.fetchall()


async def alert_timeline(conn: Conn, alert_id: int) -> list[dict[str, Any]]:
    cur = await conn.execute(
        """SELECT ts, action, actor, role, silenced, latency_s, level, details FROM alert_actions
           WHERE alert_id = %s ORDER BY ts, seq""",
        (alert_id,),
    )
    return await cur.fetchall()


# --- silences and maintenance --------------------------------------------------------


async def live_silences(conn: Conn, now: datetime) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT * FROM alert_silences WHERE lifted_at IS NULL AND expires_at > %s ORDER BY id", (now,)
    )
    return await cur.fetchall()


async def live_maintenance(conn: Conn, now: datetime) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT * FROM maintenance_windows WHERE ended_at IS NULL AND ends_at > %s ORDER BY id", (now,)
    )
    return await cur.fetchall()


# --- the audit trail, read -----------------------------------------------------------


async def list_audit(
    conn: Conn, *, target: str | None, action: str | None, actor: str | None, since: datetime | None,
    until: datetime | None, after: tuple[datetime, int] | None, limit: int,
) -> tuple[list[dict[str, Any]], tuple[datetime, int] | None]:
    """Newest first; ``target`` matches itself and what lies under it (``site/x`` → ``site/x/...``);
    ``action`` matches exactly or, ending in ``.*``, by prefix."""
    where: list[str] = []
    args: list[Any] = []
    if target:
        where.append("(target = %s OR target LIKE %s)")
        args.extend([target, _like_prefix(target) + "/%"])
    if action:
        if action.endswith(".*"):
            where.append("action LIKE %s")
            args.append(_like_prefix(action[:-2]) + ".%")
        else:
            where.append("action = %s")
            args.append(action)
    if actor:
        where.append("actor = %s")
        args.append(actor)
    if since is not None:
        where.append("ts >= %s")
        args.append(since)
    if until is not None:
        where.append("ts < %s")
        args.append(until)
    if after is not None:
        where.append("(ts, id) < (%s, %s)")
        args.extend(after)
    rows, more = await _page(
        conn, "SELECT id, ts, actor, role, action, target, reason, address, details FROM audit", where, args,
        "ts DESC, id DESC", limit)
    nxt = (rows[-1]["ts"], int(rows[-1]["id"])) if more else None
    return rows, nxt


def _like_prefix(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
