"""Scans from the station and outlet apps: checked, judged, stored once.

A request body is one scan or ``{"scans": [...]}`` (at most ``BATCH_MAX``). Each scan is
``{id, cylinder, site, step, ts, operator, photos?}``:

- ``id``: the app's unique id for the scan (1-64 of ``A-Za-z0-9_.:-``), the idempotency
  key: a retried upload is stored once and answered ``duplicate: true``;
- ``cylinder``: the body QR code, 6-32 upper-case letters and digits (``CODE_RE``);
- ``site``: a configured site, and the API key's own site when the key is bound to one;
- ``step``: one of ``STEPS``; pre/post-fill checks at a station, outlet steps at an outlet;
- ``ts``: ISO 8601 with a zone, not later than now + ``clock_skew_s``, not older than a year;
- ``operator``: who scanned (kept for staff, never shown to the public);
- ``photos``: up to 20 references (URLs or object keys) of at most 512 characters.

Unknown fields and wrong types are refused naming the field (``scans.3.ts``). A batch
stores the good scans and reports each bad one by its index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from monitor.config import Config
from monitor.series import store
from monitor.series.model import CODE_RE, OUTLET_STEPS, SCAN_ID_RE, STATION_STEPS, ScanRecord
from monitor.series.validity import PLAIN_WORDS, validity

BATCH_MAX = 1000
MAX_AGE = timedelta(days=366)


class ScanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=SCAN_ID_RE.pattern, description="the app's unique id for this scan")
    cylinder: str = Field(pattern=CODE_RE.pattern, description="body QR code")
    site: str = Field(min_length=1, max_length=63)
    step: Literal["prefill_check", "postfill_check", "outlet_receive", "deliver", "install", "empty_return"]
    ts: AwareDatetime
    operator: str = Field(min_length=1, max_length=64)
    photos: list[Annotated[str, Field(min_length=1, max_length=512)]] = Field(default_factory=list, max_length=20)


@dataclass(frozen=True)
class ScanProblem:
    index: int
    code: str
    message: str
    field: str
    status: int = 422

    def as_json(self) -> dict[str, Any]:
        return {"index": self.index, "stored": False,
                "error": {"code": self.code, "message": self.message, "field": self.field}}


def _field_path(prefix: str, loc: tuple[int | str, ...]) -> str:
    return prefix + ".".join(str(x) for x in loc) if loc else prefix.rstrip(".")


def split_body(data: Any) -> tuple[list[Any], bool] | ScanProblem:
    """The scans of a request body and whether it was a batch."""
    if isinstance(data, dict) and "scans" in data:
        extra = sorted(set(data) - {"scans"})
        if extra:
            return ScanProblem(-1, "invalid_input", f"{extra[0]}: unknown field beside scans", extra[0])
        items = data["scans"]
        if not isinstance(items, list):
            return ScanProblem(-1, "invalid_input", "scans: expected a list of scans", "scans")
        if not items:
            return ScanProblem(-1, "invalid_input", "scans: the list is empty", "scans")
        if len(items) > BATCH_MAX:
            return ScanProblem(-1, "invalid_input", f"scans: at most {BATCH_MAX} per request, got {len(items)}",
                               "scans")
        return items, True
    if isinstance(data, dict):
        return [data], False
    return ScanProblem(-1, "invalid_input", "expected a scan object or {\"scans\": [...]}", "body")


def check_scan(raw: Any, index: int, *, batch: bool, cfg: Config, now: datetime,
               key_site: str | None) -> ScanIn | ScanProblem:
    """One scan checked against the contract and the city (pure but for ``now``)."""
    prefix = f"scans.{index}." if batch else ""
    try:
        s = ScanIn.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        field = _field_path(prefix, tuple(err["loc"]))
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        if err["type"] == "string_pattern_mismatch" and err["loc"][:1] == ("cylinder",):
            msg = "a cylinder code is 6-32 upper-case letters and digits"
        return ScanProblem(index, "invalid_input", f"{field}: {msg}", field)
    try:
        site = cfg.site(s.site)
    except KeyError:
        return ScanProblem(index, "invalid_input", f"{prefix}site: unknown site {s.site!r}", f"{prefix}site")
    if key_site is not None and key_site != s.site:
        return ScanProblem(index, "forbidden", f"{prefix}site: this API key is for site {key_site}, not {s.site}",
                           f"{prefix}site", 403)
    if s.step in STATION_STEPS and site.kind != "station":
        return ScanProblem(index, "invalid_input", f"{prefix}step: {s.step} is done at a station; "
                           f"{s.site} is an outlet", f"{prefix}step")
    if s.step in OUTLET_STEPS and site.kind != "outlet":
        return ScanProblem(index, "invalid_input", f"{prefix}step: {s.step} is done at an outlet; "
                           f"{s.site} is a station", f"{prefix}step")
    skew = timedelta(seconds=cfg.rules.correlation.clock_skew_s)
    if s.ts > now + skew:
        return ScanProblem(index, "invalid_input", f"{prefix}ts: {s.ts.isoformat()} is in the future "
                           f"(server time {now.isoformat()}, skew allowed {skew.total_seconds():.0f}s)", f"{prefix}ts")
    if s.ts < now - MAX_AGE:
        return ScanProblem(index, "invalid_input", f"{prefix}ts: {s.ts.isoformat()} is more than a year old",
                           f"{prefix}ts")
    return s


def to_record(s: ScanIn, app: str | None) -> ScanRecord:
    return ScanRecord(id=s.id, ts=s.ts, cylinder=s.cylinder, site=s.site, step=s.step, validity="pending",
                      operator=s.operator, app=app, photos=tuple(s.photos))


def fill_site(scan: ScanRecord) -> str | None:
    """The station that fills the cylinder, for the ``foreign`` check (fill scans only)."""
    return scan.site if scan.step in STATION_STEPS else None


async def judge_and_store(conn: Any, scans: Sequence[ScanRecord], tz: ZoneInfo
                          ) -> tuple[list[ScanRecord], list[bool]]:
    """Judge each scan's cylinder against the registry and store the scans once each.

    Returns the judged scans and, per scan, whether it was stored now (False: a known id).
    """
    cyls = await store.get_cylinders(conn, {s.cylinder for s in scans})
    judged = [
        ScanRecord(id=s.id, ts=s.ts, cylinder=s.cylinder, site=s.site, step=s.step,
                   validity=validity(cyls.get(s.cylinder), at=s.ts.astimezone(tz).date(), fill_site=fill_site(s)),
                   operator=s.operator, app=s.app, photos=s.photos)
        for s in scans
    ]
    stored = await store.insert_scans(conn, judged)
    dup_ids = [s.id for s, new in zip(judged, stored, strict=True) if not new]
    if dup_ids:  # answer a retry with what was stored the first time
        cur = await conn.execute("SELECT id, validity FROM scans WHERE id = ANY(%s)", (dup_ids,))
        before = {r["id"]: r["validity"] for r in await cur.fetchall()}
        judged = [s if new or s.id not in before else
                  ScanRecord(id=s.id, ts=s.ts, cylinder=s.cylinder, site=s.site, step=s.step, validity=before[s.id],
                             operator=s.operator, app=s.app, photos=s.photos)
                  for s, new in zip(judged, stored, strict=True)]
    return judged, stored


def reply_item(index: int, s: ScanRecord, *, stored_now: bool, spooled: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"index": index, "id": s.id, "stored": True, "duplicate": not stored_now and not spooled,
                           "validity": s.validity}
    if spooled:
        out["spooled"] = True
        out["words"] = {"zh": "已接收，数据库恢复后校验", "en": "accepted; checked when the database returns"}
    else:
        out["reason"] = None if s.validity == "ok" else s.validity
        out["words"] = PLAIN_WORDS.get(s.validity, {})
    return out
