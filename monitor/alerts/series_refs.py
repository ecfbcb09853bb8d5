"""Read the scale and scan series for an incident's evidence, defensively.

The series part owns these tables (migration 0003: ``scale_readings``, ``scans``,
``fills``). Here they are only read, after checking that the table and the columns
exist, so that evidence still works (as ``unavailable``) where a deployment lacks them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import sql

from monitor.alerts.store import Conn

MAX_ROWS = 2000


async def columns(conn: Conn, table: str) -> set[str]:
    cur = await conn.execute(
        """SELECT column_name FROM information_schema.columns
           WHERE table_schema = current_schema() AND table_name = %s""",
        (table,),
    )
    return {r["column_name"] for r in await cur.fetchall()}


def _first(cols: set[str], *names: str) -> str | None:
    for n in names:
        if n in cols:
            return n
    return None


async def scale_trace(
    conn: Conn, site: str, scales: list[str], start: datetime, end: datetime
) -> dict[str, Any] | None:
    """Readings of ``scales`` (all of the site's when empty) in [start, end], and the fills
    that overlap it; None when the deployment has no scale readings table."""
    cols = await columns(conn, "scale_readings")
    site_col, scale_col = _first(cols, "site_id", "site"), _first(cols, "scale_id", "scale")
    if not cols or "ts" not in cols or site_col is None or scale_col is None:
        return None
    keep = [c for c in ("ts", site_col, scale_col, "gross_kg", "gun_open", "cylinder") if c in cols]
    q = sql.SQL("SELECT {cols} FROM scale_readings WHERE {site} = %s AND ts >= %s AND ts <= %s").format(
        cols=sql.SQL(", ").join(sql.Identifier(c) for c in keep),
        site=sql.Identifier(site_col),
    )
    args: list[Any] = [site, start, end]
    if scales:
        q = q + sql.SQL(" AND {scale} = ANY(%s)").format(scale=sql.Identifier(scale_col))
        args.append(scales)
    q = q + sql.SQL(" ORDER BY ts LIMIT %s")
    args.append(MAX_ROWS)
    cur = await conn.execute(q, args)
    readings = [{"site" if k == site_col else "scale" if k == scale_col else k: v for k, v in r.items()}
                for r in await cur.fetchall()]
    fills: list[dict[str, Any]] = []
    fcols = await columns(conn, "fills")
    fsite, fscale = _first(fcols, "site_id", "site"), _first(fcols, "scale_id", "scale")
    if fcols and fsite and fscale and {"started_at", "ended_at"} <= fcols:
        fq = sql.SQL(
            "SELECT * FROM fills WHERE {site} = %s AND started_at <= %s AND ended_at >= %s"
        ).format(site=sql.Identifier(fsite))
        fargs: list[Any] = [site, end, start]
        if scales:
            fq = fq + sql.SQL(" AND {scale} = ANY(%s)").format(scale=sql.Identifier(fscale))
            fargs.append(scales)
        cur = await conn.execute(fq + sql.SQL(" ORDER BY started_at LIMIT 100"), fargs)
        fills = list(await cur.fetchall())
    return {"site": site, "scales": scales, "start": start, "end": end, "readings": readings,
            "fills": fills, "truncated": len(readings) >= MAX_ROWS}


async def scans(
    conn: Conn, site: str, cylinders: list[str], scan_ids: list[str], start: datetime, end: datetime
) -> dict[str, Any] | None:
    """The scans a finding names (by id), those of its cylinders in [start, end] anywhere,
    or, with neither, the site's scans in [start, end]; None without a scans table."""
    cols = await columns(conn, "scans")
    site_col = _first(cols, "site_id", "site")
    if not cols or "ts" not in cols or site_col is None:
        return None
    conds: list[sql.Composable] = []
    args: list[Any] = []
    if scan_ids and "id" in cols:
        conds.append(sql.SQL("id = ANY(%s)"))
        args.append(scan_ids)
    if cylinders and "cylinder" in cols:
        conds.append(sql.SQL("(cylinder = ANY(%s) AND ts >= %s AND ts <= %s)"))
        args.extend([cylinders, start, end])
    if not conds:
        conds.append(sql.SQL("({site} = %s AND ts >= %s AND ts <= %s)").format(site=sql.Identifier(site_col)))
        args.extend([site, start, end])
    q = sql.SQL("SELECT * FROM scans WHERE {conds} ORDER BY ts LIMIT %s").format(
        conds=sql.SQL(" OR ").join(conds))
    args.append(MAX_ROWS)
    cur = await conn.execute(q, args)
    rows = [{("site" if k == site_col else k): v for k, v in r.items()} for r in await cur.fetchall()]
    return {"site": site, "cylinders": cylinders, "scan_ids": scan_ids, "start": start, "end": end,
            "scans": rows, "truncated": len(rows) >= MAX_ROWS}
