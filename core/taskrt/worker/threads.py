"""Threads for ``def`` handlers.

A pool that grows on demand and never waits for a thread that is stuck: when a sync handler
times out, its run is failed and its slot freed at once, but Python cannot stop a thread, so
that thread keeps running in the background until the function returns (its result is then
discarded). The pool simply starts another thread for the next task. Threads idle for a
minute exit. All of them are daemon threads, so a stuck handler never blocks the exit.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

log = logging.getLogger("taskrt.worker")

IDLE_EXIT_SECONDS = 60.0


class HandlerThreads:
    """An elastic thread pool usable as an asyncio executor."""

    def __init__(self, name: str = "taskrt-handler") -> None:
        self._name = name
        self._work: queue.SimpleQueue[
            tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None
        ] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads = 0
        self._shutdown = False

    @property
    def size(self) -> int:
        """Threads alive now (busy, idle or abandoned)."""
        return self._threads

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` on a pool thread."""
        if kwargs:
            raise TypeError("HandlerThreads.submit takes positional arguments only")
        future: Future[Any] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("the handler pool is shut down")
            if self._idle > 0:
                self._idle -= 1
            else:
                self._threads += 1
                threading.Thread(
                    target=self._loop, name=f"{self._name}-{self._threads}", daemon=True
                ).start()
        self._work.put((future, fn, args))
        return future

    def _loop(self) -> None:
        while True:
            try:
                item = self._work.get(timeout=IDLE_EXIT_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:
                        self._idle -= 1
                        self._threads -= 1
                        return
                continue
            if item is None:
                with self._lock:
                    self._threads -= 1
                return
            future, fn, args = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:  # delivered to the awaiting coroutine
                    future.set_exception(exc)
            with self._lock:
                self._idle += 1

    def shutdown(self, wait: bool = False, *, cancel_futures: bool = False) -> None:
        """Stop idle threads; busy ones finish (or are abandoned, being daemons)."""
        with self._lock:
            self._shutdown = True
            idle = self._idle
        for _ in range(idle):
            self._work.put(None)
