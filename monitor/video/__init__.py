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
    from monitor.app import ALL_ROLES
    from monitor.findings import Finding
    from monitor.video import api
    from monitor.video.camera import StateChange
    from monitor.video.service import VideoService
    from monitor.video.states import StateWriter
    from monitor.web.keys import ADVERTISED, CONFIG, DB, FINDINGS, HUB, ROLES, SERVICES, TASKS, VIDEO

    roles = app[ROLES]
    if "api" in roles:
        app.add_routes(api.routes)
    if "api" in roles or "video" in roles:
        # a video worker serves its cameras' pictures to the API process (which relays them)
        app.add_routes(api.picture_routes)
    if "video" not in roles:
        if "api" in roles:
            _state_view(app)
        return
    hub = app[HUB] if "api" in roles else None

    findings = app[FINDINGS]

    # roles apart: the states go to the database, for the API process (monitor.video.states);
    # the writer is made once the database is (the context below)
    writers: list[StateWriter] = []

    def on_state(ch: StateChange) -> None:
        cam = svc.cameras[ch.camera]
        gen = svc.lease_generation(ch.camera)
        if writers and svc.leased and gen is not None:
            writers[0].note(ch.camera, ch.state, ch.reason, ch.since, gen)
        # Only while this process may report for the camera: a camera stopped because its
        # lease moved to another worker (or may have: a paused worker) is not offline.
        if ch.state in ("offline", "online") and gen is not None:
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
        from monitor.app import DB_READY

        if roles == ALL_ROLES:
            svc.start(app[TASKS])  # one process runs the whole city
        else:
            from monitor.store.leases import LeaseKeeper

            # roles split over processes: video workers share the cameras through leases
            media = app[CONFIG].media
            keeper = LeaseKeeper(ttl_s=media.lease_ttl_s, renew_s=media.lease_renew_s, capacity=media.max_cameras,
                                 url=app.get(ADVERTISED))
            w = StateWriter(app[DB], lambda: svc.lease_worker)
            writers.append(w)
            app[SERVICES]["camera-state-writer"] = w

            async def write_states() -> None:
                await app[DB_READY].wait()
                await w.run()

            app[TASKS].supervise("camera-state-writer", write_states)
            svc.start_leased(app[TASKS], app[DB], app[DB_READY], keeper)
        yield
        svc.close()

    app.cleanup_ctx.append(ctx)


def _state_view(app: web.Application) -> None:
    """An API process without the video role: camera states from the video workers, through
    the database (``monitor.video.states``), for the wall and the overview."""
    from monitor.video.states import StateView
    from monitor.web.keys import CONFIG, DB, HUB, SERVICES, TASKS

    hub = app[HUB]

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        from monitor.app import DB_READY

        view = StateView(app[DB], {c.id: s.id for s, c in app[CONFIG].cameras()},
                         publish=lambda event: hub.publish("cameras", event))
        app[SERVICES]["camera-states"] = view
        hub.snapshots["cameras"] = lambda client, topic: hub.send_to(
            client, "cameras", {"cameras": [{"id": s.camera, **s.event()} for s in view.states.values()]})

        async def run() -> None:
            await app[DB_READY].wait()
            await view.run()

        app[TASKS].supervise("camera-states", run)
        yield
        await view.close()

    app.cleanup_ctx.append(ctx)
