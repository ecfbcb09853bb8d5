"""The live relay: a camera's H.264, passed through, fanned out to any number of viewers
as fragmented MP4 (one fragment per frame) for Media Source Extensions.

The camera thread offers each access unit once (``offer``: a no-op while nobody
watches); the relay turns it into one shared sample and puts it into each viewer's own
bounded queue. A viewer starts at a keyframe; when its queue is full (a slow browser) it
loses what is queued and waits for the next keyframe, so it falls behind nobody else and
never more than its queue. Each viewer's fragments carry its own continuous decode time,
so a skip leaves no gap in the browser's buffer.

What a viewer receives (``Viewer.messages()``):
``("codec", {"codec": "avc1.64001F", "width": 640, "height": 360})`` first, then
``("init", bytes)`` (ftyp+moov), then ``("media", bytes)`` (moof+mdat) per frame; a new
``codec``/``init`` pair when the stream's parameter sets change.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass

from monitor.video.h264 import NAL_PPS, NAL_SPS, nal_type, parse_sps, to_avcc
from monitor.video.mp4 import TIMESCALE, Sample, init_segment, media_segment


@dataclass(frozen=True)
class _Unit:
    sample: Sample
    sps: bytes
    pps: bytes


class Viewer:
    def __init__(self, relay: LiveRelay, queue_frames: int) -> None:
        self.relay = relay
        self.queue: asyncio.Queue[_Unit | None] = asyncio.Queue(queue_frames)
        self.waiting_key = True
        self.skipped = 0
        self.sent = 0
        self._params: tuple[bytes, bytes] | None = None
        self._seq = 0
        self._dts = 0

    def _offer(self, u: _Unit) -> None:
        if self.waiting_key:
            if not u.sample.key:
                return
            self.waiting_key = False
        try:
            self.queue.put_nowait(u)
        except asyncio.QueueFull:
            # a slow viewer: drop what it has queued, start again at the next keyframe
            while not self.queue.empty():
                self.queue.get_nowait()
                self.skipped += 1
            self.skipped += 1
            self.waiting_key = True
            self.relay.skips += 1

    async def messages(self) -> AsyncIterator[tuple[str, object]]:
        while True:
            u = await self.queue.get()
            if u is None:
                return
            if self._params != (u.sps, u.pps):
                info = parse_sps(u.sps)
                self._params = (u.sps, u.pps)
                yield "codec", {"codec": info.codec, "width": info.width, "height": info.height}
                yield "init", init_segment(u.sps, u.pps)
            self._seq += 1
            seg = media_segment(self._seq, self._dts, [u.sample])
            self._dts += u.sample.duration
            self.sent += 1
            yield "media", seg

    def close(self) -> None:
        self.relay.leave(self)


class LiveRelay:
    """One per camera; ``offer`` from the camera thread, the rest on the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None, queue_frames: int = 50) -> None:
        self.loop = loop
        self.queue_frames = queue_frames
        self._viewers: set[Viewer] = set()
        self._active = False  # read by the camera thread without a lock: a bool is atomic
        self._lock = threading.Lock()
        self._sps: bytes | None = None
        self._pps: bytes | None = None
        self._last_t: float | None = None
        self._last_dur = 3600  # 90 kHz ticks: 25 fps until measured
        self.skips = 0
        self.units = 0

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    def join(self) -> Viewer:
        v = Viewer(self, self.queue_frames)
        self._viewers.add(v)
        self._active = True
        return v

    def leave(self, v: Viewer) -> None:
        self._viewers.discard(v)
        self._active = bool(self._viewers)
        try:
            v.queue.put_nowait(None)
        except asyncio.QueueFull:
            pass

    def close(self) -> None:
        for v in list(self._viewers):
            self._viewers.discard(v)
            while not v.queue.empty():
                v.queue.get_nowait()
            v.queue.put_nowait(None)
        self._active = False

    def reset(self) -> None:
        """A new connection: timing starts again (parameter sets are re-learnt)."""
        with self._lock:
            self._last_t = None

    def offer(self, t: float, nals: list[bytes], key: bool) -> None:
        """From the camera thread: one access unit presented at ``t`` (seconds)."""
        with self._lock:
            for n in nals:
                k = nal_type(n)
                if k == NAL_SPS:
                    self._sps = n
                elif k == NAL_PPS:
                    self._pps = n
            if self._last_t is not None and t > self._last_t:
                self._last_dur = max(1, min(TIMESCALE, round((t - self._last_t) * TIMESCALE)))
            self._last_t = t
            if not self._active or self._sps is None or self._pps is None:
                return
            unit = _Unit(Sample(to_avcc(nals), self._last_dur, key), self._sps, self._pps)
        self.units += 1
        if self.loop is None:
            return
        try:
            self.loop.call_soon_threadsafe(self._dispatch, unit)
        except RuntimeError:  # loop closed
            pass

    def _dispatch(self, u: _Unit) -> None:
        for v in list(self._viewers):
            v._offer(u)
