"""The centre's MQTT connection: one aiomqtt client reused in a reconnect loop.

Parts register topic handlers and on-connect hooks before ``run()``; the loop connects
with capped exponential back-off and jitter, (re)subscribes, calls the hooks (the lock
reconciliation re-publishes there), and dispatches messages. ``publish`` waits, bounded,
for a connection and for the broker's acknowledgement (QoS 1).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlparse

import aiomqtt

from monitor.config import MqttConfig
from monitor.errors import BrokerUnavailable, ConfigError
from monitor.tasks import Backoff

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes, bool], Awaitable[None]]
Hook = Callable[[], Awaitable[None]]


@dataclass
class BrokerState:
    connected: bool = False
    last_error: str | None = None
    since: float = field(default_factory=time.time)
    connects: int = 0
    messages_in: int = 0
    handler_errors: int = 0


def parse_mqtt_url(url: str) -> tuple[str, int, bool]:
    u = urlparse(url)
    if u.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ConfigError(f"mqtt.url: scheme must be mqtt:// or mqtts://, got {url!r}")
    tls = u.scheme in ("mqtts", "ssl")
    return u.hostname or "127.0.0.1", u.port or (8883 if tls else 1883), tls


def topic_matches(filter_: str, topic: str) -> bool:
    f = filter_.split("/")
    t = topic.split("/")
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(t):
            return False
        if part != "+" and part != t[i]:
            return False
    return len(f) == len(t)


class MqttBus:
    def __init__(self, cfg: MqttConfig, *, client_id: str | None = None, persistent: bool = True) -> None:
        self.cfg = cfg
        self.host, self.port, self.tls = parse_mqtt_url(cfg.url)
        self.client_id = client_id or cfg.client_id
        self.persistent = persistent and self.client_id is not None
        self.state = BrokerState()
        self._subs: list[tuple[str, int, Handler]] = []
        self._hooks: list[Hook] = []
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()

    @property
    def prefix(self) -> str:
        return self.cfg.prefix

    def subscribe(self, topic_filter: str, handler: Handler, qos: int = 1) -> None:
        self._subs.append((topic_filter, qos, handler))

    def on_connect(self, hook: Hook) -> None:
        self._hooks.append(hook)

    def _make_client(self) -> aiomqtt.Client:
        tls_context = None
        if self.tls:
            tls_context = ssl.create_default_context(cafile=self.cfg.ca_file)
        return aiomqtt.Client(
            self.host,
            self.port,
            username=self.cfg.username,
            password=self.cfg.password,
            identifier=self.client_id,
            clean_session=not self.persistent,
            tls_context=tls_context,
            timeout=5.0,
            keepalive=15,
            max_queued_incoming_messages=100_000,
            # Small QoS 1 packets both ways: without this, Nagle and delayed ACKs add ~40 ms a hop.
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        )

    async def run(self) -> None:
        """Connect, subscribe and dispatch for ever, reconnecting with back-off."""
        backoff = Backoff(0.2, 10.0)
        while True:
            client = self._make_client()
            try:
                async with client:
                    self._client = client
                    for f, qos, _ in self._subs:
                        await client.subscribe(f, qos=qos)
                    self.state.connected = True
                    self.state.last_error = None
                    self.state.since = time.time()
                    self.state.connects += 1
                    self._connected.set()
                    backoff.reset()
                    log.info("mqtt connected to %s:%d", self.host, self.port)
                    for hook in self._hooks:
                        try:
                            await hook()
                        except Exception:
                            log.exception("mqtt on-connect hook failed")
                    async for msg in client.messages:
                        await self._dispatch(str(msg.topic), _payload(msg.payload), bool(msg.retain))
            except aiomqtt.MqttError as e:
                self._down(str(e))
            finally:
                self._client = None
                self._connected.clear()
                if self.state.connected:
                    self._down(self.state.last_error or "disconnected")
            delay = backoff.next()
            log.warning("mqtt %s:%d unavailable (%s); retrying in %.1fs", self.host, self.port, self.state.last_error, delay)
            await asyncio.sleep(delay)

    def _down(self, err: str) -> None:
        if self.state.connected:
            self.state.since = time.time()
        self.state.connected = False
        self.state.last_error = err

    async def _dispatch(self, topic: str, payload: bytes, retain: bool) -> None:
        self.state.messages_in += 1
        for f, _, handler in self._subs:
            if topic_matches(f, topic):
                try:
                    await handler(topic, payload, retain)
                except Exception:
                    self.state.handler_errors += 1
                    log.exception("mqtt handler for %s failed on %s", f, topic)

    async def wait_connected(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._connected.wait(), timeout_s)
            return True
        except TimeoutError:
            return False

    async def publish(
        self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False, timeout_s: float = 5.0
    ) -> None:
        """Publish and wait (bounded) for the broker's acknowledgement."""
        if not await self.wait_connected(timeout_s):
            raise BrokerUnavailable(f"broker {self.host}:{self.port} not connected: {self.state.last_error}")
        client = self._client
        if client is None:
            raise BrokerUnavailable("broker connection lost")
        try:
            await asyncio.wait_for(client.publish(topic, payload, qos=qos, retain=retain), timeout_s)
        except (aiomqtt.MqttError, TimeoutError) as e:
            raise BrokerUnavailable(f"publish to {topic} failed: {e}") from e


def _payload(p: object) -> bytes:
    if isinstance(p, bytes | bytearray):
        return bytes(p)
    if p is None:
        return b""
    return str(p).encode()
