"""The count series' SQL (table ``camera_counts``, migration 0007): the service's edge.

``camera_counts(ts, camera_id, site_id, count, raw, capacity)``: ``count`` is the smoothed
count of cylinders in the camera's storage zone (median over ``rules.storage.window_s``),
``raw`` the count in that frame, ``capacity`` the site's licensed capacity then.
A repeated row (same camera and time) is ignored, so a retried batch writes nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from monitor.detectors.service import CountRow

INSERT = (
    "INSERT INTO camera_counts (ts, camera_id, site_id, count, raw, capacity) "
    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (camera_id, ts) DO NOTHING"
)


async def write_counts(conn: Any, rows: Sequence[CountRow]) -> None:
    async with conn.cursor() as cur:
        await cur.executemany(INSERT, [(r.ts, r.camera_id, r.site_id, r.count, r.raw, r.capacity) for r in rows])


async def counts_between(conn: Any, camera: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT ts, camera_id, site_id, count, raw, capacity FROM camera_counts "
        "WHERE camera_id = %s AND ts >= %s AND ts < %s ORDER BY ts",
        (camera, start, end),
    )
    return list(await cur.fetchall())
