"""Bounded hand-offs from the camera threads to asyncio: never fall behind live.

``LatestFeed`` keeps, per camera, only the newest frame not yet taken: a new frame
replaces an untaken one, and the replaced frame is counted as dropped. The consumer (the
detector) takes the newest frame of every camera that has one in one call (``wait``), so
it can batch them, or iterates one camera's newest frames (``frames``); either way it
never sees a stale frame when a newer one exists, and a slow consumer costs only drops.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable

from monitor.video.frame import Frame


class LatestFeed:
    """Latest-frame slots for many cameras; ``put`` from any thread, the rest on the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None,
                 on_drop: Callable[[str], None] | None = None) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._slots: dict[str, Frame] = {}
        self._any = asyncio.Event()
        self._events: dict[str, asyncio.Event] = {}
        self._on_drop = on_drop
        self.dropped: dict[str, int] = {}
        self.closed = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop the consumer runs on (given when the service starts)."""
        self._loop = loop

    def put(self, frame: Frame) -> None:
        """Offer the newest frame of its camera (from any thread); never blocks."""
        cam = frame.camera
        with self._lock:
            old = self._slots.get(cam)
            self._slots[cam] = frame
            if old is not None:
                self.dropped[cam] = self.dropped.get(cam, 0) + 1
        if old is not None:
            if self._on_drop is not None:
                self._on_drop(cam)
            return  # the slot was full: its wake-up is already pending
        if self._loop is None:
            return
        try:
            self._loop.call_soon_threadsafe(self._wake, cam)
        except RuntimeError:  # the loop is closed: the service is stopping
            pass

    def _wake(self, cam: str) -> None:
        self._any.set()
        ev = self._events.get(cam)
        if ev is not None:
            ev.set()

    def take_all(self) -> list[Frame]:
        """The newest untaken frame of every camera that has one; no wait."""
        with self._lock:
            out = list(self._slots.values())
            self._slots.clear()
        self._any.clear()
        for ev in self._events.values():
            ev.clear()
        return out

    def take(self, camera: str) -> Frame | None:
        with self._lock:
            f = self._slots.pop(camera, None)
            empty = not self._slots
        ev = self._events.get(camera)
        if ev is not None:
            ev.clear()
        if empty:
            self._any.clear()
        return f

    async def wait(self, timeout_s: float | None = None) -> list[Frame]:
        """Wait (at most ``timeout_s``) until some camera has a frame; take them all."""
        return await self._wait(self._any, self.take_all, timeout_s)

    async def wait_one(self, camera: str, timeout_s: float | None = None) -> Frame | None:
        ev = self._events.setdefault(camera, asyncio.Event())
        got = await self._wait(ev, lambda: [f] if (f := self.take(camera)) is not None else [], timeout_s)
        return got[0] if got else None

    async def _wait(self, ev: asyncio.Event, take: Callable[[], list[Frame]], timeout_s: float | None) -> list[Frame]:
        loop = asyncio.get_running_loop()
        end = None if timeout_s is None else loop.time() + timeout_s
        while True:
            got = take()
            if got or self.closed:
                return got
            left = None if end is None else end - loop.time()
            if left is not None and left <= 0:
                return []
            try:
                await asyncio.wait_for(ev.wait(), left)
            except TimeoutError:
                return []

    async def frames(self, camera: str, idle_timeout_s: float = 5.0) -> AsyncIterator[Frame]:
        """Newest frames of one camera until the feed closes (waits bounded, then again)."""
        while not self.closed:
            f = await self.wait_one(camera, idle_timeout_s)
            if f is not None:
                yield f

    def close(self) -> None:
        self.closed = True
        if self._loop is None:
            return
        try:
            self._loop.call_soon_threadsafe(self._wake_all)
        except RuntimeError:
            pass

    def _wake_all(self) -> None:
        self._any.set()
        for ev in self._events.values():
            ev.set()
