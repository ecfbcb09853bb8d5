"""A camera that goes offline is a condition alert that resolves when it comes back
(real RTSP server, real service, real database)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from psycopg.rows import dict_row

from monitor.config import AlertsConfig, MediaConfig, SiteConfig
from monitor.store.audit import Actor
from monitor.web import auth
from tests.conftest import city_config, running_service
from tests.support.rtsp import RtspServer, gst_available, scene_clips

pytestmark = [pytest.mark.rtsp, pytest.mark.skipif(not gst_available(), reason="GStreamer RTSP server missing")]


async def _alerts(http: aiohttp.ClientSession, base: str) -> list[dict[str, Any]]:
    r = await http.get(f"{base}/api/v1/alerts", params={"rule": "camera_offline"})
    assert r.status == 200, await r.text()
    return list((await r.json())["alerts"])


async def _until(pred: Any, http: aiohttp.ClientSession, base: str, timeout_s: float, what: str) -> list[dict[str, Any]]:
    async with asyncio.timeout(timeout_s):
        while True:
            got = await _alerts(http, base)
            if pred(got):
                return got
            await asyncio.sleep(0.2)
    raise AssertionError(what)  # pragma: no cover


async def test_camera_offline_alert_opens_and_resolves(session_db: str, mqtt_url: str, tmp_path: Path) -> None:
    clips = scene_clips(tmp_path / "clips", {"station": ("station", 3, 6.0, (320, 180), 5.0)})
    with RtspServer({"a": clips["station"]}) as srv:
        site = SiteConfig.model_validate({
            "id": "st-camalert", "kind": "station", "storage_capacity": 10,
            "cameras": [{"id": "cam-offline-test", "url": srv.url("a"), "detect": {"fps": 2}}],
        })
        cfg = city_config(session_db, mqtt_url, sites=[site], media=MediaConfig(dir=str(tmp_path / "m")),
                          alerts=AlertsConfig(clear_hold_s=1.0))
        async with await psycopg.AsyncConnection.connect(session_db, row_factory=dict_row) as conn:
            cur = await conn.execute("SELECT 1 FROM users WHERE username = 'camalert-viewer'")
            if await cur.fetchone() is None:
                await auth.add_user(conn, Actor.system("test"), "camalert-viewer", "viewer", "long enough pw")
        async with running_service(cfg) as base, aiohttp.ClientSession(
                cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            r = await http.post(f"{base}/api/v1/login", json={"username": "camalert-viewer", "password": "long enough pw"})
            assert r.status == 200
            srv.kill()
            got = await _until(lambda a: any(x["source"] == "cam-offline-test" and x["state"] == "open" for x in a),
                               http, base, 30, "an open camera_offline alert")
            alert = next(x for x in got if x["source"] == "cam-offline-test")
            assert alert["site"] == "st-camalert" and alert["rule"] == "camera_offline"
            srv.start()
            await _until(lambda a: any(x["id"] == alert["id"] and x["state"] == "resolved" for x in a),
                         http, base, 30, "the alert resolved once the camera is back")
