"""Roles apart: an ``api`` process takes the operator's lock, a ``control`` process (another
service on the same database and broker) sends it to the device, and the operator's
screen, served by the api process, shows it confirmed: the database's announcements
carry every change between them."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.control.conftest import Mosquitto, control_city, devices, serve, staff
from tests.support.net import free_port


async def test_api_and_control_in_separate_processes(session_db: str, broker: Mosquitto) -> None:
    cfg = control_city(session_db, broker.url)
    site = cfg.sites[0].id
    cfg_control = cfg.model_copy(update={"server": cfg.server.model_copy(update={"port": free_port()})})
    async with serve(cfg, roles=frozenset({"api"})) as api, serve(cfg_control, roles=frozenset({"control"})), \
            devices(cfg, site) as guns, staff(api.base, session_db, "operator") as op:
        assert not api.svc.devices
        async with op.http.ws_connect(f"{api.base}/api/v1/ws", origin=api.base) as ws:
            await ws.send_json({"op": "subscribe", "topics": ["guns"]})
            status, body = await op.post(f"/api/v1/sites/{site}/guns/g3/lock", {"reason": "alert 30"})
            assert status == 200, body

            async def confirmed() -> dict[str, Any]:
                while True:
                    m = await ws.receive_json()
                    if m.get("type") == "gun" and m["gun"]["gun"] == "g3" and m["gun"]["command"] == "confirmed":
                        return dict(m["gun"])

            seen = await asyncio.wait_for(confirmed(), 15)
            assert seen["locked"] and seen["in_effect"] and seen["version"] == 1
        assert guns["g3"].locked
        # the api process answers HTTP authorize from its own copy of the gun states
        s = await api.wait_state(site, "g3", lambda s: s.command == "confirmed")
        assert s.locked
        _, body = await op.get(f"/api/v1/sites/{site}/guns")
        assert {g["gun"]: g["command"] for g in body["guns"]}["g3"] == "confirmed"
        async with aiohttp.ClientSession() as http:
            r = await http.get(f"http://127.0.0.1:{cfg_control.server.port}/api/v1/guns")
            assert r.status == 404  # the control process serves no control API
