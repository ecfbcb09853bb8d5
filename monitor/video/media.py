"""The media folder: clips written atomically from a ring cut, and retention by age and size."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from monitor.video.mp4 import progressive_mp4, samples_from
from monitor.video.ring import Cut

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipInfo:
    path: Path
    bytes: int
    frames: int
    start: float  # wall clock of the first frame (a keyframe)
    duration_s: float


def cut_to_mp4(cut: Cut) -> tuple[bytes, float]:
    """Remux a ring cut to a faststart MP4 (no re-encode); returns the bytes and duration."""
    aus = [(u.t, u.nals) for u in cut.units]
    samples = samples_from(aus, cut.frame_s)
    dur = sum(s.duration for s in samples) / 90_000
    return progressive_mp4(cut.sps, cut.pps, samples), dur


def write_cut(cut: Cut, dest: Path) -> ClipInfo:
    """Write the clip to ``dest`` atomically (a temporary file renamed into place)."""
    data, dur = cut_to_mp4(cut)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, dest)
    return ClipInfo(dest, len(data), len(cut.units), cut.units[0].t, dur)


def prune(root: Path, max_age_s: float, max_bytes: int, now: float | None = None) -> tuple[int, int]:
    """Delete files older than ``max_age_s``, then the oldest until the folder holds at most
    ``max_bytes``. Returns (files removed, bytes freed). Empty folders are removed too."""
    if not root.is_dir():
        return 0, 0
    now = time.time() if now is None else now
    files: list[tuple[float, int, Path]] = []
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            try:
                st = p.stat()
            except OSError:
                continue
            files.append((st.st_mtime, st.st_size, p))
    files.sort()
    total = sum(sz for _m, sz, _p in files)
    removed = freed = 0
    for mtime, size, p in files:
        if now - mtime <= max_age_s and total <= max_bytes:
            break
        try:
            p.unlink()
        except OSError as e:
            log.warning("media retention: cannot remove %s: %s", p, e)
            continue
        removed += 1
        freed += size
        total -= size
    for d in sorted((d for d in root.rglob("*") if d.is_dir()), key=lambda d: len(d.parts), reverse=True):
        try:
            d.rmdir()
        except OSError:
            pass
    if removed:
        log.info("media retention: removed %d file(s), %d bytes", removed, freed)
    return removed, freed
