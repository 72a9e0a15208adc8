"""Threads for ``def`` handlers.

A pool that grows on demand and never waits for a thread that is stuck: when a sync handler
times out, its run is failed and its slot freed at once, but Python cannot stop a thread, so
that thread keeps running in the background until the function returns (its result is then
discarded). The pool simply starts another thread for the next task. Threads idle for a
minute exit. All of them are daemon threads, so a stuck handler never blocks the exit.

Work is handed over as plain (function, arguments) pairs, with no Future per call: the hot
path of a busy worker is one queue put and one get, and a thread that finds more work waiting
takes it without sleeping.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("taskrt.worker")

IDLE_EXIT_SECONDS = 60.0

_Work = tuple[Callable[..., Any], tuple[Any, ...]] | None


class HandlerThreads:
    """An elastic pool of daemon threads running (function, args) calls."""

    def __init__(self, name: str = "taskrt-handler") -> None:
        self._name = name
        self._work: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads = 0
        self._started = 0
        self._shutdown = False

    @property
    def size(self) -> int:
        """Threads alive now (busy, idle or abandoned)."""
        return self._threads

    def run(self, fn: Callable[..., Any], /, *args: Any) -> None:
        """Call ``fn(*args)`` on a pool thread; exceptions are logged (callers catch their own)."""
        with self._lock:
            if self._shutdown:
                raise RuntimeError("the handler pool is shut down")
            if self._idle > 0:
                self._idle -= 1
            else:
                self._threads += 1
                self._started += 1
                threading.Thread(
                    target=self._loop, name=f"{self._name}-{self._started}", daemon=True
                ).start()
        self._work.put((fn, args))

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
            fn, args = item
            try:
                fn(*args)
            except BaseException:  # the pool must outlive any call
                log.exception("a handler-pool call raised")
            with self._lock:
                self._idle += 1

    def shutdown(self) -> None:
        """Stop idle threads; busy ones finish (or are abandoned, being daemons)."""
        with self._lock:
            self._shutdown = True
            idle = self._idle
        for _ in range(idle):
            self._work.put(None)
