"""The on-disk spool: accepted scans, readings and fills kept while the database is away.

Append-only segment files of JSON lines (``NNNNNNNNNNNN.jsonl``), each append written and
``fsync``-ed before the caller acknowledges anything; the total is bounded
(``SpoolFull`` beyond it, a clear error, nothing half-accepted). ``flush`` hands the
segments back oldest first; the caller writes one to the database (idempotently: readings
by scale and time, scans by their id, fills by scale and start) and only then deletes it,
so a crash mid-flush re-flushes a segment without duplicating a row: in order, once.
A torn last line (a crash mid-append, never acknowledged) is skipped and counted.

One process per folder: ``open`` takes an exclusive ``flock`` on the folder's ``.lock``
(the kernel drops it when the process ends, however it ends). With ``slots=True`` the
folder given is a parent, and the spool takes the first of ``0/``, ``1/``, … that no
running process holds: two services on one host never append to or flush each other's
files, and a crashed process's slot is flushed by the next process that takes it.
``spool_dir_for`` names the parent after the database, so a service never flushes
records meant for another database into its own.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from monitor.errors import ServiceUnavailable
from monitor.series.model import Fill, Reading, ScanRecord

log = logging.getLogger(__name__)


class SpoolFull(ServiceUnavailable):
    code = "spool_full"


class SpoolBusy(ServiceUnavailable):
    code = "spool_busy"


MAX_SLOTS = 64


def spool_dir_for(base: str | os.PathLike[str], database_url: str, roles: Iterable[str]) -> Path:
    """``base/<database>@<host>-<port>/<roles>``: the spool parent of one kind of process
    writing to one database (host and name from the libpq URL)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        info = conninfo_to_dict(database_url)
    except Exception:  # an unparsable URL fails at connect; name the folder by its text
        info = {"dbname": database_url}
    key = f"{info.get('dbname') or 'postgres'}@{info.get('host') or 'local'}-{info.get('port') or 5432}"
    safe = re.sub(r"[^A-Za-z0-9._@-]+", "_", key)
    return Path(base) / safe / ("-".join(sorted(roles)) or "none")


Item = Reading | ScanRecord | Fill


def to_record(x: Item) -> dict[str, Any]:
    if isinstance(x, Reading):
        return {"k": "r", "ts": x.ts.isoformat(), "site": x.site, "scale": x.scale, "kg": x.gross_kg,
                "gun": x.gun_open, "cyl": x.cylinder,
                "rcv": x.received_at.isoformat() if x.received_at else None}
    if isinstance(x, ScanRecord):
        return {"k": "s", "id": x.id, "ts": x.ts.isoformat(), "cyl": x.cylinder, "site": x.site, "step": x.step,
                "op": x.operator, "app": x.app, "photos": list(x.photos)}
    return {"k": "f", "site": x.site, "scale": x.scale, "gun": x.gun, "start": x.started_at.isoformat(),
            "end": x.ended_at.isoformat(), "tare": x.tare_kg, "gross": x.gross_kg, "cyl": x.cylinder,
            "n": x.readings, "flags": list(x.flags)}


def from_record(d: dict[str, Any]) -> Item:
    k = d["k"]
    if k == "r":
        return Reading(ts=datetime.fromisoformat(d["ts"]), site=d["site"], scale=d["scale"], gross_kg=d["kg"],
                       gun_open=d["gun"], cylinder=d["cyl"],
                       received_at=datetime.fromisoformat(d["rcv"]) if d.get("rcv") else None)
    if k == "s":
        return ScanRecord(id=d["id"], ts=datetime.fromisoformat(d["ts"]), cylinder=d["cyl"], site=d["site"],
                          step=d["step"], validity="pending", operator=d["op"], app=d["app"],
                          photos=tuple(d["photos"]))
    if k == "f":
        return Fill(site=d["site"], scale=d["scale"], gun=d["gun"], started_at=datetime.fromisoformat(d["start"]),
                    ended_at=datetime.fromisoformat(d["end"]), tare_kg=d["tare"], gross_kg=d["gross"],
                    cylinder=d["cyl"], readings=d["n"], flags=tuple(d["flags"]))
    raise ValueError(f"unknown spool record kind {k!r}")


