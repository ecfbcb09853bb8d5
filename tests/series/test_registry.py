"""The registry: rows checked one by one (line numbers and why), loaded with binary COPY,
updated in place on a second import, and the simulated registry's shares."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import date
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from monitor.cli import main
from monitor.config import load_config
from monitor.series.registry import COLUMNS, RowError, parse_row
from monitor.series.validity import Cylinder, validity
from monitor.sim.registry import generate
from monitor.store.migrate import migrate_url

ROOT = Path(__file__).resolve().parents[2]
TODAY = date(2026, 1, 10)
GOOD = ["HK000000001", "V1A", "st-a", "15", "16.5", "2020-01-02", "2025-01-03", "true", "in_service"]


def with_(i: int, v: str) -> list[str]:
    f = list(GOOD)
    f[i] = v
    return f


@pytest.mark.parametrize(("fields", "error"), [
    (GOOD, None),
    (with_(0, "hk01"), "code"),
    (with_(0, "HK-000001"), "code"),
    (with_(1, ""), None),
    (with_(1, "V 1"), "valve_code"),
    (with_(2, "St A"), "owner_site"),
    (with_(2, "st-zz"), "not a known station"),
    (with_(3, "-5"), "nominal_kg"),
    (with_(3, "nan"), "nominal_kg"),
    (with_(4, "500"), "tare_kg"),
    (with_(5, "2020-13-01"), "manufactured"),
    (with_(5, "2027-01-01"), "future"),
    (with_(6, "2019-01-01"), "last_inspection"),
    (with_(6, ""), "inspection_passed: given without"),
    (with_(7, "maybe"), "inspection_passed"),
    (with_(8, "lost"), "status"),
    (GOOD[:-1], "expected 9 fields"),
])
def test_parse_row(fields: list[str], error: str | None) -> None:
    sites = frozenset({"st-a", "st-b"})
    if error is None:
        row = parse_row(fields, today=TODAY, sites=sites)
        assert row[0] == "HK000000001" and row[3] == 15.0 and row[6] == date(2025, 1, 3) and row[7] is True
    else:
        with pytest.raises(RowError, match=error):
            parse_row(fields, today=TODAY, sites=sites)


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_import_reports_refused_lines_and_updates(fresh_db: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(migrate_url(fresh_db))
    f1 = write(tmp_path / "a.csv", [
        ",".join(COLUMNS),
        "HK000000001,V1,st-a,15,16.5,2020-01-02,,,in_service",
        "HK000000002,V2,st-a,15,16.5,2020-01-02,,,in_servic",   # line 3: bad status
        "HK000000003,V3,st-b,5,7.1,2012-01-02,2020-01-01,true,scrapped",
        "HK000000001,V9,st-a,15,16.5,2020-01-02,,,in_service",  # line 5: repeated code
        "bad,line",                                            # line 6
    ])
    rc = main(["registry", "import", str(f1), "--database-url", fresh_db, "--any-owner"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "rows loaded: 2 (new 2, updated 0, unchanged 0)" in out
    assert "rows refused: 3" in out
    assert "line 3: status" in out and "line 5: code: HK000000001 repeated (first on line 2)" in out
    assert "line 6: expected 9 fields" in out
    # a second file, columns in another order: one changed, one unchanged, one new
    cols = ["status", *COLUMNS[:-1]]
    f2 = write(tmp_path / "b.csv", [
        ",".join(cols),
        "scrapped,HK000000001,V1,st-a,15,16.5,2020-01-02,,",
        "scrapped,HK000000003,V3,st-b,5,7.1,2012-01-02,2020-01-01,true",
        "in_service,HK000000004,V4,st-b,50,47,2024-05-05,,",
    ])
    rc = main(["registry", "import", str(f2), "--database-url", fresh_db, "--any-owner"])
    out = capsys.readouterr().out
    assert rc == 0 and "rows loaded: 3 (new 1, updated 1, unchanged 1)" in out and "rows refused: 0" in out
    with psycopg.connect(fresh_db, row_factory=dict_row) as conn:
        rows = conn.execute("SELECT code, status FROM cylinders ORDER BY code").fetchall()
        assert [(r["code"], r["status"]) for r in rows] == [
            ("HK000000001", "scrapped"), ("HK000000003", "scrapped"), ("HK000000004", "in_service")]
        audits = conn.execute("SELECT details FROM audit WHERE action = 'registry.import' ORDER BY id").fetchall()
        assert [a["details"]["refused"] for a in audits] == [3, 0]


@pytest.mark.parametrize("header", ["", "code,valve_code,owner_site", ",".join([*COLUMNS, "colour"])])
def test_import_refuses_a_bad_header(session_db: str, tmp_path: Path, header: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    f = write(tmp_path / "h.csv", [header] if header else [])
    if not header:
        f.write_text("")
    assert main(["registry", "import", str(f), "--database-url", session_db]) == 2
    assert "header" in capsys.readouterr().err


def test_simulated_registry_has_the_expected_shares() -> None:
    cfg = load_config(ROOT / "config" / "haikou.yaml")
    rows = list(generate(cfg, 20_000, seed=5, today=TODAY))
    assert len({r[0] for r in rows}) == 20_000
    stations = {s.id for s in cfg.sites if s.kind == "station"}
    assert {r[2] for r in rows} <= stations
    counts = Counter(validity(Cylinder(*r), at=TODAY) for r in rows)  # type: ignore[arg-type]
    share = {k: v / len(rows) for k, v in counts.items()}
    assert 0.70 < share["ok"] < 0.92
    for reason in ("over_age", "inspection_due", "scrapped"):
        assert 0.005 < share[reason] < 0.12, (reason, share)
    assert Counter(r[3] for r in rows).most_common(1)[0][0] == 15.0


def test_import_refuses_a_file_that_is_not_utf8(session_db: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "gbk.csv"
    f.write_bytes((",".join(COLUMNS) + "\n").encode() + "HK000000001,V1,st-a,15,16.5,2020-01-02,,,在用\n".encode("gbk"))
    assert main(["registry", "import", str(f), "--database-url", session_db, "--any-owner"]) == 2
    assert "not UTF-8" in capsys.readouterr().err
