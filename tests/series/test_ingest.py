"""Scale readings over MQTT into PostgreSQL, fill sessions and the live rules on the real
service; and nothing lost when the database goes away mid-stream (a TCP proxy cut), not
even across a restart of the centre."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiohttp
import pytest

from monitor.findings import Finding
from monitor.series.model import Reading, ScanRecord
from monitor.series.service import SeriesService
from monitor.sim.scales import FillPlan, fill_readings, payload, topic
from monitor.web.keys import CORRELATION, FINDINGS, SERIES
from tests.series.support import (
    CuttableProxy,
    FindingLog,
    add_cylinders,
    api_key,
    count,
    new_code,
    publisher,
    reading_payload,
    service,
    until,
)
from tests.series.test_api import ROLES, series_config
from tests.support.services import with_dbname


def plan_now(code: str | None, seconds_back: float, **kw: Any) -> FillPlan:
    base: dict[str, Any] = {"tare_kg": 16.4, "nominal_kg": 15.0}
    base.update(kw)
    return FillPlan(cylinder=code, start=datetime.now(UTC) - timedelta(seconds=seconds_back), **base)


async def test_readings_fills_and_live_rules(session_db: str, mqtt_url: str, tmp_path: Path) -> None:
    cfg = series_config(session_db, mqtt_url, tmp_path, lift_grace_s=1.0, silent_after_s=3.0, sweep_every_s=0.3)
    code = new_code()
    await add_cylinders(session_db, [{"code": code, "owner_site": "st-minwang"}])
    async with service(cfg, roles=ROLES) as (url, app), publisher(mqtt_url) as pub:
        key = await api_key(session_db, "st-minwang")
        svc: SeriesService = app[SERIES]
        log = FindingLog(app)
        await until(svc.subscriber.connected.is_set, 10, "scale ingest connected")
        prefix = cfg.mqtt.prefix
        # a pre-fill scan, then an overfilled fill of that cylinder on s1 (the scale reports the code)
        async with aiohttp.ClientSession() as http:
            scan = {"id": uuid.uuid4().hex, "cylinder": code, "site": "st-minwang", "step": "prefill_check",
                    "ts": (datetime.now(UTC) - timedelta(seconds=200)).isoformat(), "operator": "op"}
            async with http.post(f"{url}/api/v1/scans", json=scan, headers={"Authorization": f"Bearer {key}"}) as r:
                assert r.status == 200 and (await r.json())["validity"] == "ok"
        s1 = fill_readings("st-minwang", "s1", plan_now(code, 100, overfill_kg=2.0), rng=random.Random(1))
        # an unidentified cylinder filled on s2 without any scan
        s2 = fill_readings("st-minwang", "s2", plan_now(None, 95, report_code=False, tare_kg=7.0, nominal_kg=5.0),
                           rng=random.Random(2))
        half = len(s2) // 2
        for r in s1 + s2[:half]:
            await pub.publish(topic(prefix, r), payload(r), qos=1)
        # refused messages: counted, logged, and the consumer carries on
        bad: list[tuple[str, bytes]] = [
            (f"{prefix}/st-minwang/scale/s1/reading", b"{not json"),
            (f"{prefix}/st-minwang/scale/s1/reading", reading_payload(datetime.now(UTC).isoformat(), -40.0)),
            (f"{prefix}/st-minwang/scale/s1/reading", reading_payload(datetime.now(UTC).isoformat(), 400.0)),
            (f"{prefix}/st-minwang/scale/s9/reading", reading_payload(datetime.now(UTC).isoformat(), 1.0)),
            (f"{prefix}/st-minwang/scale/s1/reading",
             reading_payload((datetime.now(UTC) + timedelta(hours=2)).isoformat(), 1.0)),
            (f"{prefix}/st-minwang/scale/s1/reading", b'{"ts": "2026-01-01T00:00:00Z", "gross_kg": 1, '
                                                      b'"gun_open": "yes", "cylinder": null}'),
            (f"{prefix}/st-minwang/scale/s1/reading", b'{"ts": "2026-01-01T00:00:00Z", "gross_kg": 1, '
                                                      b'"gun_open": false, "cylinder": null, "x": 1}'),
        ]
        for t, p in bad:
            await pub.publish(t, p, qos=1)
        await until(lambda: app[CORRELATION].current.get(("st-minwang", "s2")) is not None, 10, "s2 filling")
        anti = Finding(rule="antistatic_skipped", site="st-minwang", source="st-minwang-entry", subject="track-3",
                       ts=datetime.now(UTC), summary="skipped the discharge post")
        await app[FINDINGS].submit(anti)
        f = await log.wait("antistatic_during_fill")
        assert f.details["scales"] == ["s2"] and f.severity == "critical"
        for r in s2[half:]:
            await pub.publish(topic(prefix, r), payload(r), qos=1)

        over = await log.wait("overfill", subject=code)
        assert over.details["nominal_kg"] == 15.0 and over.details["scan_ids"] == [scan["id"]]
        fws = await log.wait("fill_without_scan", source="s2")
        assert fws.subject == "unidentified" and fws.site == "st-minwang"
        assert not log.of("fill_without_scan", subject=code)
        await until(lambda: svc.refusals.total >= len(bad), 10, "refusals counted")
        assert set(svc.refusals.by_reason) >= {"bad_payload", "impossible_weight", "unknown_scale", "future_ts",
                                               "bad_gun_open"}
        site_prefix = "st-minwang"
        start = min(r.ts for r in s1 + s2)
        n_readings = len(s1) + len(s2)

        async def rows() -> bool:
            return await count(session_db, "SELECT count(*) FROM scale_readings WHERE site_id = %s AND ts >= %s "
                               "AND scale_id IN ('s1', 's2')", site_prefix, start) == n_readings

        await until(rows, 10, "all readings in the database")

        async def fills() -> bool:
            return await count(session_db, "SELECT count(*) FROM fills WHERE site_id = %s AND started_at >= %s",
                               site_prefix, start) == 2

        await until(fills, 15, "both fills stored")
        assert await count(session_db, "SELECT count(*) FROM fills WHERE cylinder = %s AND net_kg > 16.5", code) == 1
        # a scale never heard from is reported silent; its first reading clears it
        silent = await log.wait("device_silent", site="st-xiuying", source="s1")
        assert silent.active
        r = Reading(ts=datetime.now(UTC), site="st-xiuying", scale="s1", gross_kg=0.0, gun_open=False)
        await pub.publish(topic(prefix, r), payload(r), qos=1)
        await until(lambda: any(not f.active for f in log.of("device_silent", site="st-xiuying", source="s1")),
                    10, "silence cleared")


@pytest.mark.slow
async def test_nothing_lost_when_the_database_goes_away(session_db: str, mqtt_url: str, tmp_path: Path) -> None:
    u = urlparse(session_db)
    proxy = CuttableProxy((u.hostname or "127.0.0.1", u.port or 5432))
    await proxy.start()
    via_proxy = with_dbname(f"postgresql://{u.username}@127.0.0.1:{proxy.port}/x", u.path.lstrip("/"))
    cfg = series_config(via_proxy, mqtt_url, tmp_path)
    prefix = cfg.mqtt.prefix
    base = datetime.now(UTC) - timedelta(seconds=120)
    sent: list[Reading] = []

    def readings(n: int) -> list[Reading]:
        out = []
        for _ in range(n):
            i = len(sent)
            r = Reading(ts=base + timedelta(milliseconds=10 * i), site="st-ganghua", scale="s1",
                        gross_kg=round(random.uniform(0, 0.05), 3), gun_open=False)
            sent.append(r)
            out.append(r)
        return out

    async def stored() -> int:
        return await count(session_db, "SELECT count(*) FROM scale_readings WHERE site_id = 'st-ganghua' "
                           "AND scale_id = 's1' AND ts >= %s AND ts < %s", base, base + timedelta(seconds=60))

    try:
        async with publisher(mqtt_url) as pub:
            async with service(cfg, roles=ROLES) as (_url, app):
                svc: SeriesService = app[SERIES]
                await until(svc.subscriber.connected.is_set, 10, "scale ingest connected")
                for r in readings(150):
                    await pub.publish(topic(prefix, r), payload(r), qos=1)
                await until(lambda: svc.subscriber.acked >= 150, 15, "first readings acknowledged")
                await proxy.cut()  # the database goes away mid-stream
                for r in readings(150):
                    await pub.publish(topic(prefix, r), payload(r), qos=1)
                spooled_scans = [ScanRecord(id=uuid.uuid4().hex, ts=datetime.now(UTC), cylinder=new_code(),
                                            site="st-ganghua", step="prefill_check", validity="pending", app="t")
                                 for _ in range(3)]
                _, _, spooled = await svc.post_scans(spooled_scans)
                assert spooled
                await until(lambda: svc.subscriber.acked >= 300, 30, "readings acknowledged into the spool")
                assert svc.writer.mode == "spool" and svc.spool.bytes > 0
                await proxy.start()  # it comes back: the spool is flushed, in order, once
                await until(lambda: svc.writer.mode == "db" and svc.spool.empty, 30, "spool flushed")
                assert await stored() == 300
                ids = [s.id for s in spooled_scans]
                assert await count(session_db, "SELECT count(*) FROM scans WHERE id = ANY(%s) "
                                   "AND validity = 'unregistered'", ids) == 3
                await proxy.cut()  # away again; and this time the centre stops before it returns
                for r in readings(100):
                    await pub.publish(topic(prefix, r), payload(r), qos=1)
                await until(lambda: svc.subscriber.acked >= 400, 30, "readings acknowledged into the spool")
            assert any((tmp_path / "spool").glob("*/api-control/0/*.jsonl"))  # <database>/<roles>/<slot>
            await proxy.start()
            async with service(cfg, roles=ROLES) as (_url, app2):
                svc2: SeriesService = app2[SERIES]
                await until(lambda: svc2.spool.empty and svc2.writer.mode == "db", 30, "spool flushed after restart")
                await until(lambda: stored(), 10, "rows visible")
                assert await stored() == 400  # every accepted reading, each once
                assert svc2.writer.stats.flushed >= 100
    finally:
        await proxy.close()
