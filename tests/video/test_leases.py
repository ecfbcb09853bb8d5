"""Video workers on several machines share the cameras through leases in PostgreSQL: each
runs its share; a worker that dies has its cameras taken over when its leases expire."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from monitor.store.db import Database
from monitor.store.leases import LeaseKeeper
from monitor.tasks import TaskGroup
from monitor.video.service import VideoService
from tests.support.rtsp import RtspServer
from tests.support.services import city_database
from tests.video.conftest import StateWatch, video_config

pytestmark = [pytest.mark.rtsp, pytest.mark.slow]


async def test_two_workers_share_the_cameras_and_take_over(fresh_db: str, clips: dict[str, Path],
                                                          tmp_path: Path) -> None:
    with RtspServer({"a": clips["station"], "b": clips["outlet"]}) as srv:
        cfg = video_config({"cam-a": srv.url("a"), "cam-b": srv.url("b")}, tmp_path)
        await city_database(fresh_db, cfg)
        db = Database(fresh_db, max_size=4)
        await db.open()
        ready = asyncio.Event()
        ready.set()
        watch = StateWatch()
        workers = []
        try:
            for name in ("w1", "w2"):
                svc = VideoService(cfg, on_state=watch)
                tasks = TaskGroup()
                svc.start_leased(tasks, db, ready, LeaseKeeper(name, ttl_s=2.0, renew_s=0.3))
                workers.append((svc, tasks))
            (s1, t1), (s2, _t2) = workers

            def shared() -> bool:
                return (len(s1.running) == 1 and len(s2.running) == 1 and set(s1.running) != set(s2.running)
                        and all(s.cameras[c].state == "online" for s in (s1, s2) for c in s.running))

            await watch.until(shared, 15, "one camera each, both online")
            # w1 dies without giving its lease back: w2 takes its camera once the lease expires
            gone = s1.running[0]
            keeper = s1.keeper
            assert keeper is not None

            async def no_release(conn: object) -> None:
                return None

            keeper.release_all = no_release  # type: ignore[method-assign,assignment]
            await t1.stop(5.0)
            assert s1.running == []
            await watch.until(lambda: set(s2.running) == {"cam-a", "cam-b"}
                              and s2.cameras[gone].state == "online", 10, f"w2 takes over {gone}")
            assert s2.camera_states() == {"cam-a": "online", "cam-b": "online"}
        finally:
            for svc, tasks in workers:
                await tasks.stop(5.0)
                svc.close()
            await db.close()
