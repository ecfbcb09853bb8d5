"""The decoded frame handed from video to detection."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded frame: BGR ``uint8`` pixels, the camera, and the wall-clock time it shows.

    ``ts`` is the frame's presentation time mapped to wall clock (UTC) at the camera's
    connect; ``seq`` counts decoded frames of this connection.
    """

    camera: str
    ts: datetime
    seq: int
    image: np.ndarray

    def __post_init__(self) -> None:
        img = self.image
        if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
            shape = getattr(img, "shape", None)
            raise ValueError(f"Frame.image: expected an HxWx3 array, got shape {shape}")
        if img.dtype != np.uint8:
            raise ValueError(f"Frame.image: expected dtype uint8, got {img.dtype}")
        if self.ts.tzinfo is None:
            raise ValueError("Frame.ts: expected an aware UTC datetime")

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])
