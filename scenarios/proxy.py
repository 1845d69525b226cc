"""A TCP fault proxy on 127.0.0.1, put in front of the service: latency, resets, a black hole.

Usage (synchronous; the proxy's event loop runs in a thread of its own)::

    with FaultProxy(upstream=("127.0.0.1", service_port)) as proxy:
        url = f"http://127.0.0.1:{proxy.port}"
        proxy.set(latency_ms=200)   # every answer 200 ms late
        proxy.set(blackhole=True)   # a partition: clients time out
        proxy.set()                 # healthy again
        proxy.counters()            # what went through, and what did not
        probe(proxy.port)           # what a client sees now: answered, reset, silent, refused

Faults (``set`` replaces all three at once; what it is not given is off):

* ``latency_ms``: each chunk from the service reaches the client ``latency_ms``
  after it reached the proxy (order kept), on open connections and new ones, as
  Toxiproxy's ``latency`` toxic on the downstream stream;
* ``reset``: every open connection is reset (a TCP RST, ``SO_LINGER`` 0), and so is
  each new one as soon as it is accepted, while it is on;
* ``blackhole``: a network partition. Connections are still accepted (the client's
  connect succeeds) and their bytes are read and dropped; nothing reaches the
  service and nothing comes back, so clients time out. A connection that was in
  the black hole stays there until its client closes it: bytes lost in a
  partition are not given back, as on a real network. New connections after the
  fault is lifted go through.

Why our own and not Toxiproxy: Toxiproxy is a Go server that is not packaged in
Debian (``apt-cache policy toxiproxy`` finds nothing) and PyPI has only its
clients (``toxiproxy-python``, ``chaostoolkit-toxiproxy``), which need that
server; the one PyPI TCP delay proxy found (``sloww`` 0.1.0) adds delays only. A
downloaded binary cannot be fetched here. The three faults take ~250 lines of asyncio.

Several upstreams (``FaultProxy(upstreams=[...])``): each new connection goes to
the next one in turn (round-robin per connection, as the replicas' single
address is), and a connection an upstream refuses is offered to the next, so a
killed replica costs its clients nothing but their open connections.

Bounded: the proxy listens only on 127.0.0.1 and stops (every connection
closed, its thread joined) when its context ends or :meth:`FaultProxy.stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import struct
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, TypeVar

from fixtures.target import is_loopback
from loadtests.harness.listeners import close_listeners

T = TypeVar("T")
CHUNK = 65_536
CONTROL_TIMEOUT_SECONDS = 5.0
MAX_LATENCY_MS = 60_000  # as licensing_service.contract.faults: a minute is an outage


class ProxyError(Exception):
    """The proxy could not start, or was asked for something it refuses."""


@dataclass(frozen=True, slots=True)
class ProxyFaults:
    latency_ms: int = 0
    reset: bool = False
    blackhole: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.latency_ms <= MAX_LATENCY_MS:
            raise ProxyError(f"latency_ms must be 0..{MAX_LATENCY_MS}, not {self.latency_ms}")

    def active(self) -> list[str]:
        names = []
        if self.latency_ms:
            names.append(f"latency_ms={self.latency_ms}")
        if self.reset:
            names.append("reset")
        if self.blackhole:
            names.append("blackhole")
        return names


@dataclass(frozen=True, slots=True)
class ProxyCounters:
    accepted: int = 0  # client connections accepted
    forwarded: int = 0  # connections opened to the upstream
    open: int = 0  # client connections open now
    resets: int = 0  # connections reset by the proxy
    blackholed: int = 0  # connections that fell into the black hole
    bytes_up: int = 0  # client -> upstream, forwarded
    bytes_down: int = 0  # upstream -> client, delivered
    bytes_dropped: int = 0  # read and dropped by the black hole


@dataclass(eq=False, slots=True)
class _Conn:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    blackholed: bool = False
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)


class FaultProxy:
    """A fault proxy to ``upstream`` (a loopback host and port)."""

    def __init__(
        self,
        upstream: tuple[str, int] | None = None,
        *,
        port: int = 0,
        upstreams: Sequence[tuple[str, int]] = (),
    ) -> None:
        chosen = [upstream] if upstream is not None else list(upstreams)
        if not chosen:
            raise ProxyError("no upstream given")
        for host, _ in chosen:
            if not is_loopback(host):
                raise ProxyError(f"upstream {host} is not a loopback address")
        self.upstream = chosen[0]
        self.upstreams = chosen
        self._next = 0  # the round-robin position
        self._spread = [0] * len(chosen)  # connections forwarded to each upstream
        self._failovers = 0
        self._refused = [0] * len(chosen)  # connections each upstream refused (a dead one)
        self._requested_port = port
        self.port = 0
        self._faults = ProxyFaults()
        self._counters = ProxyCounters()
        self._conns: set[_Conn] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._stopped: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="fault-proxy", daemon=True)

    # ---------------------------------------------------------- sync API

    def start(self) -> FaultProxy:
        self._thread.start()
        if not self._ready.wait(CONTROL_TIMEOUT_SECONDS) or self._error is not None:
            raise ProxyError(f"the proxy did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError, TimeoutError):
                self._call(self._shutdown())
        self._thread.join(CONTROL_TIMEOUT_SECONDS)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def set(self, *, latency_ms: int = 0, reset: bool = False, blackhole: bool = False) -> None:
        """Replace the faults; returns once they apply to open connections too."""
        faults = ProxyFaults(latency_ms=latency_ms, reset=reset, blackhole=blackhole)
        self._call(self._apply(faults))

    def faults(self) -> ProxyFaults:
        return self._faults

    def counters(self) -> ProxyCounters:
        return replace(self._counters, open=len(self._conns))

    def spread(self) -> list[int]:
        """Connections forwarded to each upstream, in ``upstreams`` order."""
        return list(self._spread)

    def failovers(self) -> int:
        """Connections an upstream refused and the next one took."""
        return self._failovers

    def refused(self) -> list[int]:
        """Connections each upstream refused, in ``upstreams`` order: a killed
        replica is the one whose count grows while the others take its turns."""
        return list(self._refused)

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CONTROL_TIMEOUT_SECONDS)

    # ------------------------------------------------- the proxy's thread

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # reported to start(), which is waiting
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stopped = asyncio.Event()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self._requested_port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._ready.set()
        await self._stopped.wait()

    async def _shutdown(self) -> None:
        assert self._server is not None
        assert self._stopped is not None
        await close_listeners([self._server])
        cancelled = []
        for conn in list(self._conns):
            self._abort(conn)
            for task in conn.tasks:
                task.cancel()
                cancelled.append(task)
        # Each ends before the loop does (else "Task was destroyed but it is pending!").
        await asyncio.gather(*cancelled, return_exceptions=True)
        self._stopped.set()

    async def _apply(self, faults: ProxyFaults) -> None:
        self._faults = faults
        for conn in list(self._conns):
            if faults.reset:
                self._reset(conn)
            elif faults.blackhole and not conn.blackholed:
                self._fall_in(conn)

    def _count(self, **deltas: int) -> None:
        c = self._counters
        self._counters = replace(c, **{k: getattr(c, k) + v for k, v in deltas.items()})

    def _fall_in(self, conn: _Conn) -> None:
        conn.blackholed = True
        self._count(blackholed=1)

    def _reset(self, conn: _Conn) -> None:
        sock = conn.client.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._abort(conn)
        self._count(resets=1)

    @staticmethod
    def _abort(conn: _Conn) -> None:
        conn.client.transport.abort()
        if conn.upstream is not None:
            conn.upstream.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(writer)
        current = asyncio.current_task()
        if current is not None:
            conn.tasks.add(current)
        self._conns.add(conn)
        self._count(accepted=1)
        try:
            await self._proxy(conn, reader)
        except (OSError, asyncio.IncompleteReadError):
            pass  # a reset or a closed peer ends the connection, nothing more
        finally:
            self._conns.discard(conn)
            self._abort(conn)

    async def _proxy(self, conn: _Conn, reader: asyncio.StreamReader) -> None:
        if self._faults.reset:
            self._reset(conn)
            return
        if self._faults.blackhole:
            self._fall_in(conn)
            await self._pump_up(conn, reader, None)
            return
        up_reader, up_writer = await self._connect()
        conn.upstream = up_writer
        self._count(forwarded=1)
        up = asyncio.create_task(self._pump_up(conn, reader, up_writer))
        down = asyncio.create_task(self._pump_down(conn, up_reader))
        conn.tasks |= {up, down}
        done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        if down in done:
            up.cancel()  # the service closed: the client's side goes too
        await asyncio.gather(up, down, return_exceptions=True)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The next upstream in turn; one that refuses passes the connection on."""
        count = len(self.upstreams)
        start = self._next
        self._next = (start + 1) % count
        for step in range(count):
            index = (start + step) % count
            try:
                opened = await asyncio.open_connection(*self.upstreams[index])
            except OSError:
                self._refused[index] += 1
                if step == count - 1:
                    raise  # every upstream refused: the client's connection ends
                self._failovers += 1
                continue
            self._spread[index] += 1
            return opened
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _pump_up(
        self, conn: _Conn, reader: asyncio.StreamReader, upstream: asyncio.StreamWriter | None
    ) -> None:
        while chunk := await reader.read(CHUNK):
            if conn.blackholed or upstream is None:
                self._count(bytes_dropped=len(chunk))
                continue
            self._count(bytes_up=len(chunk))  # before the write: the peer may answer at once
            upstream.write(chunk)
            await upstream.drain()
        if upstream is not None and upstream.can_write_eof():
            upstream.write_eof()  # the client is done sending; let the service finish

    async def _pump_down(self, conn: _Conn, up_reader: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        deliverer = asyncio.create_task(self._deliver(conn, queue))
        conn.tasks.add(deliverer)
        try:
            while chunk := await up_reader.read(CHUNK):
                if conn.blackholed:
                    self._count(bytes_dropped=len(chunk))
                    continue
                queue.put_nowait((loop.time() + self._faults.latency_ms / 1000, chunk))
        finally:
            queue.put_nowait(None)
            await deliverer

    async def _deliver(self, conn: _Conn, queue: asyncio.Queue[tuple[float, bytes] | None]) -> None:
        loop = asyncio.get_running_loop()
        while (item := await queue.get()) is not None:
            due, chunk = item
            if (delay := due - loop.time()) > 0:
                await asyncio.sleep(delay)
            if conn.blackholed:
                self._count(bytes_dropped=len(chunk))
                continue
            self._count(bytes_down=len(chunk))
            conn.client.write(chunk)
            await conn.client.drain()


class Seen(enum.StrEnum):
    """What one client saw of the proxy (or any HTTP server) within a timeout."""

    ANSWERED = "answered"  # bytes came back
    RESET = "reset"  # the connection was reset or closed without an answer
    SILENT = "silent"  # connected, nothing came back: a black hole
    REFUSED = "refused"  # the connect itself failed


PROBE_REQUEST = b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def probe(port: int, timeout_seconds: float = 0.5, host: str = "127.0.0.1") -> Seen:
    """Send one HTTP request on a fresh connection and say what came back.

    How a rehearsal confirms that a network fault took effect before it trusts
    what the load saw under it (a partition that still answers tests nothing)."""
    if not is_loopback(host):
        raise ProxyError(f"{host} is not a loopback address")
    try:
        sock = socket.create_connection((host, port), timeout=timeout_seconds)
    except ConnectionResetError:
        return Seen.RESET  # accepted, then reset before connect() had returned
    except OSError:
        return Seen.REFUSED
    with sock:
        try:
            sock.sendall(PROBE_REQUEST)
            data = sock.recv(1)
        except TimeoutError:
            return Seen.SILENT
        except OSError:
            return Seen.RESET
    return Seen.ANSWERED if data else Seen.RESET


def expect_seen(port: int, expected: Seen, timeout_seconds: float = 0.5) -> None:
    """Raise :class:`ProxyError` unless a client now sees ``expected``."""
    seen = probe(port, timeout_seconds)
    if seen is not expected:
        raise ProxyError(
            f"a client of 127.0.0.1:{port} saw the connection {seen.value} within"
            f" {timeout_seconds:g} s, expected {expected.value}"
        )
