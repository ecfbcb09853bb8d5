"""The WebSocket hub: topics, one bounded queue and sender task per client.

A client subscribes to topics (``alerts``, ``guns``, ``cameras``, ``detections:<camera>``,
...). ``publish`` never waits on a client: each has its own bounded queue; when it is
full the client's oldest events are dropped and counted, and the client is told so
(``{"type": "overflow", "dropped": n}``) so it resynchronises. ``Origin`` is checked on
upgrade; on shutdown every socket is closed with GOING_AWAY over a copy of the set.

A client that subscribes with ``"batch": true`` takes what has queued up in one text frame,
the events separated by newlines (JSON never holds a raw newline): under a burst the
server writes one frame per client instead of one per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from prometheus_client import Counter, Gauge

from monitor.web.auth import Principal

log = logging.getLogger(__name__)

WS_CLIENTS = Gauge("monitor_ws_clients", "connected WebSocket clients")
WS_EVENTS = Counter("monitor_ws_events_total", "events queued to WebSocket clients")
WS_DROPPED = Counter("monitor_ws_dropped_total", "events dropped for slow WebSocket clients")

BATCH_BYTES = 64 * 1024  # a batched frame holds events up to about this size
SESSION_ENDED = 4401  # close code: the session behind this socket ended (or its role changed)

# Topics and the least role that may subscribe to them.
TOPIC_ROLES: dict[str, str] = {
    "alerts": "viewer",
    "guns": "viewer",
    "cameras": "viewer",
    "detections": "viewer",
    "counts": "viewer",
    "audit": "supervisor",
}


@dataclass(eq=False)
class Client:
    ws: web.WebSocketResponse
    principal: Principal
    queue: asyncio.Queue[str]
    topics: set[str] = field(default_factory=set)
    dropped: int = 0
    sent: int = 0
    batch: bool = False  # several queued events per frame, newline-separated
    session: str | None = None  # the SHA-256 of the session token it was opened with


class Hub:
    def __init__(self, *, queue_size: int = 256) -> None:
        self.queue_size = queue_size
        self.clients: set[Client] = set()
        self.closing = False
        # Called with (client, topic) after a subscribe, to send the current state.
        self.snapshots: dict[str, Callable[[Client, str], Any]] = {}
        self._pending: set[asyncio.Future[Any]] = set()

    def publish(self, topic: str, event: dict[str, Any]) -> int:
        """Queue ``event`` for every client subscribed to ``topic``; never blocks."""
        if not self.clients:
            return 0
        text = json.dumps({"topic": topic, **event}, default=str, ensure_ascii=False)
        base = topic.split(":", 1)[0]
        n = 0
        for c in list(self.clients):
            if topic in c.topics or (base in c.topics and ":" not in topic):
                self._offer(c, text)
                n += 1
        WS_EVENTS.inc(n)
        return n

    def send_to(self, client: Client, topic: str, event: dict[str, Any]) -> None:
        self._offer(client, json.dumps({"topic": topic, **event}, default=str, ensure_ascii=False))

    def _offer(self, c: Client, text: str) -> None:
        try:
            c.queue.put_nowait(text)
        except asyncio.QueueFull:
            # Drop the oldest, keep the newest: a stalled wall must resync, not lag.
            with contextlib.suppress(asyncio.QueueEmpty):
                c.queue.get_nowait()
            c.dropped += 1
            WS_DROPPED.inc()
            with contextlib.suppress(asyncio.QueueFull):
                c.queue.put_nowait(text)

    async def serve(self, request: web.Request, p: Principal, session: str | None = None) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=64 * 1024)
        await ws.prepare(request)
        client = Client(ws, p, asyncio.Queue(self.queue_size), session=session)
        self.clients.add(client)
        WS_CLIENTS.set(len(self.clients))
        sender = asyncio.create_task(self._sender(client), name="ws-sender")
        try:
            await ws.send_json({"type": "hello", "user": p.name, "role": p.role})
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                self._command(client, msg.data)
        finally:
            self.clients.discard(client)
            WS_CLIENTS.set(len(self.clients))
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        return ws

    def _command(self, c: Client, data: str) -> None:
        try:
            cmd = json.loads(data)
            op = cmd["op"]
            topics = cmd.get("topics", [])
            if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
                raise ValueError("topics must be a list of strings")
        except (ValueError, KeyError, TypeError) as e:
            self.send_to(c, "error", {"type": "error", "message": f"bad command: {e}"})
            return
        if op == "subscribe":
            if cmd.get("batch") is True:
                c.batch = True
            for t in topics:
                base = t.split(":", 1)[0]
                need = TOPIC_ROLES.get(base)
                if need is None:
                    self.send_to(c, "error", {"type": "error", "message": f"unknown topic {t!r}"})
                    continue
                if not c.principal.at_least(need):
                    self.send_to(c, "error", {"type": "error", "message": f"topic {t!r} needs role {need}"})
                    continue
                c.topics.add(t)
                snap = self.snapshots.get(base)
                if snap is not None:
                    res = snap(c, t)
                    if asyncio.iscoroutine(res):
                        task = asyncio.ensure_future(res)
                        self._pending.add(task)
                        task.add_done_callback(self._pending.discard)
            self.send_to(c, "subscribed", {"type": "subscribed", "topics": sorted(c.topics)})
        elif op == "unsubscribe":
            c.topics.difference_update(topics)
        elif op == "ping":
            self.send_to(c, "pong", {"type": "pong"})
        else:
            self.send_to(c, "error", {"type": "error", "message": f"unknown op {op!r}"})

    async def _sender(self, c: Client) -> None:
        reported = 0
        while True:
            text = await c.queue.get()
            n = 1
            if c.batch and not c.queue.empty():
                parts = [text]
                size = len(text)
                while size < BATCH_BYTES and not c.queue.empty():
                    parts.append(c.queue.get_nowait())
                    size += len(parts[-1])
                text = "\n".join(parts)
                n = len(parts)
            try:
                if c.dropped != reported:  # bounded too: a stalled client must not hang its sender here
                    notice = json.dumps({"topic": "overflow", "type": "overflow", "dropped": c.dropped})
                    await asyncio.wait_for(c.ws.send_str(notice), 10.0)
                    reported = c.dropped
                await asyncio.wait_for(c.ws.send_str(text), 10.0)
            except (ConnectionError, TimeoutError, RuntimeError):
                await c.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"too slow")
                return
            c.sent += n

    async def revalidate(self, check: Callable[[list[str]], Awaitable[dict[str, str]]]) -> int:
        """Close the sockets whose session has ended (logout, expiry, a disabled user) or whose
        role has changed since they opened: ``check`` maps live session hashes to their role.
        The browser is told with close code 4401 and logs in (or reconnects) again."""
        clients = [c for c in self.clients if c.session is not None]
        if not clients:
            return 0
        live = await check(sorted({c.session for c in clients if c.session is not None}))
        gone = [c for c in clients if live.get(c.session or "") != c.principal.role]
        await self._close(gone, SESSION_ENDED, b"session ended")
        return len(gone)

    async def close_session(self, session: str) -> int:
        """Close every socket opened with this session (its owner logged out)."""
        gone = [c for c in self.clients if c.session == session]
        await self._close(gone, SESSION_ENDED, b"session ended")
        return len(gone)

    async def _close(self, clients: list[Client], code: int, message: bytes) -> None:
        async def one(c: Client) -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(c.ws.close(code=code, message=message), 2.0)

        await asyncio.gather(*(one(c) for c in clients))

    async def close_all(self) -> None:
        self.closing = True
        for c in list(self.clients):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(c.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown"), 2.0)
