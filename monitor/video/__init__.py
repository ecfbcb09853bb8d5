"""Video: RTSP cameras, the packet ring and incident clips, snapshots, the live relay.

``setup(app)`` plugs the part into the service. With the ``video`` role it runs every
configured camera (``VideoService``, under ``app[VIDEO]`` and ``app[SERVICES]["video"]``);
when the roles are split over processes, video workers share the cameras through leases
in PostgreSQL (``monitor.store.leases``). With the ``api`` role it serves the camera routes (``monitor.video.api``) and pushes state
changes to the WebSocket topic ``cameras``. See ``monitor.video.service`` for the
interface the detectors and the alerts call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web


def setup(app: web.Application) -> None:
    from monitor.findings import Finding
    from monitor.video import api
    from monitor.video.camera import StateChange
    from monitor.video.service import VideoService
    from monitor.web.keys import CONFIG, DB, FINDINGS, HUB, ROLES, SERVICES, TASKS, VIDEO

    roles = app[ROLES]
    if "api" in roles:
        app.add_routes(api.routes)
    if "video" not in roles:
        return
    hub = app[HUB] if "api" in roles else None

    findings = app[FINDINGS]

    def on_state(ch: StateChange) -> None:
        cam = svc.cameras[ch.camera]
        # Only while this process may report for the camera: a camera stopped because its
        # lease moved to another worker (or may have: a paused worker) is not offline.
        if ch.state in ("offline", "online") and svc.lease_generation(ch.camera) is not None:
            # An offline camera is a condition alert (camera_offline) that clears when it returns.
            findings.submit_nowait(Finding(
                rule="camera_offline", site=cam.site.id, source=ch.camera, subject=ch.camera, ts=ch.since,
                summary=(f"camera {ch.camera} offline: {ch.reason}" if ch.state == "offline"
                         else f"camera {ch.camera} back online"),
                active=ch.state == "offline", details={"reason": ch.reason}, fence=svc.fence(ch.camera),
            ))
        if hub is not None:
            hub.publish("cameras", {"camera": ch.camera, "site": cam.site.id, "state": ch.state,
                                    "reason": ch.reason, "since": ch.since.isoformat()})

    svc = VideoService(app[CONFIG], on_state=on_state)
    app[VIDEO] = svc
    app[SERVICES]["video"] = svc
    if hub is not None:
        hub.snapshots["cameras"] = lambda client, topic: hub.send_to(
            client, "cameras",
            {"cameras": [{k: s[k] for k in ("id", "site", "state", "reason", "since")} for s in svc.summaries()]},
        )

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        from monitor.app import ALL_ROLES, DB_READY

        if roles == ALL_ROLES:
            svc.start(app[TASKS])  # one process runs the whole city
        else:
            from monitor.store.leases import LeaseKeeper

            # roles split over processes: video workers share the cameras through leases
            media = app[CONFIG].media
            svc.start_leased(app[TASKS], app[DB], app[DB_READY],
                             LeaseKeeper(ttl_s=media.lease_ttl_s, renew_s=media.lease_renew_s,
                                         capacity=media.max_cameras))
        yield
        svc.close()

    app.cleanup_ctx.append(ctx)
