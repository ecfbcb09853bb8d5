"""Pure pieces of the ingest: the reading parser, the spool, the public rate limit."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.config import load_config
from monitor.series.ingest import ReadingError, ReadingParser
from monitor.series.model import Fill, Reading, ScanRecord
from monitor.series.spool import Spool, SpoolBusy, SpoolFull, spool_dir_for
from monitor.series.web import RateLimiter

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
PARSER = ReadingParser(load_config(ROOT / "config" / "example-city.yaml"))
T = "lpg/st-minwang/scale/s1/reading"


def body(**kw: object) -> bytes:
    d: dict[str, object] = {"ts": NOW.isoformat(), "gross_kg": 16.2, "gun_open": False, "cylinder": "HK000000001"}
    d.update(kw)
    return json.dumps(d).encode()


@pytest.mark.parametrize(("topic", "payload", "reason"), [
    (T, body(), None),
    (T, body(cylinder=None), None),
    (T, body(gross_kg=0), None),
    (T, body(gross_kg=-1.5), None),  # a little drift below zero is a reading (stored as 0)
    ("other/st-minwang/scale/s1/reading", body(), "topic"),
    ("lpg/st-minwang/scale/s1/weight", body(), "topic"),
    ("lpg/st-minwang/scale/s7/reading", body(), "unknown_scale"),
    ("lpg/ol-qingnian/scale/s1/reading", body(), "unknown_scale"),
    (T, b"{", "bad_payload"),
    (T, b"[]", "bad_payload"),
    (T, body(extra=1), "bad_payload"),
    (T, body(gross_kg=-10), "impossible_weight"),
    (T, body(gross_kg=151), "impossible_weight"),
    (T, body(gross_kg="16"), None),  # JSON number as text: pydantic's lax float
    (T, body(gross_kg="heavy"), "bad_gross_kg"),
    (T, body(gun_open="true"), "bad_gun_open"),
    (T, body(cylinder="hk1"), "bad_cylinder"),
    (T, body(ts="2026-03-01T08:00:00"), "bad_ts"),
    (T, body(ts=(NOW + timedelta(minutes=10)).isoformat()), "future_ts"),
    (T, body(ts=(NOW - timedelta(days=200)).isoformat()), "old_ts"),
])
def test_reading_parser(topic: str, payload: bytes, reason: str | None) -> None:
    if reason is None:
        r = PARSER.parse(topic, payload, NOW)
        assert r.site == "st-minwang" and r.scale == "s1" and r.gross_kg >= 0 and r.received_at == NOW
    else:
        with pytest.raises(ReadingError) as e:
            PARSER.parse(topic, payload, NOW)
        assert e.value.reason == reason


def items() -> list[Reading | ScanRecord | Fill]:
    return [
        Reading(ts=NOW, site="st-a", scale="s1", gross_kg=16.0, gun_open=True, cylinder="HK1", received_at=NOW),
        ScanRecord(id="x1", ts=NOW, cylinder="HK1", site="st-a", step="prefill_check", validity="ok",
                   operator="op", app="a", photos=("p1",)),
        Fill(site="st-a", scale="s1", gun="g1", started_at=NOW, ended_at=NOW + timedelta(seconds=60), tare_kg=16.0,
             gross_kg=31.0, cylinder=None, readings=60, flags=("lifted",)),
    ]


def test_spool_round_trip_in_order_and_bounded(tmp_path: Path) -> None:
    sp = Spool(tmp_path, max_bytes=4000, segment_bytes=500)
    sp.open()
    for _ in range(3):
        sp.append(items())
    segs = sp.pending()
    assert len(segs) >= 2 and segs == sorted(segs)
    back = [x for p in segs for x in sp.read(p)]
    assert len(back) == 9
    assert back[0] == items()[0]
    assert isinstance(back[1], ScanRecord) and back[1].validity == "pending" and back[1].photos == ("p1",)
    assert back[2] == items()[2]
    with pytest.raises(SpoolFull, match="full"):
        for _ in range(20):
            sp.append(items())
    assert sp.stats.refused_full == 3
    for p in sp.pending():
        sp.done(p, 1)
    assert sp.empty and sp.bytes == 0
    sp.close()


def test_spool_survives_a_restart_and_a_torn_line(tmp_path: Path) -> None:
    sp = Spool(tmp_path, max_bytes=1 << 20)
    sp.open()
    sp.append(items())
    sp.close()
    seg = next(tmp_path.glob("*.jsonl"))
    with open(seg, "ab") as f:
        f.write(b'{"k":"r","ts":"2026-')  # a crash mid-append
    again = Spool(tmp_path, max_bytes=1 << 20)
    again.open()
    assert not again.empty
    [p] = again.pending()
    assert len(again.read(p)) == 3 and again.stats.torn == 1
    again.append(items()[:1])  # goes to a new segment, after the old one
    assert [x.name for x in again.pending()] == ["000000000001.jsonl", "000000000002.jsonl"]
    again.close()


def test_rate_limiter_sliding_minute() -> None:
    now = [0.0]
    lim = RateLimiter(3, clock=lambda: now[0], max_clients=2)
    assert [lim.retry_after("a") for _ in range(3)] == [0, 0, 0]
    assert lim.retry_after("a") == pytest.approx(60.0)
    now[0] = 30.0
    assert lim.retry_after("b") == 0 and lim.retry_after("a") == pytest.approx(30.0)
    now[0] = 60.0
    assert lim.retry_after("a") == 0
    lim.retry_after("c")  # a third client: the least recently seen is forgotten
    assert len(lim._seen) == 2


def test_spool_slots_keep_processes_apart_and_a_freed_slot_is_taken_again(tmp_path: Path) -> None:
    a = Spool(tmp_path, max_bytes=1 << 20, slots=True)
    b = Spool(tmp_path, max_bytes=1 << 20, slots=True)
    a.open()
    b.open()  # a second process on this host: its own slot, never a's files
    assert (a.dir, b.dir) == (tmp_path / "0", tmp_path / "1")
    a.append(items())
    assert b.empty and not a.empty
    a.close()  # a's process ends (a crash drops the flock the same way)
    c = Spool(tmp_path, max_bytes=1 << 20, slots=True)
    c.open()
    assert c.dir == tmp_path / "0" and len(c.pending()) == 1  # what a left is flushed by the next taker
    with pytest.raises(SpoolBusy, match="held by another running process"):
        Spool(tmp_path / "1", max_bytes=1 << 20).open()
    b.close()
    c.close()


def test_spool_folder_is_named_after_the_database_and_the_roles() -> None:
    d = spool_dir_for("var/spool", "postgresql://postgres@127.0.0.1:5433/monitor_demo", {"control", "api"})
    assert d == Path("var/spool/monitor_demo@127.0.0.1-5433/api-control")
    other = spool_dir_for("var/spool", "host=/run/postgresql dbname=test", {"api"})
    assert other == Path("var/spool/test@_run_postgresql-5432/api")
