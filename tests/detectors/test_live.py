"""The whole live path: RTSP cameras → video → detectors → findings and counts in PostgreSQL.

The real GStreamer RTSP server loops two simulated clips; the real service (every role)
decodes them, runs the detectors and the alerts engine stores what they find.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from monitor.config import Config
from monitor.sim.scenes import OUTLET_ZONES, STATION_ZONES
from tests.conftest import running_service
from tests.detectors.clips import EXPORTS, OUTLET, STATION, WEIGHTS, clip, truth
from tests.support.net import free_port
from tests.support.rtsp import RtspServer, gst_available

pytestmark = [
    pytest.mark.rtsp,
    pytest.mark.slow,
    pytest.mark.skipif(not WEIGHTS.exists(), reason="models/lpg-sim/best.pt not built (make models)"),
    pytest.mark.skipif(not gst_available(), reason="GStreamer RTSP server not available"),
]


def config(db: str, mqtt: str, station_url: str, outlet_url: str, media: Path) -> Config:
    z = lambda zs: {k: [list(p) for p in v] for k, v in zs.items()}  # noqa: E731
    return Config.model_validate({
        "server": {"port": free_port()},
        "database": {"url": db},
        "mqtt": {"url": mqtt, "prefix": f"t{free_port()}"},
        "media": {"dir": str(media)},
        "detector": {"weights": str(WEIGHTS), "backend": "openvino", "imgsz": 640, "export_dir": str(EXPORTS)},
        "rules": {"storage": {"window_s": 3, "hold_s": 3}},
        "sites": [
            {"id": "st-live", "kind": "station", "storage_capacity": 100, "cameras": [
                {"id": "st-live-entry", "url": station_url, "zones": z(STATION_ZONES), "rules": ["antistatic"]}]},
            {"id": "ol-live", "kind": "outlet", "storage_capacity": OUTLET.capacity, "cameras": [
                {"id": "ol-live-store", "url": outlet_url, "zones": z(OUTLET_ZONES), "rules": ["storage"]}]},
        ],
    })


async def poll(db: str, sql: str, args: tuple[Any, ...], until: Any, timeout_s: float) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    rows: list[dict[str, Any]] = []
    while loop.time() < end:
        async with await psycopg.AsyncConnection.connect(db, row_factory=dict_row) as conn:
            rows = list(await (await conn.execute(sql, args)).fetchall())
        if until(rows):
            return rows
        await asyncio.sleep(0.5)
    return rows


async def test_live_cameras_to_findings_and_counts(session_db: str, mqtt_url: str, tmp_path: Path) -> None:
    with RtspServer(files={"entry": clip(STATION, ".h264"), "store": clip(OUTLET, ".h264")}) as srv:
        cfg = config(session_db, mqtt_url, srv.url("entry"), srv.url("store"), tmp_path / "media")
        started = datetime.now(UTC)
        async with running_service(cfg):
            # One loop of the station clip holds two violations; wait for them (bounded).
            n_true = sum(1 for p in truth(STATION)["people"] if p["violation"])
            found = await poll(
                session_db,
                "SELECT ts, subject, details FROM findings WHERE rule = 'antistatic_skipped' "
                "AND source = 'st-live-entry' AND ts >= %s ORDER BY ts", (started,),
                lambda rows: len(rows) >= n_true, 150,
            )
            # The count series: rows for the storage camera, written as the count changes.
            counts = await poll(
                session_db, "SELECT * FROM camera_counts WHERE camera_id = 'ol-live-store' AND ts >= %s",
                (started,), lambda rows: len(rows) >= 3, 60,
            )
    assert len(found) >= n_true
    assert all(r["subject"].startswith("track-") and r["details"]["dwell_s"] < 3.0 for r in found)
    # Over-capacity accuracy is measured on recordings (test_analyze, test_service, the
    # benchmark); live, the series must be there and plausible.
    top = max(n for _, n in truth(OUTLET)["count"])
    assert len(counts) >= 3 and all(0 <= r["count"] <= top + 2 and r["capacity"] == OUTLET.capacity for r in counts)
    assert {r["site_id"] for r in counts} == {"ol-live"}
