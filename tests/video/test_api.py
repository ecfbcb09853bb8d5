"""The camera API of the real service (real PostgreSQL, Mosquitto, RTSP server) and the live
relay in the real browser."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import av
import cv2
import numpy as np
import psycopg
import pytest
from psycopg.rows import dict_row

from monitor.config import MediaConfig, SiteConfig
from monitor.store.audit import Actor
from monitor.web import auth
from tests.conftest import city_config, running_service
from tests.support.rtsp import RtspServer

pytestmark = [pytest.mark.rtsp, pytest.mark.slow]
PASSWORD = "video-pass-1"
CHROMIUM = os.environ.get("MONITOR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required",
                 # the test page is fulfilled by Playwright, which Chromium takes for a public origin
                 "--disable-features=LocalNetworkAccessChecks"]
PAGE_HTML = Path(__file__).with_name("live.html").read_text(encoding="utf-8")


@dataclass
class Svc:
    base: str
    http: aiohttp.ClientSession
    csrf: str
    db: str
    srv: RtspServer


async def _users(db: str) -> None:
    async with await psycopg.AsyncConnection.connect(db, row_factory=dict_row) as conn:
        for role in ("viewer", "operator"):
            cur = await conn.execute("SELECT 1 FROM users WHERE username = %s", (f"video-{role}",))
            if await cur.fetchone() is None:
                await auth.add_user(conn, Actor.system("test"), f"video-{role}", role, PASSWORD)


async def _login(http: aiohttp.ClientSession, base: str, role: str) -> str:
    r = await http.post(f"{base}/api/v1/login", json={"username": f"video-{role}", "password": PASSWORD})
    assert r.status == 200, await r.text()
    return str((await r.json())["csrf"])


@pytest.fixture
async def svc(session_db: str, mqtt_url: str, clips: dict[str, Path], tmp_path: Path) -> AsyncIterator[Svc]:
    with RtspServer({"a": clips["station"]}) as srv:
        site = SiteConfig.model_validate({
            "id": "st-video", "kind": "station", "storage_capacity": 10,
            "cameras": [{"id": "cam-a", "name": "入口", "url": srv.url("a"), "detect": {"fps": 5},
                         "zones": {"storage": [[0, 0.3], [1, 0.3], [1, 1], [0, 1]]}, "rules": ["storage"]}],
        })
        cfg = city_config(session_db, mqtt_url, sites=[site], media=MediaConfig(dir=str(tmp_path / "media"), ring_s=10))
        async with running_service(cfg) as base:
            await _users(session_db)
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                yield Svc(base, http, "", session_db, srv)


async def _until_online(s: Svc, cam: str = "cam-a", timeout_s: float = 10.0) -> None:
    """Bounded wait for the camera's state on the hub's ``cameras`` topic."""
    async with s.http.ws_connect(f"{s.base}/api/v1/ws", origin=s.base) as ws:
        await ws.send_json({"op": "subscribe", "topics": ["cameras"]})
        async with asyncio.timeout(timeout_s):
            while True:
                m = await ws.receive_json()
                states = {c["id"]: c["state"] for c in m.get("cameras", [])}
                if m.get("camera") == cam:
                    states[cam] = m["state"]
                if states.get(cam) == "online":
                    return


async def test_cameras_snapshot_mjpeg_and_metrics(svc: Svc) -> None:
    s = svc
    r = await s.http.get(f"{s.base}/api/v1/cameras")
    assert r.status == 401
    await _login(s.http, s.base, "viewer")
    await _until_online(s)
    r = await s.http.get(f"{s.base}/api/v1/cameras")
    cams = (await r.json())["cameras"]
    assert [c["id"] for c in cams] == ["cam-a"]
    c = cams[0]
    assert c["state"] == "online" and c["site"] == "st-video" and c["name"] == "入口"
    assert c["rules"] == ["storage"] and c["zones"]["storage"][0] == [0.0, 0.3]
    assert c["counters"]["packets"] > 0 and c["since"]
    # snapshot: a JPEG of the camera's picture
    r = await s.http.get(f"{s.base}/api/v1/cameras/cam-a/snapshot.jpg")
    assert r.status == 200 and r.content_type == "image/jpeg"
    img = cv2.imdecode(np.frombuffer(await r.read(), np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (180, 320, 3) and img.mean() > 20
    assert datetime.fromisoformat(r.headers["X-Frame-Time"]) > datetime.now(UTC) - timedelta(seconds=5)
    r = await s.http.get(f"{s.base}/api/v1/cameras/nope/snapshot.jpg")
    assert r.status == 404 and (await r.json())["error"]["field"] == "id"
    # MJPEG: a multipart stream of JPEGs
    async with s.http.get(f"{s.base}/api/v1/cameras/cam-a/mjpeg") as r:
        assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        head = b""
        async with asyncio.timeout(5):
            while head.count(b"\xff\xd8") < 2:
                head += await r.content.read(4096)
        assert head.startswith(b"--frame\r\nContent-Type: image/jpeg")
    r = await s.http.get(f"{s.base}/metrics")
    text = await r.text()
    assert 'monitor_camera_up{camera="cam-a",site="st-video"} 1.0' in text
    assert 'monitor_camera_frames_sent_total{camera="cam-a"}' in text


async def test_live_relay_sends_codec_init_then_fragments(svc: Svc) -> None:
    s = svc
    with pytest.raises(aiohttp.WSServerHandshakeError) as no_session:
        await s.http.ws_connect(f"{s.base}/api/v1/cameras/cam-a/live", origin=s.base)
    assert no_session.value.status == 401
    await _login(s.http, s.base, "viewer")
    async with s.http.ws_connect(f"{s.base}/api/v1/cameras/cam-a/live", origin=s.base) as ws:
        first = await ws.receive_json(timeout=10)
        assert first["type"] == "codec" and first["codec"].startswith("avc1.") and first["width"] == 320
        init = await ws.receive_bytes(timeout=5)
        assert init[4:8] == b"ftyp" and b"moov" in init and b"avcC" in init
        segs = [await ws.receive_bytes(timeout=5) for _ in range(12)]
        assert all(seg[4:8] == b"moof" for seg in segs)
        data = init + b"".join(segs)
    # what the viewer got plays from its first frame
    import io

    with av.open(io.BytesIO(data), format="mp4") as c:
        frames = list(c.decode(video=0))
    assert len(frames) == 12 and frames[0].key_frame


async def test_clip_export_is_audited_and_decodes(svc: Svc) -> None:
    s = svc
    viewer_csrf = await _login(s.http, s.base, "viewer")
    await _until_online(s)
    now = datetime.now(UTC)
    # from now on, 4 s: the export waits for the post-roll to arrive
    body = {"start": (now + timedelta(seconds=0.5)).isoformat(), "end": (now + timedelta(seconds=4.5)).isoformat(),
            "reason": "review"}
    r = await s.http.post(f"{s.base}/api/v1/cameras/cam-a/clips", json=body, headers={"X-CSRF-Token": viewer_csrf})
    assert r.status == 403 and "operator" in (await r.json())["error"]["message"]
    s.http.cookie_jar.clear()
    csrf = await _login(s.http, s.base, "operator")
    hdr = {"X-CSRF-Token": csrf}
    bad: list[tuple[dict[str, Any], str]] = [
        ({**body, "end": body["start"]}, "end must be after start"),
        ({k: v for k, v in body.items() if k != "reason"}, "reason"),
        ({**body, "start": "yesterday"}, "start"),
    ]
    for b, needle in bad:
        r = await s.http.post(f"{s.base}/api/v1/cameras/cam-a/clips", json=b, headers=hdr)
        err = (await r.json())["error"]
        assert r.status == 422 and needle in (err["message"] + str(err.get("field"))), err
    old = {**body, "start": (now - timedelta(seconds=60)).isoformat(), "end": (now - timedelta(seconds=55)).isoformat()}
    r = await s.http.post(f"{s.base}/api/v1/cameras/cam-a/clips", json=old, headers=hdr)
    assert r.status == 404 and (await r.json())["error"]["field"] == "start"
    r = await s.http.post(f"{s.base}/api/v1/cameras/cam-a/clips", json=body, headers=hdr)
    assert r.status == 201, await r.text()
    got = await r.json()
    assert 4.0 - 1.0 <= got["duration_s"] <= 4.0 + 1.0, "requested 4 s within one GOP (1 s)"
    r = await s.http.get(f"{s.base}{got['url']}", headers={"Range": "bytes=0-99"})
    assert r.status == 206 and len(await r.read()) == 100
    r = await s.http.get(f"{s.base}{got['url']}")
    data = await r.read()
    assert r.status == 200 and len(data) == got["bytes"]
    import io

    with av.open(io.BytesIO(data), format="mp4") as c:
        st = c.streams.video[0]
        frames = list(c.decode(st))
        assert frames[0].key_frame and len(frames) == got["frames"]
        assert float(st.duration * st.time_base) == pytest.approx(got["duration_s"], abs=0.05)
    async with await psycopg.AsyncConnection.connect(s.db, row_factory=dict_row) as conn:
        cur = await conn.execute(
            "SELECT actor, reason, details FROM audit WHERE action = 'clip.export' AND target = 'camera/cam-a' "
            "ORDER BY id DESC LIMIT 1")
        row = await cur.fetchone()
    assert row is not None and row["actor"] == "video-operator" and row["reason"] == "review"
    assert row["details"]["clip"] == got["clip"]


@pytest.mark.browser
@pytest.mark.skipif(shutil.which(CHROMIUM) is None and not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}")
async def test_chromium_plays_the_live_relay_and_mjpeg(svc: Svc) -> None:
    from playwright.async_api import async_playwright

    s = svc
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            ctx = await browser.new_context()
            r = await ctx.request.post(f"{s.base}/api/v1/login",
                                       data={"username": "video-viewer", "password": PASSWORD})
            assert r.ok
            page = await ctx.new_page()
            await page.route("**/__video_test.html*",
                             lambda route: route.fulfill(body=PAGE_HTML, content_type="text/html"))
            await page.goto(f"{s.base}/__video_test.html?cam=cam-a&mjpeg=1")
            try:
                await page.wait_for_function(
                    "window.result.painted > 200 && window.result.currentTime > 0.5 && window.result.mjpeg > 0",
                    timeout=15_000)
            except Exception as e:
                raise AssertionError(f"not painted: {await page.evaluate('window.result')}") from e
            result = await page.evaluate("window.result")
            assert result["error"] is None and result["codec"].startswith("avc1.")
        finally:
            await browser.close()
