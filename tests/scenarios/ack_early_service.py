"""A planted broken target for the crash-restart rehearsal: the reference
service behind an ASGI wrapper that answers every webhook 200 *before* the
service has processed (let alone committed) it, and processes it a moment
later. A kill -9 in that moment loses events Stripe was told were received.

Run as the service is (``python -m tests.scenarios.ack_early_service serve
--test-clock --port P --db FILE``), so ``ServiceProcess(argv=...)`` starts it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import uvicorn

from licensing_service.api.server import uvicorn_options
from licensing_service.bootstrap import create_app, test_clock_file
from licensing_service.config import Settings
from licensing_service.contract import routes

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
APPLY_AFTER_SECONDS = 0.5


class AckBeforeCommit:
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app
        self.later: set[asyncio.Task[None]] = set()
        self.seen: set[bytes] = set()  # in memory: forgotten at a crash, like the work

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != routes.WEBHOOK:
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        key = body[:200]
        answer = b'{"received":true,"idempotent":true,"outcome":"duplicate"}'
        if key not in self.seen:
            self.seen.add(key)
            answer = b'{"received":true,"outcome":"applied"}'
            task = asyncio.create_task(self._apply_later(scope, body))
            self.later.add(task)
            task.add_done_callback(self.later.discard)
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    async def _apply_later(self, scope: Scope, body: bytes) -> None:
        await asyncio.sleep(APPLY_AFTER_SECONDS)
        delivered = False

        async def receive() -> MutableMapping[str, Any]:
            nonlocal delivered
            if delivered:
                await asyncio.Event().wait()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            del message  # the real answer goes nowhere: Stripe already has its 200

        await self.app(scope, receive, send)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--test-clock", action="store_true")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", type=Path, required=True)
    args = parser.parse_args()
    os.environ["LH_INLINE_HTTP"] = "false"  # every request through the ASGI wrapper
    settings = Settings(host="127.0.0.1", port=args.port, db=args.db, test_clock=True)
    test_clock_file(settings.db).unlink(missing_ok=True)
    app = AckBeforeCommit(create_app(settings))
    uvicorn.run(app, host="127.0.0.1", port=args.port, **uvicorn_options(settings))


if __name__ == "__main__":
    main()
