"""The cylinder registry: CSV rows checked one by one, loaded with binary COPY.

The CSV header (DESIGN.md): ``code,valve_code,owner_site,nominal_kg,tare_kg,manufactured,
last_inspection,inspection_passed,status`` (columns in any order; dates ISO; status
``in_service`` or ``scrapped``; an empty field is "not known"). A row that breaks a rule is
refused with its line number and why; the others are loaded. An existing code is updated
(only when something changed). The import is audited in the same transaction.
"""

from __future__ import annotations

import csv
import logging
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import psycopg

from monitor.errors import InputError
from monitor.series.model import CODE_RE
from monitor.store import audit

log = logging.getLogger(__name__)

COLUMNS = ("code", "valve_code", "owner_site", "nominal_kg", "tare_kg", "manufactured", "last_inspection",
           "inspection_passed", "status")
COPY_TYPES = ("text", "text", "text", "float4", "float4", "date", "date", "bool", "text")
SITE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
VALVE_RE = re.compile(r"^[A-Za-z0-9-]{1,40}$")
_BOOL = {"true": True, "t": True, "1": True, "yes": True, "false": False, "f": False, "0": False, "no": False}

Row = tuple[str, str | None, str, float, float, date, date | None, bool | None, str]


@dataclass
class ImportReport:
    loaded: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)  # (line, why)
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {"loaded": self.loaded, "new": self.new, "updated": self.updated, "unchanged": self.unchanged,
                "refused": len(self.refused), "seconds": round(self.seconds, 2)}


class RowError(ValueError):
    pass


def _date(v: str, name: str) -> date:
    try:
        return date.fromisoformat(v)
    except ValueError:
        raise RowError(f"{name}: {v!r} is not an ISO date (YYYY-MM-DD)") from None


def _kg(v: str, name: str, hi: float) -> float:
    try:
        x = float(v)
    except ValueError:
        raise RowError(f"{name}: {v!r} is not a number") from None
    if not 0 < x <= hi:  # also refuses nan
        raise RowError(f"{name}: {v} outside (0, {hi:g}] kg")
    return x


def parse_row(f: Sequence[str], *, today: date, sites: frozenset[str] | None = None) -> Row:
    """One CSV row in ``COLUMNS`` order, checked; raises RowError naming the field."""
    if len(f) != len(COLUMNS):
        raise RowError(f"expected {len(COLUMNS)} fields, got {len(f)}")
    code, valve, owner, nominal, tare, made, insp, passed, status = (x.strip() for x in f)
    if not CODE_RE.match(code):
        raise RowError(f"code: {code!r} is not 6-32 upper-case letters and digits")
    if valve and not VALVE_RE.match(valve):
        raise RowError(f"valve_code: {valve!r} is not 1-40 letters, digits and '-'")
    if not SITE_RE.match(owner):
        raise RowError(f"owner_site: {owner!r} is not a site id")
    if sites is not None and owner not in sites:
        raise RowError(f"owner_site: {owner!r} is not a known station")
    nom = _kg(nominal, "nominal_kg", 100.0)
    tr = _kg(tare, "tare_kg", 150.0)
    m = _date(made, "manufactured")
    if m > today:
        raise RowError(f"manufactured: {made} is in the future")
    li = _date(insp, "last_inspection") if insp else None
    if li is not None and not m <= li <= today:
        raise RowError(f"last_inspection: {insp} is not between manufacture ({made}) and today")
    if passed:
        p = _BOOL.get(passed.lower())
        if p is None:
            raise RowError(f"inspection_passed: {passed!r} is not true or false")
    else:
        p = None
    if p is not None and li is None:
        raise RowError("inspection_passed: given without last_inspection")
    if status not in ("in_service", "scrapped"):
        raise RowError(f"status: {status!r} is not in_service or scrapped")
    return (code, valve or None, owner, nom, tr, m, li, p, status)


def read_csv(stream: Iterable[str], *, today: date, sites: frozenset[str] | None,
             report: ImportReport) -> Iterator[Row]:
    """Checked rows of a registry CSV; refused rows go to ``report.refused``."""
    reader = csv.reader(stream)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise InputError("the file is empty; expected the header " + ",".join(COLUMNS), field="header") from None
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0][1:]
    missing = [c for c in COLUMNS if c not in header]
    extra = [c for c in header if c not in COLUMNS]
    if missing or extra or len(header) != len(COLUMNS):
        raise InputError(
            f"line 1: header must be {','.join(COLUMNS)}; missing: {','.join(missing) or '-'}; "
            f"unknown: {','.join(extra) or '-'}", field="header")
    order = [header.index(c) for c in COLUMNS]
    in_order = order == list(range(len(COLUMNS)))
    seen: dict[str, int] = {}
    for fields in reader:
        line = reader.line_num
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        try:
            if not in_order and len(fields) == len(COLUMNS):
                fields = [fields[i] for i in order]
            row = parse_row(fields, today=today, sites=sites)
        except RowError as e:
            report.refused.append((line, str(e)))
            continue
        first = seen.get(row[0])
        if first is not None:
            report.refused.append((line, f"code: {row[0]} repeated (first on line {first})"))
            continue
        seen[row[0]] = line
        yield row


