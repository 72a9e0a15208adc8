"""Identifiers: time-ordered UUIDs (version 7, RFC 9562).

Ids are made by the producer, not the database, so a batch of tasks is inserted without a round
trip per row; their time order keeps B-tree inserts local and makes keyset pagination by id
follow creation order.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0
# The random bits only need to be unique, not secret: a process-local generator seeded from the
# OS (and reseeded in a forked child) costs far less than a system call per id.
_random = random.Random(os.urandom(16))  # noqa: S311 - uniqueness, not secrecy


def _reseed() -> None:
    _random.seed(os.urandom(16))


os.register_at_fork(after_in_child=_reseed)


def uuid7() -> uuid.UUID:
    """A new version-7 UUID: 48 bits of Unix milliseconds, then a counter and random bits.

    Within one process, ids are strictly increasing even within one millisecond.
    """
    global _last_ms, _counter
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms > _last_ms:
            _last_ms = now_ms
            _counter = _random.getrandbits(10)  # leave room to count up
        else:
            _counter += 1
            if _counter > 0xFFF:  # 4096 ids in one millisecond: borrow the next millisecond
                _last_ms += 1
                _counter = 0
        ms, counter = _last_ms, _counter
        rand = _random.getrandbits(62)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= counter << 64
    value |= 0b10 << 62
    value |= rand
    return uuid.UUID(int=value)


def parse_uuid(text: str) -> uuid.UUID | None:
    """Parse ``text`` as a UUID, or return None if it is not one (never raises)."""
    try:
        return uuid.UUID(text)
    except (ValueError, TypeError, AttributeError):
        return None
