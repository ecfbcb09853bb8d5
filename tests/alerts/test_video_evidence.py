"""The evidence pack from the real video part: a GStreamer RTSP camera, the video service's
packet ring, and the incident clip cut from it with pre- and post-roll, served by range."""

from __future__ import annotations

import asyncio
import io
import time
from datetime import UTC, datetime
from pathlib import Path

import av
import pytest

from monitor.config import Config
from tests.alerts.conftest import alerts_config, make_finding, rows, serve, staff
from tests.support.rtsp import RtspServer, gst_available, scene_clips
from tests.video.conftest import running_video

pytestmark = [pytest.mark.rtsp, pytest.mark.skipif(not gst_available(), reason="no GStreamer RTSP server")]


def city(base: Config, url: str) -> Config:
    site = {"id": "st-test", "kind": "station", "storage_capacity": 10, "guns": ["g1"],
            "cameras": [{"id": "st-test-entry", "url": url, "detect": {"fps": 5}}]}
    return base.model_copy(update={
        "sites": [*base.sites, Config.model_validate({"sites": [site]}).sites[0]],
        "media": base.media.model_copy(update={"ring_s": 10, "preroll_s": 2.0, "postroll_s": 1.0}),
    })


async def test_incident_clip_cut_from_the_real_camera_ring(alerts_db: str, mqtt_url: str, tmp_path: Path,
                                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    clip = scene_clips(tmp_path_factory.mktemp("clips"), {"entry": ("station", 21, 4.0, (320, 180), 10.0)})["entry"]
    with RtspServer(files={"entry": clip}) as srv:
        srv_url = srv.url("entry")
        cfg = city(alerts_config(alerts_db, tmp_path, mqtt_url), srv_url)
        video_cfg = cfg.model_copy(update={"sites": [s for s in cfg.sites if s.id == "st-test"]})
        async with running_video(video_cfg) as (video, watch):
            await watch.until(lambda: any(c.state == "online" for c in watch.changes), 20, "the camera is online")
            live_at = time.monotonic()
            await asyncio.sleep(max(0.0, 2.5 - (time.monotonic() - live_at)))  # the ring holds the pre-roll
            async with serve(cfg, roles=frozenset({"api"}), evidence=video) as svc, \
                    staff(svc.base, alerts_db, "viewer") as v:
                seen = datetime.now(UTC)
                await svc.submit(make_finding(site="st-test", source="st-test-entry", subject="track-1", ts=seen,
                                              details={"track": 1, "box": [0.4, 0.3, 0.6, 0.9]}))
                await asyncio.wait_for(svc.svc.gatherer.idle.wait(), 30)
                (a,) = await rows(alerts_db, "SELECT id FROM alerts")
                ev = {r["kind"]: r for r in await rows(alerts_db, "SELECT * FROM evidence WHERE alert_id = %s",
                                                       a["id"])}
                assert ev["clip"]["status"] == "ready", ev["clip"]["error"]
                assert ev["snapshot"]["status"] == "ready", ev["snapshot"]["error"]
                st, data = await v.get(f"/api/v1/incidents/{a['id']}/clip.mp4")
                assert st == 200
                with av.open(io.BytesIO(data)) as mp4:
                    stream = mp4.streams.video[0]
                    frames = sum(1 for _ in mp4.decode(stream))
                    assert stream.codec_context.name == "h264" and (stream.width, stream.height) == (320, 180)
                assert 15 <= frames <= 45  # about pre-roll 2 s + post-roll 1 s at 10 fps
                r = await v.http.get(f"{svc.base}/api/v1/incidents/{a['id']}/clip.mp4",
                                     headers={"Range": f"bytes=0-{len(data) // 2}"})
                assert r.status == 206 and await r.read() == data[: len(data) // 2 + 1]
                st, jpg = await v.get(f"/api/v1/incidents/{a['id']}/snapshot.jpg")
                assert st == 200 and jpg[:2] == b"\xff\xd8"
