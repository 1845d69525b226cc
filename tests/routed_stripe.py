"""The stateful Stripe API fake behind respx, for tests that run the service's
billing routes in-process: only Stripe's host is faked, the service under test
(on 127.0.0.1) is reached for real."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import respx
import stripe

from fixtures.stripe.fake_api import FakeStripe

FAKE_BASE = "https://stripe.fake"


@contextmanager
def routed_fake_stripe(monkeypatch: pytest.MonkeyPatch, api_key: str) -> Iterator[FakeStripe]:
    async def no_sleep(self: stripe.HTTPXClient, seconds: float) -> None:
        del self, seconds  # the library's retry backoff, skipped

    monkeypatch.setattr(stripe.HTTPXClient, "sleep_async", no_sleep)
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        router.route(host="127.0.0.1").pass_through()  # the service under test
        fake = FakeStripe(FAKE_BASE, api_key=api_key)
        fake.install(router)
        yield fake
