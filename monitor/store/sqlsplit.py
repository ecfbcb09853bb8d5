"""Split a SQL script into statements (quotes, dollar quotes and comments respected)."""

from __future__ import annotations

import re

_DOLLAR = re.compile(r"\$[A-Za-z_0-9]*\$")


def split_sql(script: str) -> list[str]:
    out: list[str] = []
    buf: list[str] = []
    i, n = 0, len(script)
    while i < n:
        c = script[i]
        if c == "-" and script.startswith("--", i):
            j = script.find("\n", i)
            j = n if j < 0 else j
            buf.append(script[i:j])
            i = j
            continue
        if c == "/" and script.startswith("/*", i):
            j = script.find("*/", i + 2)
            j = n if j < 0 else j + 2
            buf.append(script[i:j])
            i = j
            continue
        if c == "'":
            j = i + 1
            while j < n:
                if script[j] == "'" and script.startswith("''", j):
                    j += 2
                    continue
                if script[j] == "'":
                    break
                j += 1
            buf.append(script[i : j + 1])
            i = j + 1
            continue
        if c == "$":
            m = _DOLLAR.match(script, i)
            if m:
                tag = m.group(0)
                j = script.find(tag, m.end())
                j = n if j < 0 else j + len(tag)
                buf.append(script[i:j])
                i = j
                continue
        if c == ";":
            stmt = "".join(buf).strip()
            if _has_code(stmt):
                out.append(stmt)
            buf = []
            i += 1
            continue
        buf.append(c)
        i += 1
    stmt = "".join(buf).strip()
    if _has_code(stmt):
        out.append(stmt)
    return out


def _has_code(stmt: str) -> bool:
    for line in stmt.splitlines():
        s = line.strip()
        if s and not s.startswith("--"):
            return True
    return False
