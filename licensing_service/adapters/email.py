"""Email transports: Resend's HTTP API, or a local JSON-lines sink."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from licensing_service.service.outbox import DeliveryError
from licensing_service.service.ports import QueuedEmail

if TYPE_CHECKING:
    # Only ResendTransport needs httpx, and only the composition root builds one.
    import httpx

# Resend answers these when a retry may succeed; other 4xx are final.
_TRANSIENT_STATUS = {408, 409, 429}


class ResendTransport:
    def __init__(self, client: httpx.AsyncClient, api_key: str, sender: str) -> None:
        self._client = client
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._sender = sender

    async def send(self, email: QueuedEmail, subject: str, text: str) -> str:
        payload = {"from": self._sender, "to": [email.recipient], "subject": subject, "text": text}
        headers = {**self._headers, "Idempotency-Key": f"email-{email.id}"}
        import httpx  # already loaded: the client passed in is an httpx client

        try:
            response = await self._client.post("/emails", json=payload, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"transport error: {type(exc).__name__}", permanent=False) from exc
        if response.status_code >= 500 or response.status_code in _TRANSIENT_STATUS:
            raise DeliveryError(f"provider answered {response.status_code}", permanent=False)
        if response.status_code >= 400:
            raise DeliveryError(f"provider refused: {response.status_code}", permanent=True)
        try:
            return str(response.json()["id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DeliveryError("provider answered without an id", permanent=False) from exc


class SinkTransport:
    """Appends each email to a JSON-lines file: a local mailbox for development."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def send(self, email: QueuedEmail, subject: str, text: str) -> str:
        record = {
            "id": email.id,
            "to": email.recipient,
            "type": email.email_type,
            "subject": subject,
            "text": text,
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as sink:
                sink.write(json.dumps(record) + "\n")
        except OSError as exc:
            raise DeliveryError(f"sink not writable: {exc.strerror}", permanent=False) from exc
        return f"sink-{email.id}"
