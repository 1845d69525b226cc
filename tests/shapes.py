"""Check a response against the contract model it promises (unknown keys refused)."""

from __future__ import annotations

from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def shaped(model: type[M], response: httpx.Response) -> M:
    return model.model_validate(response.json())


def error_code(response: httpx.Response) -> str:
    body: dict[str, Any] = response.json()
    if "error" in body and isinstance(body["error"], dict):
        return str(body["error"]["code"])
    return str(body["errorCode"])
