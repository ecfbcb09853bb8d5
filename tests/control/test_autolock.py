"""The auto-lock policy in the real service: findings on the bus lock a gun or the station
at once, audited as ``system:auto-lock`` with the finding as the reason."""

from __future__ import annotations

from datetime import UTC, datetime

from monitor.control.model import GunId
from monitor.findings import Finding
from monitor.web.keys import FINDINGS
from tests.control.conftest import Mosquitto, control_city, devices, rows, serve


async def test_findings_lock_what_the_policy_says(session_db: str, broker: Mosquitto) -> None:
    cfg = control_city(session_db, broker.url, auto_lock={"overfill": "gun", "antistatic_during_fill": "station"})
    site = cfg.sites[0].id
    now = datetime.now(UTC)
    async with serve(cfg) as run, devices(cfg, site) as guns:
        bus = run.app[FINDINGS]
        # not in the policy: nothing happens
        await bus.submit(Finding(rule="fill_without_scan", site=site, source="s1", subject="ABC12345", ts=now,
                                 summary="filled without a scan"))
        await bus.drain()
        assert all(not s.locked for s in run.svc.guns.values() if s.site == site)
        # overfill on scale s2 locks gun g2 only
        await bus.submit(Finding(rule="overfill", site=site, source="s2", subject="ABC12345", ts=now,
                                 summary="net 16.4 kg over 15 kg rated"))
        await bus.drain()
        s = await run.wait_state(site, "g2", lambda s: s.command == "confirmed")
        assert s.locked and s.actor == "system:auto-lock" and "overfill" in (s.reason or "")
        assert guns["g2"].locked and not guns["g1"].locked
        # the same finding again: already locked, nothing new
        await bus.submit(Finding(rule="overfill", site=site, source="s2", subject="ABC12345", ts=now,
                                 summary="again"))
        await bus.drain()
        state = run.svc.state(GunId(site, "g2"))
        assert state is not None and state.version == 1
        # anti-static violation during filling, seen by a camera: the whole station
        await bus.submit(Finding(rule="antistatic_during_fill", site=site, source="cam-entry", subject="track 4",
                                 ts=now, summary="entered the filling area without discharging"))
        await bus.drain()
        for g in ("g1", "g3"):
            await run.wait_state(site, g, lambda s: s.command == "confirmed" and s.locked)
        assert all(d.locked for d in guns.values())
    audit = await rows(session_db, "SELECT actor, role, action, target, reason, details FROM audit "
                                   "WHERE target LIKE %s ORDER BY id", f"site/{site}%")
    assert [(a["actor"], a["role"], a["action"], a["target"]) for a in audit] == [
        ("system:auto-lock", "system", "gun.lock", f"site/{site}/gun/g2"),
        ("system:auto-lock", "system", "station.lock", f"site/{site}"),
    ]
    assert audit[0]["details"]["finding"]["rule"] == "overfill"
    assert [g["gun"] for g in audit[1]["details"]["guns"]] == ["g1", "g3"]
