"""Roles apart, end to end: a video worker (``--role video``, its own HTTP server) runs a real
RTSP camera; the API process (``--role api``) shows its state and relays its pictures.

Real GStreamer RTSP server, PostgreSQL, Mosquitto; both services on loopback in this process."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from monitor.app import build_app
from monitor.web.keys import ADVERTISED
from tests.support.api import logged_in, on_loopback
from tests.support.net import free_port
from tests.support.rtsp import RtspServer
from tests.video.conftest import video_config

pytestmark = [pytest.mark.rtsp, pytest.mark.slow]


async def _until(pred: Any, limit_s: float, what: str) -> Any:
    end = asyncio.get_running_loop().time() + limit_s
    while True:
        got = await pred()
        if got:
            return got
        if asyncio.get_running_loop().time() > end:
            raise AssertionError(f"not within {limit_s}s: {what}")
        await asyncio.sleep(0.3)


async def test_the_api_shows_a_workers_camera_and_relays_its_pictures(
        fresh_db: str, mqtt_url: str, clips: dict[str, Path], tmp_path: Path) -> None:
    with RtspServer({"a": clips["station"]}) as srv:
        base = video_config({"cam-a": srv.url("a")}, tmp_path / "media", lease_ttl_s=4.0, lease_renew_s=1.0)
        cfg = base.model_copy(update={
            "database": base.database.model_copy(update={"url": fresh_db}),
            "mqtt": base.mqtt.model_copy(update={"url": mqtt_url, "prefix": f"relay{free_port()}"}),
        })
        w_port, a_port = free_port(), free_port()
        # the API's media folder is not the worker's (separate machines): clips are relayed too
        api_cfg = cfg.model_copy(update={"media": cfg.media.model_copy(update={"dir": str(tmp_path / "api-media")})})
        api = build_app(api_cfg, roles=frozenset({"api"}), client_id="relay-api")
        async with on_loopback(api, a_port) as url, logged_in(url, fresh_db, "viewer", "relay-viewer") as v:

            async def state() -> dict[str, Any]:
                status, body = await v.get("/api/v1/cameras/cam-a")
                assert status == 200
                return dict(body)

            worker = build_app(cfg, roles=frozenset({"video"}), client_id="relay-worker")
            worker[ADVERTISED] = f"http://127.0.0.1:{w_port}"
            async with on_loopback(worker, w_port):

                async def online() -> dict[str, Any] | None:
                    body = await state()
                    return body if body["state"] == "online" else None

                cam = await _until(online, 30, "the worker's camera online on the API")
                assert cam["worker"]

                async def picture() -> tuple[int, bytes, Any] | None:
                    r = await v.http.get(url + "/api/v1/cameras/cam-a/snapshot.jpg")
                    body = await r.read()
                    return (r.status, body, r.headers) if r.status == 200 else None

                _, jpg, headers = await _until(picture, 20, "a snapshot relayed from the worker")
                assert jpg[:2] == b"\xff\xd8" and headers["Content-Type"] == "image/jpeg"
                assert headers["X-Frame-Time"] and headers["X-Camera-State"] == "online"
                # the MJPEG fallback of the focused view, relayed as a stream
                r = await v.http.get(url + "/api/v1/cameras/cam-a/mjpeg")
                assert r.status == 200 and r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
                got = b""
                while got.count(b"\xff\xd8") < 2:
                    got += await asyncio.wait_for(r.content.read(65536), 10)
                r.close()
                # the focused view's live fMP4 WebSocket, relayed both ways
                ws = await v.http.ws_connect(url + "/api/v1/cameras/cam-a/live", origin=url)
                first = await ws.receive_json(timeout=15)
                assert first["type"] == "codec" and first["codec"].startswith("avc1")
                init = await ws.receive(timeout=15)
                assert init.type == aiohttp.WSMsgType.BINARY and b"ftyp" in init.data[:16]
                await ws.close()
                # an operator exports a clip: cut and audited by the worker, fetched through the API
                async with logged_in(url, fresh_db, "operator", "relay-op") as op:
                    await asyncio.sleep(4.0)  # let the worker's ring hold a few seconds
                    now = datetime.now(UTC)
                    status, clip = await op.post("/api/v1/cameras/cam-a/clips", {
                        "start": (now - timedelta(seconds=3)).isoformat(),
                        "end": (now - timedelta(seconds=1)).isoformat(), "reason": "relay test"})
                    assert status == 201, clip
                    status, mp4 = await op.get(clip["url"])
                    assert status == 200 and mp4[4:8] == b"ftyp" and len(mp4) == clip["bytes"]
                async with await psycopg.AsyncConnection.connect(fresh_db) as conn:
                    cur = await conn.execute("SELECT actor FROM audit WHERE action = 'clip.export'")
                    assert [r[0] for r in await cur.fetchall()] == ["relay-op"]
                # without a session: refused (by the API before any relay)
                async with aiohttp.ClientSession() as anon:
                    r2 = await anon.get(url + "/api/v1/cameras/cam-a/snapshot.jpg")
                    assert r2.status == 401
            # the worker stops (its lease given back): the camera is no one's, and says so

            async def unassigned() -> dict[str, Any] | None:
                body = await state()
                return body if body["state"] == "unassigned" else None

            await _until(unassigned, 15, "the camera unassigned once its worker stopped")
            status, body = await v.get("/api/v1/cameras/cam-a/snapshot.jpg")
            assert status == 503 and "not run by any video worker" in body["error"]["message"]
