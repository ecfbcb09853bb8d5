"""HTTP routes of the video part (``/api/v1``; viewer role unless said otherwise).

- ``GET /cameras`` → ``{"cameras": [{id, site, name, state, reason, since, size, counters, zones, rules}]}``
  (roles apart: the state its video worker wrote, with ``worker``, or ``unassigned`` when no
  live worker runs it: ``monitor.video.states``; ``unknown`` before the first read).
- ``GET /cameras/{id}`` → the same for one camera, with ``history`` (recent state changes).
- ``GET /cameras/{id}/snapshot.jpg`` → the latest frame as JPEG (``X-Frame-Time``: its time);
  404 unknown camera, 503 no frame yet.
- ``GET /cameras/{id}/live`` (WebSocket) → a text ``{"type": "codec", "codec", "width",
  "height"}``, then binary fMP4: the init segment, then one media segment per frame, for
  Media Source Extensions; again ``codec`` + init when the stream's parameters change.
- ``GET /cameras/{id}/mjpeg`` → ``multipart/x-mixed-replace`` JPEG stream (the fallback).
- Roles apart (``--role api`` beside ``--role video`` workers): the snapshot, live and MJPEG
  routes of a camera a worker runs are relayed from that worker (``video_workers.url``) with
  the viewer's session; the worker serves them itself (``picture_routes``).
- ``POST /cameras/{id}/clips`` (operator) ``{"start", "end", "reason"}`` → 201
  ``{"clip", "url", "bytes", "frames", "start", "duration_s"}``: cut from the packet ring by
  remuxing, audited as ``clip.export``. ``GET /cameras/{id}/clips/{name}`` serves it
  (range requests).
- Hub topic ``cameras``: ``{"camera", "site", "state", "reason", "since"}`` on each change;
  a new subscriber gets ``{"cameras": [...]}`` with every camera's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web
from pydantic import BaseModel, ConfigDict, Field, model_validator

from monitor.errors import InputError, NotFound, ServiceUnavailable
from monitor.store import audit
from monitor.web.errors import parse_body
from monitor.web.keys import CONFIG, DB, SERVICES, VIDEO
from monitor.web.security import client_address, require_role

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
# Served by video workers too: the API process relays them when the roles run apart.
picture_routes = web.RouteTableDef()
RELAYED_HEADERS = ("Content-Type", "Content-Length", "Cache-Control", "X-Frame-Time", "X-Camera-State")
CLIP_NAME = re.compile(r"^[A-Za-z0-9_.-]+\.mp4$")
MAX_CLIP_S = 300.0


def _service(request: web.Request) -> Any:
    return request.app.get(VIDEO)


def _camera_config(request: web.Request, cid: str) -> tuple[Any, Any]:
    try:
        return request.app[CONFIG].camera(cid)
    except KeyError:
        raise NotFound(f"camera {cid} is not configured", field="id") from None


def _summary(request: web.Request, cid: str) -> dict[str, Any]:
    svc = _service(request)
    if svc is not None and cid in svc.running:
        return dict(svc.cameras[cid].summary())
    site, cam = _camera_config(request, cid)
    view = request.app[SERVICES].get("camera-states")  # roles apart: the video workers' states
    st = view.get(cid) if view is not None else None
    if st is not None:
        state, reason, since, extra = st.state, st.reason, st.since, {"worker": st.worker}
    elif svc is not None and cid in svc.unassigned:
        state, reason, since, extra = "unassigned", "beyond media.max_cameras: not run", None, {}
    else:
        state, reason, since, extra = "unknown", "not run by this process", None, {}
    return {
        "id": cam.id, "site": site.id, "name": cam.name or cam.id, "state": state, "reason": reason,
        "since": since.isoformat() if since else None, **extra, "size": None, "counters": {},
        "zones": {k: [list(p) for p in v] for k, v in cam.zones.items()}, "rules": list(cam.rules),
    }

@routes.get("/api/v1/cameras")
async def list_cameras(request: web.Request) -> web.Response:
    require_role(request, "viewer")
    cfg = request.app[CONFIG]
    site = request.query.get("site")
    out = [_summary(request, c.id) for s, c in cfg.cameras() if site is None or s.id == site]
    return web.json_response({"cameras": out})


@routes.get("/api/v1/cameras/{id}")
async def get_camera(request: web.Request) -> web.Response:
    require_role(request, "viewer")
    cid = request.match_info["id"]
    body = _summary(request, cid)
    svc = _service(request)
    if svc is not None and cid in svc.running:
        body["history"] = [
            {"state": h.state, "reason": h.reason, "since": h.since.isoformat()} for h in svc.cameras[cid].history
        ]
    return web.json_response(body)


def _running_camera(request: web.Request) -> Any:
    cid = request.match_info["id"]
    _camera_config(request, cid)
    svc = _service(request)
    if svc is None or cid not in svc.running:
        raise ServiceUnavailable(f"camera {cid} is not run by this process")
    return svc, svc.cameras[cid]


async def _relayed(request: web.Request) -> web.StreamResponse | None:
    """Roles apart: the camera runs in a video worker; relay this request to it (the viewer's
    session cookie and CSRF token go with it: the worker checks them against the same
    database, and audits what it does). None when this process runs the camera itself."""
    st = _holder(request)
    if st is None:
        return None
    return await _relay_http(request, st)


async def _relay_http(request: web.Request, st: Any) -> web.StreamResponse:
    view = request.app[SERVICES]["camera-states"]
    headers = _forwarded(request)
    body = await request.read() if request.method == "POST" else None
    try:
        upstream = await view.http.request(request.method, st.url + request.rel_url.path_qs, headers=headers,
                                           data=body, allow_redirects=False)
    except (aiohttp.ClientError, TimeoutError) as e:
        raise _unreachable(st, e) from e
    async with upstream:
        if upstream.status != 200:
            return web.Response(status=upstream.status, body=await upstream.read(),
                                headers={k: v for k in ("Content-Type",) if (v := upstream.headers.get(k))})
        resp = web.StreamResponse(headers={k: v for k in RELAYED_HEADERS if (v := upstream.headers.get(k))})
        await resp.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                await resp.write(chunk)
        except (aiohttp.ClientError, TimeoutError) as e:  # the worker went away mid-stream
            log.info("camera %s: relay from %s ended (%s)", st.camera, st.worker, type(e).__name__)
        return resp


@picture_routes.get("/api/v1/cameras/{id}/snapshot.jpg")
async def snapshot(request: web.Request) -> web.StreamResponse:
    require_role(request, "viewer")
    if (relayed := await _relayed(request)) is not None:
        return relayed
    svc, cam = _running_camera(request)
    got = await svc.snapshot(cam.id)
    if got is None:
        raise ServiceUnavailable(f"camera {cam.id} has no frame yet ({cam.state}: {cam.reason})")
    ts, data = got
    return web.Response(
        body=data, content_type="image/jpeg",
        headers={"Cache-Control": "no-store", "X-Frame-Time": ts.isoformat(), "X-Camera-State": cam.state},
    )


def _origin_ok(request: web.Request) -> bool:
    from monitor.web.core_api import origin_allowed

    origin = request.headers.get("Origin")
    return origin is None or origin_allowed(request, origin)


def _holder(request: web.Request) -> Any:
    """Roles apart: the state (with the worker's ``url``) of a camera a video worker runs;
    None when this process runs it (or runs every camera)."""
    cid = request.match_info["id"]
    svc = _service(request)
    view = request.app[SERVICES].get("camera-states")
    if (svc is not None and cid in svc.running) or view is None:
        return None
    _camera_config(request, cid)
    st = view.get(cid)
    if st is None or not st.url:
        raise ServiceUnavailable(f"camera {cid} is not run by any video worker now"
                                 + (f" ({st.state}: {st.reason})" if st is not None else ""))
    return st


def _unreachable(st: Any, e: BaseException) -> ServiceUnavailable:
    return ServiceUnavailable(f"camera {st.camera}: its video worker {st.worker} at {st.url} cannot be reached "
                              f"({type(e).__name__}: {e})")


def _forwarded(request: web.Request) -> dict[str, str]:
    return {k: v for k in ("Cookie", "Authorization", "X-CSRF-Token", "Content-Type")
            if (v := request.headers.get(k))}


async def _relay_live(request: web.Request, st: Any) -> web.StreamResponse:
    """The live fMP4 WebSocket of a camera a video worker runs, relayed both ways (the
    worker's own relay skips to a keyframe when this side, and so the viewer, is slow)."""
    view = request.app[SERVICES]["camera-states"]
    try:
        up = await view.http.ws_connect(st.url + request.rel_url.path_qs, headers=_forwarded(request),
                                        heartbeat=20.0, max_msg_size=16 * 1024 * 1024)
    except (aiohttp.ClientError, TimeoutError) as e:
        raise _unreachable(st, e) from e
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4096)
    await ws.prepare(request)

    async def down() -> None:
        async for m in up:
            if m.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(m.data)
            elif m.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str(m.data)
            else:
                break
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"camera relay closed")

    sender = asyncio.create_task(down(), name=f"live-relay-{st.camera}")
    try:
        async for msg in ws:  # the browser says nothing; this ends when it goes
            if msg.type == WSMsgType.ERROR or sender.done():
                break
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, aiohttp.ClientError):
            await sender
        await up.close()
    return ws


