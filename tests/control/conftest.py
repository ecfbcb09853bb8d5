"""Control's test helpers: a broker of our own that can be stopped and restarted with its
retained messages kept, a small city of our own (random station ids, so tests on the
shared database never meet), staff logins, and the real service with an injected clock."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from aiohttp import web
from psycopg.rows import dict_row

from monitor.config import Config, ControlConfig, MqttConfig, SiteConfig
from monitor.control.clock import Clock, ManualClock
from monitor.control.service import ControlService
from monitor.sim.guns import Broker, GunController
from monitor.web.keys import CONTROL, FINDINGS
from tests.support.api import Staff, logged_in, on_loopback
from tests.support.net import free_port, port_open, wait_for

T = TypeVar("T")


class Mosquitto:
    """A Mosquitto of our own on a fixed port, with persistence: stop() and start() keep
    its retained messages and persistent sessions (saved on SIGTERM)."""

    def __init__(self, extra_conf: str = "", *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="monitor-ctl-mqtt-"))
        # Started as root, Mosquitto drops to its own user: let it write its persistence file.
        self.dir.chmod(0o777)
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\npersistence true\npersistence_location {self.dir}/\n"
            f"autosave_interval 1\n{extra_conf or 'allow_anonymous true'}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open("127.0.0.1", self.port), 10, f"mosquitto on {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    b = Mosquitto()
    b.start()
    try:
        yield b
    finally:
        b.close()


def station(site: str, n_guns: int) -> SiteConfig:
    guns = [f"g{i}" for i in range(1, n_guns + 1)]
    return SiteConfig(
        id=site, kind="station", storage_capacity=100, guns=guns,
        scales=[{"id": f"s{i}", "gun": g} for i, g in enumerate(guns, 1)],  # type: ignore[list-item]
    )


def control_city(db_url: str, mqtt_url: str, *, guns: tuple[int, ...] = (3,), **control: Any) -> Config:
    """Stations of our own (random ids) and a random topic prefix; no cameras."""
    tag = uuid.uuid4().hex[:6]
    sites = [station(f"st-c{tag}-{i}", n) for i, n in enumerate(guns)]
    return Config(
        database={"url": db_url},  # type: ignore[arg-type]
        mqtt=MqttConfig(url=mqtt_url, prefix=f"t{tag}"),
        server={"port": free_port()},  # type: ignore[arg-type]
        control=ControlConfig(**control),
        sites=sites,
    )


@dataclass
class Running:
    base: str
    app: web.Application

    @property
    def svc(self) -> ControlService:
        return self.app[CONTROL]

    async def wait_state(self, site: str, gun: str, pred: Any, timeout_s: float = 10.0) -> Any:
        """Wait (bounded) until the service's state of the gun satisfies ``pred``."""
        from monitor.control.model import GunId

        async with asyncio.timeout(timeout_s):
            while True:
                s = self.svc.state(GunId(site, gun))
                if s is not None and pred(s):
                    return s
                await asyncio.sleep(0.01)


@asynccontextmanager
async def serve(cfg: Config, *, clock: Clock | None = None,
                roles: frozenset[str] = frozenset({"api", "control"})) -> AsyncIterator[Running]:
    """The real service on loopback (api and control roles), with ``clock`` injected."""
    from monitor.app import build_app

    app = build_app(cfg, roles=roles, client_id=f"centre-{uuid.uuid4().hex[:6]}")
    app[CONTROL].clock = clock or ManualClock()
    async with on_loopback(app, cfg.server.port, ready=lambda: app[CONTROL].wait_ready(30)) as base:
        yield Running(base, app)


def staff(base: str, db_url: str, role: str) -> AbstractAsyncContextManager[Staff]:
    """``ctl-<role>`` logged in with ``role``."""
    return logged_in(base, db_url, role, f"ctl-{role}")


def device(cfg: Config, site: str, gun: str, **kw: Any) -> GunController:
    return GunController(Broker(cfg.mqtt.url), cfg.mqtt.prefix, site, gun, **kw)


@asynccontextmanager
async def devices(cfg: Config, site: str, **kw: Any) -> AsyncIterator[dict[str, GunController]]:
    guns = {g: device(cfg, site, g, **kw) for g in cfg.site(site).guns}
    try:
        await asyncio.gather(*(d.start() for d in guns.values()))
        yield guns
    finally:
        await asyncio.gather(*(d.stop() for d in guns.values()))


async def rows(db_url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row) as conn:
        cur = await conn.execute(sql, args)
        return [dict(r) for r in await cur.fetchall()]


async def until(fetch: Callable[[], Awaitable[T]], pred: Callable[[T], bool], timeout_s: float = 10.0) -> T:
    """Poll something outside this process (database, broker) until ``pred`` holds; bounded."""
    async with asyncio.timeout(timeout_s):
        while True:
            v = await fetch()
            if pred(v):
                return v
            await asyncio.sleep(0.02)


class FindingLog:
    """Collects what the service submits to the finding bus."""

    def __init__(self, app: web.Application) -> None:
        self.items: list[Any] = []
        app[FINDINGS].subscribe(self._add)

    async def _add(self, f: Any) -> None:
        self.items.append(f)

    def of(self, rule: str) -> list[Any]:
        return [f for f in self.items if f.rule == rule]
