"""Closing an asyncio server's listening sockets without leaking a connection.

CPython's ``Server.close()`` (3.11 to 3.14: python/cpython#109564, open) races
with a connection the server has just accepted: ``accept()`` runs in the
listening socket's reader callback, and the transport is made a loop iteration
later, in a task (``_accept_connection2``). A ``close()`` in between makes that
transport fail in ``Server._attach`` (``assert self._sockets is not None``)
half built, its socket never closed: a ``ResourceWarning`` (an unclosed
transport, then an unclosed socket) whenever the garbage collector gets to it,
in whatever test is running then. A test server that a client connects to as
it stops (a test probing for the moment it refuses connections, a retrying
client on another thread) hits it.

:func:`close_listeners` closes without the race: it stops reading the
listening sockets, lets the accepts already made finish (their transports
attached, their protocols' ``connection_made`` run, so the server's own
shutdown sees them), and only then closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

# The coroutine that makes an accepted connection's transport
# (asyncio.selector_events.BaseSelectorEventLoop._accept_connection2).
_ACCEPT_STEP = "_accept_connection2"


async def close_listeners(servers: Iterable[asyncio.Server]) -> None:
    """``close()`` each server once no accepted connection is still being set up."""
    servers = list(servers)
    loop = asyncio.get_running_loop()
    for server in servers:
        for sock in server.sockets:
            loop.remove_reader(sock.fileno())  # accept nothing more
    accepting = [task for task in asyncio.all_tasks(loop) if _accepting(task)]
    if accepting:  # each ends once its protocol has the connection (or failed to)
        await asyncio.wait(accepting)
    for server in servers:
        server.close()


def _accepting(task: asyncio.Task[object]) -> bool:
    code = getattr(task.get_coro(), "cr_code", None)
    return code is not None and code.co_name == _ACCEPT_STEP and not task.done()
