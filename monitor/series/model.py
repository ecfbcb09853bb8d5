"""The values of the series: scans, scale readings and fill sessions.

Plain frozen dataclasses, validated where they are built (the HTTP and MQTT edges);
the rules and the store take them as given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

# The body QR code of a cylinder: 6 to 32 upper-case letters and digits (the registry's
# key). Apps upper-case what they read before posting; anything else is refused.
CODE_RE = re.compile(r"^[A-Z0-9]{6,32}$")
# An app's scan id (the idempotency key): 1 to 64 letters, digits, '-', '_', '.', ':'.
SCAN_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")

Step = Literal["prefill_check", "postfill_check", "outlet_receive", "deliver", "install", "empty_return"]
STEPS: tuple[Step, ...] = ("prefill_check", "postfill_check", "outlet_receive", "deliver", "install", "empty_return")
STATION_STEPS = frozenset({"prefill_check", "postfill_check"})
OUTLET_STEPS = frozenset({"outlet_receive", "deliver", "empty_return"})

# No cylinder in the registry's range weighs more than this on a scale (50 kg fill,
# ~45 kg tare, margin); a reading above it, or below a small negative drift, is refused.
MAX_GROSS_KG = 150.0
MIN_GROSS_KG = -2.0


@dataclass(frozen=True)
class ScanRecord:
    """One stored scan, as the interlock and the rules see it."""

    id: str
    ts: datetime
    cylinder: str
    site: str
    step: str
    validity: str
    operator: str | None = None
    app: str | None = None
    photos: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reading:
    """One scale reading, as published on ``{prefix}/{site}/scale/{scale}/reading``."""

    ts: datetime
    site: str
    scale: str
    gross_kg: float
    gun_open: bool
    cylinder: str | None = None
    received_at: datetime | None = None


@dataclass(frozen=True)
class Fill:
    """One fill session segmented from a scale's readings."""

    site: str
    scale: str
    gun: str | None
    started_at: datetime
    ended_at: datetime
    tare_kg: float
    gross_kg: float
    cylinder: str | None
    readings: int
    flags: tuple[str, ...] = field(default=())

    @property
    def net_kg(self) -> float:
        return round(self.gross_kg - self.tare_kg, 3)

    @property
    def id(self) -> str:
        """A stable id: the scale and the start time (unique in the ``fills`` table)."""
        return f"{self.site}/{self.scale}/{self.started_at.isoformat()}"
