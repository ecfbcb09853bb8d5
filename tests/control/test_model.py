"""Topics and payloads of the MQTT contract: parsing is exact, errors name the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from monitor.control.model import (
    GunId,
    GunState,
    Reported,
    desired_payload,
    parse_auth_request,
    parse_desired,
    parse_report,
    parse_topic,
    reply_payload,
    topic,
)
from monitor.errors import InputError

NOW = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("t", "want"),
    [
        ("lpg/st-a/gun/g1/reported", (GunId("st-a", "g1"), "reported")),
        ("lpg/st-a/gun/g1/desired", (GunId("st-a", "g1"), "desired")),
        ("lpg/st-a/gun/g1/authorize", (GunId("st-a", "g1"), "authorize")),
        ("lpg/st-a/gun/g1/authorize/reply", (GunId("st-a", "g1"), "authorize/reply")),
        ("lpg/st-a/scale/s1/reading", None),
        ("other/st-a/gun/g1/reported", None),
        ("lpg/ST-A/gun/g1/reported", None),
        ("lpg/st-a/gun/../reported", None),
        ("lpg/st-a/gun/g1", None),
        ("lpgx/st-a/gun/g1/reported", None),
    ],
)
def test_parse_topic(t: str, want: tuple[GunId, str] | None) -> None:
    assert parse_topic("lpg", t) == want


def test_topic_round_trip() -> None:
    g = GunId("st-a", "g2")
    assert parse_topic("t/x", topic("t/x", g, "reported")) == (g, "reported")


@pytest.mark.parametrize(
    ("payload", "want"),
    [
        (b'{"locked": true, "version": 3, "ts": "2026-05-01T08:00:00Z"}', Reported(True, 3, NOW, NOW)),
        (b'{"locked": false, "version": 0}', Reported(False, 0, None, NOW)),
        (b'{"locked": true, "version": 3, "ts": "2026-05-01T16:00:00+08:00"}', Reported(True, 3, NOW, NOW)),
    ],
)
def test_parse_report(payload: bytes, want: Reported) -> None:
    assert parse_report(payload, NOW) == want


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"", "payload"),
        (b"\xff\xfe", "payload"),
        (b"[]", "payload"),
        (b'{"version": 1}', "locked"),
        (b'{"locked": 1, "version": 1}', "locked"),
        (b'{"locked": true}', "version"),
        (b'{"locked": true, "version": true}', "version"),
        (b'{"locked": true, "version": "2"}', "version"),
        (b'{"locked": true, "version": -1}', "version"),
        (b'{"locked": true, "version": 9007199254740992}', "version"),
        (b'{"locked": true, "version": 1, "ts": "2026-05-01T08:00:00"}', "ts"),
        (b'{"locked": true, "version": 1, "ts": 5}', "ts"),
    ],
)
def test_parse_report_refuses_with_the_field(payload: bytes, field: str) -> None:
    with pytest.raises(InputError) as e:
        parse_report(payload, NOW)
    assert e.value.field == field


def test_desired_payload_is_the_contract() -> None:
    s = GunState("st-a", "g1", locked=True, version=7, reason="告警 12: 未静电释放")
    body = json.loads(desired_payload(s, NOW))
    assert body == {"locked": True, "version": 7, "reason": "告警 12: 未静电释放", "ts": "2026-05-01T08:00:00+00:00"}
    d = parse_desired(desired_payload(s, NOW))
    assert (d.locked, d.version, d.ts) == (True, 7, NOW)


@pytest.mark.parametrize(
    ("payload", "rid", "cyl"),
    [
        (b'{"request_id": "r1", "cylinder": "ABC123"}', "r1", "ABC123"),
        (b'{"request_id": 42, "cylinder": "ABC123"}', "42", "ABC123"),
        (b'{"request_id": "r1"}', "r1", None),
        (b'{"request_id": "r1", "cylinder": 5}', "r1", 5),
    ],
)
def test_parse_auth_request(payload: bytes, rid: str, cyl: object) -> None:
    r = parse_auth_request(payload)
    assert (r.request_id, r.cylinder) == (rid, cyl)


@pytest.mark.parametrize("payload", [b"nope", b"{}", b'{"request_id": ""}', b'{"request_id": null}',
                                     b'{"request_id": true}', b'{"request_id": "' + b"x" * 129 + b'"}'])
def test_parse_auth_request_refuses(payload: bytes) -> None:
    with pytest.raises(InputError):
        parse_auth_request(payload)


def test_reply_payload() -> None:
    assert json.loads(reply_payload("r1", False, "gun_locked", "locked")) == {
        "request_id": "r1", "allow": False, "reason": "gun_locked", "message": "locked"}


def test_state_from_a_notification_row() -> None:
    """The trigger's row_to_json text (timestamps as strings, jsonb as an object)."""
    row = json.loads(json.dumps({
        "site_id": "st-a", "gun_id": "g1", "locked": True, "version": 4, "reason": "r", "ref": "9", "actor": "op",
        "since": "2026-05-01T08:00:00+00:00", "command": "sent", "requested_at": "2026-05-01T08:00:00+00:00",
        "sent_at": "2026-05-01T08:00:00.5+00:00", "last_sent_at": None, "sends": 1, "confirmed_at": None,
        "reported_locked": False, "reported_version": 3, "reported_ts": None, "reported_at": "2026-05-01T16:00:01+08",
        "anomaly": {"kind": "forged_report"}, "seq": 12,
    }))
    s = GunState.from_row(row)
    assert s.id == GunId("st-a", "g1") and s.command == "sent" and s.seq == 12 and s.since == NOW
    assert s.reported == Reported(False, 3, None, datetime(2026, 5, 1, 8, 0, 1, tzinfo=UTC))
    assert not s.in_effect and s.anomaly == {"kind": "forged_report"}
    v = s.as_json()
    assert v["by"] == "op" and v["reported"]["version"] == 3 and v["in_effect"] is False
