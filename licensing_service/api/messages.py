"""The request and answer values every HTTP path passes to our handlers.

Kept apart from the dispatcher so that the modules the dispatcher uses (CORS,
the HTTP-path report) can name them without importing it back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

Headers = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class Incoming:
    method: str
    path: str
    body: bytes
    headers: Headers
    client: str | None
    query: bytes = b""

    def header(self, name: bytes) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return None


@dataclass(slots=True)
class Outgoing:
    status: int
    body: bytes
    headers: Headers = field(default_factory=list)


# Handlers are synchronous (the use cases are); the few that call out over
# the network (Stripe) return an awaitable instead.
Handler = Callable[[Incoming], Outgoing | Awaitable[Outgoing]]


@dataclass(frozen=True, slots=True)
class InlineRoute:
    method: str
    path: str
    handler: Callable[[Incoming], Outgoing]
