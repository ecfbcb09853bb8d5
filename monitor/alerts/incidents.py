"""Incidents: an alert with its evidence, the actions taken (acks, locks, unlocks, closes,
exports) and the supervisor's disposition; and its export as one archive for the file."""

from __future__ import annotations

import hashlib
import json
import zipfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from monitor.alerts import store
from monitor.alerts.evidence import media_path
from monitor.alerts.model import alert_json, iso
from monitor.alerts.store import Conn, json_default
from monitor.errors import NotFound

LOCK_ACTIONS = ("station.lock", "station.unlock", "gun.lock", "gun.unlock", "gun.reassert")
LOCK_MARGIN = timedelta(minutes=10)


def _evidence_json(alert_id: int, r: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": r["kind"], "status": r["status"], "camera": r["camera"], "ts": iso(r["ts"]),
        "ends_at": iso(r["ends_at"]), "attempts": r["attempts"], "error": r["error"],
    }
    if r["path"]:
        out.update({"media_type": r["media_type"], "bytes": r["bytes"], "sha256": r["sha256"]})
        name = {"snapshot": "snapshot.jpg", "clip": "clip.mp4"}.get(r["kind"])
        if name and r["status"] == "ready":
            out["url"] = f"/api/v1/incidents/{alert_id}/{name}"
    if r["data"] is not None:
        out["data"] = r["data"]
    return out


async def evidence_rows(conn: Conn, alert_id: int) -> list[dict[str, Any]]:
    cur = await conn.execute("SELECT * FROM evidence WHERE alert_id = %s ORDER BY id", (alert_id,))
    return await cur.fetchall()


async def evidence_file(conn: Conn, alert_id: int, kind: str, media_dir: Path) -> tuple[Path, str]:
    """The ready media file of one evidence item; NotFound says why there is none."""
    cur = await conn.execute("SELECT * FROM evidence WHERE alert_id = %s AND kind = %s", (alert_id, kind))
    r = await cur.fetchone()
    if r is None:
        if await store.get_alert(conn, alert_id) is None:
            raise NotFound(f"no incident {alert_id}", field="id")
        raise NotFound(f"incident {alert_id} has no {kind} (not a video alert)", code="no_evidence")
    if r["status"] != "ready" or not r["path"]:
        why = f": {r['error']}" if r["error"] else ""
        raise NotFound(f"the {kind} of incident {alert_id} is {r['status']}{why}", code=f"evidence_{r['status']}")
    p = media_path(media_dir, r["path"])
    if not p.is_file():
        raise NotFound(f"the {kind} of incident {alert_id} is no longer on disk (media retention)",
                       code="evidence_expired")
    return p, str(r["media_type"] or "application/octet-stream")


async def actions(conn: Conn, a: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
    """The audit rows of this alert and incident, and the locks and unlocks of its site while it
    was live (or that name it as their reason)."""
    aid = int(a["id"])
    end = (a["closed_at"] or now) + LOCK_MARGIN
    cur = await conn.execute(
        """SELECT id, ts, actor, role, action, target, reason, address, details FROM audit
           WHERE target = ANY(%s)
              OR (action = ANY(%s) AND (target = %s OR target LIKE %s)
                  AND ((details->>'ref') = %s OR ts BETWEEN %s AND %s))
           ORDER BY ts, id LIMIT 1000""",
        ([f"alert/{aid}", f"incident/{aid}"], list(LOCK_ACTIONS), f"site/{a['site']}",
         f"site/{a['site']}/%", str(aid), a["first_seen"] - LOCK_MARGIN, end),
    )
    return [{**r, "ts": iso(r["ts"])} for r in await cur.fetchall()]


async def incident(conn: Conn, alert_id: int, now: datetime, *, findings: int = 100) -> dict[str, Any]:
    a = await store.get_alert(conn, alert_id)
    if a is None:
        raise NotFound(f"no incident {alert_id}", field="id")
    ev = {r["kind"]: _evidence_json(alert_id, r) for r in await evidence_rows(conn, alert_id)}
    timeline = [{**r, "ts": iso(r["ts"])} for r in await store.alert_timeline(conn, alert_id)]
    fs = [{**r, "ts": iso(r["ts"]), "received_at": iso(r["received_at"])}
          for r in await store.alert_findings(conn, alert_id, findings)]
    acts = await actions(conn, a, now)
    return {
        "id": alert_id,
        "alert": alert_json(a),
        "evidence": ev,
        "findings": fs,
        "timeline": timeline,
        "actions": acts,
        "locks": [x for x in acts if x["action"] in LOCK_ACTIONS],
        "disposition": None if a["disposition"] is None else {
            "disposition": a["disposition"], "note": a["close_note"], "by": a["closed_by"],
            "at": iso(a["closed_at"])},
    }


def write_archive(dest: Path, doc: dict[str, Any], media: dict[str, Path]) -> tuple[int, str, list[str]]:
    """One ZIP: ``incident.json``, the media, and ``manifest.json`` with each item's SHA-256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part")
    manifest: dict[str, str] = {}
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        body = json.dumps(doc, default=json_default, ensure_ascii=False, indent=2).encode()
        z.writestr("incident.json", body)
        manifest["incident.json"] = hashlib.sha256(body).hexdigest()
        for name, path in media.items():
            h = hashlib.sha256()
            with open(path, "rb") as src, z.open(name, "w") as out:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    h.update(chunk)
                    out.write(chunk)
            manifest[name] = h.hexdigest()
        z.writestr("manifest.json", json.dumps(manifest, indent=2))
    tmp.replace(dest)
    h = hashlib.sha256()
    with open(dest, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return dest.stat().st_size, h.hexdigest(), sorted([*manifest, "manifest.json"])
