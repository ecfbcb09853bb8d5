"""Scale readings from MQTT: the topic and payload checked, and the subscriber that acks
each message only once its reading is durable.

Topic ``{prefix}/{site}/scale/{scale}/reading``, payload
``{"ts": iso8601, "gross_kg": float, "gun_open": bool, "cylinder": code|null}`` (DESIGN.md).
A message that breaks a rule (unknown scale, unknown field, wrong type, impossible weight,
a time in the future beyond the skew or older than the retention) is refused: counted by
reason, logged with its topic (at most once per topic every 10 s), and acknowledged so
the broker does not send it again. It never stops the consumer.

Acks: the subscriber uses its own MQTT connection with a persistent session and paho's
manual acknowledgement (``manual_ack_set(True)``; ``ack(mid, qos)`` on the loop thread,
which is where aiomqtt drives paho). The PUBACK goes out only when the writer has put the
reading in the database or the fsync-ed spool; a reading received but not yet durable
when the centre dies is sent again by the broker when it reconnects (same client id),
and the unique key (site, scale, ts) makes the second copy a no-op. Acks are sent in the
order the messages came, as MQTT requires; an ack for a connection that has since gone is
dropped (the broker re-sends those).
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import aiomqtt
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, ValidationError

from monitor.config import Config
from monitor.mqtt import parse_mqtt_url
from monitor.series.model import CODE_RE, MIN_GROSS_KG, Reading
from monitor.tasks import Backoff

log = logging.getLogger(__name__)


class ReadingError(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ReadingPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ts: AwareDatetime
    gross_kg: float = Field(allow_inf_nan=False)
    gun_open: StrictBool
    cylinder: str | None = Field(None, pattern=CODE_RE.pattern)


class ReadingParser:
    """Topic and payload to a ``Reading`` (pure but for the clock passed in)."""

    def __init__(self, cfg: Config) -> None:
        self.prefix = cfg.mqtt.prefix.rstrip("/") + "/"
        self.scales: dict[tuple[str, str], str] = {
            (s.id, sc.id): sc.gun for s in cfg.sites for sc in s.scales}
        c = cfg.rules.correlation
        self.max_kg = c.max_gross_kg
        self.skew = timedelta(seconds=c.clock_skew_s)
        self.max_age = timedelta(days=c.readings_retention_days)

    def parse(self, topic: str, payload: bytes, now: datetime) -> Reading:
        if not topic.startswith(self.prefix):
            raise ReadingError("topic", f"topic {topic!r} is not under {self.prefix!r}")
        parts = topic[len(self.prefix):].split("/")
        if len(parts) != 4 or parts[1] != "scale" or parts[3] != "reading":
            raise ReadingError("topic", f"topic {topic!r} is not {self.prefix}{{site}}/scale/{{scale}}/reading")
        site, scale = parts[0], parts[2]
        if (site, scale) not in self.scales:
            raise ReadingError("unknown_scale", f"scale {scale!r} of site {site!r} is not configured")
        try:
            p = ReadingPayload.model_validate_json(payload)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err["loc"]) or "payload"
            msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
            raise ReadingError(f"bad_{loc}" if loc in ReadingPayload.model_fields else "bad_payload",
                               f"{loc}: {msg}") from None
        if not MIN_GROSS_KG <= p.gross_kg <= self.max_kg or math.isnan(p.gross_kg):
            raise ReadingError("impossible_weight",
                               f"gross_kg: {p.gross_kg} outside [{MIN_GROSS_KG:g}, {self.max_kg:g}] kg")
        if p.ts > now + self.skew:
            raise ReadingError("future_ts", f"ts: {p.ts.isoformat()} is in the future (now {now.isoformat()})")
        if p.ts < now - self.max_age:
            raise ReadingError("old_ts", f"ts: {p.ts.isoformat()} is older than the retention")
        return Reading(ts=p.ts, site=site, scale=scale, gross_kg=max(0.0, p.gross_kg), gun_open=p.gun_open,
                       cylinder=p.cylinder, received_at=now)


class Refusals:
    """Refused messages counted by reason; logged with the topic, at most once per topic per 10 s."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.by_reason: Counter[str] = Counter()
        self.every_s = every_s
        self._last: dict[str, float] = {}

    def add(self, topic: str, err: ReadingError) -> None:
        self.by_reason[err.reason] += 1
        now = time.monotonic()
        if now - self._last.get(topic, -1e9) >= self.every_s:
            if len(self._last) > 10_000:
                self._last.clear()
            self._last[topic] = now
            log.warning("scale reading refused on %s: %s (%d refused so far: %s)", topic, err,
                        sum(self.by_reason.values()), dict(self.by_reason))

    @property
    def total(self) -> int:
        return sum(self.by_reason.values())


Ack = Callable[[], None]
OnMessage = Callable[[str, bytes, Ack], Awaitable[None]]


class ScaleSubscriber:
    """Its own MQTT connection for scale readings: persistent session, manual PUBACKs."""

    def __init__(self, cfg: Config, client_id: str, on_message: OnMessage) -> None:
        self.cfg = cfg.mqtt
        self.host, self.port, self.tls = parse_mqtt_url(cfg.mqtt.url)
        self.client_id = client_id
        self.filter = f"{cfg.mqtt.prefix}/+/scale/+/reading"
        self.on_message = on_message
        self.generation = 0
        self.connected = asyncio.Event()
        self.received = 0
        self.acked = 0
        self.stale_acks = 0
        self._client: aiomqtt.Client | None = None

    def _make(self) -> aiomqtt.Client:
        tls = ssl.create_default_context(cafile=self.cfg.ca_file) if self.tls else None
        client = aiomqtt.Client(
            self.host, self.port, username=self.cfg.username, password=self.cfg.password,
            identifier=self.client_id, clean_session=False, tls_context=tls, timeout=5.0, keepalive=15,
            max_queued_incoming_messages=100_000,
        )
        client._client.manual_ack_set(True)
        return client

    def _acker(self, client: aiomqtt.Client, gen: int, mid: int, qos: int) -> Ack:
        def ack() -> None:
            if gen != self.generation or self._client is not client:
                self.stale_acks += 1  # that connection is gone: the broker re-sends the message
                return
            client._client.ack(mid, qos)
            self.acked += 1

        return ack

    async def run(self) -> None:
        backoff = Backoff(0.2, 10.0)
        while True:
            client = self._make()
            try:
                async with client:
                    self.generation += 1
                    gen = self.generation
                    self._client = client
                    await client.subscribe(self.filter, qos=1)
                    self.connected.set()
                    backoff.reset()
                    log.info("scale ingest subscribed to %s as %s", self.filter, self.client_id)
                    async for msg in client.messages:
                        self.received += 1
                        ack = self._acker(client, gen, msg.mid, msg.qos) if msg.qos > 0 else _noop
                        payload = msg.payload if isinstance(msg.payload, bytes | bytearray) else (
                            str(msg.payload).encode() if msg.payload is not None else b"")
                        await self.on_message(str(msg.topic), bytes(payload), ack)
            except aiomqtt.MqttError as e:
                log.warning("scale ingest: broker %s:%d: %s", self.host, self.port, e)
            finally:
                self._client = None
                self.connected.clear()
            await asyncio.sleep(backoff.next())


def _noop() -> None:
    return None
