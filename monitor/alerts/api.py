"""HTTP API of alerts, silences, maintenance windows, incidents, operators' load and audit.

Roles: viewers read alerts, incidents and load; operators acknowledge; supervisors close,
silence, set maintenance windows, export incidents and read the audit trail. Bad input
is a 422 naming the field; a refused transition is a 409 carrying the alert's state.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from monitor.alerts import incidents, silences, stats, store
from monitor.alerts.model import DISPOSITIONS, STATES, TransitionRefused, alert_json, iso
from monitor.alerts.service import AlertsService
from monitor.alerts.store import AlertFilter, decode_cursor, encode_cursor
from monitor.config import ID_RE
from monitor.errors import InputError, NotFound
from monitor.findings import RULES
from monitor.store.audit import record
from monitor.web.errors import parse_body, read_json
from monitor.web.keys import ALERTS
from monitor.web.security import client_address, require_role

routes = web.RouteTableDef()
MAX_ID = 2**63 - 1
_ID = re.compile(ID_RE)


def _svc(request: web.Request) -> AlertsService:
    return request.app[ALERTS]


def _id(request: web.Request) -> int:
    v = int(request.match_info["id"])
    if v > MAX_ID:
        raise InputError("id: too large", field="id")
    return v


def _list_param(request: web.Request, name: str, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
    raw = request.query.getall(name, [])
    vals = tuple(v.strip() for r in raw for v in r.split(",") if v.strip())
    for v in vals:
        if allowed is not None and v not in allowed:
            raise InputError(f"{name}: {v!r} is not one of {', '.join(allowed)}", field=name)
        if allowed is None and not _ID.match(v):
            raise InputError(f"{name}: {v!r} is not an id", field=name)
    return vals


def parse_time(text: str, field: str) -> datetime:
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as e:
        raise InputError(f"{field}: not an ISO 8601 time: {text!r}", field=field) from e
    if t.tzinfo is None:
        raise InputError(f"{field}: the time needs a timezone (e.g. Z or +08:00)", field=field)
    return t.astimezone(UTC)


def _time_param(request: web.Request, name: str) -> datetime | None:
    v = request.query.get(name)
    return parse_time(v, name) if v else None


def _limit(request: web.Request, default: int = 100, most: int = 500) -> int:
    v = request.query.get("limit")
    if v is None:
        return default
    try:
        n = int(v)
    except ValueError as e:
        raise InputError(f"limit: not an integer: {v!r}", field="limit") from e
    if not 1 <= n <= most:
        raise InputError(f"limit: between 1 and {most}", field="limit")
    return n


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class AckBody(_Body):
    note: str | None = Field(None, max_length=2000)


class CloseBody(_Body):
    disposition: Literal["confirmed_violation", "false_alarm", "rectified"]
    note: str = Field(min_length=1, max_length=4000)


Reason = Annotated[str, Field(min_length=1, max_length=1000)]
Duration = Annotated[float, Field(gt=0, le=30 * 86400)]


class SilenceBody(_Body):
    site: str = Field(pattern=ID_RE)
    rule: str | None = None
    starts_at: datetime | None = None
    expires_at: datetime | None = None
    duration_s: Duration | None = None
    reason: Reason

    @field_validator("rule")
    @classmethod
    def _rule(cls, v: str | None) -> str | None:
        if v is not None and v not in RULES:
            raise ValueError(f"not a rule id; one of {', '.join(sorted(RULES))}")
        return v

    @model_validator(mode="after")
    def _one_end(self) -> SilenceBody:
        if (self.expires_at is None) == (self.duration_s is None):
            raise ValueError("give exactly one of expires_at and duration_s")
        return self


class SilencePatch(_Body):
    expires_at: datetime | None = None
    duration_s: Duration | None = None
    reason: Reason | None = None

    @model_validator(mode="after")
    def _something(self) -> SilencePatch:
        if self.expires_at is not None and self.duration_s is not None:
            raise ValueError("give at most one of expires_at and duration_s")
        if self.expires_at is None and self.duration_s is None and self.reason is None:
            raise ValueError("nothing to change: give expires_at, duration_s or reason")
        return self


class MaintenanceBody(_Body):
    site: str = Field(pattern=ID_RE)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    duration_s: Duration | None = None
    reason: Reason

    @model_validator(mode="after")
    def _one_end(self) -> MaintenanceBody:
        if (self.ends_at is None) == (self.duration_s is None):
            raise ValueError("give exactly one of ends_at and duration_s")
        return self


class LiftBody(_Body):
    reason: Reason | None = None


async def _optional_body(request: web.Request, model: type[Any]) -> Any:
    """A body that may be left out entirely (empty), or given as JSON."""
    if not request.can_read_body or request.content_length == 0:
        return model()
    raw = await request.read()
    if not raw.strip():
        return model()
    try:
        return model.model_validate(json.loads(raw))
    except json.JSONDecodeError as e:
        raise InputError(f"request body is not valid JSON: {e}", code="invalid_json") from e


def _aware(t: datetime | None, field: str) -> datetime | None:
    if t is None:
        return None
    if t.tzinfo is None:
        raise InputError(f"{field}: the time needs a timezone (e.g. Z or +08:00)", field=field)
    return t.astimezone(UTC)


def _check_site(svc: AlertsService, site: str) -> None:
    if site not in {s.id for s in svc.cfg.sites}:
        raise InputError(f"site: no site {site!r} in this city", field="site")


def _refused(e: TransitionRefused) -> web.Response:
    return web.json_response(
        {"error": {"code": e.code, "message": str(e), "state": e.state, "action": e.action}}, status=409)


def _row_json(r: dict[str, Any]) -> dict[str, Any]:
    return {k: (iso(v) if isinstance(v, datetime) else v) for k, v in r.items()}


# --- alerts ----------------------------------------------------------------------------


@routes.get("/api/v1/alerts")
async def list_alerts(request: web.Request) -> web.Response:
    require_role(request, "viewer")
    flt = AlertFilter(
        states=_list_param(request, "state", STATES),
        sites=_list_param(request, "site"),
        rules=_list_param(request, "rule", tuple(sorted(RULES))),
        since=_time_param(request, "since"),
    )
    cursor = request.query.get("cursor")
    after = None
    if cursor:
        rank, first_seen, aid = decode_cursor(cursor, [int, datetime, int])
        after = (rank, first_seen, aid)
    limit = _limit(request)
    async with _svc(request).db.connection() as conn:
        rows, nxt = await store.list_alerts(conn, flt, after=after, limit=limit)
    return web.json_response({"alerts": [alert_json(r) for r in rows],
                              "next": encode_cursor(nxt) if nxt else None})


@routes.get(r"/api/v1/alerts/{id:\d+}")
async def get_alert(request: web.Request) -> web.Response:
    require_role(request, "viewer")
    aid = _id(request)
    async with _svc(request).db.connection() as conn:
        row = await store.get_alert(conn, aid)
        if row is None:
            raise NotFound(f"no alert {aid}", field="id")
        fs = await store.alert_findings(conn, aid, _limit(request, 50, 500))
    return web.json_response({"alert": alert_json(row), "findings": [_row_json(f) for f in fs]}, dumps=_dumps)


@routes.post(r"/api/v1/alerts/{id:\d+}/ack")
async def ack_alert(request: web.Request) -> web.Response:
    p = require_role(request, "operator")
    body: AckBody = await _optional_body(request, AckBody)
    try:
        row = await _svc(request).engine.ack(_id(request), p.actor(client_address(request)), body.note or None)
    except TransitionRefused as e:
        return _refused(e)
    return web.json_response({"alert": alert_json(row)})


@routes.post(r"/api/v1/alerts/{id:\d+}/close")
async def close_alert(request: web.Request) -> web.Response:
    p = require_role(request, "supervisor")
    body = await parse_body(request, CloseBody)
    assert body.disposition in DISPOSITIONS
    try:
        row = await _svc(request).engine.close(_id(request), p.actor(client_address(request)), body.disposition,
                                               body.note)
    except TransitionRefused as e:
        return _refused(e)
    return web.json_response({"alert": alert_json(row)})


@routes.get("/api/v1/alerts/stats")
async def alert_stats(request: web.Request) -> web.Response:
    require_role(request, "viewer")
    svc = _svc(request)
    until = _time_param(request, "until") or svc.clock.now()
    since = _time_param(request, "since") or until - timedelta(hours=24)
    if since >= until:
        raise InputError("since: must be before until", field="since")
    if until - since > timedelta(days=31):
        raise InputError("since: at most 31 days before until", field="since")
    sites = list(_list_param(request, "site"))
    async with svc.db.connection() as conn:
        hours, people = await stats.load_rows(conn, since, until, sites)
    rep = stats.load_report(hours, people, guideline_per_10min=svc.cfg.alerts.load_alarms_per_10min)
    return web.json_response({"since": iso(since), "until": iso(until), "sites": sites, **rep})


# --- silences and maintenance ------------------------------------------------------------


def _window(now: datetime, starts_at: datetime | None, end_at: datetime | None, end_field: str,
            duration_s: float | None) -> tuple[datetime, datetime]:
    """A silence's or maintenance window's start (now unless given) and end (given, or the
    duration after the start)."""
    start = _aware(starts_at, "starts_at") or now
    return start, _aware(end_at, end_field) or start + timedelta(seconds=duration_s or 0)


async def _suppression_changed(svc: AlertsService, kind: Literal["silence", "maintenance"], change: str,
                               row: dict[str, Any], status: int = 200) -> web.Response:
    """After a silence or maintenance window changed: the engine reads the suppressions again,
    the change goes out on ``alerts``, and the row is the answer."""
    await svc.engine.refresh_suppressions()
    svc.hub.publish("alerts", {"type": kind, "change": change, kind: _row_json(row)})
    return web.json_response({kind: _row_json(row)}, status=status)


@routes.get("/api/v1/silences")
async def get_silences(request: web.Request) -> web.Response:
    require_role(request, "viewer")
    svc = _svc(request)
    past = request.query.get("all") in ("1", "true", "yes")
    async with svc.db.connection() as conn:
        rows = await silences.list_silences(conn, now=svc.clock.now(), include_past=past, limit=_limit(request, 200))
    return web.json_response({"silences": [_row_json(r) for r in rows]})


@routes.post("/api/v1/silences")
async def add_silence(request: web.Request) -> web.Response:
    p = require_role(request, "supervisor")
    body = await parse_body(request, SilenceBody)
    svc = _svc(request)
    _check_site(svc, body.site)
    now = svc.clock.now()
    start, end = _window(now, body.starts_at, body.expires_at, "expires_at", body.duration_s)
    async with svc.db.connection() as conn:
        row = await silences.add_silence(conn, p.actor(client_address(request)), site=body.site, rule=body.rule,
                                         starts_at=start, expires_at=end, reason=body.reason, now=now)
    return await _suppression_changed(svc, "silence", "added", row, status=201)


@routes.patch(r"/api/v1/silences/{id:\d+}")
async def patch_silence(request: web.Request) -> web.Response:
    p = require_role(request, "supervisor")
    body = await parse_body(request, SilencePatch)
    svc = _svc(request)
    now = svc.clock.now()
    end = _aware(body.expires_at, "expires_at")
    if body.duration_s is not None:
        end = now + timedelta(seconds=body.duration_s)
    async with svc.db.connection() as conn:
        row = await silences.update_silence(conn, p.actor(client_address(request)), _id(request),
                                            expires_at=end, reason=body.reason, now=now)
    return await _suppression_changed(svc, "silence", "updated", row)


@routes.delete(r"/api/v1/silences/{id:\d+}")
async def lift_silence(request: web.Request) -> web.Response:
    p = require_role(request, "supervisor")
    body: LiftBody = await _optional_body(request, LiftBody)
    svc = _svc(request)
    async with svc.db.connection() as conn:
        row = await silences.lift_silence(conn, p.actor(client_address(request)), _id(request), body.reason,
                                          svc.clock.now())
    return await _suppression_changed(svc, "silence", "lifted", row)


@routes.get("/api/v1/maintenance")
async def get_maintenance(request: web.Request) -> web.Response:
    require_role(request, "viewer")
    svc = _svc(request)
    past = request.query.get("all") in ("1", "true", "yes")
    async with svc.db.connection() as conn:
        rows = await silences.list_maintenance(conn, now=svc.clock.now(), include_past=past,
                                               limit=_limit(request, 200))
    return web.json_response({"maintenance": [_row_json(r) for r in rows]})


@routes.post("/api/v1/maintenance")
async def add_maintenance(request: web.Request) -> web.Response:
    p = require_role(request, "supervisor")
    body = await parse_body(request, MaintenanceBody)
    svc = _svc(request)
    _check_site(svc, body.site)
    now = svc.clock.now()
    start, end = _window(now, body.starts_at, body.ends_at, "ends_at", body.duration_s)
    async with svc.db.connection() as conn:
        row = await silences.add_maintenance(conn, p.actor(client_address(request)), site=body.site,
                                             starts_at=start, ends_at=end, reason=body.reason, now=now)
    return await _suppression_changed(svc, "maintenance", "added", row, status=201)


@routes.delete(r"/api/v1/maintenance/{id:\d+}")
async def end_maintenance(request: web.Request) -> web.Response:
    p = require_role(request, "supervisor")
    body: LiftBody = await _optional_body(request, LiftBody)
    svc = _svc(request)
    async with svc.db.connection() as conn:
        row = await silences.end_maintenance(conn, p.actor(client_address(request)), _id(request), body.reason,
                                             svc.clock.now())
    return await _suppression_changed(svc, "maintenance", "ended", row)


# --- incidents ---------------------------------------------------------------------------


def _dumps(o: Any) -> str:
    return json.dumps(o, default=store.json_default, ensure_ascii=False)


@routes.get(r"/api/v1/incidents/{id:\d+}")
async def get_incident(request: web.Request) -> web.Response:
    require_role(request, "viewer")
    svc = _svc(request)
    async with svc.db.connection() as conn:
        doc = await incidents.incident(conn, _id(request), svc.clock.now())
    return web.json_response({"incident": doc}, dumps=_dumps)


async def _media(request: web.Request, kind: str) -> web.StreamResponse:
    require_role(request, "viewer")
    svc = _svc(request)
    async with svc.db.connection() as conn:
        path, media_type = await incidents.evidence_file(conn, _id(request), kind, svc.media_dir)
    return web.FileResponse(path, headers={"Content-Type": media_type, "Cache-Control": "private, max-age=3600"})


@routes.get(r"/api/v1/incidents/{id:\d+}/clip.mp4")
async def incident_clip(request: web.Request) -> web.StreamResponse:
    return await _media(request, "clip")


@routes.get(r"/api/v1/incidents/{id:\d+}/snapshot.jpg")
async def incident_snapshot(request: web.Request) -> web.StreamResponse:
    return await _media(request, "snapshot")


@routes.post(r"/api/v1/incidents/{id:\d+}/export")
async def export_incident(request: web.Request) -> web.StreamResponse:
    """One ZIP (incident.json, snapshot, clip, manifest of SHA-256s), audited; sent as the reply."""
    p = require_role(request, "supervisor")
    if request.can_read_body and request.content_length:
        await read_json(request)  # a body is allowed (and ignored) but must be JSON
    svc = _svc(request)
    aid = _id(request)
    now = svc.clock.now()
    async with svc.db.connection() as conn:
        doc = await incidents.incident(conn, aid, now, findings=1000)
        media: dict[str, Any] = {}
        for kind, name in (("snapshot", "snapshot.jpg"), ("clip", "clip.mp4")):
            item = doc["evidence"].get(kind)
            if item and item["status"] == "ready":
                try:
                    media[name], _ = await incidents.evidence_file(conn, aid, kind, svc.media_dir)
                except InputError:
                    item["status"] = "expired"
    doc["exported"] = {"at": iso(now), "by": p.name}
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    dest = svc.media_dir / "exports" / f"incident-{aid}-{stamp}.zip"
    size, digest, items = await asyncio.to_thread(incidents.write_archive, dest, doc, media)
    try:
        async with svc.db.connection() as conn:
            await record(conn, p.actor(client_address(request)), "incident.export", f"incident/{aid}",
                         details={"file": dest.name, "bytes": size, "sha256": digest, "items": items})
    except BaseException:
        dest.unlink(missing_ok=True)  # not audited: not exported
        raise
    return web.FileResponse(dest, headers={
        "Content-Type": "application/zip",
        "Content-Disposition": f'attachment; filename="{dest.name}"',
        "X-Archive-SHA256": digest,
    })


# --- the audit trail ---------------------------------------------------------------------


@routes.get("/api/v1/audit")
async def get_audit(request: web.Request) -> web.Response:
    require_role(request, "supervisor")
    q = request.query
    for name in ("target", "action", "actor"):
        if len(q.get(name, "")) > 200:
            raise InputError(f"{name}: at most 200 characters", field=name)
    since, until = _time_param(request, "since"), _time_param(request, "until")
    if since and until and since >= until:
        raise InputError("since: must be before until", field="since")
    after = None
    if q.get("cursor"):
        ts, aid = decode_cursor(q["cursor"], [datetime, int])
        after = (ts, aid)
    async with _svc(request).db.connection() as conn:
        rows, nxt = await store.list_audit(
            conn, target=q.get("target") or None, action=q.get("action") or None, actor=q.get("actor") or None,
            since=since, until=until, after=after, limit=_limit(request, 100, 1000))
    return web.json_response({"audit": [_row_json(r) for r in rows], "next": encode_cursor(nxt) if nxt else None},
                             dumps=_dumps)
