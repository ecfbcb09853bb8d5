"""Video workers as separate processes (``monitor run --role video``), for the scale-out
test and benchmark: started, read through ``/metrics`` and the lease table, killed.

    w = VideoWorker(cfgfile, env, log=tmp / "w1.log").start()
    w.name                         # its lease holder name (host-pid)
    w.camera_frames()              # {camera: frames analysed} from its /metrics
    w.kill()                       # SIGKILL: no lease given back
    w.stop()                       # SIGTERM, then SIGKILL if it lingers

``RtspViewers`` keeps a demuxing client on each simulated camera, so a camera's stream
goes on while the workers come and go (a real camera does not restart its scene when a
client leaves; the simulator's shared media would).
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from tests.support.net import free_port

MONITOR = Path(sys.executable).parent / "monitor"
_SAMPLE = re.compile(r'^(\w+)\{\w+="([^"]+)"\} ([0-9.eE+-]+)$', re.M)  # samples with one label


class VideoWorker:
    def __init__(self, config: Path, env: dict[str, str], *, log: Path, port: int | None = None) -> None:
        self.config = config
        self.env = env
        self.log = log
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> VideoWorker:
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                [str(MONITOR), "--log-json", "run", "--config", str(self.config), "--role", "video",
                 "--port", str(self.port)],
                env=self.env, stdout=subprocess.DEVNULL, stderr=err,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def name(self) -> str:
        """The worker's name in ``camera_leases`` (``LeaseKeeper``'s default)."""
        return f"{socket.gethostname()}-{self.pid}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def metrics(self, timeout_s: float = 2.0) -> dict[str, dict[str, float]]:
        """Its /metrics samples with one label (camera, why, ...): {metric: {label value: value}}
        ({} when it does not answer)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=timeout_s) as r:
                text = r.read().decode()
        except OSError:
            return {}
        out: dict[str, dict[str, float]] = {}
        for name, cam, value in _SAMPLE.findall(text):
            out.setdefault(name, {})[cam] = float(value)
        return out

    def camera_frames(self) -> dict[str, float]:
        return self.metrics().get("monitor_detector_camera_frames_total", {})

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGCONT)  # in case it is paused
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def leases(db: str) -> dict[str, dict[str, Any]]:
    """{camera: {worker, generation, live}} as the lease table holds it now."""
    with psycopg.connect(db, row_factory=dict_row, connect_timeout=5) as c:
        rows = c.execute("SELECT camera_id, worker, generation, expires_at > now() AS live FROM camera_leases")
        return {r["camera_id"]: dict(r) for r in rows.fetchall()}


def held_by(db: str) -> dict[str, set[str]]:
    """{worker: cameras it holds a live lease on}."""
    out: dict[str, set[str]] = {}
    for cam, r in leases(db).items():
        if r["worker"] and r["live"]:
            out.setdefault(r["worker"], set()).add(cam)
    return out


def wait_until(pred: Any, timeout_s: float, what: str, every_s: float = 0.25) -> float:
    """Poll ``pred`` until it is true; the seconds it took (AssertionError after ``timeout_s``)."""
    t0 = time.monotonic()
    while True:
        if pred():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"not within {timeout_s:.0f}s: {what}")
        time.sleep(every_s)


class RtspViewers:
    """One demuxing (not decoding) client per URL, on a thread each, until ``close()``."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.stop = threading.Event()
        self.packets: dict[str, int] = dict.fromkeys(urls, 0)
        self.threads = [threading.Thread(target=self._view, args=(u,), daemon=True) for u in urls]

    def _view(self, url: str) -> None:
        import av

        while not self.stop.is_set():
            try:
                c = av.open(url, options={"rtsp_transport": "tcp"}, timeout=(5.0, 5.0))
            except Exception:
                self.stop.wait(0.5)
                continue
            try:
                for _ in c.demux(video=0):
                    self.packets[url] += 1
                    if self.stop.is_set():
                        break
            except Exception:
                pass
            finally:
                c.close()

    def __enter__(self) -> RtspViewers:
        for t in self.threads:
            t.start()
        wait_until(lambda: all(self.packets.values()), 15, "the RTSP viewers receive packets")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)


class PushLog:
    """The RTSP simulator's ``--push-log`` ("name index wall-clock" per access unit): where
    each camera's clip stands at a wall time (the scene time of a frame)."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path = path
        self.fps = fps

    def pushes(self, name: str) -> list[tuple[int, float]]:
        """(index of the access unit in the clip, wall time it was pushed), in order."""
        out = []
        for line in self.path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == name:
                out.append((int(parts[1]), float(parts[2])))
        return out

    def scene_time(self, name: str, wall: float) -> tuple[int, float] | None:
        """(loop number, seconds into the clip) of what the camera showed at ``wall``."""
        loop, last = -1, None
        for idx, t in self.pushes(name):
            if t > wall:
                break
            if idx == 0:
                loop += 1
            last = (idx, t)
        if last is None or loop < 0:
            return None
        return loop, last[0] / self.fps + (wall - last[1])

    def wall_time(self, name: str, loop: int, scene_s: float) -> float | None:
        """When the camera showed ``scene_s`` of loop ``loop`` (None: not yet pushed)."""
        n = -1
        for idx, t in self.pushes(name):
            if idx == 0:
                n += 1
            if n == loop:
                return t - idx / self.fps + scene_s
        return None
