"""An event loop in a thread of its own, running at most ``limit`` coroutines at a time.

The worker starts one when some of its handlers are ``async def``: each delivery of such a
handler becomes a task on this loop, while ``def`` handlers keep their thread pool. Items
beyond the limit wait in order, not started (the prefetched jobs), and can be taken back
unstarted at a stop. Every public method is thread-safe; submissions made while the loop is
busy are coalesced into one wake-up of the loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

log = logging.getLogger("pgmq_jobs.worker")

Item = TypeVar("Item", bound=Hashable)


class EventLoopThread(Generic[Item]):
    """Runs ``execute(item)`` for submitted items on one event loop in a daemon thread."""

    def __init__(
        self,
        limit: int,
        execute: Callable[[Item], Coroutine[Any, Any, None]],
        *,
        name: str = "pgmq-jobs-event-loop",
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        self.limit = limit
        self._execute = execute
        self._lock = threading.Lock()
        self._waiting: deque[Item] = deque()
        self._wakeup_pending = False
        self._running: dict[Item, asyncio.Task[None]] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name=name, daemon=True)

    # ------------------------------------------------------------ any thread

    def start(self) -> None:
        self._thread.start()

    def submit(self, item: Item) -> None:
        """Run ``execute(item)`` as soon as fewer than ``limit`` items run."""
        with self._lock:
            self._waiting.append(item)
            if self._wakeup_pending:
                return
            self._wakeup_pending = True
        self._loop.call_soon_threadsafe(self._fill)

    def take_queued(self) -> list[Item]:
        """Take back the items not started yet."""
        with self._lock:
            taken = list(self._waiting)
            self._waiting.clear()
        return taken

    def cancel(self, item: Item) -> None:
        """Cancel ``item``'s coroutine (if it runs) and give its place to the next item at
        once, whether or not the coroutine honours the cancellation."""
        if threading.get_ident() == self._thread.ident:
            self._cancel(item)
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._cancel, item)

    def shutdown(self, wait: float = 1.0) -> None:
        """Cancel what still runs, let it unwind for up to ``wait`` seconds, stop the loop."""
        if not self._thread.is_alive():
            self._loop.close()
            return
        self._loop.call_soon_threadsafe(self._begin_shutdown, wait)
        self._thread.join(wait + 1.0)

    @property
    def running(self) -> int:
        return len(self._running)

    # ------------------------------------------------------------ the loop's thread

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    def _fill(self) -> None:
        with self._lock:
            self._wakeup_pending = False
            starting = []
            while self._waiting and len(self._running) + len(starting) < self.limit:
                starting.append(self._waiting.popleft())
        for item in starting:
            task = self._loop.create_task(self._execute(item))
            self._running[item] = task
            task.add_done_callback(lambda done, item=item: self._finished(item, done))

    def _finished(self, item: Item, task: asyncio.Task[None]) -> None:
        if self._running.get(item) is task:
            del self._running[item]
            self._fill()
        if not task.cancelled() and task.exception() is not None:
            log.error("an async handler's task failed", exc_info=task.exception())

    def _cancel(self, item: Item) -> None:
        task = self._running.pop(item, None)
        if task is not None:
            task.cancel()
            self._fill()

    def _begin_shutdown(self, wait: float) -> None:
        with self._lock:
            self._waiting.clear()
        tasks = list(self._running.values())
        self._running.clear()
        for task in tasks:
            task.cancel()
        self._loop.create_task(self._stop_after(tasks, wait))

    async def _stop_after(self, tasks: list[asyncio.Task[None]], wait: float) -> None:
        if tasks:
            await asyncio.wait(tasks, timeout=wait)
        self._loop.stop()
