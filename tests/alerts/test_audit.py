"""The audit trail is append-only for everyone, and the service's own database role lacks
the privileges to change it at all."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg
import pytest
from psycopg.rows import dict_row

from monitor.store.audit import Actor, record
from tests.alerts.conftest import alerts_config, make_finding, rows, serve, staff
from tests.support.services import with_dbname


@pytest.fixture
def service_role(pg_server: str, alerts_db: str) -> Iterator[str]:
    """A LOGIN role that is a member of monitor_service (how production runs the service):
    the URL of ``alerts_db`` as that role."""
    name = f"svc_{uuid.uuid4().hex[:8]}"
    admin = with_dbname(pg_server, "postgres")
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE ROLE "{name}" LOGIN IN ROLE monitor_service')
    u = urlparse(alerts_db)
    try:
        yield urlunparse(u._replace(netloc=f"{name}@{u.hostname}:{u.port}"))
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            for db in (urlparse(alerts_db).path.lstrip("/"),):
                with psycopg.connect(with_dbname(pg_server, db), autocommit=True) as d:
                    d.execute(f'DROP OWNED BY "{name}"')
            c.execute(f'DROP ROLE IF EXISTS "{name}"')


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit SET reason = 'rewritten'", "DELETE FROM audit", "TRUNCATE audit"],
)
async def test_the_service_role_cannot_change_the_audit_trail(service_role: str, alerts_db: str,
                                                              statement: str) -> None:
    async with await psycopg.AsyncConnection.connect(service_role, row_factory=dict_row) as conn:
        await record(conn, Actor("op", "operator", "10.0.0.1"), "alert.ack", "alert/1", reason="appending works")
        await conn.commit()
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            await conn.execute(statement.encode())
        await conn.rollback()
        # ... while it may change what it must (alerts)
        await conn.execute("UPDATE alerts SET rev = rev + 1")
        await conn.commit()
    # even the owner is refused by the trigger
    async with await psycopg.AsyncConnection.connect(alerts_db) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            await conn.execute(statement.encode())
    assert [r["reason"] for r in await rows(alerts_db, "SELECT reason FROM audit")] == ["appending works"]


async def test_the_service_runs_as_its_own_role(service_role: str, alerts_db: str, mqtt_url: str,
                                                tmp_path: Path) -> None:
    """Migrated by the owner, the service runs as a member of monitor_service: alerts are raised,
    acknowledged and audited, and the trail stays out of its reach."""
    from monitor.store.migrate import migrate_url

    assert (await migrate_url(service_role))[0] == []  # the service's start-up check: nothing pending
    cfg = alerts_config(service_role, tmp_path, mqtt_url)
    async with serve(cfg, roles=frozenset({"api"})) as svc, staff(svc.base, alerts_db, "operator") as op:
        await svc.submit(make_finding(subject="role-1"))
        (a,) = await rows(alerts_db, "SELECT id FROM alerts")
        st, body = await op.post(f"/api/v1/alerts/{a['id']}/ack", {"note": "as the service role"})
        assert st == 200, body
    assert [r["action"] for r in await rows(alerts_db, "SELECT action FROM audit WHERE target = %s",
                                            f"alert/{a['id']}")] == ["alert.ack"]


async def test_a_role_granted_everything_beforehand_loses_update_on_audit(pg_server: str, fresh_db: str) -> None:
    """A deployment that grants its service role every privilege by default (before the
    tables exist) still ends with a role that cannot change the audit trail."""
    from monitor.store.migrate import migrate_url

    name = f"app_{uuid.uuid4().hex[:8]}"
    admin = with_dbname(pg_server, "postgres")
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE ROLE "{name}" LOGIN')
    try:
        with psycopg.connect(fresh_db, autocommit=True) as c:
            c.execute(f'GRANT USAGE ON SCHEMA public TO "{name}"')
            c.execute(f'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO "{name}"')
        await migrate_url(fresh_db)
        u = urlparse(fresh_db)
        as_app = urlunparse(u._replace(netloc=f"{name}@{u.hostname}:{u.port}"))
        async with await psycopg.AsyncConnection.connect(as_app) as conn:
            await record(conn, Actor("op", "operator"), "alert.ack", "alert/1")
            await conn.commit()
            for stmt in ("UPDATE audit SET reason = 'x'", "DELETE FROM audit", "TRUNCATE audit"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                    await conn.execute(stmt.encode())
                await conn.rollback()
            await conn.execute("UPDATE alerts SET rev = rev")  # everything else it keeps
    finally:
        with psycopg.connect(fresh_db, autocommit=True) as c:
            c.execute(f'DROP OWNED BY "{name}"')
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'DROP ROLE IF EXISTS "{name}"')
