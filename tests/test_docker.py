"""docker/ cannot run here (no Docker engine): keep it consistent with the code instead."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import yaml
from psycopg.rows import dict_row

from monitor.config import load_config
from monitor.store.migrate import migrate_url

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
GENERATED = ("./mosquitto/certs",)  # made on the host by docker/mosquitto/make-certs.sh


def test_compose_is_consistent() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    for name, svc in services.items():
        image = svc.get("image", "")
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag ({image!r})"
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("./") and not src.startswith(GENERATED):
                assert (DOCKER / src).exists(), f"{name}: mounts missing {src}"
    assert services["db"]["image"].startswith("timescale/timescaledb:")
    assert "--role" in services["video"]["command"] and "video" in services["video"]["command"]
    cfg = load_config(DOCKER / "city.yaml")
    for _, cam in cfg.cameras():
        assert cam.url.startswith("rtsp://rtsp:8554/"), cam.id
    assert cfg.mqtt.url.startswith("mqtts://") and cfg.mqtt.username


def test_dockerfile_runs_the_console_script() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11", text, re.M)
    assert '"monitor"' in text and "requirements.lock" in text and "USER monitor" in text


async def test_app_role_cannot_change_the_audit(fresh_db: str) -> None:
    """As production runs it (docker/db/init-roles.sh): monitor_app may append, never change."""
    with psycopg.connect(fresh_db, autocommit=True) as c:
        if c.execute("SELECT 1 FROM pg_roles WHERE rolname = 'monitor_app'").fetchone() is None:
            c.execute("CREATE ROLE monitor_app NOLOGIN")
        c.execute("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO monitor_app")
        c.execute("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO monitor_app")
    await migrate_url(fresh_db)
    with psycopg.connect(fresh_db, autocommit=True, row_factory=dict_row) as c:
        c.execute("SET ROLE monitor_app")
        c.execute("INSERT INTO audit (actor, role, action) VALUES ('x', 'admin', 'probe')")
        for sql in ("UPDATE audit SET reason = 'y'", "DELETE FROM audit", "TRUNCATE audit"):
            try:
                c.execute(sql)
            except psycopg.errors.InsufficientPrivilege as e:
                assert "permission denied for table audit" in str(e), sql
            else:
                raise AssertionError(f"{sql} was allowed")
        c.execute("RESET ROLE")
        c.execute("ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM monitor_app")
        c.execute("ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM monitor_app")
