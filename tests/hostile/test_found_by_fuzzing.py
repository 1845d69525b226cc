"""Regressions for what the fuzzers found in the service."""

from __future__ import annotations

import httpx
import pytest

from licensing_service.contract import routes
from scenarios.hostile_service import Service


@pytest.mark.parametrize("email", ["a\x1c@example.test", "a\x08b@example.test", "a@b\x85.test"])
def test_an_email_with_control_characters_is_the_fields_400_not_stripes_502(
    service: Service, email: str
) -> None:
    """schemathesis, seed 1: the email pattern let \\x1c (not "whitespace" to
    pydantic's regex) through to Stripe, which refused it, and the service
    answered 502 STRIPE_ERROR."""
    answer = httpx.post(service.url + routes.CREATE_CHECKOUT_SESSION, json={"email": email})
    assert answer.status_code == 400, answer.text
    assert [e["field"] for e in answer.json()["fieldErrors"]] == ["email"]


def test_a_plain_email_still_reaches_checkout(service: Service) -> None:
    answer = httpx.post(
        service.url + routes.CREATE_CHECKOUT_SESSION, json={"email": "till@example.test"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["sessionId"].startswith("cs_")
