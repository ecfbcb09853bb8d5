from __future__ import annotations

import pytest

from monitor.store.sqlsplit import split_sql


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("SELECT 1; SELECT 2;", ["SELECT 1", "SELECT 2"]),
        ("SELECT ';'; -- a ; comment\nSELECT 2", ["SELECT ';'", "-- a ; comment\nSELECT 2"]),
        ("CREATE FUNCTION f() AS $$ BEGIN x; y; END $$;\nSELECT 3;", ["CREATE FUNCTION f() AS $$ BEGIN x; y; END $$", "SELECT 3"]),
        ("SELECT $tag$ ; $tag$; /* ; */ SELECT 'it''s;'", ["SELECT $tag$ ; $tag$", "/* ; */ SELECT 'it''s;'"]),
        ("-- only a comment;\n", []),
    ],
)
def test_split(script: str, expected: list[str]) -> None:
    assert split_sql(script) == expected
