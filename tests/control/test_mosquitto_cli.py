"""The contract driven with the real mosquitto_pub / mosquitto_sub clients, so nothing
depends on our own MQTT client alone."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from tests.control.conftest import Mosquitto, control_city, serve, staff


async def _run(*args: str, timeout_s: float = 10.0) -> str:
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode == 0, (args, err.decode())
    return out.decode()


async def test_lock_and_authorize_with_the_mosquitto_clients(session_db: str, broker: Mosquitto) -> None:
    cfg = control_city(session_db, broker.url)
    site = cfg.sites[0].id
    base = f"{cfg.mqtt.prefix}/{site}/gun/g1"
    conn = ["-h", "127.0.0.1", "-p", str(broker.port)]
    async with serve(cfg) as run, staff(run.base, session_db, "operator") as op:
        assert (await op.post(f"/api/v1/sites/{site}/guns/g1/lock", {"reason": "alert 21"}))[0] == 200
        # the retained desired state, as a device that connects now reads it
        desired = json.loads(await _run("mosquitto_sub", *conn, "-t", f"{base}/desired", "-q", "1", "-C", "1",
                                        "-W", "10"))
        assert desired["locked"] is True and desired["version"] == 1 and desired["reason"] == "alert 21"
        assert datetime.fromisoformat(desired["ts"]).tzinfo is not None
        # a report of our version with the other state is forged: not believed, and the
        # lock is re-asserted above it (a device fooled by a forged desired v1 obeys v2)
        await _run("mosquitto_pub", *conn, "-t", f"{base}/reported", "-q", "1", "-r",
                   "-m", json.dumps({"locked": False, "version": 1, "ts": datetime.now(UTC).isoformat()}))
        await run.wait_state(site, "g1", lambda s: s.anomaly is not None and s.version == 2 and s.command == "sent")
        desired = json.loads(await _run("mosquitto_sub", *conn, "-t", f"{base}/desired", "-q", "1", "-C", "1",
                                        "-W", "10"))
        assert desired["locked"] is True and desired["version"] == 2
        await _run("mosquitto_pub", *conn, "-t", f"{base}/reported", "-q", "1", "-r",
                   "-m", json.dumps({"locked": True, "version": 2, "ts": datetime.now(UTC).isoformat()}))
        s = await run.wait_state(site, "g1", lambda s: s.command == "confirmed")
        assert s.in_effect and s.reported is not None and s.reported.locked
        # authorize: the reply comes back on .../authorize/reply with the request id
        sub = await asyncio.create_subprocess_exec(  # line-buffered, to see the SUBACK as it comes
            "stdbuf", "-oL", "mosquitto_sub", *conn, "-t", f"{base}/authorize/reply", "-q", "1", "-C", "1", "-W", "10", "-d",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert sub.stdout is not None
        async with asyncio.timeout(10):  # -d prints the SUBACK: subscribed before we ask
            while b"SUBACK" not in (line := await sub.stdout.readline()):
                assert line, "mosquitto_sub ended before subscribing"
        await _run("mosquitto_pub", *conn, "-t", f"{base}/authorize", "-q", "1",
                   "-m", json.dumps({"request_id": "cli-1", "cylinder": "ABCDEF123"}))
        out, _ = await asyncio.wait_for(sub.communicate(), 10)
        line = next(ln for ln in out.decode().splitlines() if ln.startswith("{"))
        reply = json.loads(line)
        assert reply == {**reply, "request_id": "cli-1", "allow": False, "reason": "gun_locked"}
