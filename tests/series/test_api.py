"""The scans API and the cylinder look-ups on the real service (PostgreSQL, Mosquitto)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from monitor.config import Config
from tests.conftest import city_config
from tests.series.support import FindingLog, add_cylinders, api_key, count, new_code, service, viewer

ROLES = frozenset({"api", "control"})


def series_config(db: str, mqtt: str, tmp: Path, **corr: Any) -> Config:
    cfg = city_config(db, mqtt)
    c = cfg.rules.correlation.model_copy(update={"spool_dir": str(tmp / "spool"), **corr})
    return cfg.model_copy(update={
        "rules": cfg.rules.model_copy(update={"correlation": c}),
        "server": cfg.server.model_copy(update={"public_rate_per_min": 5}),
        "mqtt": cfg.mqtt.model_copy(update={"client_id": f"t-{uuid.uuid4().hex[:10]}"}),
    })


@dataclass
class Env:
    url: str
    app: web.Application
    db: str
    http: aiohttp.ClientSession
    key: str  # bound to st-minwang
    any_key: str  # not bound to a site
    findings: FindingLog
    codes: dict[str, str]


@pytest.fixture
async def env(session_db: str, mqtt_url: str, tmp_path: Path) -> AsyncIterator[Env]:
    cfg = series_config(session_db, mqtt_url, tmp_path)
    async with service(cfg, roles=ROLES) as (url, app):
        codes = {k: new_code() for k in ("ok", "scrapped", "old", "due", "foreign", "unregistered")}
        await add_cylinders(session_db, [
            {"code": codes["ok"], "owner_site": "st-minwang"},
            {"code": codes["scrapped"], "owner_site": "st-minwang", "status": "scrapped"},
            {"code": codes["old"], "owner_site": "st-minwang", "manufactured": date(2010, 1, 1)},
            {"code": codes["due"], "owner_site": "st-minwang", "manufactured": date(2016, 1, 1)},
            {"code": codes["foreign"], "owner_site": "st-ganghua"},
        ])
        key = await api_key(session_db, "st-minwang")
        any_key = await api_key(session_db, None)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            yield Env(url, app, session_db, http, key, any_key, FindingLog(app), codes)


def scan(code: str, step: str = "prefill_check", site: str = "st-minwang", **kw: Any) -> dict[str, Any]:
    s = {"id": uuid.uuid4().hex, "cylinder": code, "site": site, "step": step,
         "ts": datetime.now(UTC).isoformat(), "operator": "王师傅"}
    s.update(kw)
    return s


async def post(env: Env, body: Any, key: str | None = None) -> tuple[int, dict[str, Any]]:
    async with env.http.post(f"{env.url}/api/v1/scans", json=body,
                             headers={"Authorization": f"Bearer {key or env.key}"}) as r:
        return r.status, await r.json()


async def stored(env: Env, scan_id: str) -> int:
    return await count(env.db, "SELECT count(*) FROM scans WHERE id = %s", scan_id)


async def test_one_scan_stored_once_with_its_validity(env: Env) -> None:
    s = scan(env.codes["ok"])
    status, body = await post(env, s)
    assert status == 200, body
    assert body["stored"] is True and body["duplicate"] is False and body["validity"] == "ok"
    assert body["words"]["zh"]
    status, again = await post(env, s)  # the app retries the upload
    assert status == 200 and again["duplicate"] is True and again["validity"] == "ok"
    assert await stored(env, s["id"]) == 1


@pytest.mark.parametrize(("which", "step", "site", "validity"), [
    ("scrapped", "prefill_check", "st-minwang", "scrapped"),
    ("old", "prefill_check", "st-minwang", "over_age"),
    ("due", "postfill_check", "st-minwang", "inspection_due"),
    ("foreign", "prefill_check", "st-minwang", "foreign"),
    ("unregistered", "outlet_receive", "ol-qingnian", "unregistered"),
])
async def test_invalid_cylinder_answered_and_found(env: Env, which: str, step: str, site: str,
                                                   validity: str) -> None:
    s = scan(env.codes[which], step=step, site=site)
    status, body = await post(env, s, key=env.any_key)
    assert status == 200 and body["validity"] == validity and body["reason"] == validity
    f = await env.findings.wait("invalid_cylinder", subject=env.codes[which])
    assert f.reason == validity and f.details["scan_ids"] == [s["id"]] and f.site == site


def test_foreign_is_only_for_fills() -> None:
    """The foreign check applies to a station's fill scans, not an outlet receiving it."""
    from monitor.series.model import ScanRecord
    from monitor.series.scans import fill_site

    mk = lambda step: ScanRecord("x", datetime.now(UTC), "HK0001", "s", step, "pending")  # noqa: E731
    assert fill_site(mk("prefill_check")) == "s" and fill_site(mk("outlet_receive")) is None


@pytest.mark.parametrize(("change", "status", "field"), [
    ({"colour": "red"}, 422, "colour"),
    ({"cylinder": "hk-lower-1"}, 422, "cylinder"),
    ({"cylinder": 12345678}, 422, "cylinder"),
    ({"id": ""}, 422, "id"),
    ({"step": "refill"}, 422, "step"),
    ({"ts": "2025-01-01T08:00:00"}, 422, "ts"),  # no zone
    ({"ts": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}, 422, "ts"),
    ({"ts": "2019-01-01T08:00:00+08:00"}, 422, "ts"),
    ({"site": "st-nowhere"}, 422, "site"),
    ({"site": "st-ganghua"}, 403, "site"),  # the key is st-minwang's
    ({"step": "outlet_receive"}, 422, "step"),  # an outlet step at a station
    ({"operator": ""}, 422, "operator"),
    ({"photos": "not-a-list"}, 422, "photos"),
    ({"photos": ["x"] * 21}, 422, "photos"),
])
async def test_bad_scan_refused_naming_the_field(env: Env, change: dict[str, Any], status: int,
                                                 field: str) -> None:
    s = scan(env.codes["ok"])
    s.update(change)
    got, body = await post(env, s)
    assert got == status, body
    assert body["error"]["field"] == field, body
    assert await stored(env, str(s["id"])) == 0


