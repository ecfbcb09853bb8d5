"""The series' queries: registry look-ups, scans, readings and fills.

The interlock (monitor/control) calls ``get_cylinder`` and ``last_scan``; keep their
signatures stable. Every function takes a connection from ``Database.connection()``
(dict rows, in the caller's transaction).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from monitor.series.model import Fill, Reading, ScanRecord
from monitor.series.validity import Cylinder

Conn = psycopg.AsyncConnection[Any]

_CYL_COLS = "code, valve_code, owner_site, nominal_kg, tare_kg, manufactured, last_inspection, inspection_passed, status"
_SCAN_COLS = "id, ts, cylinder, site_id, step, validity, operator, app, photos"


def _row(r: Any) -> dict[str, Any]:
    if isinstance(r, dict):
        return r
    raise TypeError("series.store needs dict rows (psycopg.rows.dict_row)")


def cylinder_from_row(r: dict[str, Any]) -> Cylinder:
    return Cylinder(
        code=r["code"], valve_code=r["valve_code"], owner_site=r["owner_site"],
        nominal_kg=float(r["nominal_kg"]), tare_kg=float(r["tare_kg"]), manufactured=r["manufactured"],
        last_inspection=r["last_inspection"], inspection_passed=r["inspection_passed"], status=r["status"],
    )


def scan_from_row(r: dict[str, Any]) -> ScanRecord:
    return ScanRecord(
        id=r["id"], ts=r["ts"], cylinder=r["cylinder"], site=r["site_id"], step=r["step"],
        validity=r["validity"], operator=r["operator"], app=r["app"], photos=tuple(r["photos"] or ()),
    )


async def get_cylinder(conn: Conn, code: str) -> Cylinder | None:
    """The registry's record of ``code`` (the body QR), or None for an unregistered cylinder."""
    cur = await conn.execute(f"SELECT {_CYL_COLS} FROM cylinders WHERE code = %s", (code,))
    r = await cur.fetchone()
    return None if r is None else cylinder_from_row(_row(r))


async def get_cylinders(conn: Conn, codes: Iterable[str]) -> dict[str, Cylinder]:
    """Registry records of many codes at once (unregistered codes are absent)."""
    codes = list(set(codes))
    if not codes:
        return {}
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(f"SELECT {_CYL_COLS} FROM cylinders WHERE code = ANY(%s)", (codes,))
        return {r[0]: Cylinder(r[0], r[1], r[2], float(r[3]), float(r[4]), r[5], r[6], r[7], r[8])
                for r in await cur.fetchall()}


async def last_scan(conn: Conn, *, cylinder: str, site: str, step: str, since: datetime) -> ScanRecord | None:
    """The latest scan of ``cylinder`` at ``site`` for ``step`` at or after ``since``."""
    cur = await conn.execute(
        f"""SELECT {_SCAN_COLS} FROM scans
            WHERE cylinder = %s AND site_id = %s AND step = %s AND ts >= %s
            ORDER BY ts DESC LIMIT 1""",
        (cylinder, site, step, since),
    )
    r = await cur.fetchone()
    return None if r is None else scan_from_row(_row(r))


async def insert_scans(conn: Conn, scans: Sequence[ScanRecord]) -> list[bool]:
    """Store scans once each, in one statement: True for a scan stored now, False for a
    known id (a retry, or the same id twice in one batch)."""
    if not scans:
        return []
    cur = await conn.execute(
        """WITH u AS (
             SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::text[], %s::text[], %s::text[], %s::text[],
                                  %s::text[], %s::text[], %s::jsonb[])
                      WITH ORDINALITY AS u(id, ts, cylinder, site_id, step, validity, operator, app, photos, n)),
           ins AS (
             INSERT INTO scan_ids (id, ts) SELECT DISTINCT ON (id) id, ts FROM u ORDER BY id, n
             ON CONFLICT (id) DO NOTHING RETURNING id)
           INSERT INTO scans (id, ts, cylinder, site_id, step, validity, operator, app, photos)
           SELECT DISTINCT ON (u.id) u.id, u.ts, u.cylinder, u.site_id, u.step, u.validity, u.operator, u.app,
                  ARRAY(SELECT jsonb_array_elements_text(u.photos))
           FROM u JOIN ins USING (id) ORDER BY u.id, u.n
           RETURNING id""",
        ([x.id for x in scans], [x.ts for x in scans], [x.cylinder for x in scans], [x.site for x in scans],
         [x.step for x in scans], [x.validity for x in scans], [x.operator for x in scans], [x.app for x in scans],
         [Jsonb(list(x.photos)) for x in scans]),
    )
    new = {(r["id"] if isinstance(r, dict) else r[0]) for r in await cur.fetchall()}
    out: list[bool] = []
    for x in scans:
        out.append(x.id in new)
        new.discard(x.id)  # a second copy in the same batch is not "stored now"
    return out


