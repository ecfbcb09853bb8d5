"""The values of control: a gun's identity, its desired/reported state, and the MQTT payloads.

Topics (DESIGN.md, "MQTT"), under the configured prefix:

- ``{prefix}/{site}/gun/{gun}/desired``   centre → device, retained, QoS 1:
  ``{"locked", "version", "reason", "ts"}``
- ``{prefix}/{site}/gun/{gun}/reported``  device → centre, retained, QoS 1:
  ``{"locked", "version", "ts"}``
- ``{prefix}/{site}/gun/{gun}/authorize`` and ``.../authorize/reply``:
  ``{"request_id", "cylinder"}`` → ``{"request_id", "allow", "reason", "message"}``

Parsing never raises anything but ``InputError`` (with the field), so one malformed
message costs one log line and one event, never a crash.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from monitor.errors import InputError

Command = Literal["requested", "sent", "confirmed", "unconfirmed"]
COMMANDS: tuple[Command, ...] = ("requested", "sent", "confirmed", "unconfirmed")
MAX_VERSION = 2**53 - 1  # exact in every JSON reader
MAX_REASON = 500
MAX_REQUEST_ID = 128
TOPIC_PART_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class GunId(NamedTuple):
    site: str
    gun: str

    def __str__(self) -> str:
        return f"{self.site}/{self.gun}"

    @property
    def target(self) -> str:
        """The audit target of this gun (a station's lock is ``site/{site}``)."""
        return f"site/{self.site}/gun/{self.gun}"


@dataclass(frozen=True)
class Reported:
    """What a device said it holds."""

    locked: bool
    version: int
    ts: datetime | None  # the device's clock
    at: datetime | None = None  # when the centre received it

    def as_json(self) -> dict[str, Any]:
        return {"locked": self.locked, "version": self.version, "ts": _iso(self.ts), "at": _iso(self.at)}


@dataclass(frozen=True)
class GunState:
    """One gun as the centre knows it: desired state, command lifecycle, reported state."""

    site: str
    gun: str
    locked: bool = False
    version: int = 0
    reason: str | None = None
    ref: str | None = None
    actor: str | None = None
    since: datetime | None = None
    command: Command | None = None
    requested_at: datetime | None = None
    sent_at: datetime | None = None
    last_sent_at: datetime | None = None
    sends: int = 0
    confirmed_at: datetime | None = None
    reported: Reported | None = None
    anomaly: dict[str, Any] | None = None
    seq: int = 0

    @property
    def id(self) -> GunId:
        return GunId(self.site, self.gun)

    @property
    def in_effect(self) -> bool:
        """The device reported exactly the desired version (and so the desired state)."""
        r = self.reported
        return r is not None and r.version == self.version and r.locked == self.locked

    @property
    def commanded(self) -> bool:
        """A desired state was ever set (version 0 is the factory state: nothing to send)."""
        return self.version > 0

    def with_(self, **kw: Any) -> GunState:
        return replace(self, **kw)

    def as_json(self) -> dict[str, Any]:
        return {
            "site": self.site, "gun": self.gun,
            "locked": self.locked, "version": self.version, "reason": self.reason, "ref": self.ref,
            "by": self.actor, "since": _iso(self.since),
            "command": self.command, "requested_at": _iso(self.requested_at), "sent_at": _iso(self.sent_at),
            "last_sent_at": _iso(self.last_sent_at), "sends": self.sends, "confirmed_at": _iso(self.confirmed_at),
            "reported": None if self.reported is None else self.reported.as_json(),
            "in_effect": self.in_effect, "anomaly": self.anomaly, "seq": self.seq,
        }

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> GunState:
        """From a ``gun_state`` row (psycopg dict row, or ``row_to_json`` text decoded)."""
        rep = None
        if r.get("reported_version") is not None:
            rep = Reported(
                locked=bool(r["reported_locked"]), version=int(r["reported_version"]),
                ts=_dt(r.get("reported_ts")), at=_dt(r.get("reported_at")),
            )
        anomaly = r.get("anomaly")
        if isinstance(anomaly, str):
            anomaly = json.loads(anomaly)
        command = r.get("command")
        return cls(
            site=r["site_id"], gun=r["gun_id"], locked=bool(r["locked"]), version=int(r["version"]),
            reason=r.get("reason"), ref=r.get("ref"), actor=r.get("actor"), since=_dt(r.get("since")),
            command=command if command in COMMANDS else None,
            requested_at=_dt(r.get("requested_at")), sent_at=_dt(r.get("sent_at")),
            last_sent_at=_dt(r.get("last_sent_at")), sends=int(r.get("sends") or 0),
            confirmed_at=_dt(r.get("confirmed_at")), reported=rep, anomaly=anomaly, seq=int(r.get("seq") or 0),
        )


# --- topics ------------------------------------------------------------------------------

Kind = Literal["desired", "reported", "authorize"]


def topic(prefix: str, gid: GunId, kind: str) -> str:
    return f"{prefix}/{gid.site}/gun/{gid.gun}/{kind}"


def reply_topic(prefix: str, gid: GunId) -> str:
    return f"{prefix}/{gid.site}/gun/{gid.gun}/authorize/reply"


def parse_topic(prefix: str, t: str) -> tuple[GunId, str] | None:
    """``(gun, kind)`` of a gun topic under ``prefix``; None when the topic is not one of ours
    or names a site or gun that is not a valid id."""
    if not t.startswith(prefix + "/"):
        return None
    parts = t[len(prefix) + 1:].split("/")
    if len(parts) < 4 or parts[1] != "gun":
        return None
    site, gun, kind = parts[0], parts[2], "/".join(parts[3:])
    if not TOPIC_PART_RE.match(site) or not TOPIC_PART_RE.match(gun):
        return None
    return GunId(site, gun), kind


# --- payloads ----------------------------------------------------------------------------


def desired_payload(s: GunState, now: datetime) -> bytes:
    return json.dumps(
        {"locked": s.locked, "version": s.version, "reason": s.reason or "", "ts": _iso(now)},
        ensure_ascii=False,
    ).encode()


def _obj(payload: bytes) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"payload is not JSON: {e}", field="payload") from e
    if not isinstance(data, dict):
        raise InputError(f"payload: expected a JSON object, got {type(data).__name__}", field="payload")
    return data