@pytest.mark.parametrize(("body", "status"), [
    ("not json", 400), ([1, 2], 422), ({"scans": []}, 422), ({"scans": "x"}, 422),
    ({"scans": [{}], "extra": 1}, 422),
])
async def test_bad_bodies(env: Env, body: Any, status: int) -> None:
    async with env.http.post(f"{env.url}/api/v1/scans", data=body if isinstance(body, str) else None,
                             json=None if isinstance(body, str) else body,
                             headers={"Authorization": f"Bearer {env.key}"}) as r:
        assert r.status in (status, 422 if status == 400 else status)
        assert (await r.json())["error"]["code"]


async def test_batch_stores_the_good_and_reports_the_bad_by_index(env: Env) -> None:
    good1, good2 = scan(env.codes["ok"]), scan(env.codes["scrapped"])
    bad = scan("lowercase-code")
    status, body = await post(env, {"scans": [good1, bad, good2]})
    assert status == 200
    assert body["stored"] == 2 and body["refused"] == 1
    r = body["scans"]
    assert [x["index"] for x in r] == [0, 1, 2]
    assert r[0]["stored"] and r[0]["validity"] == "ok" and r[2]["validity"] == "scrapped"
    assert r[1]["stored"] is False and r[1]["error"]["field"] == "scans.1.cylinder"
    assert await stored(env, good1["id"]) == 1 and await stored(env, good2["id"]) == 1
    assert await stored(env, bad["id"]) == 0
    status, body = await post(env, {"scans": [bad]})
    assert status == 422 and body["error"]["field"] == "scans.0.cylinder"


async def test_scans_need_a_key(env: Env) -> None:
    async with env.http.post(f"{env.url}/api/v1/scans", json=scan(env.codes["ok"])) as r:
        assert r.status == 401
    async with env.http.post(f"{env.url}/api/v1/scans", json=scan(env.codes["ok"]),
                             headers={"Authorization": "Bearer mk_nope"}) as r:
        assert r.status == 401


async def test_public_lookup_plain_words_no_personal_data_and_rate_limit(env: Env) -> None:
    await post(env, scan(env.codes["ok"], operator="张三丰"))
    async with env.http.get(f"{env.url}/api/v1/cylinders/{env.codes['ok']}") as r:
        assert r.status == 200
        body = await r.json()
    assert body["status"] == "ok" and body["registered"] and body["owner"]["site"] == "st-minwang"
    assert body["owner"]["name"] == "海南民旺气站" and body["words"]["en"].startswith("valid")
    assert "张三丰" not in str(body) and "operator" not in str(body)
    async with env.http.get(f"{env.url}/api/v1/cylinders/{env.codes['unregistered']}") as r:
        body = await r.json()
    assert r.status == 200 and body["status"] == "unregistered" and not body["registered"]
    async with env.http.get(f"{env.url}/api/v1/cylinders/bad-code") as r:
        assert r.status == 422 and (await r.json())["error"]["field"] == "code"
    statuses = []
    for _ in range(4):  # the limit is 5 a minute; 3 used above
        async with env.http.get(f"{env.url}/api/v1/cylinders/{env.codes['old']}") as r:
            statuses.append(r.status)
            retry = r.headers.get("Retry-After")
    assert statuses == [200, 200, 429, 429] and retry is not None and int(retry) >= 1


async def test_trace_is_for_staff(env: Env) -> None:
    code = env.codes["ok"]
    s1 = scan(code, ts=(datetime.now(UTC) - timedelta(minutes=5)).isoformat())
    s2 = scan(code, step="postfill_check")
    await post(env, {"scans": [s1, s2]})
    async with env.http.get(f"{env.url}/api/v1/cylinders/{code}/trace") as r:
        assert r.status == 401
    name, pw = await viewer(env.db)
    async with env.http.post(f"{env.url}/api/v1/login", json={"username": name, "password": pw}) as r:
        assert r.status == 200
    async with env.http.get(f"{env.url}/api/v1/cylinders/{code}/trace") as r:
        assert r.status == 200
        body = await r.json()
    assert [e["scan_id"] for e in body["events"] if e["kind"] == "scan"][:2] == [s2["id"], s1["id"]]
    assert body["cylinder"]["owner_site"] == "st-minwang" and body["events"][0]["operator"] == "王师傅"


async def test_health_and_metrics(env: Env) -> None:
    await post(env, scan(env.codes["ok"]))
    async with env.http.get(f"{env.url}/api/v1/series/health") as r:
        assert r.status == 401
    name, pw = await viewer(env.db)
    async with env.http.post(f"{env.url}/api/v1/login", json={"username": name, "password": pw}) as r:
        assert r.status == 200
    async with env.http.get(f"{env.url}/api/v1/series/health") as r:
        body = await r.json()
    assert r.status == 200 and body["series"]["mode"] == "db" and "findings" in body["correlation"]
    async with env.http.get(f"{env.url}/metrics") as r:
        text = await r.text()
    assert 'monitor_series_scans_total{outcome="stored"}' in text
