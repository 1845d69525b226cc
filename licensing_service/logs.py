"""Logging set-up, with a last line of defence against secrets in logs.

The code never logs tokens, secrets or raw fingerprints; this formatter
masks anything shaped like one anyway, in case a library quotes input.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import TextIO

_PATTERNS = (
    re.compile(r"POSPAL(?:-[A-Z0-9]{4}){4}"),  # unlock tokens
    re.compile(r"\b(?:sk|rk|whsec|re)_[A-Za-z0-9_]{8,}"),  # Stripe/Resend secrets
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),  # Authorization values
    re.compile(
        r"(?i)(\"?(?:token|unlock_token|unlockToken|machineFingerprint|fingerprint|secret|"
        r"password|api_key)\"?\s*[:=]\s*\"?)[^\",\s}]+"
    ),
)
MASK = "[REDACTED]"


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + MASK, text)
    return text


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure(level: str = "info", stream: TextIO | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    return handler
