"""Simulated cameras: raw H.264 files served as live, looping RTSP streams.

Run with a Python that has python3-gi and gst-rtsp-server (Debian: ``/usr/bin/python3``)::

    /usr/bin/python3 monitor/sim/rtsp_server.py --port 8554 --dir var/cameras
    /usr/bin/python3 monitor/sim/rtsp_server.py --port 0 \\
        --file cam-a=var/a.h264 --file cam-b=var/b.h264@25 \\
        --switch cam-c=var/small.h264,var/big.h264 --corrupt cam-bad

Each path ``rtsp://127.0.0.1:PORT/<name>`` is one shared media (``set_shared(True)``):
however many clients connect, the file is read once and its access units are pushed
through ``appsrc`` at the file's frame rate with fresh, running-time timestamps, looping
for ever (``multifilesrc loop=true`` would resend pts 0). A path is built when its first
client connects and torn down when its last leaves.

The frame rate of a file is taken from ``NAME=PATH@FPS``, else from the ``.truth.json``
beside it (written by ``monitor.sim.scenes.write_clip``), else ``--fps`` (default 10).

Faults for tests: ``--switch NAME=A,B`` plays A then B then A ... (a camera whose
resolution changes mid-stream when A and B differ in size); ``--corrupt NAME`` serves
access units of random bytes (no decodable picture ever). Stopping, freezing and
restarting are done to the process: SIGTERM/SIGINT end it cleanly, SIGSTOP freezes it,
SIGCONT resumes it (the feeders skip the frozen time instead of bursting).

When it listens it prints one line to standard output: ``READY <port>``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("rtsp-sim")

START = b"\x00\x00\x01"


def split_nals(data: bytes) -> list[bytes]:
    """Split an Annex-B byte stream into NAL units (without start codes)."""
    out: list[bytes] = []
    i = data.find(START)
    while i >= 0:
        j = data.find(START, i + 3)
        end = len(data) if j < 0 else j
        nal = data[i + 3 : end]
        # a 4-byte start code leaves a trailing zero on the previous unit
        if j >= 0 and nal.endswith(b"\x00"):
            nal = nal.rstrip(b"\x00")
        if nal:
            out.append(nal)
        i = j
    return out


def access_units(data: bytes) -> list[bytes]:
    """Group NAL units into access units (one picture each), re-prefixed with start codes.

    A new access unit starts at an AUD, SPS, PPS or SEI after a picture's slices, or at a
    slice whose ``first_mb_in_slice`` is 0 (its first payload bit is 1)."""
    aus: list[bytes] = []
    cur: list[bytes] = []
    has_vcl = False
    for nal in split_nals(data):
        t = nal[0] & 0x1F
        vcl = t in (1, 5)
        first_slice = vcl and len(nal) > 1 and bool(nal[1] & 0x80)
        if has_vcl and (t in (6, 7, 8, 9) or first_slice):
            aus.append(b"".join(b"\x00\x00\x00\x01" + n for n in cur))
            cur, has_vcl = [], False
        cur.append(nal)
        has_vcl = has_vcl or vcl
    if cur and has_vcl:
        aus.append(b"".join(b"\x00\x00\x00\x01" + n for n in cur))
    return aus


def file_fps(path: Path, default: float) -> float:
    truth = path.with_suffix(".truth.json")
    if truth.exists():
        try:
            return float(json.loads(truth.read_text(encoding="utf-8"))["spec"]["fps"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return default


class Source:
    """What one path plays: a cycle of segments, each a list of access units at a rate."""

    def __init__(self, name: str, segments: list[tuple[list[bytes], float]], corrupt: bool = False) -> None:
        self.name = name
        self.segments = segments
        self.corrupt = corrupt
        self._cursor = self.units()  # a camera runs on without viewers: a new media resumes here
        self._lock = threading.Lock()

    def next(self) -> tuple[bytes, float, int]:
        """The next (access unit, duration, index of the unit in the cycle)."""
        with self._lock:
            unit: tuple[bytes, float, int] = next(self._cursor)
            return unit

    def units(self) -> Any:
        """Yield (access unit, frame duration, index in the cycle) for ever."""
        if self.corrupt:
            rnd = random.Random(self.name)
            fps = self.segments[0][1] if self.segments else 10.0
            while True:
                yield b"\x00\x00\x00\x01" + bytes([0x65]) + rnd.randbytes(1500), 1.0 / fps, 0
        while True:
            i = 0
            for aus, fps in self.segments:
                for au in aus:
                    yield au, 1.0 / fps, i
                    i += 1


class Feeder(threading.Thread):
    """Pushes one source's access units into an appsrc in real time until stopped."""

    def __init__(self, Gst: Any, appsrc: Any, source: Source, push_log: Any = None) -> None:
        super().__init__(name=f"feed-{source.name}", daemon=True)
        self.Gst = Gst
        self.appsrc = appsrc
        self.source = source
        self.stop_event = threading.Event()
        self.push_log = push_log

    def run(self) -> None:
        Gst = self.Gst
        nxt = time.monotonic()
        while not self.stop_event.is_set():
            au, dur, idx = self.source.next()
            buf = Gst.Buffer.new_wrapped(au)
            buf.duration = int(dur * Gst.SECOND)
            ret = self.appsrc.emit("push-buffer", buf)
            if ret != Gst.FlowReturn.OK:
                log.info("%s: push stopped (%s)", self.source.name, ret)
                break
            if self.push_log is not None:
                self.push_log.write(f"{self.source.name} {idx} {time.time():.6f}\n")
            nxt += dur
            delay = nxt - time.monotonic()
            if delay < -1.0:  # frozen (SIGSTOP) or starved: skip ahead, never burst
                nxt = time.monotonic()
                delay = 0.0
            if delay > 0 and self.stop_event.wait(delay):
                break