async def known_stations(conn: psycopg.AsyncConnection[Any]) -> frozenset[str] | None:
    """Station ids in the sites table (None when the table is empty: nothing to check against)."""
    cur = await conn.execute("SELECT id FROM sites WHERE kind = 'station'")
    ids = frozenset(r["id"] if isinstance(r, dict) else r[0] for r in await cur.fetchall())
    return ids or None


async def load_rows(conn: psycopg.AsyncConnection[Any], rows: Iterable[Row], report: ImportReport,
                    *, actor: audit.Actor, source: str) -> ImportReport:
    """Load checked rows in one transaction: binary COPY, then insert or update by code."""
    t0 = time.perf_counter()
    cols = ", ".join(COLUMNS)
    async with conn.transaction():
        await conn.execute("LOCK TABLE cylinders IN SHARE ROW EXCLUSIVE MODE")
        cur = await conn.execute("SELECT NOT EXISTS (SELECT 1 FROM cylinders) AS empty")
        row = await cur.fetchone()
        empty = bool(row["empty"] if isinstance(row, dict) else row[0])  # type: ignore[index]
        target = "cylinders" if empty else "cylinders_stage"
        if not empty:
            await conn.execute(
                "CREATE TEMP TABLE cylinders_stage (LIKE cylinders INCLUDING DEFAULTS) ON COMMIT DROP")
        n = 0
        async with conn.cursor() as c, c.copy(f"COPY {target} ({cols}) FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(list(COPY_TYPES))
            for r in rows:
                await cp.write_row(r)
                n += 1
        if empty:
            report.new = n
        else:
            cur = await conn.execute(
                f"""WITH up AS (
                      INSERT INTO cylinders ({cols}) SELECT {cols} FROM cylinders_stage
                      ON CONFLICT (code) DO UPDATE SET
                        valve_code = EXCLUDED.valve_code, owner_site = EXCLUDED.owner_site,
                        nominal_kg = EXCLUDED.nominal_kg, tare_kg = EXCLUDED.tare_kg,
                        manufactured = EXCLUDED.manufactured, last_inspection = EXCLUDED.last_inspection,
                        inspection_passed = EXCLUDED.inspection_passed, status = EXCLUDED.status,
                        updated_at = now()
                      WHERE ({', '.join('cylinders.' + c for c in COLUMNS[1:])})
                            IS DISTINCT FROM ({', '.join('EXCLUDED.' + c for c in COLUMNS[1:])})
                      RETURNING (xmax = 0) AS inserted)
                    SELECT count(*) FILTER (WHERE inserted) AS new, count(*) FILTER (WHERE NOT inserted) AS updated
                    FROM up"""
            )
            r2 = await cur.fetchone()
            report.new = int(r2["new"] if isinstance(r2, dict) else r2[0])  # type: ignore[index]
            report.updated = int(r2["updated"] if isinstance(r2, dict) else r2[1])  # type: ignore[index]
            report.unchanged = n - report.new - report.updated
        report.loaded = n
        report.seconds = time.perf_counter() - t0
        await audit.record(conn, actor, "registry.import", "cylinders", details={"source": source, **report.as_json()})
    return report


async def import_csv(conn: psycopg.AsyncConnection[Any], path: str, *, actor: audit.Actor,
                     today: date | None = None, check_sites: bool = True) -> ImportReport:
    """Import a registry CSV file (see the module doc)."""
    report = ImportReport()
    t0 = time.perf_counter()
    sites = await known_stations(conn) if check_sites else None
    try:
        # read as the COPY goes: a CLI job, nothing else waits on this loop
        fh = open(path, encoding="utf-8-sig", newline="")  # noqa: ASYNC230
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror}", field="file") from e
    with fh:
        rows = read_csv(fh, today=today or date.today(), sites=sites, report=report)
        try:
            await load_rows(conn, rows, report, actor=actor, source=path)
        except UnicodeDecodeError as e:  # nothing was loaded: the transaction rolled back
            raise InputError(f"{path}: not UTF-8 text near byte {e.start}; nothing loaded", field="file") from e
        except csv.Error as e:
            raise InputError(f"{path}: not a CSV file ({e}); nothing loaded", field="file") from e
    report.seconds = time.perf_counter() - t0
    log.info("registry import %s: %s", path, report.as_json())
    return report