def _version(data: dict[str, Any]) -> int:
    v = data.get("version")
    if isinstance(v, bool) or not isinstance(v, int):
        raise InputError(f"version: expected an integer, got {v!r}", field="version")
    if not 0 <= v <= MAX_VERSION:
        raise InputError(f"version: expected 0..{MAX_VERSION}, got {v}", field="version")
    return v


def _locked(data: dict[str, Any]) -> bool:
    v = data.get("locked")
    if not isinstance(v, bool):
        raise InputError(f"locked: expected true or false, got {v!r}", field="locked")
    return v


def _ts(data: dict[str, Any], required: bool = False) -> datetime | None:
    v = data.get("ts")
    if v is None and not required:
        return None
    if not isinstance(v, str):
        raise InputError(f"ts: expected an ISO 8601 time, got {v!r}", field="ts")
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError as e:
        raise InputError(f"ts: not an ISO 8601 time: {v!r}", field="ts") from e
    if t.tzinfo is None:
        raise InputError(f"ts: needs a UTC offset: {v!r}", field="ts")
    return t.astimezone(UTC)


def parse_report(payload: bytes, at: datetime) -> Reported:
    data = _obj(payload)
    return Reported(locked=_locked(data), version=_version(data), ts=_ts(data), at=at)


@dataclass(frozen=True)
class Desired:
    locked: bool
    version: int
    reason: str
    ts: datetime | None


def parse_desired(payload: bytes) -> Desired:
    data = _obj(payload)
    reason = data.get("reason") or ""
    return Desired(_locked(data), _version(data), reason if isinstance(reason, str) else str(reason), _ts(data))


@dataclass(frozen=True)
class AuthRequest:
    request_id: str | None
    cylinder: Any  # checked by the interlock, which answers a malformed code with a reason


def parse_auth_request(payload: bytes) -> AuthRequest:
    """The request; ``InputError`` when it is not even an object with a usable request id."""
    data = _obj(payload)
    rid = data.get("request_id")
    if isinstance(rid, int) and not isinstance(rid, bool):
        rid = str(rid)
    if not isinstance(rid, str) or not 0 < len(rid) <= MAX_REQUEST_ID:
        raise InputError(f"request_id: expected a string of 1..{MAX_REQUEST_ID} characters, got {rid!r}",
                         field="request_id")
    return AuthRequest(rid, data.get("cylinder"))


def reply_payload(request_id: str | None, allow: bool, reason: str, message: str) -> bytes:
    return json.dumps(
        {"request_id": request_id, "allow": allow, "reason": reason, "message": message}, ensure_ascii=False
    ).encode()


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat()


def _dt(v: Any) -> datetime | None:
    if v is None:
        return None
    if isinstance(v, datetime):
        return v.astimezone(UTC)
    t = datetime.fromisoformat(str(v))
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC)
