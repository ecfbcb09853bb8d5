"""Operators' load: per hour and per operator, alarms raised, time to acknowledge, time to
close; hours over the guideline (industrial practice: at most one alarm per ten minutes
per operator) are flagged.

The source is ``alert_actions`` (the alert timeline). The operators on duty in an hour
are the people who acknowledged or closed an alert in it (at least one is assumed), so
an hour nobody answered counts its alarms against a single operator.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from monitor.alerts.model import iso
from monitor.alerts.store import Conn

RAISING = ("raised", "reopened")


async def load_rows(
    conn: Conn, since: datetime, until: datetime, sites: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    site_cond = " AND site = ANY(%(sites)s)" if sites else ""
    args = {"since": since, "until": until, "sites": sites}
    cur = await conn.execute(
        ("""SELECT bucket('1 hour', ts) AS hour,
                   count(*) FILTER (WHERE action IN ('raised', 'reopened')) AS raised,
                   count(*) FILTER (WHERE action IN ('raised', 'reopened') AND NOT silenced) AS notified,
                   count(*) FILTER (WHERE action = 'escalated') AS escalated,
                   count(DISTINCT actor) FILTER (WHERE action IN ('acknowledged', 'closed')) AS on_duty
            FROM alert_actions WHERE ts >= %(since)s AND ts < %(until)s""" + site_cond +
         " GROUP BY 1 ORDER BY 1").encode(),
        args,
    )
    hours = await cur.fetchall()
    cur = await conn.execute(
        ("""SELECT bucket('1 hour', ts) AS hour, actor, max(role) AS role, action, count(*) AS n,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_s) AS p50,
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_s) AS p95,
                   avg(latency_s) AS mean
            FROM alert_actions
            WHERE action IN ('acknowledged', 'closed') AND ts >= %(since)s AND ts < %(until)s""" + site_cond +
         " GROUP BY 1, 2, 4 ORDER BY 1, 2, 4").encode(),
        args,
    )
    return hours, await cur.fetchall()


def _r(v: Any) -> float | None:
    return None if v is None else round(float(v), 3)


def load_report(
    hours: list[dict[str, Any]], people: list[dict[str, Any]], *, guideline_per_10min: float,
) -> dict[str, Any]:
    """Assemble the report (pure): per hour, per operator, and the hours over the guideline."""
    per_hour: list[dict[str, Any]] = []
    load_by_hour: dict[datetime, float] = {}
    for h in hours:
        on_duty = max(1, int(h["on_duty"]))
        per10 = int(h["notified"]) / on_duty / 6.0
        load_by_hour[h["hour"]] = per10
        per_hour.append({
            "hour": iso(h["hour"]), "raised": int(h["raised"]), "notified": int(h["notified"]),
            "escalated": int(h["escalated"]), "operators": on_duty,
            "alarms_per_10min_per_operator": round(per10, 3), "over_guideline": per10 > guideline_per_10min,
        })
    ops: dict[str, dict[str, Any]] = {}
    cells: dict[tuple[str, datetime], dict[str, Any]] = defaultdict(dict)
    for p in people:
        name = p["actor"]
        op = ops.setdefault(name, {"operator": name, "role": p["role"], "acks": 0, "closes": 0, "hours": []})
        cell = cells[(name, p["hour"])]
        key = "ack" if p["action"] == "acknowledged" else "close"
        op["acks" if key == "ack" else "closes"] += int(p["n"])
        cell[key + "s"] = int(p["n"])
        cell[key + "_s"] = {"p50": _r(p["p50"]), "p95": _r(p["p95"]), "mean": _r(p["mean"])}
    for (name, hour), cell in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        per10 = load_by_hour.get(hour, 0.0)
        ops[name]["hours"].append({
            "hour": iso(hour), "acks": cell.get("acks", 0), "closes": cell.get("closes", 0),
            "ack_s": cell.get("ack_s"), "close_s": cell.get("close_s"),
            "alarms_raised": round(per10 * 6.0, 3), "over_guideline": per10 > guideline_per_10min,
        })
    for op in ops.values():
        op["over_guideline_hours"] = sum(1 for h in op["hours"] if h["over_guideline"])
    return {
        "guideline": {"alarms_per_10min_per_operator": guideline_per_10min},
        "hours": per_hour,
        "operators": sorted(ops.values(), key=lambda o: o["operator"]),
        "over_guideline_hours": sum(1 for h in per_hour if h["over_guideline"]),
    }
