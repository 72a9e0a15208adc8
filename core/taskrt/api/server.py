"""uvicorn tweaks for serving the API: ``TCP_NODELAY``, and deadlines for slow clients."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any, Literal

from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

from taskrt.settings import Settings

log = logging.getLogger("taskrt.api")

Phase = Literal["headers", "body"]


class NoDelayH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with ``TCP_NODELAY`` set on every connection, and deadlines for
    the request line and headers and for the body.

    With ``--workers`` above 1, uvicorn binds the shared socket itself and asyncio no longer
    turns Nagle's algorithm off for the connections it accepts, so every response after the
    first on a keep-alive connection waits for the client's delayed ACK (about 40 ms on Linux).
    Setting the option ourselves restores sub-millisecond responses.

    uvicorn closes a keep-alive connection that stays silent, but any byte cancels that timer,
    and a fresh connection has none: a client sending one byte every few seconds (slowloris)
    could hold a connection, and a server slot, for ever. Here a request's line and headers
    must be in within :attr:`header_timeout` seconds of the connection (or of the previous
    response), and its body within :attr:`body_timeout` seconds of its headers; otherwise the
    connection is closed (the handler of a half-read body sees the client disconnect).
    """

    header_timeout: float = Settings.model_fields["api_header_timeout"].default
    body_timeout: float = Settings.model_fields["api_body_timeout"].default

    _deadline: asyncio.TimerHandle | None = None
    _watched: RequestResponseCycle | None = None
    _phase: Phase = "headers"

    @classmethod
    def configure(cls, settings: Settings) -> None:
        """Take the deadlines from ``settings`` (each server process calls this as it builds
        its app, before it accepts a connection)."""
        cls.header_timeout = settings.api_header_timeout
        cls.body_timeout = settings.api_body_timeout

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock: Any = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):  # not a TCP socket after all: nothing to tune
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm("headers")

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start a pipelined request already buffered
        if not self.transport.is_closing():
            if self.cycle is self._watched:  # nothing new yet: wait for the next request
                self._arm("headers")
            self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _follow(self) -> None:
        """Move the deadline on as the request advances: headers in, then body in."""
        cycle: RequestResponseCycle | None = self.cycle
        if cycle is None:
            return
        if cycle is not self._watched:  # a new request: its headers are in
            self._watched = cycle
            if cycle.more_body:
                self._arm("body")
            else:
                self._disarm()
        elif not cycle.more_body and self._deadline is not None and self._phase == "body":
            self._disarm()

    def _arm(self, phase: Phase) -> None:
        self._disarm()
        self._phase = phase
        seconds = self.header_timeout if phase == "headers" else self.body_timeout
        self._deadline = self.loop.call_later(seconds, self._expired, phase, seconds)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, phase: Phase, seconds: float) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        where = "%s:%d" % self.client if self.client else "a client"  # noqa: UP031 - like uvicorn
        log.info(
            "closing the connection of %s: the request %s did not arrive within %g s "
            "(TASKRT_API_%s_TIMEOUT)",
            where,
            "line and headers" if phase == "headers" else "body",
            seconds,
            "HEADER" if phase == "headers" else "BODY",
        )
        self.transport.close()
