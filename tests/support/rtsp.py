"""The simulated RTSP cameras for tests: the real GStreamer RTSP server, started, frozen,
killed and restarted by the test; every wait bounded.

    with RtspServer(files={"cam-a": clip}) as srv:
        url = srv.url("cam-a")
        srv.freeze(); srv.thaw(); srv.kill(); srv.start()   # same port again

``blackhole()`` gives a TCP address that accepts connections and never answers (a camera
URL that hangs); ``scene_clips()`` renders small clips once per session.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "monitor" / "sim" / "rtsp_server.py"
GST_PYTHON = os.environ.get("MONITOR_GST_PYTHON", "/usr/bin/python3")


def gst_available() -> bool:
    try:
        r = subprocess.run(
            [GST_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import GstRtspServer"],
            capture_output=True, timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


class RtspServer:
    """One rtsp_server.py process; ``port`` stays the same across restarts."""

    def __init__(
        self,
        files: dict[str, Path] | None = None,
        *,
        switch: dict[str, list[Path]] | None = None,
        corrupt: list[str] | None = None,
        port: int = 0,
        log: Path | None = None,
        push_log: Path | None = None,
        python: str | None = None,
    ) -> None:
        self.files = files or {}
        self.switch = switch or {}
        self.corrupt = corrupt or []
        self.port = port
        self.log = log
        self.push_log = push_log
        self.python = python or GST_PYTHON
        self.proc: subprocess.Popen[bytes] | None = None

    def args(self) -> list[str]:
        a = [self.python, str(SERVER), "--port", str(self.port)]
        if self.push_log is not None:
            a += ["--push-log", str(self.push_log)]
        for name, p in self.files.items():
            a += ["--file", f"{name}={p}"]
        for name, ps in self.switch.items():
            a += ["--switch", f"{name}={','.join(str(p) for p in ps)}"]
        for name in self.corrupt:
            a += ["--corrupt", name]
        return a

    def start(self, timeout: float = 15.0) -> RtspServer:
        assert self.proc is None, "already running"
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        err = open(self.log, "ab") if self.log else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(self.args(), stdout=subprocess.PIPE, stderr=err, env=env)
        finally:
            if self.log:
                err.close()  # type: ignore[union-attr]
        assert self.proc.stdout is not None
        end = time.monotonic() + timeout
        line = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                left = end - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self.kill()
                    raise TimeoutError(f"RTSP server not ready after {timeout:.0f}s")
                chunk = os.read(self.proc.stdout.fileno(), 256)
                if not chunk:
                    rc = self.proc.wait(5)
                    self._close()
                    raise RuntimeError(f"RTSP server exited with {rc} before it was ready")
                line += chunk
        word, _, port = line.decode().strip().partition(" ")
        assert word == "READY", line
        self.port = int(port)
        return self

    def url(self, name: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{name}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (after SIGCONT, in case it is frozen), then SIGKILL if it lingers."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self._close()

    def kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def _close(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def __enter__(self) -> RtspServer:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def blackhole() -> Iterator[str]:
    """rtsp://127.0.0.1:PORT/x where PORT accepts connections and never says a word."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                c, _ = srv.accept()
                held.append(c)
            except (TimeoutError, OSError):
                continue

    th = threading.Thread(target=accept, daemon=True)
    th.start()
    try:
        yield f"rtsp://127.0.0.1:{srv.getsockname()[1]}/never"
    finally:
        stop.set()
        th.join(5)
        for c in held:
            c.close()
        srv.close()


def scene_clips(out: Path, specs: dict[str, tuple[str, int, float, tuple[int, int], float]]) -> dict[str, Path]:
    """Render {name: (kind, seed, seconds, size, fps)} to ``out/name.h264`` (kept if present)."""
    from monitor.sim.scenes import SceneSpec, write_clip

    paths: dict[str, Path] = {}
    for name, (kind, seed, seconds, size, fps) in specs.items():
        p = out / f"{name}.h264"
        if not p.exists():
            write_clip(SceneSpec(kind=kind, seed=seed, seconds=seconds, size=size, fps=fps), p)  # type: ignore[arg-type]
        paths[name] = p
    return paths
