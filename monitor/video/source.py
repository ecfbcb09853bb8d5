"""One connection to one camera stream, run on its own thread (PyAV is blocking).

``StreamConnection.run()`` opens the URL with the low-latency RTSP options, then reads
packets until the stream ends or fails, and returns the reason as text: a packet loop
that ends quietly is a disconnect. Each access unit goes to ``on_unit`` (the ring, the
live relay); when the connection decodes (the detect stream, or the only stream), each
frame is sampled to the detection rate and handed to ``on_frame`` with its small grey
image for motion gating. Everything the thread hands over is a call the receiver makes
cheap and non-blocking.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np

from monitor.video.h264 import NAL_SPS, nal_type, params_from_extradata, parse_sps, split_nals
from monitor.video.motion import Sampler, small_grey

log = logging.getLogger(__name__)

RTSP_OPTIONS = {
    "rtsp_transport": "tcp",
    "fflags": "nobuffer",
    "flags": "low_delay",
    "max_delay": "0",
    "analyzeduration": "0",
    "probesize": "4096",
}


def open_options(url: str) -> dict[str, str]:
    return dict(RTSP_OPTIONS) if url.startswith(("rtsp://", "rtsps://")) else {}


@dataclass
class StreamCounters:
    """Counters of one camera, summed over its connections (written by its threads)."""

    packets: int = 0
    bytes: int = 0
    frames_decoded: int = 0
    frames_sampled: int = 0
    frames_gated: int = 0
    frames_sent: int = 0
    frames_dropped: int = 0
    decode_errors: int = 0
    reconnects: int = 0
    last_packet_at: float | None = None  # wall clock (epoch seconds)
    last_frame_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class DecodedFrame:
    """A sampled frame as the thread hands it over: PyAV frame, wall time, luma thumbnail."""

    frame: av.VideoFrame
    ts: float  # wall clock (epoch seconds)
    seq: int
    small: np.ndarray


class StreamFailed(Exception):
    pass


@dataclass
class StreamConnection:
    url: str
    decode: bool
    record: bool
    sample_fps: float
    open_s: float
    read_s: float
    stall_s: float  # packets but no decodable picture this long: give up
    counters: StreamCounters
    on_unit: Callable[[float, list[bytes], bool], None] | None = None
    on_frame: Callable[[DecodedFrame], None] | None = None
    on_up: Callable[[], None] | None = None
    on_params: Callable[[bytes | None, bytes | None], None] | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    size: tuple[int, int] | None = None

    def run(self) -> str:
        """Connect and read until the end; return why it ended."""
        t0 = time.monotonic()
        try:
            container = av.open(self.url, options=open_options(self.url), timeout=(self.open_s, self.read_s))
        except av.error.FFmpegError as e:
            if time.monotonic() - t0 >= 0.9 * self.open_s:
                return f"cannot open: timed out after {self.open_s:.0f}s (no answer)"
            return f"cannot open: {_err_text(e)}"
        except OSError as e:
            return f"cannot open: {e}"
        try:
            return self._read(container)
        except StreamFailed as e:
            return str(e)
        except av.error.FFmpegError as e:
            return f"read failed: {_err_text(e)}"
        except OSError as e:
            return f"read failed: {e}"
        finally:
            container.close()

    def _read(self, container: Any) -> str:
        if not container.streams.video:
            return "no video stream"
        stream = container.streams.video[0]
        ctx = stream.codec_context
        ctx.thread_count = 1
        if self.on_params is not None:
            self.on_params(*params_from_extradata(bytes(ctx.extradata) if ctx.extradata else None))
        tb = float(stream.time_base) if stream.time_base else 1 / 90000
        sampler = Sampler(self.sample_fps)
        c = self.counters
        wall0: float | None = None
        pts0 = 0
        seq = 0
        up = False
        connected = time.monotonic()
        last_picture = connected
        cur_sps: bytes | None = None
        pend: list[bytes] = []
        pend_pts: int | None = None
        pend_t = 0.0
        pend_key = False
        for packet in container.demux(stream):
            if self.stop.is_set():
                return "stopped"
            if packet.size == 0 or packet.pts is None:
                continue
            now = time.time()
            if wall0 is None:
                wall0, pts0 = now, packet.pts
            t = wall0 + (packet.pts - pts0) * tb
            data = bytes(packet)
            c.packets += 1
            c.bytes += len(data)
            c.last_packet_at = now
            nals = split_nals(data)
            # the last SPS of a packet is the one in force (a relay may repeat an old one first)
            sps = next((n for n in reversed(nals) if nal_type(n) == NAL_SPS), None)
            if sps is not None:
                if cur_sps is not None and sps != cur_sps:
                    old, new = _dims(cur_sps), _dims(sps)
                    if old != new:
                        raise StreamFailed(f"resolution changed {old} -> {new}; reconnecting")
                cur_sps = sps
            if self.record:
                # The RTSP demuxer may split one picture over several packets of the same
                # pts: an access unit is complete when a packet of another pts arrives.
                if pend_pts is not None and packet.pts != pend_pts and self.on_unit is not None:
                    self.on_unit(pend_t, pend, pend_key)
                    pend = []
                    pend_key = False
                pend_pts, pend_t = packet.pts, t
                pend.extend(nals)
                pend_key = pend_key or bool(packet.is_keyframe)
                if not up and not self.decode:
                    up = True
                    if self.on_up is not None:
                        self.on_up()
            if not self.decode:
                continue
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                c.decode_errors += 1
                frames = []
            mono = time.monotonic()
            if not frames:
                if mono - last_picture > self.stall_s:
                    raise StreamFailed(
                        f"no decodable picture for {self.stall_s:.0f}s ({c.decode_errors} decode errors)"
                    )
                continue
            last_picture = mono
            if not up:
                up = True
                if self.on_up is not None:
                    self.on_up()
            for f in frames:
                c.frames_decoded += 1
                self.size = (f.width, f.height)
                ft = t if f.pts is None else wall0 + (f.pts - pts0) * tb
                if not sampler.take((f.pts if f.pts is not None else packet.pts) * tb):
                    continue
                seq += 1
                c.frames_sampled += 1
                c.last_frame_at = ft
                if self.on_frame is not None:
                    self.on_frame(DecodedFrame(f, ft, seq, small_grey(_luma(f))))
        return "stream ended (the server closed it)"


def _luma(f: av.VideoFrame) -> np.ndarray:
    plane = f.planes[0]
    arr = np.frombuffer(memoryview(plane), np.uint8)  # type: ignore[arg-type]
    return arr.reshape(f.height, plane.line_size)[:, : f.width]


def _dims(sps: bytes) -> str:
    try:
        i = parse_sps(sps)
        return f"{i.width}x{i.height}"
    except (ValueError, IndexError):
        return "?"


def _err_text(e: Exception) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    if isinstance(e, av.error.ExitError) or "Immediate exit" in str(msg):
        return "timed out (no answer)"
    return str(msg)
