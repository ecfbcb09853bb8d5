"""Configuration: the shipped files pass; each kind of mistake names its YAML line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from monitor.cli import main
from monitor.config import config_errors, load_config
from monitor.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = (ROOT / "config" / "example-city.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["example-city.yaml", "haikou.yaml"])
def test_shipped_configs_are_valid(name: str) -> None:
    cfg = load_config(ROOT / "config" / name)
    assert cfg.sites


def test_haikou_has_the_city_numbers() -> None:
    cfg = load_config(ROOT / "config" / "haikou.yaml")
    assert sum(s.kind == "station" for s in cfg.sites) == 17
    assert sum(s.kind == "outlet" for s in cfg.sites) == 172
    for s in cfg.sites:
        assert s.location is not None
        lon, lat = s.location
        assert 110.0 < lon < 110.7 and 19.8 < lat < 20.2, s.id  # Haikou


def _line_of(text: str, needle: str) -> int:
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(needle)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("storage_capacity: 400", "storage_capacity: -1", "greater than or equal to 0"),
        ("storage_capacity: 400", "storage_capacity: 400\n    capacity: 3", "unknown key"),
        ("[0.08, 0.35], [0.24, 0.35]", "[0.08, 0.35], [1.24, 0.35]", "less than or equal to 1"),
        ("scales: [{id: s1, gun: g1}, {id: s2, gun: g2}, {id: s3, gun: g3}]",
         "scales: [{id: s1, gun: g1}, {id: s2, gun: g9}, {id: s3, gun: g3}]", "names gun 'g9'"),
        ("kind: station\n    name: 海南民旺气站", "kind: depot\n    name: 海南民旺气站", "'station' or 'outlet'"),
        ("id: ol-haidian\n", "id: ol-qingnian\n", "site id(s) repeated: ol-qingnian"),
        ("rules: [antistatic]\n      - id: st-minwang-store", "rules: [antistatic, storage]\n      - id: st-minwang-store",
         "rule 'storage' needs zone(s) storage"),
        ("detect: {fps: 5}", "detect: {fps: 0}", "greater than 0"),
    ],
)
def test_mistakes_name_their_line(old: str, new: str, message: str) -> None:
    assert old in EXAMPLE
    broken = EXAMPLE.replace(old, new, 1)
    cfg, errs = config_errors(broken, "city.yaml")
    assert cfg is None
    assert any(message in str(e) for e in errs), [str(e) for e in errs]
    err = next(e for e in errs if message in str(e))
    assert err.line is not None
    # The reported line is the changed one or lies in the block it opened.
    changed = _line_of(broken, new.splitlines()[0].strip()[:20])
    assert changed - 3 <= err.line <= changed + 12, (err.line, changed, str(err))


def test_unknown_key_points_at_exact_line() -> None:
    broken = EXAMPLE.replace("    storage_capacity: 500\n", "    storage_capacity: 500\n    colour: red\n", 1)
    _, errs = config_errors(broken, "c.yaml")
    assert len(errs) == 1
    assert errs[0].line == _line_of(broken, "colour: red")
    assert str(errs[0]).startswith(f"c.yaml:{errs[0].line}: sites[1].colour: unknown key")


def test_yaml_syntax_error_has_line() -> None:
    _, errs = config_errors("sites:\n  - id: a\n    kind: [station\n", "x.yaml")
    assert errs and errs[0].line is not None and "YAML syntax" in str(errs[0])


def test_duplicate_key_refused() -> None:
    _, errs = config_errors("timezone: a\ntimezone: b\n", "x.yaml")
    assert errs and errs[0].line == 2 and "repeated" in str(errs[0])


def test_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://x@127.0.0.1/y")
    monkeypatch.setenv("MQTT_URL", "mqtt://127.0.0.1:1999")
    cfg = load_config(ROOT / "config" / "example-city.yaml")
    assert cfg.database.url.endswith("/y") and cfg.mqtt.url.endswith(":1999")


def test_missing_file_is_one_line() -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config("/nonexistent/city.yaml")


def test_check_config_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(ROOT / "config" / "haikou.yaml")]) == 0
    out = capsys.readouterr().out
    assert "189 sites (17 stations, 172 outlets)" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.replace("storage_capacity: 500", "storage_capacity: lots"))
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    line = _line_of(bad.read_text(), "storage_capacity: lots")
    assert f"{bad}:{line}: sites[1].storage_capacity" in err
    assert "Traceback" not in err


def test_check_config_console_script(tmp_path: Path) -> None:
    """The installed ``monitor`` command exits non-zero with a one-line error and no traceback."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("sites: [\n")
    exe = Path(sys.executable).parent / "monitor"
    r = subprocess.run([str(exe), "check-config", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "YAML syntax" in r.stderr
