"""Simulated gun controllers speaking the real MQTT contract (DESIGN.md, "MQTT").

A controller keeps a persistent session (client id ``gun-{site}-{gun}``, QoS 1), applies
a ``desired`` state only when its version is newer than the one it holds, and answers
every ``desired`` it receives with its current state on ``reported`` (retained, QoS 1),
so the centre always learns the truth. Before opening it asks ``authorize`` and opens
only on ``allow``. It can be taken offline and brought back, keep its state in a file
across restarts, and be made to misbehave for tests:

- ``ignore_desired``: never applies anything (still reports what it holds);
- ``no_report``: applies but never reports;
- ``apply_any``: applies any version, even an older one (a broken controller).

It uses aiomqtt and JSON directly, not the centre's code: it is a second, independent
reading of the contract. ``python -m monitor.sim.guns --config C`` runs every gun of a
city until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import socket
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import aiomqtt

log = logging.getLogger(__name__)

Misbehave = Literal["none", "ignore_desired", "no_report", "apply_any"]


@dataclass(frozen=True)
class Broker:
    """Where and how a device connects."""

    url: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None

    def client(self, identifier: str, *, clean: bool) -> aiomqtt.Client:
        u = urlparse(self.url)
        tls = u.scheme in ("mqtts", "ssl")
        ctx = ssl.create_default_context(cafile=self.ca_file) if tls else None
        return aiomqtt.Client(
            u.hostname or "127.0.0.1", u.port or (8883 if tls else 1883), username=self.username,
            password=self.password, identifier=identifier, clean_session=clean, tls_context=ctx, timeout=5.0,
            keepalive=10, max_inflight_messages=200,
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),  # no Nagle delay on small packets
        )


@dataclass
class GunController:
    broker: Broker
    prefix: str
    site: str
    gun: str
    locked: bool = False
    version: int = 0
    misbehave: Misbehave = "none"
    state_file: Path | None = None
    is_open: bool = False
    desired_seen: int = 0
    applied: list[tuple[int, bool]] = field(default_factory=list)
    connects: int = 0
    _task: asyncio.Task[None] | None = None
    _client: aiomqtt.Client | None = None
    _online: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _pending: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.state_file is not None and self.state_file.exists():
            data = json.loads(self.state_file.read_text())
            self.locked, self.version = bool(data["locked"]), int(data["version"])

    # --- topics -------------------------------------------------------------------------

    def topic(self, kind: str) -> str:
        return f"{self.prefix}/{self.site}/gun/{self.gun}/{kind}"

    @property
    def client_id(self) -> str:
        return f"gun-{self.site}-{self.gun}"

    # --- life ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Come online (connect, receive the retained desired state, report)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"gun-{self.site}-{self.gun}")
        await self.wait_online(10.0)

    go_online = start

    async def stop(self) -> None:
        """Go offline (the broker keeps the session and queues QoS 1 messages meanwhile)."""
        task, self._task = self._task, None
        if task is not None:
            # Python 3.11's wait_for (inside aiomqtt's publish) can swallow a cancellation
            # that races a PUBACK: cancel again until the task has really ended.
            for _ in range(50):
                task.cancel()
                await asyncio.wait({task}, timeout=0.2)
                if task.done():
                    break
            with contextlib.suppress(asyncio.CancelledError):
                if task.done():
                    task.result()
        self._online.clear()

    go_offline = stop

    @property
    def online(self) -> bool:
        return self._online.is_set()

    async def wait_online(self, timeout_s: float) -> None:
        await asyncio.wait_for(self._online.wait(), timeout_s)

    async def _run(self) -> None:
        delay = 0.1
        while True:
            try:
                async with self.broker.client(self.client_id, clean=False) as client:
                    self._client = client
                    await client.subscribe(self.topic("desired"), qos=1)
                    await client.subscribe(self.topic("authorize/reply"), qos=1)
                    self.connects += 1
                    await self._report(client)
                    self._online.set()
                    delay = 0.1
                    async for msg in client.messages:
                        await self._on_message(client, str(msg.topic), _bytes(msg.payload))
            except aiomqtt.MqttError as e:
                log.debug("gun %s/%s: broker unavailable (%s)", self.site, self.gun, e)
            finally:
                self._client = None
                self._online.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _on_message(self, client: aiomqtt.Client, t: str, payload: bytes) -> None:
        if t == self.topic("desired"):
            try:
                d = json.loads(payload)
                version, locked = d["version"], d["locked"]
                if not isinstance(version, int) or isinstance(version, bool) or not isinstance(locked, bool):
                    raise ValueError("bad types")
            except (ValueError, KeyError, TypeError):
                log.warning("gun %s/%s: malformed desired %r", self.site, self.gun, payload[:100])
                return
            self.desired_seen += 1
            newer = version > self.version
            if self.misbehave != "ignore_desired" and (newer or self.misbehave == "apply_any"):
                self.locked, self.version = locked, version
                if locked:
                    self.is_open = False
                self.applied.append((version, locked))
                self._save()
            if self.misbehave != "no_report":
                await self._report(client)
            async with self._changed:
                self._changed.notify_all()
        elif t == self.topic("authorize/reply"):
            try:
                r = json.loads(payload)
                fut = self._pending.pop(str(r["request_id"]), None)
            except (ValueError, KeyError, TypeError):
                return
            if fut is not None and not fut.done():
                fut.set_result(r)

    async def _report(self, client: aiomqtt.Client) -> None:
        body = {"locked": self.locked, "version": self.version, "ts": datetime.now(UTC).isoformat()}
        await client.publish(self.topic("reported"), json.dumps(body), qos=1, retain=True)

    def _save(self) -> None:
        if self.state_file is not None:
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"locked": self.locked, "version": self.version}))
            tmp.replace(self.state_file)

    async def wait_for(self, pred: Callable[[GunController], bool], timeout_s: float) -> None:
        """Wait (bounded) until ``pred(self)`` holds."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: pred(self))

    # --- the interlock ----------------------------------------------------------------------

    async def authorize(self, cylinder: Any, *, timeout_s: float = 5.0, request_id: str | None = None) -> dict[str, Any]:
        """Ask the centre; the reply ``{"request_id", "allow", "reason", ...}``. TimeoutError
        when no reply comes (a controller then stays closed)."""
        client = self._client
        if client is None:
            raise TimeoutError("offline")
        rid = request_id or uuid.uuid4().hex
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            await client.publish(self.topic("authorize"), json.dumps({"request_id": rid, "cylinder": cylinder}), qos=1)
            return await asyncio.wait_for(fut, timeout_s)
        finally:
            self._pending.pop(rid, None)

    async def open(self, cylinder: str, *, timeout_s: float = 5.0) -> tuple[bool, str]:
        """Open for ``cylinder`` if not locked and the centre allows it: (opened, reason)."""
        if self.locked:
            return False, "gun_locked"
        try:
            r = await self.authorize(cylinder, timeout_s=timeout_s)
        except TimeoutError:
            return False, "no_reply"
        if r.get("allow") is True and not self.locked:
            self.is_open = True
            return True, str(r.get("reason"))
        return False, str(r.get("reason"))

    def close_valve(self) -> None:
        self.is_open = False


