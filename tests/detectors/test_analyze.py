"""``monitor analyze`` on simulated recordings: findings as JSON lines, errors as one line + exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.cli import main
from monitor.sim.scenes import OUTLET_ZONES, STATION_ZONES
from tests.detectors.clips import EXPORTS, OUTLET, STATION, WEIGHTS, clip, truth


def config_file(tmp_path: Path, capacity: int = 10) -> Path:
    def zones(z: dict[str, list[tuple[float, float]]]) -> str:
        return "{" + ", ".join(f"{k}: {[list(p) for p in v]}" for k, v in z.items()) + "}"

    text = f"""
detector: {{weights: {WEIGHTS}, backend: openvino, imgsz: 640, export_dir: {EXPORTS}}}
rules:
  storage: {{window_s: 3, hold_s: 3}}
sites:
  - id: st-test
    kind: station
    storage_capacity: 100
    guns: [g1]
    cameras:
      - id: st-test-entry
        url: rtsp://127.0.0.1:8554/st-test-entry
        zones: {zones(STATION_ZONES)}
        rules: [antistatic]
  - id: ol-test
    kind: outlet
    storage_capacity: {capacity}
    cameras:
      - id: ol-test-store
        url: rtsp://127.0.0.1:8554/ol-test-store
        zones: {zones(OUTLET_ZONES)}
        rules: [storage]
"""
    p = tmp_path / "city.yaml"
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--camera", "nope"], "unknown camera 'nope'"),
        (["--source", "/no/such/file.mp4"], "cannot read /no/such/file.mp4"),
        (["--source", "GARBAGE"], "cannot read"),
    ],
)
def test_errors_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                        message: str) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00not a video" * 100)
    argv = ["analyze", "--config", str(config_file(tmp_path)), "--camera", "st-test-entry",
            "--source", str(garbage), "--json"]
    for i in range(0, len(args), 2):
        argv[argv.index(args[i]) + 1] = args[i + 1] if args[i + 1] != "GARBAGE" else str(garbage)
    assert main(argv) == 2
    out = capsys.readouterr()
    assert out.out == ""
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("monitor: ") and message in lines[0]


@pytest.mark.skipif(not WEIGHTS.exists(), reason="models/lpg-sim/best.pt not built (make models)")
def test_station_clip_finds_the_violations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = clip(STATION)
    events = truth(STATION)
    snaps = tmp_path / "snaps"
    rc = main(["analyze", "--config", str(config_file(tmp_path)), "--camera", "st-test-entry",
               "--source", str(path), "--json", "--snapshots", str(snaps)])
    assert rc == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    *findings, summary = lines
    assert summary["summary"] is True and summary["frames"] >= 100 and summary["findings"] == len(findings)
    true_times = sorted(p["filling_s"] for p in events["people"] if p["violation"])
    assert len(findings) == len(true_times)
    for f, t in zip(sorted(findings, key=lambda f: f["ts"]), true_times, strict=True):
        assert f["rule"] == "antistatic_skipped" and f["camera"] == "st-test-entry"
        assert isinstance(f["track"], int)
        assert abs(f["ts"] - t) <= 2.0
        assert Path(f["snapshot"]).read_bytes()[:2] == b"\xff\xd8"  # an annotated JPEG


@pytest.mark.skipif(not WEIGHTS.exists(), reason="models/lpg-sim/best.pt not built (make models)")
def test_outlet_clip_counts_and_raises_over_capacity(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = clip(OUTLET)
    events = truth(OUTLET)
    longest = max((b - a for a, b in events["over_capacity"]), default=0.0)
    assert longest >= 5.0, "the scene should go over capacity for a while"
    rc = main(["analyze", "--config", str(config_file(tmp_path, capacity=8)), "--camera", "ol-test-store",
               "--source", str(path), "--json"])
    assert rc == 0
    *findings, summary = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    raised = [f for f in findings if f["active"]]
    assert raised and raised[0]["rule"] == "storage_over_capacity"
    assert raised[0]["capacity"] == 8 and raised[0]["count"] > 8
    assert summary["max_count"] >= max(n for _, n in events["count"]) - 1