@dataclass
class SpoolStats:
    appended: int = 0
    flushed: int = 0
    torn: int = 0
    refused_full: int = 0


class Spool:
    """Bounded, fsync-ed, append-only segments. Thread-safe (appends run in a worker thread)."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int, *, segment_bytes: int = 8 * 1024**2,
                 slots: bool = False) -> None:
        self.dir = Path(directory)
        self.base = self.dir
        self.slots = slots
        self._lock_fd: int | None = None
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.stats = SpoolStats()
        self._lock = threading.Lock()
        self._segments: list[Path] = []
        self._current: Path | None = None
        self._fd: int | None = None
        self._current_size = 0
        self.bytes = 0
        self.records = 0  # records waiting (approximate after a restart: counted when read)

    def open(self) -> None:
        if self.slots:
            for i in range(MAX_SLOTS):
                if self._take(self.base / str(i)):
                    break
            else:
                raise SpoolBusy(f"spool {self.base}: all {MAX_SLOTS} slots are held by running processes")
        elif not self._take(self.dir):
            raise SpoolBusy(f"spool {self.dir} is held by another running process (its .lock)")
        with self._lock:
            self._segments = sorted(self.dir.glob("*.jsonl"))
            self.bytes = sum(p.stat().st_size for p in self._segments)
        if self._segments:
            log.warning("spool %s holds %d segment(s), %d bytes from before: they will be flushed",
                        self.dir, len(self._segments), self.bytes)

    def _take(self, d: Path) -> bool:
        """Lock folder ``d`` for this process (False: another process holds it)."""
        d.mkdir(parents=True, exist_ok=True)
        fd = os.open(d / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
        self.dir = d
        return True

    def close(self) -> None:
        with self._lock:
            self._close_current()
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None

    @property
    def empty(self) -> bool:
        return not self._segments

    def _next_name(self) -> Path:
        last = int(self._segments[-1].stem) if self._segments else 0
        return self.dir / f"{last + 1:012d}.jsonl"

    def _close_current(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None
        self._current = None
        self._current_size = 0

    def append(self, items: Iterable[Item]) -> int:
        """Write ``items`` durably (fsync) before returning; SpoolFull when over the bound."""
        data = b"".join(json.dumps(to_record(x), separators=(",", ":")).encode() + b"\n" for x in items)
        if not data:
            return 0
        n = data.count(b"\n")
        with self._lock:
            if self.bytes + len(data) > self.max_bytes:
                self.stats.refused_full += n
                raise SpoolFull(
                    f"spool {self.dir} full: {self.bytes} of {self.max_bytes} bytes used; "
                    f"{n} record(s) refused until the database returns")
            if self._fd is None or self._current_size >= self.segment_bytes:
                self._close_current()
                self._current = self._next_name()
                self._fd = os.open(self._current, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                self._segments.append(self._current)
                _fsync_dir(self.dir)
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            os.fsync(self._fd)
            self._current_size += len(data)
            self.bytes += len(data)
            self.records += n
            self.stats.appended += n
        return n

    def pending(self) -> list[Path]:
        """The segments to flush, oldest first; new appends go to a new segment from now on."""
        with self._lock:
            self._close_current()
            return list(self._segments)

    def read(self, path: Path) -> list[Item]:
        out: list[Item] = []
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
        for i, line in enumerate(lines):
            if not line:
                continue
            try:
                out.append(from_record(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                if i == len(lines) - 1 or (i == len(lines) - 2 and not lines[-1]):
                    self.stats.torn += 1
                    log.warning("spool %s: torn last record skipped (a crash mid-append; it was never acknowledged)",
                                path.name)
                else:
                    raise
        return out

    def done(self, path: Path, records: int) -> None:
        """A segment is in the database: delete it."""
        with self._lock:
            size = path.stat().st_size if path.exists() else 0
            path.unlink(missing_ok=True)
            if path in self._segments:
                self._segments.remove(path)
            self.bytes = max(0, self.bytes - size)
            self.records = max(0, self.records - records)
            self.stats.flushed += records
            _fsync_dir(self.dir)


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
