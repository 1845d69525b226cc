"""Slow and hostile connections, held open against a target for a while.

Each connection plays one part, over and over: when the server closes it (a
refusal, a timeout) it is reopened at once, so ``count`` connections stay open
for the whole run. What the server answered each time is counted, so a run
says both that the load was there and how the server dealt with it.

Parts:
    idle        connect, send nothing
    half-head   half a request line and headers, then nothing
    drip-head   headers one byte a second, never finished
    half-body   headers, a tenth of the declared body, then nothing
    drip-body   headers, then the body one byte a second
    oversized   declare 100 MB and start sending it (refused at once: 1 s
                between attempts, so this part is a trickle, not a flood)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from licensing_service.contract import routes

PARTS = ("idle", "half-head", "drip-head", "half-body", "drip-body", "oversized")
Progress = Callable[[str], None]


@dataclass
class HostileResult:
    count: int
    seconds: float
    opened: int = 0
    connect_errors: int = 0
    # What the server did each time, per part: "408", "413", "closed" (no answer) ...
    outcomes: Counter[str] = field(default_factory=Counter)
    open_at_end: int = 0

    def line(self) -> str:
        return (
            f"{self.count} hostile connections for {self.seconds:.0f} s: {self.opened} opened, "
            f"{self.connect_errors} connect errors, outcomes {dict(sorted(self.outcomes.items()))}"
        )


def hold_hostile_connections(
    url: str,
    *,
    count: int = 200,
    seconds: float = 30,
    parts: Sequence[str] = PARTS,
    progress: Progress | None = None,
) -> HostileResult:
    """Keep ``count`` hostile connections open to ``url`` for ``seconds``
    (the parts dealt round-robin), then close them. Loopback only."""
    host, port = _address(url)
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}; expected some of {PARTS}")
    return asyncio.run(_hold(host, port, count, seconds, list(parts), progress))


def _address(url: str) -> tuple[str, int]:
    split = urlsplit(url)
    if split.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"hostile connections go to loopback only, not {split.hostname}")
    return split.hostname, split.port or 80


async def _hold(
    host: str, port: int, count: int, seconds: float, parts: list[str], progress: Progress | None
) -> HostileResult:
    result = HostileResult(count, seconds)
    stop_at = time.monotonic() + seconds
    open_now: set[int] = set()
    dealt = itertools.cycle(parts)
    tasks = [
        asyncio.create_task(_play(i, next(dealt), host, port, stop_at, result, open_now))
        for i in range(count)
    ]
    while time.monotonic() < stop_at:
        await asyncio.sleep(min(3.0, max(0.0, stop_at - time.monotonic())))
        if progress is not None:
            progress(f"hostile: {len(open_now)}/{count} open, {result.opened} opened so far")
    result.open_at_end = len(open_now)
    await asyncio.gather(*tasks, return_exceptions=True)
    return result


async def _play(
    slot: int,
    part: str,
    host: str,
    port: int,
    stop_at: float,
    result: HostileResult,
    open_now: set[int],
) -> None:
    while time.monotonic() < stop_at:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            result.connect_errors += 1
            await asyncio.sleep(0.2)
            continue
        result.opened += 1
        open_now.add(slot)
        try:
            outcome = await _until_closed(part, reader, writer, stop_at)
        finally:
            open_now.discard(slot)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if outcome is not None:
            result.outcomes[f"{part}: {outcome}"] += 1
        if part == "oversized":
            # Refused at once (413): reconnecting at once would be a request
            # flood, another test than a connection held open.
            await asyncio.sleep(1)


async def _until_closed(
    part: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stop_at: float
) -> str | None:
    """Play ``part`` until the server closes (returns what it said) or the run
    ends (None)."""
    answer = asyncio.create_task(reader.read(4096))
    sender = asyncio.create_task(_send(part, writer))
    try:
        done, _ = await asyncio.wait({answer}, timeout=max(0.0, stop_at - time.monotonic()))
        if not done:
            return None
        try:
            data = answer.result()
        except OSError:
            return "reset"
        if not data:
            return "closed"
        return data.split(b" ", 2)[1].decode("ascii", "replace") if b" " in data else "junk"
    finally:
        for task in (answer, sender):
            task.cancel()
        await asyncio.gather(answer, sender, return_exceptions=True)


def _head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


async def _send(part: str, writer: asyncio.StreamWriter) -> None:
    head = _head(routes.VALIDATE_UNIFIED, 1000)
    with contextlib.suppress(OSError):
        if part == "half-head":
            writer.write(head[: len(head) // 2])
        elif part == "drip-head":
            for byte in head[:-2]:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(1)
        elif part == "half-body":
            writer.write(head + b" " * 100)
        elif part == "drip-body":
            writer.write(head)
            for _ in range(1000):
                await asyncio.sleep(1)
                writer.write(b" ")
                await writer.drain()
        elif part == "oversized":
            writer.write(_head(routes.VALIDATE_UNIFIED, 100_000_000))
            for _ in range(100_000):
                writer.write(b"a" * 65536)
                await writer.drain()
        await writer.drain()
