"""What the alerts need from video, as a small protocol the entry hands them."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Protocol


class EvidenceSource(Protocol):
    async def snapshot(self, camera: str) -> tuple[datetime, bytes] | None:
        """The camera's latest frame as JPEG, with its time; None when the camera has none."""
        ...

    async def clip(self, camera: str, start: datetime, end: datetime, dest: Path) -> Path | None:
        """Cut [start, end] from the camera's packet ring to an MP4 at ``dest`` (remux, no
        re-encode, faststart), waiting (bounded) for the post-roll to arrive. None when the
        ring no longer holds ``start`` or the camera is unknown."""
        ...
