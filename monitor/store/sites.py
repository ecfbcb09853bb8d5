"""Keep the sites, cameras, guns and scales tables in step with the configuration."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from monitor.config import Config


async def sync_sites(conn: psycopg.AsyncConnection[Any], cfg: Config) -> None:
    """Upsert every configured site and device; mark the ones no longer configured inactive."""
    async with conn.transaction():
        for s in cfg.sites:
            lon, lat = s.location if s.location else (None, None)
            await conn.execute(
                """INSERT INTO sites (id, kind, name, district, lon, lat, storage_capacity, active, updated_at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, true, now())
                   ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, name = EXCLUDED.name,
                     district = EXCLUDED.district, lon = EXCLUDED.lon, lat = EXCLUDED.lat,
                     storage_capacity = EXCLUDED.storage_capacity, active = true, updated_at = now()""",
                (s.id, s.kind, s.name, s.district, lon, lat, s.storage_capacity),
            )
            for g in s.guns:
                await conn.execute(
                    """INSERT INTO guns (site_id, id, active) VALUES (%s, %s, true)
                       ON CONFLICT (site_id, id) DO UPDATE SET active = true""",
                    (s.id, g),
                )
            for sc in s.scales:
                await conn.execute(
                    """INSERT INTO scales (site_id, id, gun_id, active) VALUES (%s, %s, %s, true)
                       ON CONFLICT (site_id, id) DO UPDATE SET gun_id = EXCLUDED.gun_id, active = true""",
                    (s.id, sc.id, sc.gun),
                )
            for c in s.cameras:
                zones = {k: [list(p) for p in v] for k, v in c.zones.items()}
                await conn.execute(
                    """INSERT INTO cameras (id, site_id, name, url, detect_url, rules, zones, active)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, true)
                       ON CONFLICT (id) DO UPDATE SET site_id = EXCLUDED.site_id, name = EXCLUDED.name,
                         url = EXCLUDED.url, detect_url = EXCLUDED.detect_url, rules = EXCLUDED.rules,
                         zones = EXCLUDED.zones, active = true""",
                    (c.id, s.id, c.name, c.url, c.detect_url, list(c.rules), Jsonb(zones)),
                )
        site_ids = [s.id for s in cfg.sites]
        cam_ids = [c.id for _, c in cfg.cameras()]
        await conn.execute("UPDATE sites SET active = false WHERE NOT (id = ANY(%s))", (site_ids,))
        await conn.execute("UPDATE cameras SET active = false WHERE NOT (id = ANY(%s))", (cam_ids,))
        await conn.execute(
            "UPDATE guns SET active = false WHERE NOT ((site_id || '/' || id) = ANY(%s))",
            ([f"{s.id}/{g}" for s in cfg.sites for g in s.guns],),
        )
