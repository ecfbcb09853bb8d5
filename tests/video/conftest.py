"""Fixtures of the video tests: small rendered clips (once per session) and the RTSP server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from monitor.config import Config
from monitor.tasks import TaskGroup
from monitor.video.camera import StateChange
from monitor.video.service import VideoService
from tests.support.rtsp import gst_available, scene_clips

CLIPS = {
    "station": ("station", 11, 4.0, (320, 180), 10.0),
    "outlet": ("outlet", 12, 4.0, (320, 180), 10.0),
    "small": ("station", 13, 6.0, (256, 144), 10.0),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if any("rtsp" in i.keywords for i in items) and not gst_available():
        skip = pytest.mark.skip(reason="no GStreamer RTSP server (python3-gi, gir1.2-gst-rtsp-server-1.0)")
        for item in items:
            if "rtsp" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return scene_clips(tmp_path_factory.mktemp("clips"), CLIPS)


def video_config(cameras: dict[str, str], media_dir: Path, **media: Any) -> Config:
    """A city of one station whose cameras are ``{id: url}``."""
    return Config.model_validate({
        "media": {"dir": str(media_dir), "ring_s": 10, **media},
        "sites": [{"id": "st-test", "kind": "station", "storage_capacity": 10,
                   "cameras": [{"id": cid, "url": url, "detect": {"fps": 5}} for cid, url in cameras.items()]}],
    })


class StateWatch:
    """Camera state changes as they happen, with bounded waits on them."""

    def __init__(self) -> None:
        self.changes: list[StateChange] = []
        self._cond = asyncio.Condition()

    def __call__(self, ch: StateChange) -> None:
        self.changes.append(ch)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._cond:
            self._cond.notify_all()

    async def until(self, pred: Callable[[], bool], timeout_s: float, what: str) -> None:
        async with self._cond:
            try:
                await asyncio.wait_for(self._cond.wait_for(pred), timeout_s)
            except TimeoutError:
                raise AssertionError(f"not within {timeout_s}s: {what}; changes: {self.changes}") from None


@asynccontextmanager
async def running_video(cfg: Config) -> AsyncIterator[tuple[VideoService, StateWatch]]:
    watch = StateWatch()
    svc = VideoService(cfg, on_state=watch)
    tasks = TaskGroup()
    svc.start(tasks)
    try:
        yield svc, watch
    finally:
        await tasks.stop(5.0)
        svc.close()