async def scans_between(
    conn: Conn, start: datetime, end: datetime, *, site: str | None = None, steps: Sequence[str] | None = None
) -> list[ScanRecord]:
    sql = f"SELECT {_SCAN_COLS} FROM scans WHERE ts >= %s AND ts < %s"
    args: list[Any] = [start, end]
    if site is not None:
        sql += " AND site_id = %s"
        args.append(site)
    if steps is not None:
        sql += " AND step = ANY(%s)"
        args.append(list(steps))
    async with conn.cursor(row_factory=tuple_row) as cur:  # tuples: a day is 240 k scans
        await cur.execute(sql + " ORDER BY ts, id", args)
        return [ScanRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], tuple(r[8] or ()))
                for r in await cur.fetchall()]


READING_COLS = ("ts", "site_id", "scale_id", "gross_kg", "gun_open", "cylinder", "received_at")
READING_TYPES = ("timestamptz", "text", "text", "float4", "bool", "text", "timestamptz")


def reading_rows(readings: Iterable[Reading], now: datetime) -> Iterable[tuple[Any, ...]]:
    for r in readings:
        yield (r.ts, r.site, r.scale, r.gross_kg, r.gun_open, r.cylinder, r.received_at or now)


async def copy_readings(conn: Conn, readings: Sequence[Reading], now: datetime) -> int:
    """Write readings with binary COPY; a reading already stored (same scale and time) is skipped.

    The fast path copies straight into the table; when that meets a duplicate (an MQTT
    re-delivery, a spool flushed again after a crash) the batch goes through a staging
    table and ``ON CONFLICT DO NOTHING``. Returns the number of new rows.
    """
    if not readings:
        return 0
    cols = ", ".join(READING_COLS)
    try:
        async with conn.transaction():
            async with conn.cursor() as cur:
                async with cur.copy(f"COPY scale_readings ({cols}) FROM STDIN (FORMAT BINARY)") as cp:
                    cp.set_types(list(READING_TYPES))
                    for row in reading_rows(readings, now):
                        await cp.write_row(row)
        return len(readings)
    except psycopg.errors.UniqueViolation:
        pass
    async with conn.transaction():
        await conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS readings_stage (LIKE scale_readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        async with conn.cursor() as cur:
            async with cur.copy(f"COPY readings_stage ({cols}) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(list(READING_TYPES))
                for row in reading_rows(readings, now):
                    await cp.write_row(row)
        cur2 = await conn.execute(
            f"""INSERT INTO scale_readings ({cols}) SELECT DISTINCT ON (site_id, scale_id, ts) {cols}
                FROM readings_stage ORDER BY site_id, scale_id, ts
                ON CONFLICT (site_id, scale_id, ts) DO NOTHING"""
        )
        return max(cur2.rowcount, 0)


async def readings_between(conn: Conn, site: str, scale: str, start: datetime, end: datetime) -> list[Reading]:
    cur = await conn.execute(
        """SELECT ts, site_id, scale_id, gross_kg, gun_open, cylinder, received_at FROM scale_readings
           WHERE site_id = %s AND scale_id = %s AND ts >= %s AND ts < %s ORDER BY ts""",
        (site, scale, start, end),
    )
    return [
        Reading(ts=r["ts"], site=r["site_id"], scale=r["scale_id"], gross_kg=float(r["gross_kg"]),
                gun_open=r["gun_open"], cylinder=r["cylinder"], received_at=r["received_at"])
        for r in map(_row, await cur.fetchall())
    ]


async def insert_fills(conn: Conn, fills: Sequence[Fill]) -> int:
    """Store fill sessions once each (same scale and start: kept once). Returns rows added."""
    n = 0
    for f in fills:
        cur = await conn.execute(
            """INSERT INTO fills (started_at, ended_at, site_id, scale_id, gun_id, cylinder, tare_kg, gross_kg,
                                  net_kg, readings, flags)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (site_id, scale_id, started_at) DO NOTHING""",
            (f.started_at, f.ended_at, f.site, f.scale, f.gun, f.cylinder, f.tare_kg, f.gross_kg, f.net_kg,
             f.readings, list(f.flags)),
        )
        n += max(cur.rowcount, 0)
    return n


def fill_from_row(r: dict[str, Any]) -> Fill:
    return Fill(
        site=r["site_id"], scale=r["scale_id"], gun=r["gun_id"], started_at=r["started_at"], ended_at=r["ended_at"],
        tare_kg=float(r["tare_kg"]), gross_kg=float(r["gross_kg"]), cylinder=r["cylinder"],
        readings=int(r["readings"]), flags=tuple(r["flags"] or ()),
    )


_FILL_COLS = "started_at, ended_at, site_id, scale_id, gun_id, cylinder, tare_kg, gross_kg, readings, flags"


async def fills_between(conn: Conn, start: datetime, end: datetime, *, site: str | None = None) -> list[Fill]:
    sql = f"SELECT {_FILL_COLS} FROM fills WHERE started_at >= %s AND started_at < %s"
    args: list[Any] = [start, end]
    if site is not None:
        sql += " AND site_id = %s"
        args.append(site)
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(sql + " ORDER BY started_at", args)
        return [Fill(site=r[2], scale=r[3], gun=r[4], started_at=r[0], ended_at=r[1], tare_kg=float(r[6]),
                     gross_kg=float(r[7]), cylinder=r[5], readings=int(r[8]), flags=tuple(r[9] or ()))
                for r in await cur.fetchall()]


async def last_fill(conn: Conn, cylinder: str) -> Fill | None:
    cur = await conn.execute(
        f"SELECT {_FILL_COLS} FROM fills WHERE cylinder = %s ORDER BY started_at DESC LIMIT 1", (cylinder,)
    )
    r = await cur.fetchone()
    return None if r is None else fill_from_row(_row(r))


async def cylinder_history(conn: Conn, code: str, *, limit: int = 500) -> tuple[list[ScanRecord], list[Fill]]:
    """The scans and fills of one cylinder, newest first."""
    cur = await conn.execute(
        f"SELECT {_SCAN_COLS} FROM scans WHERE cylinder = %s ORDER BY ts DESC LIMIT %s", (code, limit)
    )
    scans = [scan_from_row(_row(r)) for r in await cur.fetchall()]
    cur = await conn.execute(
        f"SELECT {_FILL_COLS} FROM fills WHERE cylinder = %s ORDER BY started_at DESC LIMIT %s", (code, limit)
    )
    fills = [fill_from_row(_row(r)) for r in await cur.fetchall()]
    return scans, fills


async def outlet_stock(conn: Conn, site: str, at: datetime) -> int:
    """Scan-derived stock of an outlet at ``at`` (hour resolution from the rollup, exact
    within the last hour from the scans): received full minus delivered."""
    cur = await conn.execute(
        """SELECT coalesce(sum(received - delivered), 0) AS n FROM outlet_stock_hourly
           WHERE site_id = %s AND bucket < bucket(INTERVAL '1 hour', %s)""",
        (site, at),
    )
    r = _row(await cur.fetchone())
    cur = await conn.execute(
        """SELECT count(*) FILTER (WHERE step = 'outlet_receive') - count(*) FILTER (WHERE step = 'deliver') AS n
           FROM scans WHERE site_id = %s AND ts >= bucket(INTERVAL '1 hour', %s) AND ts <= %s
             AND step IN ('outlet_receive', 'deliver')""",
        (site, at, at),
    )
    r2 = _row(await cur.fetchone())
    return int(r["n"]) + int(r2["n"])


async def stock_series(conn: Conn, site: str, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """An outlet's scan-derived stock at the end of each hour from ``start`` to ``end``."""
    cur = await conn.execute(
        """SELECT bucket, (sum(received - delivered) OVER (ORDER BY bucket))::bigint AS stock
           FROM outlet_stock_hourly WHERE site_id = %s AND bucket < %s ORDER BY bucket""",
        (site, end),
    )
    return [(r["bucket"], int(r["stock"])) for r in map(_row, await cur.fetchall()) if r["bucket"] >= start]
