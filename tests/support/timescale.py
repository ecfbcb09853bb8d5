"""The TimescaleDB tier: TimescaleDB 2.23 compiled to WebAssembly (PGlite), served on loopback.

It takes one connection at a time, needs ``prepare_threshold=None`` and has no COPY.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.net import free_port, port_open, wait_for

HERE = Path(__file__).resolve().parent.parent / "timescale"


@contextmanager
def timescale_server() -> Iterator[str]:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed: the TimescaleDB tier needs Node.js (apt-get install nodejs)")
    if not (HERE / "node_modules" / "@unni-craftsman" / "pglite").is_dir():
        raise RuntimeError("the TimescaleDB test server is not installed: run scripts/setup.sh node")
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="monitor-pglite-", suffix=".log", delete=False)
    proc = subprocess.Popen([node, str(HERE / "server.mjs"), str(port)], cwd=HERE, stdout=log, stderr=log)
    try:
        wait_for(lambda: port_open("127.0.0.1", port) or proc.poll() is not None, 60, "the TimescaleDB server")
        if proc.poll() is not None:
            raise RuntimeError(f"TimescaleDB server exited: {Path(log.name).read_text()[-2000:]}")
        yield f"postgresql://postgres:x@127.0.0.1:{port}/postgres?sslmode=disable"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
        os.unlink(log.name)
