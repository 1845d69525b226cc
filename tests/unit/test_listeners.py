"""close_listeners: a connection accepted as the server closes is handed to the
server, not leaked half made (CPython's Server.close() race, python/cpython#109564)."""

from __future__ import annotations

import asyncio
import socket

from loadtests.harness.listeners import _accepting, close_listeners


async def _closed_while_accepting() -> bool:
    """Whether the server's handler got the connection accepted just before the close."""
    handled = asyncio.Event()

    async def handler(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handled.set()
        writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    # Connected while the loop is blocked here: the kernel completes it (the
    # listen backlog), and the loop's accept() runs at its next turn.
    client = socket.create_connection(("127.0.0.1", port))
    try:
        # One turn at a time until the loop's accept() has run and the task
        # that makes its transport has not (it takes its step the turn after).
        for _ in range(100):
            await asyncio.sleep(0)
            if any(_accepting(task) for task in asyncio.all_tasks()):
                break
        else:
            raise AssertionError("the loop never accepted the connection")
        await close_listeners([server])
        try:
            await asyncio.wait_for(handled.wait(), timeout=5)
        except TimeoutError:
            return False
        await server.wait_closed()
        return True
    finally:
        client.close()


def test_a_connection_accepted_as_the_server_closes_reaches_its_handler() -> None:
    assert asyncio.run(_closed_while_accepting())


def test_the_listening_socket_is_closed() -> None:
    async def closed() -> None:
        server = await asyncio.start_server(lambda _r, _w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        await close_listeners([server])
        assert not server.is_serving()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return
        raise AssertionError("the port still accepts connections")

    asyncio.run(closed())
