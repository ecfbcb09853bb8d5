"""The alerts API on the real service: lifecycle over HTTP and WebSocket, roles, precise
errors, pagination, silences and maintenance, the audit trail, restarts, operators' load."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp

from monitor.alerts.clock import ManualClock
from tests.alerts.conftest import T0, alerts_config, later, make_finding, rows, serve, staff, ws_until

API = frozenset({"api"})


async def test_lifecycle_over_http_and_the_websocket(alerts_db: str, mqtt_url: str, tmp_path: Path) -> None:
    cfg = alerts_config(alerts_db, tmp_path, mqtt_url)
    async with serve(cfg, roles=API) as svc, staff(svc.base, alerts_db, "viewer") as viewer, \
            staff(svc.base, alerts_db, "operator") as op, staff(svc.base, alerts_db, "supervisor") as sup:
        await svc.submit(make_finding(subject="track-1"))
        async with viewer.http.ws_connect(f"{svc.base}/api/v1/ws", origin=svc.base) as ws:
            await ws.receive_json(timeout=5)  # hello
            await ws.send_json({"op": "subscribe", "topics": ["alerts"]})
            snap = await ws_until(ws, lambda m: m.get("type") == "snapshot")
            assert [a["subject"] for a in snap["alerts"]] == ["track-1"]
            await svc.submit(make_finding("fill_without_scan", source="s1", subject="CYL42"))
            ev = await ws_until(ws, lambda m: m.get("type") == "alert" and m["change"] == "raised")
            a = ev["alert"]
            assert a["rule"] == "fill_without_scan" and a["severity"] == "critical" and a["state"] == "open"
            assert set(a) >= {"id", "rule", "severity", "state", "site", "source", "subject", "first_seen",
                              "last_seen", "count", "summary"}
            assert ev["notify"] is True
            st, body = await op.post(f"/api/v1/alerts/{a['id']}/ack", {"note": "calling the station"})
            assert st == 200 and body["alert"]["state"] == "acknowledged" and body["alert"]["acked_by"] == op.name
            ev = await ws_until(ws, lambda m: m.get("type") == "alert" and m["change"] == "acknowledged")
            assert ev["alert"]["id"] == a["id"]
            st, body = await sup.post(f"/api/v1/alerts/{a['id']}/close",
                                      {"disposition": "confirmed_violation", "note": "filled an unscanned cylinder"})
            assert st == 200 and body["alert"]["state"] == "closed"
            ev = await ws_until(ws, lambda m: m.get("type") == "alert" and m["change"] == "closed")
            assert ev["alert"]["disposition"] == "confirmed_violation"
        st, body = await viewer.get(f"/api/v1/alerts/{a['id']}")
        assert st == 200 and body["alert"]["close_note"] == "filled an unscanned cylinder"
        assert [f["subject"] for f in body["findings"]] == ["CYL42"]
        st, body = await sup.get(f"/api/v1/audit?target=alert/{a['id']}")
        assert st == 200 and [r["action"] for r in body["audit"]] == ["alert.close", "alert.ack"]
        assert body["audit"][1]["reason"] == "calling the station" and body["audit"][1]["role"] == "operator"


async def test_actions_by_role_and_state(alerts_db: str, mqtt_url: str, tmp_path: Path) -> None:
    """Table: who may do what to an alert in which state (HTTP status, and the state after)."""
    cfg = alerts_config(alerts_db, tmp_path, mqtt_url)
    close = {"disposition": "false_alarm", "note": "a reflection"}
    table: list[tuple[str, str, str, dict[str, Any] | None, int, str]] = [
        # role, state before, action, body, status, state after
        ("viewer", "open", "ack", None, 403, "open"),
        ("operator", "open", "ack", None, 200, "acknowledged"),
        ("supervisor", "open", "ack", {"note": "seen"}, 200, "acknowledged"),
        ("admin", "open", "ack", None, 200, "acknowledged"),
        ("operator", "acknowledged", "ack", None, 409, "acknowledged"),
        ("operator", "closed", "ack", None, 409, "closed"),
        ("viewer", "open", "close", close, 403, "open"),
        ("operator", "acknowledged", "close", close, 403, "acknowledged"),
        ("supervisor", "open", "close", close, 200, "closed"),
        ("supervisor", "acknowledged", "close", close, 200, "closed"),
        ("admin", "acknowledged", "close", close, 200, "closed"),
        ("supervisor", "closed", "close", close, 409, "closed"),
    ]
    async with serve(cfg, roles=API) as svc, contextlib.AsyncExitStack() as stack:
        people = {}
        for role in ("viewer", "operator", "supervisor", "admin"):
            people[role] = await stack.enter_async_context(staff(svc.base, alerts_db, role))
        for i, (role, before, action, body, status, after) in enumerate(table):
            await svc.submit(make_finding(subject=f"row-{i}"))
            (a,) = await rows(alerts_db, "SELECT id FROM alerts WHERE subject = %s", f"row-{i}")
            aid = a["id"]
            if before in ("acknowledged", "closed"):
                assert (await people["operator"].post(f"/api/v1/alerts/{aid}/ack"))[0] == 200
            if before == "closed":
                assert (await people["supervisor"].post(f"/api/v1/alerts/{aid}/close", close))[0] == 200
            audit_before = len(await rows(alerts_db, "SELECT id FROM audit WHERE target = %s", f"alert/{aid}"))
            st, resp = await people[role].post(f"/api/v1/alerts/{aid}/{action}", body)
            where = f"row {i}: {role} {action} on {before}"
            assert st == status, (where, resp)
            (now,) = await rows(alerts_db, "SELECT state FROM alerts WHERE id = %s", aid)
            assert now["state"] == after, where
            audit_after = len(await rows(alerts_db, "SELECT id FROM audit WHERE target = %s", f"alert/{aid}"))
            assert audit_after == audit_before + (1 if status == 200 else 0), where
            if status == 409:
                assert resp["error"]["code"] == "invalid_transition" and resp["error"]["state"] == before
            if status == 403:
                assert resp["error"]["code"] == "forbidden"


async def test_bad_input_is_refused_precisely_and_changes_nothing(
    alerts_db: str, mqtt_url: str, tmp_path: Path
) -> None:
    cfg = alerts_config(alerts_db, tmp_path, mqtt_url)
    async with serve(cfg, roles=API) as svc, staff(svc.base, alerts_db, "supervisor") as sup:
        await svc.submit(make_finding())
        (a,) = await rows(alerts_db, "SELECT id, rev FROM alerts")
        aid = a["id"]
        cases: list[tuple[str, str, Any, int, str, str | None]] = [
            # method, path, body, status, error code, field
            ("POST", f"/api/v1/alerts/{aid}/close", {"disposition": "rectified"}, 422, "invalid_input", "note"),
            ("POST", f"/api/v1/alerts/{aid}/close", {"disposition": "rectified", "note": "  "}, 422,
             "invalid_input", "note"),
            ("POST", f"/api/v1/alerts/{aid}/close", {"disposition": "fixed", "note": "x"}, 422, "invalid_input",
             "disposition"),
            ("POST", f"/api/v1/alerts/{aid}/close", {"disposition": "rectified", "note": "x", "by": "me"}, 422,
             "invalid_input", "by"),
            ("POST", f"/api/v1/alerts/{aid}/ack", {"note": "x" * 2001}, 422, "invalid_input", "note"),
            ("POST", f"/api/v1/alerts/{aid + 1000}/ack", None, 404, "not_found", "id"),
            ("GET", "/api/v1/alerts?state=opened", None, 422, "invalid_input", "state"),
            ("GET", "/api/v1/alerts?rule=speeding", None, 422, "invalid_input", "rule"),
            ("GET", "/api/v1/alerts?since=2024-05-01T08:00:00", None, 422, "invalid_input", "since"),
            ("GET", "/api/v1/alerts?since=yesterday", None, 422, "invalid_input", "since"),
            ("GET", "/api/v1/alerts?cursor=bm90LWEtY3Vyc29y", None, 422, "invalid_input", "cursor"),
            ("GET", "/api/v1/alerts?limit=0", None, 422, "invalid_input", "limit"),
            ("GET", "/api/v1/audit?since=2024-05-02T00:00:00Z&until=2024-05-01T00:00:00Z", None, 422,
             "invalid_input", "since"),
            ("GET", "/api/v1/alerts/stats?since=2024-01-01T00:00:00Z&until=2024-05-01T00:00:00Z", None, 422,
             "invalid_input", "since"),
        ]
        for method, path, body, status, code, field in cases:
            st, resp = await sup.call(method, path, body)
            assert st == status and resp["error"]["code"] == code, (path, body, resp)
            assert resp["error"].get("field") == field, (path, body, resp)
        st, resp = await sup.call("POST", f"/api/v1/alerts/{aid}/ack", None, data=b"{no json",
                                  headers={"Content-Type": "application/json"})
        assert st == 422 and resp["error"]["code"] == "invalid_json"
        r = await sup.http.post(f"{svc.base}/api/v1/alerts/{aid}/ack")  # no CSRF token
        assert r.status == 403 and (await r.json())["error"]["code"] == "csrf"
        async with aiohttp.ClientSession() as anon:
            r = await anon.get(f"{svc.base}/api/v1/alerts")
            assert r.status == 401 and (await r.json())["error"]["code"] == "unauthorized"
        (after,) = await rows(alerts_db, "SELECT id, rev FROM alerts")
        assert after == a
        assert await rows(alerts_db, "SELECT * FROM audit WHERE target = %s", f"alert/{aid}") == []


async def test_pagination_and_filters(alerts_db: str, mqtt_url: str, tmp_path: Path) -> None:
    cfg = alerts_config(alerts_db, tmp_path, mqtt_url)
    async with serve(cfg, roles=API) as svc, staff(svc.base, alerts_db, "viewer") as viewer:
        fs = [make_finding(subject=f"t{i}", ts=later(i)) for i in range(5)]  # warning
        fs += [make_finding("overfill", source="s1", subject=f"C{i}", ts=later(10 + i)) for i in range(3)]  # critical
        fs.append(make_finding("camera_offline", site="ol-qingnian", source="ol-qingnian-store",
                               subject="ol-qingnian-store", ts=later(30)))
        await svc.submit(*fs)
        seen: list[str] = []
        url = "/api/v1/alerts?limit=3"
        pages = 0
        while url:
            st, body = await viewer.get(url)
            assert st == 200 and len(body["alerts"]) <= 3
            seen += [a["subject"] for a in body["alerts"]]
            pages += 1
            url = f"/api/v1/alerts?limit=3&cursor={body['next']}" if body["next"] else ""
        assert pages == 3
        # most severe first, then newest
        assert seen == ["C2", "C1", "C0", "ol-qingnian-store", "t4", "t3", "t2", "t1", "t0"]
        st, body = await viewer.get("/api/v1/alerts?site=ol-qingnian")
        assert [a["rule"] for a in body["alerts"]] == ["camera_offline"]
        st, body = await viewer.get("/api/v1/alerts?rule=overfill,camera_offline&limit=10")
        assert len(body["alerts"]) == 4 and body["next"] is None
        st, body = await viewer.get("/api/v1/alerts?since=" + later(12).isoformat().replace("+", "%2B"))
        assert {a["subject"] for a in body["alerts"]} == {"C2", "ol-qingnian-store"}
        st, body = await viewer.get("/api/v1/alerts?state=acknowledged")
        assert body == {"alerts": [], "next": None}


async def test_silences_and_maintenance_crud_audited(alerts_db: str, mqtt_url: str, tmp_path: Path) -> None:
    cfg = alerts_config(alerts_db, tmp_path, mqtt_url)
    clock = ManualClock(T0)
    async with serve(cfg, roles=API, clock=clock) as svc, staff(svc.base, alerts_db, "supervisor") as sup, \
            staff(svc.base, alerts_db, "operator") as op:
        body = {"site": "st-minwang", "rule": "antistatic_skipped", "duration_s": 600, "reason": "drill today"}
        assert (await op.post("/api/v1/silences", body))[0] == 403
        for bad, field in [({**body, "rule": "speeding"}, "rule"), ({**body, "site": "st-nowhere"}, "site"),
                           ({**body, "reason": ""}, "reason"), ({**body, "expires_at": later(60).isoformat()}, None),
                           ({k: v for k, v in body.items() if k != "duration_s"}, None),
                           ({**body, "duration_s": 40 * 86400}, "duration_s")]:
            st, resp = await sup.post("/api/v1/silences", bad)
            assert st == 422 and resp["error"].get("field") == field, (bad, resp)
        st, resp = await sup.post("/api/v1/silences", body)
        assert st == 201
        sid = resp["silence"]["id"]
        assert resp["silence"]["expires_at"] == later(600).isoformat()
        await svc.submit(make_finding(subject="track-s"))
        (a,) = await rows(alerts_db, "SELECT silenced FROM alerts WHERE subject = 'track-s'")
        assert a["silenced"] is True
        st, resp = await op.get("/api/v1/silences")
        assert st == 200 and [s["id"] for s in resp["silences"]] == [sid]
        st, resp = await sup.call("PATCH", f"/api/v1/silences/{sid}", {"duration_s": 1200, "reason": "longer drill"})
        assert st == 200 and resp["silence"]["expires_at"] == later(1200).isoformat()
        st, resp = await sup.call("PATCH", f"/api/v1/silences/{sid}", {})
        assert st == 422
        st, resp = await sup.call("DELETE", f"/api/v1/silences/{sid}", {"reason": "drill over"})
        assert st == 200 and resp["silence"]["lifted_by"] == sup.name
        st, resp = await sup.call("DELETE", f"/api/v1/silences/{sid}")
        assert st == 409
        st, resp = await sup.call("DELETE", "/api/v1/silences/999999")
        assert st == 404
        await svc.submit(make_finding(subject="track-t"))
        (a,) = await rows(alerts_db, "SELECT silenced FROM alerts WHERE subject = 'track-t'")
        assert a["silenced"] is False
        # maintenance: a whole site
        st, resp = await sup.post("/api/v1/maintenance", {"site": "ol-qingnian", "duration_s": 3600,
                                                          "reason": "camera replacement"})
        assert st == 201
        mid = resp["maintenance"]["id"]
        await svc.submit(make_finding("camera_offline", site="ol-qingnian", source="ol-qingnian-store",
                                      subject="ol-qingnian-store"))
        (a,) = await rows(alerts_db, "SELECT silenced FROM alerts WHERE rule = 'camera_offline'")
        assert a["silenced"] is True
        st, resp = await sup.call("DELETE", f"/api/v1/maintenance/{mid}")
        assert st == 200 and resp["maintenance"]["ended_by"] == sup.name
        actions = [r["action"] for r in await rows(
            alerts_db, "SELECT action FROM audit WHERE target IN (%s, %s) ORDER BY id", f"silence/{sid}",
            f"maintenance/{mid}")]
        assert actions == ["silence.add", "silence.update", "silence.lift", "maintenance.add", "maintenance.end"]


async def test_a_restart_of_the_service_keeps_every_alert(alerts_db: str, mqtt_url: str, tmp_path: Path) -> None:
    cfg = alerts_config(alerts_db, tmp_path, mqtt_url)
    async with serve(cfg, roles=API) as svc, staff(svc.base, alerts_db, "operator") as op:
        await svc.submit(*(make_finding(subject=f"r{i}") for i in range(3)))
        st, body = await op.get("/api/v1/alerts")
        ids = sorted(a["id"] for a in body["alerts"])
        assert (await op.post(f"/api/v1/alerts/{ids[0]}/ack", {"note": "before restart"}))[0] == 200
        st, before = await op.get("/api/v1/alerts")
    async with serve(cfg, roles=API) as svc, staff(svc.base, alerts_db, "operator") as op:
        st, after = await op.get("/api/v1/alerts")
        assert st == 200 and after == before
        await svc.submit(make_finding(subject="r0"))
        _, body = await op.get(f"/api/v1/alerts/{ids[0]}")
        assert body["alert"]["state"] == "acknowledged" and body["alert"]["count"] == 2
        assert (await op.post(f"/api/v1/alerts/{ids[0]}/ack"))[0] == 409


async def test_audit_trail_for_supervisors_only(alerts_db: str, mqtt_url: str, tmp_path: Path) -> None:
    cfg = alerts_config(alerts_db, tmp_path, mqtt_url)
    async with serve(cfg, roles=API) as svc, staff(svc.base, alerts_db, "supervisor") as sup, \
            staff(svc.base, alerts_db, "operator") as op:
        await svc.submit(*(make_finding(subject=f"a{i}") for i in range(4)))
        st, body = await op.get("/api/v1/alerts")
        for a in body["alerts"]:
            assert (await op.post(f"/api/v1/alerts/{a['id']}/ack"))[0] == 200
        assert (await op.get("/api/v1/audit"))[0] == 403
        st, body = await sup.get("/api/v1/audit?action=alert.ack&limit=3")
        assert st == 200 and len(body["audit"]) == 3 and body["next"]
        st, more = await sup.get(f"/api/v1/audit?action=alert.ack&limit=3&cursor={body['next']}")
        assert len(more["audit"]) == 1 and more["next"] is None
        st, body = await sup.get("/api/v1/audit?action=alert.*")
        assert {r["action"] for r in body["audit"]} == {"alert.ack"}
        st, body = await sup.get(f"/api/v1/audit?actor={op.name}&action=login")
        assert len(body["audit"]) == 1


async def test_operator_load_per_hour_flags_the_guideline(alerts_db: str, mqtt_url: str, tmp_path: Path) -> None:
    cfg = alerts_config(alerts_db, tmp_path, mqtt_url)
    clock = ManualClock(T0)
    async with serve(cfg, roles=API, clock=clock) as svc, staff(svc.base, alerts_db, "operator", "op-a") as a, \
            staff(svc.base, alerts_db, "operator", "op-b") as b, staff(svc.base, alerts_db, "viewer") as v:
        # hour 1: 12 alarms, two operators answer: 1 per 10 min each (at the guideline, not over)
        for i in range(12):
            clock.set(later(i * 300))
            await svc.submit(make_finding(subject=f"h1-{i}", ts=clock.now()))
            (row,) = await rows(alerts_db, "SELECT id FROM alerts WHERE subject = %s", f"h1-{i}")
            clock.set(later(i * 300 + 30 + i))
            assert (await (a if i % 2 else b).post(f"/api/v1/alerts/{row['id']}/ack"))[0] == 200
        # hour 2: 9 alarms, one operator: 1.5 per 10 min: over
        for i in range(9):
            clock.set(later(3600 + i * 300))
            await svc.submit(make_finding(subject=f"h2-{i}", ts=clock.now()))
            (row,) = await rows(alerts_db, "SELECT id FROM alerts WHERE subject = %s", f"h2-{i}")
            clock.set(later(3600 + i * 300 + 60))
            assert (await a.post(f"/api/v1/alerts/{row['id']}/ack"))[0] == 200
        clock.set(later(3 * 3600))
        st, rep = await v.get("/api/v1/alerts/stats?since=" + T0.isoformat().replace("+", "%2B"))
        assert st == 200, rep
        hours = rep["hours"]
        assert [(h["raised"], h["operators"], h["over_guideline"]) for h in hours] == [(12, 2, False),
                                                                                        (9, 1, True)]
        assert hours[1]["alarms_per_10min_per_operator"] == 1.5 and rep["over_guideline_hours"] == 1
        ops = {o["operator"]: o for o in rep["operators"]}
        assert ops["op-a"]["acks"] == 6 + 9 and ops["op-b"]["acks"] == 6
        assert ops["op-a"]["hours"][1]["ack_s"]["p50"] == 60.0 and ops["op-a"]["over_guideline_hours"] == 1
        assert ops["op-b"]["hours"][0]["ack_s"]["p50"] == 35.0  # 30 + i for i = 0, 2, 4, 6, 8, 10: median 35
        assert timedelta(seconds=ops["op-b"]["hours"][0]["ack_s"]["mean"]) == timedelta(seconds=35)
