"""A real uvicorn server on 127.0.0.1, in a thread of the test process.

Everything inside the app (store, service, clock) belongs to the server's
event-loop thread; tests reach it only through ``LiveServer.run`` (which
executes a function on that thread) or over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn

from licensing_service.adapters.clock import ManualClock
from licensing_service.adapters.sqlite_store import SqliteStore
from licensing_service.api.server import http_path_of, uvicorn_options
from licensing_service.bootstrap import Parts, create_app
from licensing_service.config import Settings
from licensing_service.db_target import SqliteTarget
from licensing_service.service.outbox import EmailTransport
from loadtests.harness.listeners import close_listeners

T = TypeVar("T")
# Set by scripts/test-uvicorn-latest: run the accelerator on the newest uvicorn
# (which the service itself refuses), to see whether its tests still pass.
TRY_UNTESTED_UVICORN = os.environ.get("LH_TEST_UNTESTED_UVICORN") == "1"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections for the block.

    Bound and never listening: a connection to it is refused, and nothing else
    can bind it meanwhile (a port from :func:`free_port` is free only until
    another xdist worker's server takes it, and then it answers)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


class _PromptServer(uvicorn.Server):
    """uvicorn's server, stopped as soon as it is told to.

    uvicorn polls ``should_exit`` every 100 ms and then sleeps another 100 ms for
    open connections before it shuts down: ~200 ms for every server a test starts,
    a fifth of the quick suite's time. Here the main loop waits on an event (still
    refreshing the Date header each second) and the shutdown polls the connections
    every 5 ms. The same steps, in the same order, as ``Server.shutdown``, and the
    listening sockets closed without leaking a connection accepted meanwhile.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.exit_now: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self.exit_now = asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter += 10  # on_tick refreshes the default headers when counter % 10 == 0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.exit_now.wait(), timeout=1.0)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn's server.close() for each, without CPython's race with a
        # connection accepted at that moment (loadtests.harness.listeners).
        await close_listeners(self.servers)
        for connection in list(self.server_state.connections):
            connection.shutdown()
        deadline = time.monotonic() + (self.config.timeout_graceful_shutdown or 10)
        # uvicorn signals no event when its last connection closes: polled.
        while (  # noqa: ASYNC110
            self.server_state.connections or self.server_state.tasks
        ) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        for task in self.server_state.tasks:
            task.cancel()
        for server in self.servers:
            await server.wait_closed()
        await self.lifespan.shutdown()


class LiveServer:
    def __init__(
        self,
        settings: Settings,
        clock: ManualClock | None = None,
        transport: EmailTransport | None = None,
        **uvicorn_overrides: Any,
    ) -> None:
        self.clock = clock or ManualClock(EPOCH)
        # "asyncio": a thread of the test process.
        options = uvicorn_options(
            settings,
            allow_untested_uvicorn=TRY_UNTESTED_UVICORN,
            loop="asyncio",
            **uvicorn_overrides,
        )
        self.app = create_app(
            settings,
            clock=self.clock,
            transport=transport,
            background=False,
            http_path=http_path_of(settings, options, allow_untested_uvicorn=TRY_UNTESTED_UVICORN),
        )
        self.parts: Parts = self.app.parts
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, **options)
        self._server = _PromptServer(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def db_path(self) -> Path:
        """The SQLite file (a test that reads the file itself is a SQLite test)."""
        target = self.parts.settings.db
        if not isinstance(target, SqliteTarget):
            pytest.skip("reads the SQLite file itself")
        return target.path

    def sqlite(self) -> SqliteStore:
        """The SQLite store, for tests that query its connection directly."""
        store = self.parts.store
        if not isinstance(store, SqliteStore):
            pytest.skip("queries the SQLite connection itself")
        return store

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._server.serve())
        self._loop.close()

    def start(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.005)
        return self

    def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the server's event-loop thread and return its result."""
        assert self._loop is not None

        async def call() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(timeout=10)

    def run_async(self, coro_fn: Callable[[], object]) -> object:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro_fn(), self._loop).result(timeout=30)  # type: ignore[arg-type]

    def stop(self) -> None:
        self._server.should_exit = True
        loop, event = self._loop, self._server.exit_now
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                loop.call_soon_threadsafe(event.set)
        self._thread.join(timeout=10)