def load_sources(args: argparse.Namespace) -> dict[str, Source]:
    sources: dict[str, Source] = {}

    def read(spec: str) -> tuple[list[bytes], float]:
        path_s, _, fps_s = spec.partition("@")
        p = Path(path_s)
        fps = float(fps_s) if fps_s else file_fps(p, args.fps)
        aus = access_units(p.read_bytes())
        if not aus:
            raise SystemExit(f"rtsp-sim: {p}: no H.264 access units")
        return aus, fps

    if args.dir:
        for p in sorted(Path(args.dir).glob("*.h264")):
            sources[p.stem] = Source(p.stem, [read(str(p))])
    for item in args.file:
        name, _, spec = item.partition("=")
        sources[name] = Source(name, [read(spec)])
    for item in args.switch:
        name, _, specs = item.partition("=")
        sources[name] = Source(name, [read(s) for s in specs.split(",")])
    for name in args.corrupt:
        sources[name] = Source(name, [([], args.fps)], corrupt=True)
    return sources


def serve(args: argparse.Namespace) -> int:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    sources = load_sources(args)
    if not sources:
        print("rtsp-sim: nothing to serve (give --dir, --file, --switch or --corrupt)", file=sys.stderr)
        return 2
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    feeders: dict[int, Feeder] = {}
    # --push-log: one line per access unit pushed, "name index wall-clock" (latency benchmarks)
    push_log = open(args.push_log, "a", buffering=1, encoding="utf-8") if args.push_log else None
    lock = threading.Lock()

    def on_configure(_factory: Any, media: Any, source: Source) -> None:
        appsrc = media.get_element().get_child_by_name("src")
        feeder = Feeder(Gst, appsrc, source, push_log)
        with lock:
            feeders[id(media)] = feeder

        def on_unprepared(m: Any) -> None:
            with lock:
                f = feeders.pop(id(m), None)
            if f is not None:
                f.stop_event.set()
            log.info("%s: last client left", source.name)

        media.connect("unprepared", on_unprepared)
        feeder.start()
        log.info("%s: streaming", source.name)

    for name, src in sources.items():
        factory = GstRtspServer.RTSPMediaFactory()
        caps = "video/x-h264,stream-format=byte-stream,alignment=au"
        parse = "" if src.corrupt else " ! h264parse"
        factory.set_launch(
            f"( appsrc name=src is-live=true do-timestamp=true format=time block=false "
            f"max-bytes=4000000 caps={caps}{parse} ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
        )
        factory.set_shared(True)
        factory.connect("media-configure", on_configure, src)
        mounts.add_factory(f"/{name}", factory)

    if server.attach(None) == 0:
        print(f"rtsp-sim: cannot listen on {args.host}:{args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()

    def quit_() -> bool:
        loop.quit()
        return False

    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, quit_)
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGINT, quit_)
    print(f"READY {server.get_bound_port()}", flush=True)
    log.info("serving %s on rtsp://%s:%s/", ", ".join(sorted(sources)), args.host, server.get_bound_port())
    loop.run()
    with lock:
        for f in feeders.values():
            f.stop_event.set()
    if push_log is not None:
        push_log.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="rtsp_server.py", description=__doc__.split("\n", 1)[0] if __doc__ else None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8554, help="0: any free port (printed in the READY line)")
    p.add_argument("--dir", help="serve every *.h264 here at /<file stem>")
    p.add_argument("--file", action="append", default=[], metavar="NAME=PATH[@FPS]")
    p.add_argument("--switch", action="append", default=[], metavar="NAME=PATH1,PATH2[@FPS]")
    p.add_argument("--corrupt", action="append", default=[], metavar="NAME")
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--push-log", help="append 'name index wall-clock' per access unit pushed")
    args = p.parse_args(argv)
    logging.basicConfig(level=os.environ.get("RTSP_SIM_LOG", "WARNING"), format="rtsp-sim %(levelname)s %(message)s")
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
