"""Clocks. The only module allowed to read the wall clock.

``OffsetClock`` is what ``serve --test-clock`` uses: real time plus an offset
that ``/__harness__/clock`` moves. The offset lives in a small memory-mapped
file so every worker process of one server agrees on the time.
"""

from __future__ import annotations

import mmap
import os
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

_OFFSET = struct.Struct("<q")  # signed microseconds


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told to (unit tests, simulations)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._start = self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def offset_seconds(self) -> float:
        return (self._now - self._start).total_seconds()

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now

    def set(self, when: datetime) -> datetime:
        self._now = when.astimezone(UTC)
        return self._now


class MovableClock(Protocol):
    """A clock the test harness may move (``/__harness__/clock``)."""

    def now(self) -> datetime: ...
    def advance(self, seconds: float) -> datetime: ...
    def set(self, when: datetime) -> datetime: ...
    def offset_seconds(self) -> float: ...


class OffsetStore(Protocol):
    def get(self) -> int: ...
    def put(self, micros: int) -> None: ...


class MemoryOffset:
    def __init__(self) -> None:
        self._micros = 0

    def get(self) -> int:
        return self._micros

    def put(self, micros: int) -> None:
        self._micros = micros


class SharedFileOffset:
    """An offset shared between processes through an 8-byte mmap'd file."""

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < _OFFSET.size:
                os.ftruncate(fd, _OFFSET.size)
            self._map = mmap.mmap(fd, _OFFSET.size)
        finally:
            os.close(fd)

    def get(self) -> int:
        return int(_OFFSET.unpack_from(self._map, 0)[0])

    def put(self, micros: int) -> None:
        _OFFSET.pack_into(self._map, 0, micros)


class OffsetClock:
    """Real time shifted by a movable offset (``serve --test-clock``)."""

    def __init__(self, offset: OffsetStore | None = None) -> None:
        self._offset = offset or MemoryOffset()

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(microseconds=self._offset.get())

    def offset_seconds(self) -> float:
        return self._offset.get() / 1_000_000

    def advance(self, seconds: float) -> datetime:
        self._offset.put(self._offset.get() + round(seconds * 1_000_000))
        return self.now()

    def set(self, when: datetime) -> datetime:
        delta = when.astimezone(UTC) - datetime.now(UTC)
        self._offset.put(round(delta / timedelta(microseconds=1)))
        return self.now()
