"""The video wall and the focused live view in a real browser, with one real camera (the
GStreamer RTSP server looping a simulated station scene) and the rest offline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from monitor.web.keys import HUB
from tests.browser.conftest import ROOT, WAIT_MS, City, Screens, has_route, open_as, wall_service
from tests.support.rtsp import RtspServer, gst_available, scene_clips

pytestmark = [pytest.mark.browser, pytest.mark.rtsp]

LIVE_CAM = "st-minwang-entry"


@pytest.fixture(scope="module")
def rtsp() -> Iterator[RtspServer]:
    if not gst_available():
        pytest.skip("no GStreamer RTSP server (python3-gi, gir1.2-gst-rtsp-server-1.0)")
    clips = scene_clips(ROOT / "var" / "test-clips", {"wall-entry": ("station", 5, 4.0, (640, 360), 10.0)})
    with RtspServer(files={LIVE_CAM: clips["wall-entry"]}) as srv:
        yield srv


@pytest.fixture
async def video_city(wall_db: str, wall_mqtt: str, rtsp: RtspServer) -> AsyncIterator[City]:
    async with wall_service(wall_db, wall_mqtt, cameras={LIVE_CAM: rtsp.url(LIVE_CAM)}) as c:
        if not await has_route(c, "GET", "/api/v1/cameras"):
            pytest.skip("the video API is not installed: GET /api/v1/cameras (issue 3)")
        yield c


async def _painted(page: Any, selector: str) -> bool:
    """Draw the element (video or img) onto a canvas and look for a picture: not one flat colour."""
    return bool(await page.evaluate(
        """sel => { const el = document.querySelector(sel); if (!el) return false;
             const w = el.videoWidth || el.naturalWidth, h = el.videoHeight || el.naturalHeight;
             if (!w || !h) return false;
             const c = document.createElement('canvas'); c.width = 64; c.height = 36;
             const g = c.getContext('2d'); g.drawImage(el, 0, 0, 64, 36);
             const d = g.getImageData(0, 0, 64, 36).data; let lo = 255, hi = 0;
             for (let i = 0; i < d.length; i += 4) { const v = d[i] + d[i+1] + d[i+2]; lo = Math.min(lo, v); hi = Math.max(hi, v); }
             return hi - lo > 60; }""", selector))


async def _detections(city: City, stop: asyncio.Event) -> None:
    """Live detections as the detectors publish them (this test runs no model)."""
    while not stop.is_set():
        city.app[HUB].publish(f"detections:{LIVE_CAM}", {
            "type": "detections", "camera": LIVE_CAM, "ts": "2024-01-01T00:00:00+00:00", "width": 640, "height": 360,
            "objects": [{"cls": "person", "box": [0.30, 0.20, 0.45, 0.90], "conf": 0.91, "track": 7}]})
        try:
            await asyncio.wait_for(stop.wait(), 0.2)
        except TimeoutError:
            pass


async def test_wall_tiles_offline_and_live_view(video_city: City, browser: Any, screens: Screens) -> None:
    city = video_city
    n_cams = sum(len(s.cameras) for s in city.cfg.sites)
    page = await open_as(browser, city, "viewer", screens)
    await page.goto(city.base + "/#/wall")
    await page.wait_for_function(f"document.querySelectorAll('.tile[data-camera]').length === {n_cams}", timeout=WAIT_MS)
    # grouped by district, offline tiles stand out with since when, the live one shows its picture
    assert await page.locator(".wall .group").count() >= 2
    await page.wait_for_function(f"document.querySelectorAll('.tile.offline').length === {n_cams - 1}", timeout=WAIT_MS)
    assert "自" in await page.inner_text(".tile.offline .offline-note")
    live_tile = f".tile[data-camera={LIVE_CAM}]"
    await page.wait_for_selector(f"{live_tile}.has-image", timeout=WAIT_MS * 2)
    assert await _painted(page, f"{live_tile} img")
    await page.check("input[name=overlay]")
    await screens.shot(page, "wall")

    # the focused live view: fragmented MP4 over the WebSocket into MSE, zones and detections over it
    stop = asyncio.Event()
    feeder = asyncio.create_task(_detections(city, stop))
    try:
        await page.click(live_tile)
        await page.wait_for_selector(".stage[data-mode=mse]", timeout=WAIT_MS)
        await page.wait_for_function("document.querySelector('video.live').currentTime > 0.5", timeout=WAIT_MS * 2)
        t0 = await page.evaluate("document.querySelector('video.live').currentTime")
        await page.wait_for_function(f"document.querySelector('video.live').currentTime > {t0} + 0.5", timeout=WAIT_MS)
        assert await _painted(page, "video.live")
        # something is drawn over the picture (zones and the live box)
        drawn = await page.evaluate("""(() => { const c = document.querySelector('.stage canvas');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
            for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; })()""")
        assert drawn > 100
        await screens.shot(page, "focus-mse")
    finally:
        stop.set()
        await feeder

    # a browser without Media Source Extensions gets the MJPEG stream instead
    ctx_page = await open_as(browser, city, "viewer", screens)
    await ctx_page.context.add_init_script("delete window.MediaSource; delete window.ManagedMediaSource;")
    await ctx_page.goto(f"{city.base}/#/camera/{LIVE_CAM}")
    await ctx_page.reload()
    await ctx_page.wait_for_selector(".stage[data-mode=mjpeg]", timeout=WAIT_MS * 2)
    await ctx_page.wait_for_function("document.querySelector('img.live').naturalWidth > 0", timeout=WAIT_MS)
    assert await _painted(ctx_page, "img.live")
    await screens.shot(ctx_page, "focus-mjpeg")
    # leaving the view closes the stream (the MJPEG image loses its source)
    await ctx_page.goto(f"{city.base}/#/wall")
    await ctx_page.wait_for_selector(".wall", timeout=WAIT_MS)
    assert await ctx_page.locator("img.live").count() == 0
    assert screens.errors == [], screens.errors


async def test_wall_through_the_api_with_the_cameras_on_a_video_worker(
        wall_db: str, wall_mqtt: str, rtsp: RtspServer, browser: Any, screens: Screens) -> None:
    """Roles apart: the wall's process runs no camera; states come from the worker through the
    database, the tile's picture and the focused view's live stream are relayed from it."""
    async with wall_service(wall_db, wall_mqtt, cameras={LIVE_CAM: rtsp.url(LIVE_CAM)}, split=True) as city:
        n_cams = sum(len(s.cameras) for s in city.cfg.sites)
        page = await open_as(browser, city, "viewer", screens)
        await page.goto(city.base + "/#/wall")
        await page.wait_for_function(f"document.querySelectorAll('.tile[data-camera]').length === {n_cams}",
                                     timeout=WAIT_MS)
        # every other camera's stream is down, as its worker saw it
        await page.wait_for_function(f"document.querySelectorAll('.tile.offline').length === {n_cams - 1}",
                                     timeout=WAIT_MS * 2)
        live_tile = f".tile[data-camera={LIVE_CAM}]"
        await page.wait_for_selector(f"{live_tile}.has-image", timeout=WAIT_MS * 2)
        assert await _painted(page, f"{live_tile} img")
        # the toolbar's tally follows the camera events (it stayed at the first render's before)
        await page.wait_for_function(
            f"document.querySelector('.toolbar .counts').textContent.includes('在线 1 · 离线 {n_cams - 1}')",
            timeout=WAIT_MS)
        await screens.shot(page, "wall-roles-apart")
        await page.click(live_tile)
        await page.wait_for_selector(".stage[data-mode=mse]", timeout=WAIT_MS)
        await page.wait_for_function("document.querySelector('video.live').currentTime > 0.5", timeout=WAIT_MS * 2)
        assert await _painted(page, "video.live")
        # the camera's name and zones stay (state events from the worker carry neither)
        name = next(c.name for s in city.cfg.sites for c in s.cameras if c.id == LIVE_CAM)
        await page.wait_for_function(f"document.body.innerText.includes({name!r})", timeout=WAIT_MS)
        drawn = await page.evaluate("""(() => { const c = document.querySelector('.stage canvas');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
            for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; })()""")
        assert drawn > 100  # the zones (no detections run here)
        await screens.shot(page, "focus-roles-apart")
        assert screens.errors == [], screens.errors
