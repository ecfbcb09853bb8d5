"""A camera: its stream connections (threads), state, ring, relay, gate and snapshot.

A camera has a main stream (recorded into the packet ring and relayed live, never
decoded) and, when ``detect_url`` differs, a detect sub-stream (decoded, sampled to
``detect.fps``, motion-gated, handed to the detector). With one stream, that stream does
both. Each stream reconnects on its own with capped exponential back-off and jitter.

State: ``online`` (every stream delivers), ``degraded`` (some do), ``offline`` (none),
each with a reason and the time it began; ``on_state`` is called on every change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import cv2
import numpy as np

from monitor.config import CameraConfig, MediaConfig, SiteConfig
from monitor.tasks import Backoff
from monitor.video.frame import Frame
from monitor.video.handoff import LatestFeed
from monitor.video.motion import MotionGate
from monitor.video.relay import LiveRelay
from monitor.video.ring import PacketRing
from monitor.video.source import DecodedFrame, StreamConnection, StreamCounters

log = logging.getLogger(__name__)

State = Literal["online", "offline", "degraded"]
Role = Literal["main", "detect", "both"]


@dataclass(frozen=True)
class StateChange:
    camera: str
    state: State
    reason: str
    since: datetime


@dataclass
class _StreamState:
    up: bool = False
    reason: str = "connecting"


class SnapshotCache:
    """The latest sampled frame and its JPEG, encoded at most once per frame (and not more
    often than ``max_age_s``), so a wall of tiles asking every second costs little."""

    def __init__(self, quality: int, max_age_s: float) -> None:
        self.quality = quality
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._latest: tuple[DecodedFrame, np.ndarray | None] | None = None
        self._jpeg: tuple[int, float, bytes] | None = None  # (seq, ts, bytes)
        self._made_at = 0.0
        self.encodes = 0

    def update(self, df: DecodedFrame, bgr: np.ndarray | None) -> None:
        with self._lock:
            self._latest = (df, bgr)

    def clear(self) -> None:
        with self._lock:
            self._latest = None

    @property
    def latest_ts(self) -> float | None:
        with self._lock:
            return self._latest[0].ts if self._latest else None

    def jpeg(self) -> tuple[float, bytes] | None:
        """Blocking (call in a thread): the newest frame as JPEG, from the cache when fresh."""
        with self._lock:
            latest = self._latest
            cached = self._jpeg
            made_at = self._made_at
        if latest is None:
            return (cached[1], cached[2]) if cached else None
        df, bgr = latest
        if cached is not None and (cached[0] == df.seq or time.monotonic() - made_at < self.max_age_s):
            return cached[1], cached[2]
        if bgr is None:
            bgr = df.frame.to_ndarray(format="bgr24")
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return None
        data = buf.tobytes()
        with self._lock:
            self._jpeg = (df.seq, df.ts, data)
            self._made_at = time.monotonic()
            self.encodes += 1
        return df.ts, data


class Camera:
    def __init__(
        self,
        site: SiteConfig,
        cfg: CameraConfig,
        media: MediaConfig,
        feed: LatestFeed,
        loop: asyncio.AbstractEventLoop | None = None,
        on_state: Callable[[StateChange], None] | None = None,
    ) -> None:
        self.site = site
        self.cfg = cfg
        self.id = cfg.id
        self.media = media
        self.feed = feed
        self.loop = loop
        self.on_state = on_state
        self.counters = StreamCounters()
        self.ring = PacketRing(media.ring_s)
        self.relay = LiveRelay(loop, media.live_queue_frames)
        self.gate = MotionGate(cfg.detect.motion_threshold, cfg.detect.forced_every_s)
        self.snapshots = SnapshotCache(media.snapshot_quality, media.snapshot_max_age_s)
        self.state: State = "offline"
        self.reason = "connecting"
        self.since = datetime.now(UTC)
        self.history: deque[StateChange] = deque(maxlen=50)
        self.frame_ages: deque[float] = deque(maxlen=500)  # seconds, at hand-off
        self.size: tuple[int, int] | None = None
        self.frame_s = 1 / 25
        detect = cfg.detect_url if cfg.detect_url and cfg.detect_url != cfg.url else None
        self.roles: dict[Role, str] = {"main": cfg.url, "detect": detect} if detect else {"both": cfg.url}  # type: ignore[dict-item]
        self._streams: dict[Role, _StreamState] = {r: _StreamState() for r in self.roles}
        self._stops: dict[Role, threading.Event] = {}
        self._seq = 0
        self._last_unit_t: float | None = None

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Run every stream of the camera until cancelled."""
        self.loop = asyncio.get_running_loop()
        self.relay.loop = self.loop
        try:
            await asyncio.gather(*(self._run_stream(r, u) for r, u in self.roles.items()))
        finally:
            for ev in self._stops.values():
                ev.set()

    async def _run_stream(self, role: Role, url: str) -> None:
        backoff = Backoff(self.media.reconnect_initial_s, self.media.reconnect_cap_s)
        first = True
        while True:
            if not first:
                self.counters.reconnects += 1
            first = False
            stop = threading.Event()
            self._stops[role] = stop
            conn = self._connection(role, url, stop)
            started = time.monotonic()
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[str] = loop.create_future()

            def work(c: StreamConnection = conn, f: asyncio.Future[str] = fut,
                     lp: asyncio.AbstractEventLoop = loop) -> None:
                try:
                    r = c.run()
                except Exception as e:  # a bug in the thread: report it as the reason
                    log.exception("camera %s: stream thread crashed", self.id)
                    r = f"internal error: {type(e).__name__}: {e}"
                with contextlib.suppress(RuntimeError):
                    lp.call_soon_threadsafe(_set_result, f, r)

            threading.Thread(target=work, name=f"cam-{self.id}-{role}", daemon=True).start()
            try:
                reason = await asyncio.shield(fut)
            except asyncio.CancelledError:
                stop.set()
                raise
            if conn.size is not None:
                self.size = conn.size
            self._stream_down(role, reason)
            healthy = time.monotonic() - started > 10.0
            if healthy:
                backoff.reset()
            delay = 0.0 if "resolution changed" in reason else backoff.next()
            log.info("camera %s (%s): %s; reconnecting in %.1fs", self.id, role, reason, delay)
            await asyncio.sleep(delay)

    def _connection(self, role: Role, url: str, stop: threading.Event) -> StreamConnection:
        record = role in ("main", "both")
        decode = role in ("detect", "both")
        return StreamConnection(
            url=url,
            decode=decode,
            record=record,
            sample_fps=self.cfg.detect.fps,
            open_s=self.media.open_timeout_s,
            read_s=self.media.read_timeout_s,
            stall_s=self.media.stall_s,
            counters=self.counters,
            on_unit=self._on_unit if record else None,
            on_frame=self._on_frame if decode else None,
            on_up=lambda: self._threadsafe(self._stream_up, role),
            on_params=self.ring.set_params if record else None,
            stop=stop,
        )

    def _threadsafe(self, fn: Callable[..., Any], *args: Any) -> None:
        if self.loop is None:
            return
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(fn, *args)

    # ------------------------------------------------------------------ thread side

    def _on_unit(self, t: float, nals: list[bytes], key: bool) -> None:
        if self._last_unit_t is not None and 0 < t - self._last_unit_t < 1.0:
            self.frame_s = 0.9 * self.frame_s + 0.1 * (t - self._last_unit_t)
        self._last_unit_t = t
        self.ring.add(t, nals)
        self.relay.offer(t, nals, key)

    def _on_frame(self, df: DecodedFrame) -> None:
        decision = self.gate.check(df.small, df.ts)
        bgr: np.ndarray | None = None
        if decision.send:
            bgr = df.frame.to_ndarray(format="bgr24")
            self._seq += 1
            frame = Frame(camera=self.id, ts=datetime.fromtimestamp(df.ts, UTC), seq=df.seq, image=bgr)
            self.counters.frames_sent += 1
            self.frame_ages.append(time.time() - df.ts)
            self.feed.put(frame)
        else:
            self.counters.frames_gated += 1
        self.snapshots.update(df, bgr)

    # ------------------------------------------------------------------ state

    def _stream_up(self, role: Role) -> None:
        st = self._streams[role]
        st.up, st.reason = True, ""
        self._update_state()

    def _stream_down(self, role: Role, reason: str) -> None:
        st = self._streams[role]
        st.up, st.reason = False, reason
        if role in ("main", "both"):
            self.relay.reset()
        self._update_state()

    def _update_state(self) -> None:
        ups = [s.up for s in self._streams.values()]
        if all(ups):
            state: State = "online"
            reason = ""
        elif any(ups):
            state = "degraded"
            reason = "; ".join(f"{r} stream: {s.reason}" for r, s in self._streams.items() if not s.up)
        else:
            state = "offline"
            reason = "; ".join(s.reason for s in self._streams.values() if s.reason) or "offline"
        if state == self.state and reason == self.reason:
            return
        changed = state != self.state
        self.state, self.reason = state, reason
        if changed:
            self.since = datetime.now(UTC)
        ch = StateChange(self.id, state, reason, self.since)
        self.history.append(ch)
        if changed:
            log.log(logging.INFO if state == "online" else logging.WARNING, "camera %s %s%s", self.id, state,
                    f": {reason}" if reason else "")
        if self.on_state is not None:
            self.on_state(ch)

    # ------------------------------------------------------------------ views

    def summary(self) -> dict[str, Any]:
        c = self.counters
        c.frames_dropped = self.feed.dropped.get(self.id, 0)
        return {
            "id": self.id,
            "site": self.site.id,
            "name": self.cfg.name or self.id,
            "state": self.state,
            "reason": self.reason,
            "since": self.since.isoformat(),
            "size": list(self.size) if self.size else None,
            "counters": {
                **{k: v for k, v in c.as_dict().items() if not k.startswith("last_")},
                "last_packet_at": _iso(c.last_packet_at),
                "last_frame_at": _iso(c.last_frame_at),
                "viewers": self.relay.viewers,
                "ring_bytes": self.ring.bytes,
            },
            "zones": {k: [list(p) for p in v] for k, v in self.cfg.zones.items()},
            "rules": list(self.cfg.rules),
        }


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()


def _set_result(f: asyncio.Future[str], r: str) -> None:
    if not f.done():
        f.set_result(r)
