"""The wallboard's server side: map state, counts, hour buckets (pure), and the routes on the real service."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import psycopg
import pytest
from psycopg.rows import dict_row

from monitor.config import SiteConfig
from monitor.errors import InputError
from monitor.store.audit import Actor
from monitor.web import auth
from monitor.web.overview import (
    SiteCounts,
    Tallies,
    dense_series,
    hour_buckets,
    parse_hours,
    site_counts,
    site_state,
    wallboard_version,
)
from tests.conftest import city_config, running_service


@pytest.mark.parametrize(("counts", "state"), [
    (SiteCounts(), "ok"),
    (SiteCounts(cameras_offline=1), "offline"),
    (SiteCounts(alerts_open=2, cameras_offline=1), "warning"),
    (SiteCounts(alerts_open=1, guns_locked=1), "locked"),
    (SiteCounts(alerts_open=1, alerts_critical=1, guns_locked=3, cameras_offline=2), "critical"),
])
def test_site_state_most_urgent_first(counts: SiteCounts, state: str) -> None:
    assert site_state(counts) == state


def test_wallboard_version_changes_with_its_files(tmp_path: Path) -> None:
    (tmp_path / "a.js").write_text("1")
    v1 = wallboard_version(tmp_path)
    assert wallboard_version(tmp_path) == v1
    (tmp_path / "a.js").write_text("12")
    assert wallboard_version(tmp_path) != v1


def test_site_counts_only_its_own_cameras() -> None:
    site = SiteConfig.model_validate({
        "id": "st-a", "kind": "station", "storage_capacity": 10, "guns": ["g1"],
        "cameras": [{"id": "cam-1", "url": "rtsp://x/1"}, {"id": "cam-2", "url": "rtsp://x/2"}],
    })
    t = Tallies(alerts_open={"st-a": 2}, alerts_critical={}, guns_locked={"st-b": 1},
                camera_states={"cam-1": "offline", "cam-2": "online", "cam-9": "offline"})
    assert site_counts(site, t) == SiteCounts(alerts_open=2, cameras_offline=1)


@pytest.mark.parametrize(("now", "hours", "first", "last"), [
    (datetime(2024, 5, 1, 13, 59, 59, tzinfo=UTC), 3, datetime(2024, 5, 1, 11, tzinfo=UTC), datetime(2024, 5, 1, 13, tzinfo=UTC)),
    (datetime(2024, 5, 1, 0, 0, 0, tzinfo=UTC), 1, datetime(2024, 5, 1, 0, tzinfo=UTC), datetime(2024, 5, 1, 0, tzinfo=UTC)),
])
def test_hour_buckets(now: datetime, hours: int, first: datetime, last: datetime) -> None:
    b = hour_buckets(now, hours)
    assert (len(b), b[0], b[-1]) == (hours, first, last)


def test_dense_series_fills_gaps_and_ignores_others() -> None:
    buckets = hour_buckets(datetime(2024, 5, 1, 12, 30, tzinfo=UTC), 3)
    rows = [("a", buckets[0], 4), ("a", buckets[2], 1), ("b", buckets[1], 2),
            ("zz", buckets[1], 9), ("a", buckets[0] - timedelta(hours=1), 7)]
    assert dense_series(rows, ["a", "b", "c"], buckets) == {"a": [4, 0, 1], "b": [0, 2, 0], "c": [0, 0, 0]}


@pytest.mark.parametrize(("raw", "ok"), [(None, 24), ("", 24), ("1", 1), ("336", 336), ("0", None), ("337", None),
                                         ("x", None), ("1.5", None)])
def test_parse_hours(raw: str | None, ok: int | None) -> None:
    if ok is None:
        with pytest.raises(InputError) as e:
            parse_hours(raw)
        assert e.value.field == "hours"
    else:
        assert parse_hours(raw) == ok


async def _user(db: str, name: str, role: str) -> None:
    async with await psycopg.AsyncConnection.connect(db, row_factory=dict_row) as conn:
        try:
            await auth.add_user(conn, Actor.system("test"), name, role, "overview-pass-1")
        except Exception as e:
            if "exists" not in str(e):
                raise


async def test_routes_on_the_real_service(session_db: str, mqtt_url: str) -> None:
    cfg = city_config(session_db, mqtt_url)
    await _user(session_db, "ov-viewer", "viewer")
    async with running_service(cfg) as base, aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        r = await http.get(f"{base}/api/v1/sites")
        assert r.status == 401
        r = await http.post(f"{base}/api/v1/login", json={"username": "ov-viewer", "password": "overview-pass-1"})
        assert r.status == 200
        # a fill in the current hour at the first station shows in its chart
        station = next(s for s in cfg.sites if s.kind == "station")
        now = datetime.now(UTC)
        async with await psycopg.AsyncConnection.connect(session_db, row_factory=dict_row) as conn:
            await conn.execute(
                """INSERT INTO fills (started_at, ended_at, site_id, scale_id, gun_id, cylinder, tare_kg, gross_kg,
                   net_kg, readings) VALUES (%s, %s, %s, 's1', 'g1', NULL, 15, 30, 15, 10)
                   ON CONFLICT DO NOTHING""",
                (now, now + timedelta(seconds=1), station.id),
            )
            await conn.commit()
        r = await http.get(f"{base}/api/v1/sites")
        body = await r.json()
        assert r.status == 200 and len(body["sites"]) == len(cfg.sites)
        first = body["sites"][0]
        assert {"id", "kind", "name", "district", "location", "capacity", "guns", "cameras", "counts", "state"} <= set(first)
        assert set(first["counts"]) == {"alerts_open", "alerts_critical", "cameras_offline", "guns_locked"}
        assert first["cameras"][0]["zones"]
        r = await http.get(f"{base}/api/v1/overview")
        ov = await r.json()
        assert ov["timezone"] == "Asia/Shanghai" and ov["counts"]["sites"] == len(cfg.sites)
        assert len(ov["wallboard_version"]) == 16
        assert ov["counts"]["guns"] == sum(len(s.guns) for s in cfg.sites)
        r = await http.get(f"{base}/api/v1/charts/fills", params={"hours": "6"})
        fills = await r.json()
        assert len(fills["hours"]) == 6
        mine = next(s for s in fills["stations"] if s["site"] == station.id)
        assert mine["counts"][-1] >= 1
        r = await http.get(f"{base}/api/v1/charts/stock")
        stock = await r.json()
        assert {o["site"] for o in stock["outlets"]} == {s.id for s in cfg.sites if s.kind == "outlet"}
        # bad input: the field named, 4xx
        for params, field in [({"hours": "0"}, "hours"), ({"site": "nope"}, "site"), ({"site": station.id}, None)]:
            path = "fills" if "hours" in params else "stock"
            r = await http.get(f"{base}/api/v1/charts/{path}", params=params)
            err = (await r.json())["error"]
            assert r.status in (404, 422) and err["field"] == (field or "site")
