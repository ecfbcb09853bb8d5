"""The production broker configuration (docker/mosquitto: TLS, password file, ACL) on a
real Mosquitto: the centre logs in with a user name and password over TLS, a station's
gun controller confirms a lock, and another station's devices can neither forge that
station's reports nor read its topics."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from monitor.config import Config, MqttConfig
from monitor.control.model import GunId
from monitor.errors import BrokerUnavailable
from monitor.mqtt import MqttBus
from monitor.sim.guns import Broker, GunController
from tests.conftest import ROOT
from tests.control.conftest import control_city, serve, staff, station
from tests.support.net import free_port, port_open, wait_for

DOCKER = ROOT / "docker" / "mosquitto"
PASSWORDS = {"centre": "centre-secret", "st-aaa": "aaa-secret", "st-bbb": "bbb-secret"}


@pytest.fixture(scope="module")
def tls_broker() -> Iterator[tuple[int, Path]]:
    """docker/mosquitto/mosquitto.conf and acl as shipped, with fresh certificates and
    passwords, paths moved to a temporary directory and the listener on loopback."""
    tmp = Path(tempfile.mkdtemp(prefix="monitor-ctl-tls-"))
    tmp.chmod(0o777)
    certs = tmp / "certs"
    shutil.copytree(DOCKER, tmp / "src")
    subprocess.run(["sh", str(tmp / "src" / "make-certs.sh"), "localhost"], check=True, capture_output=True)
    shutil.move(str(tmp / "src" / "certs"), certs)
    for f in certs.iterdir():
        f.chmod(0o644)
    passwd = tmp / "passwd"
    passwd.touch()
    for user, pw in PASSWORDS.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, pw], check=True, capture_output=True)
    passwd.chmod(0o644)
    port = free_port()
    conf = (DOCKER / "mosquitto.conf").read_text()
    conf = conf.replace("/mosquitto/config/certs/", f"{certs}/").replace("/mosquitto/config/", f"{tmp}/")
    conf = conf.replace("/mosquitto/data/", f"{tmp}/").replace("listener 8883", f"listener {port} 127.0.0.1")
    shutil.copy(DOCKER / "acl", tmp / "acl")
    (tmp / "acl").chmod(0o644)
    (tmp / "mosquitto.conf").write_text(conf)
    proc = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(tmp / "mosquitto.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: port_open("127.0.0.1", port), 10, "mosquitto with TLS")
        yield port, certs / "ca.pem"
    finally:
        proc.terminate()
        proc.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)


def _mqtt(port: int, ca: Path, user: str | None, pw: str | None) -> MqttConfig:
    return MqttConfig(url=f"mqtts://127.0.0.1:{port}", prefix="lpg", username=user, password=pw, ca_file=str(ca))


@pytest.mark.parametrize(
    ("user", "password", "ok"),
    [("centre", PASSWORDS["centre"], True), ("centre", "wrong", False), (None, None, False)],
)
async def test_centre_logs_in_over_tls(tls_broker: tuple[int, Path], user: str | None, password: str | None,
                                       ok: bool) -> None:
    port, ca = tls_broker
    bus = MqttBus(_mqtt(port, ca, user, password), client_id=None)
    task = asyncio.create_task(bus.run())
    try:
        if ok:
            assert await bus.wait_connected(10)
            await bus.publish("lpg/st-aaa/gun/g1/desired", b"{}", qos=1, timeout_s=5)
        else:
            with pytest.raises(BrokerUnavailable):
                await bus.publish("lpg/st-aaa/gun/g1/desired", b"{}", qos=1, timeout_s=1)
            assert bus.state.last_error
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_station_devices_reach_only_their_own_topics(session_db: str, tls_broker: tuple[int, Path]) -> None:
    port, ca = tls_broker
    base = control_city(session_db, "mqtt://unused:1")
    cfg: Config = base.model_copy(update={
        "mqtt": _mqtt(port, ca, "centre", PASSWORDS["centre"]),
        "sites": [station("st-aaa", 2), station("st-bbb", 1)],
    })
    gun = GunController(Broker(cfg.mqtt.url, "st-aaa", PASSWORDS["st-aaa"], str(ca)), "lpg", "st-aaa", "g1")
    async with serve(cfg) as run, staff(run.base, session_db, "operator") as op:
        await gun.start()
        try:
            # the stations' rows may hold state from an earlier run of this test: lock or not, confirm it
            s0 = run.svc.state(GunId("st-aaa", "g1"))
            assert s0 is not None
            if not s0.locked:
                status, body = await op.post("/api/v1/sites/st-aaa/guns/g1/lock", {"reason": "alert 1"})
                assert status == 200, body
            s = await run.wait_state("st-aaa", "g1", lambda s: s.command == "confirmed" and s.locked)
            assert gun.locked and gun.version == s.version
            before = s.seq
            bbb = run.svc.state(GunId("st-bbb", "g1"))
            if bbb is not None and not bbb.locked:
                await op.post("/api/v1/sites/st-bbb/guns/g1/lock", {"reason": "alert 2"})
            await run.wait_state("st-bbb", "g1", lambda s: s.command in ("sent", "confirmed"))
            # st-bbb's account tries to forge st-aaa's report and to write st-aaa's desired
            # state, then reports for its own gun (allowed): that last one arriving proves
            # the others were dropped by the broker, not merely late.
            tls = ssl.create_default_context(cafile=str(ca))
            async with aiomqtt.Client("127.0.0.1", port, username="st-bbb", password=PASSWORDS["st-bbb"],
                                      tls_context=tls, identifier="intruder") as c:
                await c.publish("lpg/st-aaa/gun/g1/reported",
                                json.dumps({"locked": False, "version": s.version + 5}), qos=1)
                await c.publish("lpg/st-aaa/gun/g1/desired",
                                json.dumps({"locked": False, "version": s.version + 5, "reason": "", "ts": None}),
                                qos=1, retain=True)
                await c.publish("lpg/st-bbb/gun/g1/reported", json.dumps({"locked": False, "version": 0}), qos=1,
                                retain=True)
                await run.wait_state("st-bbb", "g1", lambda s: s.reported is not None)
                # and cannot read another station's desired state: subscribed to both, it
                # gets its own station's retained state first, never st-aaa's
                await c.subscribe("lpg/st-aaa/gun/+/desired", qos=1)
                await c.subscribe("lpg/st-bbb/gun/+/desired", qos=1)
                async with asyncio.timeout(10):
                    first = await anext(aiter(c.messages))
                assert str(first.topic) == "lpg/st-bbb/gun/g1/desired"
                await run.svc.reconcile()
            after = run.svc.state(GunId("st-aaa", "g1"))
            assert after is not None and after.seq == before and after.anomaly == s.anomaly
            assert gun.locked and gun.version == s.version
        finally:
            await gun.stop()
