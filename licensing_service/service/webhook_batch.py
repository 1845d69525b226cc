"""Group commit for webhook deliveries: the deliveries that arrive in one turn
of the event loop share one transaction and one COMMIT.

Measured (README, "Speed"): a COMMIT per delivery was the largest single cost
of a burst, and each commit's WAL frames were copied again by the
checkpointer on the same core. Each delivery's signature and shape are
checked at once (a forgery never waits for a batch); the verified ones wait
in a queue that a ``call_soon`` callback drains after the loop has read every
socket that was ready, so a batch is whatever the clients had in flight.
Every answer waits until its batch has committed: the future of a delivery
is resolved only by :meth:`WebhookBatcher.flush`, after
:meth:`WebhookService.receive_batch` returned (it returns only after COMMIT).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from licensing_service.domain.stripe_events import EventHeader
from licensing_service.service.errors import LicensingError, WebhookHandlerFailed
from licensing_service.service.licensing import Call
from licensing_service.service.webhooks import WebhookResult, WebhookService

# Bounds one batch's time on the loop (~0.3 ms a new event): other routes wait for it.
MAX_BATCH = 128


@dataclass(frozen=True, slots=True)
class _Waiting:
    call: Call
    header: EventHeader
    answer: asyncio.Future[WebhookResult]


class WebhookBatcher:
    def __init__(self, webhooks: WebhookService, max_batch: int = MAX_BATCH) -> None:
        self.webhooks = webhooks
        self.max_batch = max_batch
        self._waiting: list[_Waiting] = []
        self._scheduled = False
        self.batches = 0  # committed or refused, for tests and /metrics readers

    async def receive(self, call: Call, body: bytes, signature: str | None) -> WebhookResult:
        header = self.webhooks.verified_header(call, body, signature)
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[WebhookResult] = loop.create_future()
        self._waiting.append(_Waiting(call, header, answer))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self.flush)
        return await answer

    def flush(self) -> None:
        """Process one batch; what is left waits for the next turn of the loop."""
        self._scheduled = False
        batch = self._waiting[: self.max_batch]
        del self._waiting[: self.max_batch]
        if self._waiting:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)
        if not batch:
            return
        try:
            outcomes = self.webhooks.receive_batch([(w.call, w.header) for w in batch])
        except Exception as exc:  # a bug: nothing is known committed, so no 2xx
            failed = WebhookHandlerFailed("Webhook handler failed; Stripe will retry")
            failed.__cause__ = exc
            outcomes = [failed] * len(batch)
        self.batches += 1
        for waiting, outcome in zip(batch, outcomes, strict=True):
            if waiting.answer.done():  # cancelled: the client is gone, the work committed
                continue
            if isinstance(outcome, LicensingError):
                waiting.answer.set_exception(outcome)
            else:
                waiting.answer.set_result(outcome)