@picture_routes.get("/api/v1/cameras/{id}/live")
async def live(request: web.Request) -> web.StreamResponse:
    require_role(request, "viewer")
    if not _origin_ok(request):
        raise web.HTTPForbidden(text="Origin not allowed")
    if (st := _holder(request)) is not None:
        return await _relay_live(request, st)
    _svc, cam = _running_camera(request)
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4096)
    await ws.prepare(request)
    viewer = cam.relay.join()

    async def pump() -> None:
        async for kind, payload in viewer.messages():
            if kind == "codec":
                await ws.send_json({"type": "codec", **payload})  # type: ignore[dict-item]
            else:
                await ws.send_bytes(payload)  # type: ignore[arg-type]
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"camera relay closed")

    sender = asyncio.create_task(pump(), name=f"live-{cam.id}")
    try:
        async for msg in ws:  # the browser says nothing; this ends when it goes
            if msg.type == WSMsgType.ERROR:
                break
            if sender.done():
                break
    finally:
        viewer.close()
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sender
    return ws


@picture_routes.get("/api/v1/cameras/{id}/mjpeg")
async def mjpeg(request: web.Request) -> web.StreamResponse:
    require_role(request, "viewer")
    if (relayed := await _relayed(request)) is not None:
        return relayed
    svc, cam = _running_camera(request)
    period = 1.0 / request.app[CONFIG].media.mjpeg_fps
    resp = web.StreamResponse(headers={
        "Content-Type": "multipart/x-mixed-replace; boundary=frame", "Cache-Control": "no-store",
    })
    await resp.prepare(request)
    last: datetime | None = None
    try:
        while True:
            t0 = time.monotonic()
            got = await svc.snapshot(cam.id)
            if got is not None and got[0] != last:
                last = got[0]
                data = got[1]
                await resp.write(
                    b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                    + str(len(data)).encode() + b"\r\n\r\n" + data + b"\r\n"
                )
            await asyncio.sleep(max(0.0, period - (time.monotonic() - t0)))
    except ConnectionResetError:  # the viewer went away
        pass
    return resp


class ClipRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: datetime
    end: datetime
    reason: str = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _order(self) -> ClipRequest:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end need a time zone (e.g. ...Z)")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if (self.end - self.start).total_seconds() > MAX_CLIP_S:
            raise ValueError(f"a clip lasts at most {MAX_CLIP_S:.0f}s")
        return self


def clips_dir(request: web.Request, cid: str) -> Path:
    return Path(request.app[CONFIG].media.dir) / "clips" / cid


@picture_routes.post("/api/v1/cameras/{id}/clips")
async def export_clip(request: web.Request) -> web.StreamResponse:
    p = require_role(request, "operator")
    if (relayed := await _relayed(request)) is not None:
        return relayed  # the worker that holds the camera's ring cuts and audits it
    svc, cam = _running_camera(request)
    body = await parse_body(request, ClipRequest)
    if body.end > datetime.now(UTC) + timedelta(seconds=request.app[CONFIG].media.postroll_s + 5):
        raise InputError("end: too far in the future for the post-roll", field="end")
    name = f"{cam.id}-{body.start.astimezone(UTC):%Y%m%dT%H%M%S}-{int(time.time() * 1000) % 100000:05d}.mp4"
    dest = clips_dir(request, cam.id) / name
    info = await svc.export(cam.id, body.start, body.end, dest)
    if info is None:
        raise NotFound(f"the ring of camera {cam.id} no longer holds {body.start.isoformat()}", code="not_in_ring",
                       field="start")
    try:
        async with request.app[DB].connection() as conn:
            await audit.record(
                conn, p.actor(client_address(request)), "clip.export", f"camera/{cam.id}", reason=body.reason,
                details={"clip": name, "start": body.start.isoformat(), "end": body.end.isoformat(),
                         "bytes": info.bytes},
            )
    except Exception:
        info.path.unlink(missing_ok=True)  # not audited: not exported
        raise
    return web.json_response(
        {"clip": name, "url": f"/api/v1/cameras/{cam.id}/clips/{name}", "bytes": info.bytes, "frames": info.frames,
         "start": datetime.fromtimestamp(info.start, UTC).isoformat(), "duration_s": round(info.duration_s, 3)},
        status=201,
    )


@picture_routes.get("/api/v1/cameras/{id}/clips/{name}")
async def get_clip(request: web.Request) -> web.StreamResponse:
    require_role(request, "viewer")
    cid, name = request.match_info["id"], request.match_info["name"]
    _camera_config(request, cid)
    if not CLIP_NAME.match(name):
        raise InputError("name: not a clip name", field="name")
    path = clips_dir(request, cid) / name
    if not path.is_file():
        # roles apart, media folders not shared: the worker that cut it may still have it
        if (st := _holder(request)) is not None:
            return await _relay_http(request, st)
        raise NotFound(f"no clip {name} for camera {cid}")
    return web.FileResponse(path, headers={"Content-Type": "video/mp4"})
