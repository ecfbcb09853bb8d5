"""Nothing accepted is lost: findings handed to the service while the database is away are
written when it returns; people's actions during the outage are refused and change nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlparse

from monitor.errors import DatabaseUnavailable
from monitor.web.keys import FINDINGS
from tests.alerts.conftest import alerts_config, later, make_finding, rows, serve, staff
from tests.series.support import CuttableProxy
from tests.support.services import with_dbname


async def test_findings_offered_while_the_database_is_away_are_written_when_it_returns(
    alerts_db: str, mqtt_url: str, tmp_path: Path
) -> None:
    u = urlparse(alerts_db)
    proxy = CuttableProxy((u.hostname or "127.0.0.1", u.port or 5432))
    await proxy.start()
    via_proxy = with_dbname(f"postgresql://{u.username}@127.0.0.1:{proxy.port}/x", u.path.lstrip("/"))
    cfg = alerts_config(via_proxy, tmp_path, mqtt_url)
    try:
        async with serve(cfg, roles=frozenset({"api"})) as svc, staff(svc.base, alerts_db, "operator") as op:
            await svc.submit(make_finding(subject="before"))
            (a,) = await rows(alerts_db, "SELECT id, rev FROM alerts")
            await proxy.cut()  # the database goes away
            bus = svc.app[FINDINGS]
            offered = [make_finding(subject=f"during-{i % 7}", ts=later(i)) for i in range(40)]
            offered.append(make_finding(subject="before", ts=later(99)))
            for f in offered:
                await bus.submit(f, timeout_s=5)  # accepted: the bus and the engine's inbox hold them
            await bus.drain(10)
            st, body = await op.post(f"/api/v1/alerts/{a['id']}/ack", {"note": "during the outage"})
            assert st == 503 and body["error"]["code"] == "database_unavailable"
            assert svc.svc.engine.stats.write_retries >= 1 or svc.svc.engine.inbox.qsize() > 0
            await proxy.start()  # it comes back
            await svc.svc.engine.drain(30)
            got = {r["subject"]: r for r in await rows(alerts_db, "SELECT subject, count, state FROM alerts")}
            assert sorted(got) == ["before", *(f"during-{i}" for i in range(7))]
            assert got["before"]["count"] == 2 and got["before"]["state"] == "open"
            assert sum(r["count"] for r in got.values()) == 42
            (n,) = await rows(alerts_db, "SELECT count(*) AS n FROM findings")
            assert n["n"] == 42
            assert await rows(alerts_db, "SELECT * FROM audit WHERE action = 'alert.ack'") == []
    finally:
        await proxy.close()


async def test_rebuild_waits_for_the_database(alerts_db: str, tmp_path: Path) -> None:
    """The engine starts with the database away: rebuild fails cleanly and is retried."""
    from monitor.alerts.engine import AlertEngine
    from monitor.store.db import Database

    u = urlparse(alerts_db)
    proxy = CuttableProxy((u.hostname or "127.0.0.1", u.port or 5432))
    via_proxy = with_dbname(f"postgresql://{u.username}@127.0.0.1:{proxy.port}/x", u.path.lstrip("/"))
    cfg = alerts_config(via_proxy, tmp_path, mqtt="")
    db = Database(via_proxy, timeout_s=0.5)
    await db.open()
    try:
        engine = AlertEngine(db=db, cfg=cfg)
        try:
            await engine.rebuild()
            raise AssertionError("rebuild should fail while the database is away")
        except DatabaseUnavailable:
            pass
        assert not engine.ready.is_set()
        await proxy.start()
        await asyncio.wait_for(db.wait_up(10), 15)
        await engine.rebuild()
        assert engine.ready.is_set()
    finally:
        await db.close()
        await proxy.close()
