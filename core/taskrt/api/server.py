"""uvicorn tweaks for serving the API."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


class NoDelayH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with ``TCP_NODELAY`` set on every connection.

    With ``--workers`` above 1, uvicorn binds the shared socket itself and asyncio no longer
    turns Nagle's algorithm off for the connections it accepts, so every response after the
    first on a keep-alive connection waits for the client's delayed ACK (about 40 ms on Linux).
    Setting the option ourselves restores sub-millisecond responses.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock: Any = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):  # not a TCP socket after all: nothing to tune
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)  # type: ignore[arg-type]