class GunFleet:
    """Every gun of a city, each its own controller and connection."""

    def __init__(self, broker: Broker, prefix: str, guns: list[tuple[str, str]], **kw: Any) -> None:
        self.guns = {(s, g): GunController(broker, prefix, s, g, **kw) for s, g in guns}

    def __getitem__(self, key: tuple[str, str]) -> GunController:
        return self.guns[key]

    async def start(self) -> None:
        await asyncio.gather(*(c.start() for c in self.guns.values()))

    async def stop(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.guns.values()))


def _bytes(p: object) -> bytes:
    if isinstance(p, bytes | bytearray):
        return bytes(p)
    return b"" if p is None else str(p).encode()


async def _main(args: argparse.Namespace) -> None:
    from monitor.config import load_config

    cfg = load_config(args.config)
    m = cfg.mqtt
    broker = Broker(args.mqtt_url or m.url, m.username, m.password, m.ca_file)
    guns = [(s.id, g) for s in cfg.sites for g in s.guns]
    state_dir = Path(args.state_dir) if args.state_dir else None
    fleet = GunFleet(broker, m.prefix, guns)
    if state_dir is not None:
        state_dir.mkdir(parents=True, exist_ok=True)
        for (s, g), c in fleet.guns.items():
            c.state_file = state_dir / f"{s}-{g}.json"
            c.__post_init__()
    await fleet.start()
    print(f"{len(guns)} simulated gun controllers online at {broker.url} (prefix {m.prefix})", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await fleet.stop()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m monitor.sim.guns", description="simulated gun controllers")
    p.add_argument("--config", required=True)
    p.add_argument("--mqtt-url")
    p.add_argument("--state-dir", help="keep each controller's state in a file here")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
