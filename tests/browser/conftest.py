"""The wallboard in a real browser: Debian's Chromium driven by Playwright, against the real
service on loopback (real PostgreSQL, a Mosquitto of our own, the simulated gun controllers).

Screenshots of each step go to ``tests/artifacts/browser/`` (git-ignored).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from aiohttp import web
from psycopg.rows import dict_row

from monitor.config import Config
from monitor.store.audit import Actor
from monitor.web import auth
from tests.conftest import ROOT, city_config
from tests.support.net import free_port
from tests.support.services import fresh_database, private_mosquitto

CHROMIUM = os.environ.get("MONITOR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required"]
ARTIFACTS = ROOT / "tests" / "artifacts" / "browser"
PASSWORD = "wallboard-pass-1"
ROLES = ("viewer", "operator", "supervisor", "admin")
WAIT_MS = 10_000  # the longest any step may take (not a timing assertion: a bound on the wait)

pytestmark = pytest.mark.browser


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        skip = pytest.mark.skip(reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")
        for item in items:
            if "tests/browser" in str(item.fspath):
                item.add_marker(skip)


@pytest.fixture(scope="module")
def wall_db(pg_server: str) -> Iterator[str]:
    """A database of this module's own (the service migrates it when it starts)."""
    with fresh_database(pg_server, prefix="monitor_wall") as url:
        yield url


@pytest.fixture(scope="module")
def wall_mqtt() -> Iterator[str]:
    """A broker of our own: the gun simulators' client ids never meet another test's."""
    with private_mosquitto() as (url, _):
        yield url


@dataclass
class City:
    base: str
    app: web.Application
    cfg: Config
    db: str
    mqtt: str
    extra: dict[str, Any] = field(default_factory=dict)


async def ensure_users(db: str) -> None:
    async with await psycopg.AsyncConnection.connect(db, row_factory=dict_row) as conn:
        for role in ROLES:
            cur = await conn.execute("SELECT 1 FROM users WHERE username = %s", (f"{role}1",))
            if await cur.fetchone() is None:
                await auth.add_user(conn, Actor.system("test"), f"{role}1", role, PASSWORD)


def wall_config(db: str, mqtt: str, cameras: dict[str, str] | None = None, **overrides: Any) -> Config:
    """The example city for the wall's tests: each camera at the URL given in ``cameras``, the
    others at a port where nothing listens (offline at once, whatever else runs on this
    machine), and no detection rules (findings are injected; no model runs)."""
    cfg = city_config(db, mqtt, **overrides)
    cameras = cameras or {}
    dead = f"rtsp://127.0.0.1:{free_port()}"
    sites = [
        s.model_copy(update={"cameras": [
            c.model_copy(update={"url": cameras.get(c.id, f"{dead}/{c.id}"), "detect_url": None, "rules": []})
            for c in s.cameras]})
        for s in cfg.sites
    ]
    return cfg.model_copy(update={"sites": sites})


@asynccontextmanager
async def wall_service(db: str, mqtt: str, cameras: dict[str, str] | None = None, *, split: bool = False,
                       **overrides: Any) -> AsyncIterator[City]:
    """The real service (every role) on loopback, with a login per role. ``split``: the roles
    apart, as a real city runs them: the wall's process has ``api,control`` and a second
    app on its own port runs the cameras (``video``), reached at its advertised address."""
    from monitor.app import build_app, wait_db_ready
    from monitor.web.keys import ADVERTISED

    cfg = wall_config(db, mqtt, cameras, **overrides)
    runners = []
    try:
        if split:
            port = free_port()
            worker = build_app(cfg, roles=frozenset({"video"}))
            worker[ADVERTISED] = f"http://127.0.0.1:{port}"
            runners.append(web.AppRunner(worker, shutdown_timeout=5.0))
            await runners[-1].setup()
            await web.TCPSite(runners[-1], "127.0.0.1", port).start()
        app = build_app(cfg, roles=frozenset({"api", "control"}) if split else frozenset({"api", "control", "video"}))
        runners.append(web.AppRunner(app, shutdown_timeout=5.0))
        await runners[-1].setup()
        await web.TCPSite(runners[-1], "127.0.0.1", cfg.server.port).start()
        await wait_db_ready(app, 30)
        await ensure_users(db)
        yield City(f"http://127.0.0.1:{cfg.server.port}", app, cfg, db, mqtt)
    finally:
        for r in reversed(runners):
            await asyncio.wait_for(r.cleanup(), 20)


@pytest.fixture
async def city(wall_db: str, wall_mqtt: str) -> AsyncIterator[City]:
    async with wall_service(wall_db, wall_mqtt) as c:
        yield c


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


class Screens:
    """Screenshots named after the test and the step, and the page errors seen on the way."""

    def __init__(self, test: str) -> None:
        self.dir = ARTIFACTS
        self.dir.mkdir(parents=True, exist_ok=True)
        self.prefix = re.sub(r"[^A-Za-z0-9_.-]+", "_", test)
        self.n = 0
        self.errors: list[str] = []
        self.pages: list[Any] = []

    async def shot(self, page: Any, step: str) -> Path:
        self.n += 1
        path = self.dir / f"{self.prefix}-{self.n:02d}-{step}.png"
        await page.screenshot(path=str(path))
        return path

    def watch(self, page: Any) -> None:
        self.pages.append(page)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error"
                and "Failed to load resource" not in m.text else None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    if rep.when == "call":
        item.stash[FAILED] = rep.failed
    return rep


FAILED = pytest.StashKey[bool]()


@pytest.fixture
async def screens(request: pytest.FixtureRequest) -> AsyncIterator[Screens]:
    s = Screens(request.node.name)
    yield s
    if request.node.stash.get(FAILED, False):  # what each page showed when the test failed
        for i, page in enumerate(s.pages):
            try:
                await page.screenshot(path=str(s.dir / f"{s.prefix}-FAILED-{i}.png"))
            except Exception as e:
                print(f"no screenshot of page {i}: {e}")
        print("page errors:", s.errors)


async def open_as(browser: Any, city: City, role: str, screens: Screens, *, lang: str = "zh-CN",
                  timezone: str = "Asia/Shanghai", viewport: tuple[int, int] = (1600, 900)) -> Any:
    """A new browser context logged in as ``{role}1`` through the login form."""
    # bypass_csp: the page forbids eval(); Playwright's wait_for_function needs it
    ctx = await browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}, locale=lang, bypass_csp=True,
                                    timezone_id=timezone)
    page = await ctx.new_page()
    screens.watch(page)
    await page.goto(city.base + "/")
    await page.wait_for_selector("form.login", timeout=WAIT_MS)
    await page.fill("input[name=username]", f"{role}1")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("form.login button[type=submit]")
    await page.wait_for_selector("nav.tabs", timeout=WAIT_MS)
    await page.wait_for_function("window.__wall && window.__wall.live.state === 'online'", timeout=WAIT_MS)
    return page


async def has_route(city: City, method: str, path: str) -> bool:
    """Whether the service has a route for ``method path`` (its part is installed)."""
    for r in city.app.router.routes():
        info = r.resource.get_info() if r.resource is not None else {}
        pattern = info.get("formatter") or info.get("path")
        if r.method == method and pattern == path:
            return True
    return False


async def api_session(city: City, role: str) -> tuple[aiohttp.ClientSession, str]:
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    r = await http.post(f"{city.base}/api/v1/login", json={"username": f"{role}1", "password": PASSWORD})
    assert r.status == 200, await r.text()
    return http, (await r.json())["csrf"]
