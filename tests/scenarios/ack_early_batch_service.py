"""A planted broken group commit: the reference service, except that its
webhook batcher answers each batch 200 *before* the batch's transaction
runs, and commits it a moment later. A failed COMMIT, or a kill -9 in that
moment, loses events Stripe was told were received.

``tests/unit/test_webhook_batch.py`` shows the commit-failure check catches
it; ``tests/scenarios/test_crash.py`` shows the kill -9 storm does. Run as the
service is (``python -m tests.scenarios.ack_early_batch_service serve
--test-clock --port P --db FILE``), so ``ServiceProcess(argv=...)`` starts it.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import uvicorn

from licensing_service import bootstrap
from licensing_service.api.server import uvicorn_options
from licensing_service.config import Settings
from licensing_service.service.webhook_batch import WebhookBatcher
from licensing_service.service.webhooks import WebhookResult, WebhookService

COMMIT_AFTER_SECONDS = 0.5


class AnswersBeforeCommit(WebhookBatcher):
    def __init__(self, webhooks: WebhookService) -> None:
        super().__init__(webhooks)
        self.seen: set[str] = set()  # in memory: forgotten at a crash, like the work

    def flush(self) -> None:
        self._scheduled = False
        batch, self._waiting = self._waiting, []
        for waiting in batch:
            header = waiting.header
            outcome = "duplicate" if header.id in self.seen else "applied"
            self.seen.add(header.id)
            if not waiting.answer.done():
                waiting.answer.set_result(WebhookResult(header.id, header.type, outcome))
        items = [(w.call, w.header) for w in batch]
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.webhooks.receive_batch(items)
            return
        loop.call_later(COMMIT_AFTER_SECONDS, lambda: self.webhooks.receive_batch(items))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--test-clock", action="store_true")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", type=Path, required=True)
    args = parser.parse_args()
    settings = Settings(host="127.0.0.1", port=args.port, db=args.db, test_clock=True)
    bootstrap.test_clock_file(settings.db).unlink(missing_ok=True)
    bootstrap.WebhookBatcher = AnswersBeforeCommit  # type: ignore[attr-defined,assignment]  # the plant
    app = bootstrap.create_app(settings)
    uvicorn.run(app, host="127.0.0.1", port=args.port, **uvicorn_options(settings))


if __name__ == "__main__":
    main()
