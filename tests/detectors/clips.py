"""Small simulated clips for the detector tests, rendered once and kept under var/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from monitor.sim.scenes import SceneSpec, load_truth, write_clip

ROOT = Path(__file__).resolve().parents[2]
CLIPS = ROOT / "var" / "test-clips"
WEIGHTS = ROOT / "models" / "lpg-sim" / "best.pt"
EXPORTS = ROOT / "var" / "exports"

# Seeds of their own (training uses 10_000.. 40_000.., the benchmark 500_000 and 600_000..).
STATION = SceneSpec(kind="station", seed=900_001, seconds=24, fps=5, difficulty=0.2, people=3)
OUTLET = SceneSpec(kind="outlet", seed=900_002, seconds=30, fps=5, difficulty=0.2, capacity=8)


def clip(spec: SceneSpec, suffix: str = ".mp4") -> Path:
    p = CLIPS / f"{spec.kind}-{spec.seed}-{spec.seconds:g}{suffix}"
    if not p.exists() or not p.with_suffix(".truth.json").exists():
        write_clip(spec, p)
    return p


def truth(spec: SceneSpec) -> dict[str, Any]:
    return load_truth(clip(spec).with_suffix(".truth.json"))["events"]


def frames(spec: SceneSpec) -> Iterator[tuple[float, np.ndarray]]:
    from monitor.detectors.analyze import decode

    yield from decode(str(clip(spec)), spec.fps)
