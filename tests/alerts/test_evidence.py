"""Evidence packs and incidents on the real service: annotated snapshot, clip with range
requests, scale trace and scans, lock actions, failures recorded, and the audited export."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import psycopg
import pytest

from monitor.alerts.annotate import boxes_from_details
from monitor.alerts.clock import ManualClock
from monitor.alerts.evidence import plan_evidence
from monitor.findings import Finding
from tests.alerts.conftest import T0, Running, alerts_config, later, make_finding, rows, serve, staff
from tests.alerts.recorded import RecordedCamera, jpeg

API = frozenset({"api"})
BOXES = {"track": 7, "box": [0.5, 0.3, 0.7, 0.9],
         "boxes": [{"track": 7, "box": [0.5, 0.3, 0.7, 0.9]}, {"track": 8, "box": [0.1, 0.2, 0.2, 0.6]}]}


async def gathered(svc: Running, timeout_s: float = 30.0) -> None:
    """Wait (bounded) until the gatherer has nothing in hand."""
    await asyncio.wait_for(svc.svc.gatherer.idle.wait(), timeout_s)


async def test_video_alert_gets_snapshot_and_clip_served_with_ranges_and_exported(
    alerts_db: str, mqtt_url: str, tmp_path: Path
) -> None:
    cfg = alerts_config(alerts_db, tmp_path, mqtt_url)
    cam = RecordedCamera()
    clock = ManualClock(T0)
    async with serve(cfg, roles=API, evidence=cam, clock=clock) as svc, \
            staff(svc.base, alerts_db, "operator") as op, staff(svc.base, alerts_db, "supervisor") as sup:
        await svc.submit(make_finding(subject="track-7", details={**BOXES, "snapshot_at": later(0).isoformat()}))
        await gathered(svc)
        (a,) = await rows(alerts_db, "SELECT id FROM alerts")
        aid = a["id"]
        assert cam.clips == [("st-minwang-entry", later(-2), later(1))]  # media pre-roll 2 s, post-roll 1 s
        # lock the station in answer to the alert (as the control part audits it)
        async with await psycopg.AsyncConnection.connect(alerts_db, autocommit=True) as conn:
            await conn.execute(
                """INSERT INTO audit (actor, role, action, target, reason, details)
                   VALUES ('op-x', 'operator', 'station.lock', 'site/st-minwang', 'antistatic', %s),
                          ('op-x', 'operator', 'station.lock', 'site/st-ganghua', 'other site', '{}')""",
                (json.dumps({"ref": str(aid)}),))
        assert (await op.post(f"/api/v1/alerts/{aid}/ack", {"note": "locked the station"}))[0] == 200
        st, body = await op.get(f"/api/v1/incidents/{aid}")
        assert st == 200, body
        inc = body["incident"]
        ev = inc["evidence"]
        assert ev["snapshot"]["status"] == "ready" and ev["snapshot"]["url"] == f"/api/v1/incidents/{aid}/snapshot.jpg"
        assert ev["clip"]["status"] == "ready" and ev["clip"]["media_type"] == "video/mp4"
        assert [x["action"] for x in inc["actions"]] == ["station.lock", "alert.ack"]
        assert [x["target"] for x in inc["locks"]] == ["site/st-minwang"]
        assert [t["action"] for t in inc["timeline"]] == ["raised", "acknowledged"]
        # the snapshot: the camera's frame with the boxes drawn (the tracked person in red)
        st, img = await op.get(f"/api/v1/incidents/{aid}/snapshot.jpg")
        assert st == 200
        px = cv2.imdecode(np.frombuffer(img, np.uint8), cv2.IMREAD_COLOR)
        b, g, r = px[int(0.6 * 179), int(0.5 * 319)].tolist()  # on the left edge of box 7
        assert r > 150 and g < 100 and b < 100
        # the clip, whole and by range
        r1 = await op.http.get(f"{svc.base}/api/v1/incidents/{aid}/clip.mp4")
        whole = await r1.read()
        assert r1.status == 200 and r1.headers["Content-Type"] == "video/mp4" and whole[4:8] == b"ftyp"
        r2 = await op.http.get(f"{svc.base}/api/v1/incidents/{aid}/clip.mp4", headers={"Range": "bytes=100-199"})
        assert r2.status == 206 and await r2.read() == whole[100:200]
        assert r2.headers["Content-Range"] == f"bytes 100-199/{len(whole)}"
        # export: supervisors only; one archive, audited with its digest
        assert (await op.post(f"/api/v1/incidents/{aid}/export"))[0] == 403
        assert (await sup.post(f"/api/v1/alerts/{aid}/close",
                               {"disposition": "rectified", "note": "retrained"}))[0] == 200
        r3 = await sup.http.post(f"{svc.base}/api/v1/incidents/{aid}/export", headers={"X-CSRF-Token": sup.csrf})
        data = await r3.read()
        assert r3.status == 200 and r3.headers["Content-Type"] == "application/zip"
        assert hashlib.sha256(data).hexdigest() == r3.headers["X-Archive-SHA256"]
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            assert sorted(z.namelist()) == ["clip.mp4", "incident.json", "manifest.json", "snapshot.jpg"]
            doc = json.loads(z.read("incident.json"))
            manifest = json.loads(z.read("manifest.json"))
            assert z.read("clip.mp4") == whole and z.read("snapshot.jpg") == img
        assert doc["disposition"]["disposition"] == "rectified" and doc["exported"]["by"] == sup.name
        assert manifest["clip.mp4"] == hashlib.sha256(whole).hexdigest()
        (audit,) = await rows(alerts_db, "SELECT * FROM audit WHERE action = 'incident.export'")
        assert audit["target"] == f"incident/{aid}" and audit["details"]["sha256"] == r3.headers["X-Archive-SHA256"]


@pytest.mark.skipif("image" not in Finding.__dataclass_fields__, reason="Finding carries no image yet")
async def test_the_detectors_own_annotated_image_is_the_snapshot(alerts_db: str, mqtt_url: str,
                                                                 tmp_path: Path) -> None:
    cfg = alerts_config(alerts_db, tmp_path, mqtt_url)
    cam = RecordedCamera()
    image = jpeg(42)
    async with serve(cfg, roles=API, evidence=cam) as svc, staff(svc.base, alerts_db, "viewer") as v:
        await svc.submit(make_finding(subject="track-3", image=image))
        await gathered(svc)
        (a,) = await rows(alerts_db, "SELECT id FROM alerts")
        st, got = await v.get(f"/api/v1/incidents/{a['id']}/snapshot.jpg")
        assert st == 200 and got == image and cam.snapshots == []


@pytest.mark.parametrize(
    ("source", "snapshot", "clip"),
    [
        (None, "failed", "failed"),  # no video in this process: tried, then given up, recorded
        (RecordedCamera(ring_holds=False), "ready", "unavailable"),  # the ring no longer holds the time
        (RecordedCamera(has_frame=False), "failed", "ready"),
    ],
)
async def test_evidence_that_cannot_be_had_is_recorded_and_never_blocks_the_alert(
    alerts_db: str, mqtt_url: str, tmp_path: Path, source: RecordedCamera | None, snapshot: str, clip: str
) -> None:
    cfg = alerts_config(alerts_db, tmp_path, mqtt_url, evidence_attempts=2)
    async with serve(cfg, roles=API, evidence=source) as svc, staff(svc.base, alerts_db, "viewer") as v:
        await svc.submit(make_finding(subject="track-1"))
        (a,) = await rows(alerts_db, "SELECT id, state FROM alerts")  # the alert is there at once
        assert a["state"] == "open"
        await gathered(svc)
        ev = {r["kind"]: r for r in await rows(alerts_db, "SELECT * FROM evidence WHERE alert_id = %s", a["id"])}
        assert (ev["snapshot"]["status"], ev["clip"]["status"]) == (snapshot, clip)
        for kind in ("snapshot", "clip"):
            if ev[kind]["status"] != "ready":
                assert ev[kind]["error"]
                name = "snapshot.jpg" if kind == "snapshot" else "clip.mp4"
                st, body = await v.get(f"/api/v1/incidents/{a['id']}/{name}")
                assert st == 404 and body["error"]["code"] == f"evidence_{ev[kind]['status']}"


async def test_correlated_alert_gets_scale_trace_and_scans(alerts_db: str, mqtt_url: str, tmp_path: Path) -> None:
    cfg = alerts_config(alerts_db, tmp_path, mqtt_url, trace_window_s=600)
    now = datetime.now(UTC).replace(microsecond=0)  # recent: the series part prunes old raw readings
    fill_start, fill_end = now - timedelta(seconds=300), now - timedelta(seconds=240)
    async with await psycopg.AsyncConnection.connect(alerts_db, autocommit=True) as conn:
        for i in range(0, 90, 5):
            for scale in ("s1", "s2"):
                await conn.execute(
                    """INSERT INTO scale_readings (ts, site_id, scale_id, gross_kg, gun_open, cylinder, received_at)
                       VALUES (%s, 'st-minwang', %s, %s, %s, 'CYL000777', now())""",
                    (fill_start + timedelta(seconds=i - 10), scale, 15.0 + i * 0.2, 0 <= i - 10 <= 60))
        await conn.execute(
            """INSERT INTO scans (ts, id, cylinder, site_id, step, operator, validity)
               VALUES (%s, 'scan-1', 'CYL000777', 'st-minwang', 'prefill_check', 'w1', 'valid'),
                      (%s, 'scan-2', 'CYL000999', 'st-minwang', 'prefill_check', 'w1', 'valid')""",
            (fill_start - timedelta(seconds=30), fill_start - timedelta(seconds=20)))
    async with serve(cfg, roles=API, clock=ManualClock(now)) as svc, staff(svc.base, alerts_db, "viewer") as v:
        await svc.submit(make_finding("overfill", source="s1", subject="CYL000777", ts=now, details={
            "scale": "s1", "fill_start": fill_start.isoformat(), "fill_end": fill_end.isoformat(),
            "net_kg": 15.9, "rated_kg": 15.0}))
        await gathered(svc)
        (a,) = await rows(alerts_db, "SELECT id FROM alerts")
        st, body = await v.get(f"/api/v1/incidents/{a['id']}")
        assert st == 200
        ev = body["incident"]["evidence"]
        assert set(ev) == {"scale_trace", "scans"}  # a scale, not a camera: no snapshot or clip
        trace = ev["scale_trace"]
        assert trace["status"] == "ready"
        readings = trace["data"]["readings"]
        assert {r["scale"] for r in readings} == {"s1"} and len(readings) == 18
        assert [r["id"] for r in ev["scans"]["data"]["scans"]] == ["scan-1"]


def test_evidence_plan_by_rule(tmp_path: Path) -> None:
    cfg = alerts_config("postgresql://unused/x", tmp_path, mqtt="")
    kinds = {
        rule: [p.kind for p in plan_evidence(make_finding(rule, source=src, subject=subj), cfg)]
        for rule, src, subj in [
            ("antistatic_skipped", "st-minwang-entry", "track-1"),
            ("antistatic_during_fill", "st-minwang-entry", "track-1"),
            ("storage_over_capacity", "st-minwang-store", "storage"),
            ("overfill", "s1", "CYL1"),
            ("fill_without_scan", "s2", "CYL1"),
            ("invalid_cylinder", "scan-app", "CYL1"),
            ("device_silent", "s3", "s3"),
            ("lock_unconfirmed", "g1", "g1"),
        ]
    }
    assert kinds == {
        "antistatic_skipped": ["snapshot", "clip"],
        "antistatic_during_fill": ["snapshot", "clip", "scale_trace"],
        "storage_over_capacity": ["snapshot", "clip"],
        "overfill": ["scale_trace", "scans"],
        "fill_without_scan": ["scale_trace", "scans"],
        "invalid_cylinder": ["scans"],
        "device_silent": [],
        "lock_unconfirmed": [],
    }


@pytest.mark.parametrize(
    ("details", "labels"),
    [
        (BOXES, [("#7", True), ("#8", False)]),
        ({"box": [10, 20, 50, 90], "track": 3}, [("#3", True)]),
        ({"boxes": [{"xyxy": [0.1, 0.1, 0.2, 0.2], "cls": "cylinder", "conf": 0.91}]}, [("cylinder 0.91", False)]),
        ({"boxes": [[0.1, 0.1, 0.2, 0.2]], "track": 1}, [("", False)]),
        ({"boxes": [{"box": "junk"}, {"box": [0.5, 0.5, 0.1, 0.1]}], "count": 3}, []),
        ({}, []),
    ],
)
def test_boxes_are_read_defensively(details: dict[str, object], labels: list[tuple[str, bool]]) -> None:
    assert [(b.label, b.highlight) for b in boxes_from_details(details)] == labels


async def test_pending_evidence_left_by_a_restart_is_claimed_once(alerts_db: str, mqtt_url: str,
                                                                  tmp_path: Path) -> None:
    cfg = alerts_config(alerts_db, tmp_path, mqtt_url)
    async with serve(cfg, roles=API) as svc:
        await svc.submit(make_finding("invalid_cylinder", source="app", subject="CYL000555"))
        await gathered(svc)
        (a,) = await rows(alerts_db, "SELECT id FROM alerts")
        async with await psycopg.AsyncConnection.connect(alerts_db, autocommit=True) as conn:
            # as if the process had died before gathering: pending, untouched for ten minutes
            await conn.execute("""UPDATE evidence SET status = 'pending', updated_at = now() - interval '10 min'
                                  WHERE alert_id = %s""", (a["id"],))
            cur = await conn.execute(
                """INSERT INTO alerts (rule, severity, site, source, subject, summary, latched, first_seen,
                                       last_seen, opened_at) VALUES ('invalid_cylinder', 'critical', 'st-minwang',
                                       'app', 'CYL000556', 'x', true, now(), now(), now()) RETURNING id""")
            fresh = (await cur.fetchone())[0]  # type: ignore[index]
            await conn.execute("""INSERT INTO evidence (alert_id, kind, request) VALUES (%s, 'scans', %s)""",
                               (fresh, json.dumps({"site": "st-minwang", "cylinders": ["CYL000556"],
                                                   "start": later(-60).isoformat(), "end": later(0).isoformat()})))
        gatherer = svc.svc.gatherer
        assert await gatherer.sweep() == 1  # the stale row; not the fresh one (someone may be on it)
        await gathered(svc)
        assert await gatherer.sweep() == 0
        st = {r["alert_id"]: r["status"] for r in await rows(alerts_db, "SELECT alert_id, status FROM evidence")}
        assert st == {a["id"]: "ready", fresh: "pending"}
