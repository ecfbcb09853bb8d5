"""Supervised background tasks.

Every long-running coroutine of the service runs through a ``TaskGroup`` here: named,
strongly held, logged the moment it crashes, restarted within a restart budget, and
stopped in stages with a time limit.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class TaskStats:
    name: str
    restarts: int = 0
    last_error: str | None = None
    started_at: float = field(default_factory=time.time)


class TaskGroup:
    """Named, supervised tasks with a restart budget (``max_restarts`` within ``window_s``)."""

    def __init__(self, *, max_restarts: int = 5, window_s: float = 60.0) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats: dict[str, TaskStats] = {}
        self.max_restarts = max_restarts
        self.window_s = window_s
        self._closing = False

    def spawn(self, name: str, coro: Awaitable[None]) -> asyncio.Task[None]:
        """Run a one-shot coroutine, held and logged if it crashes."""

        async def wrap() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("task %s crashed", name)

        return self._hold(name, asyncio.get_running_loop().create_task(wrap(), name=name))

    def supervise(
        self, name: str, factory: Callable[[], Awaitable[None]], *, backoff_s: float = 0.5, cap_s: float = 30.0
    ) -> asyncio.Task[None]:
        """Run ``factory()`` for ever; restart it when it crashes, within the restart budget."""
        st = self.stats.setdefault(name, TaskStats(name))

        async def loop() -> None:
            crashes: deque[float] = deque()
            delay = backoff_s
            while not self._closing:
                try:
                    await factory()
                    if self._closing:
                        return
                    log.warning("task %s returned; restarting", name)
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    st.last_error = f"{type(e).__name__}: {e}"
                    log.exception("task %s crashed", name)
                now = time.monotonic()
                crashes.append(now)
                while crashes and now - crashes[0] > self.window_s:
                    crashes.popleft()
                if len(crashes) > self.max_restarts:
                    log.error(
                        "task %s exceeded its restart budget (%d in %.0fs); waiting %.0fs",
                        name, self.max_restarts, self.window_s, cap_s,
                    )
                    await asyncio.sleep(cap_s)
                    crashes.clear()
                st.restarts += 1
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, cap_s)

        return self._hold(name, asyncio.get_running_loop().create_task(loop(), name=name))

    def _hold(self, name: str, task: asyncio.Task[None]) -> asyncio.Task[None]:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Cancel every task and wait for them, at most ``timeout_s``."""
        self._closing = True
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=timeout_s)
            for t in pending:
                log.error("task %s did not stop within %.1fs", t.get_name(), timeout_s)


class Backoff:
    """Capped exponential back-off with full jitter; ``reset()`` after a success."""

    def __init__(self, initial: float = 0.5, cap: float = 30.0) -> None:
        self.initial = initial
        self.cap = cap
        self.attempt = 0

    def next(self) -> float:
        d = min(self.cap, self.initial * (2**self.attempt))
        self.attempt += 1
        return random.uniform(d / 2, d)

    def reset(self) -> None:
        self.attempt = 0
