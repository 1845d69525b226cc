"""The circuit breaker around every unit of work the service opens.

The service, the webhook handler, the email deliverer and the harness routes
reach the database only through :class:`StoreGuard`, so each outcome is
reported to the breaker and an open breaker keeps every one of them from the
database. Health probes alone call ``Store.ping`` directly: they report the
database itself and must not spend the half-open trial.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from time import perf_counter
from types import TracebackType
from typing import Literal

from licensing_service.domain.breaker import BreakerState, CircuitBreaker
from licensing_service.service.errors import (
    BreakerOpen,
    ConstraintViolation,
    DatabaseUnavailable,
    LicensingError,
    StorageUnavailable,
    Unavailable,
)
from licensing_service.service.ports import Store, UnitOfWork


class StoreGuard:
    __slots__ = ("breaker", "store", "timer")

    def __init__(
        self, store: Store, breaker: CircuitBreaker, timer: Callable[[], float] = perf_counter
    ) -> None:
        self.store = store
        self.breaker = breaker
        # Times each call only when the breaker judges slow calls.
        self.timer = timer

    def transaction(self, now: datetime) -> Guarded:
        """A write transaction through the breaker."""
        return Guarded(self, now, True)

    def autocommit(self, now: datetime) -> Guarded:
        """An autocommit scope (a read, then at most one write) through the breaker."""
        return Guarded(self, now, False)

    def unavailable(self, now: datetime) -> Unavailable:
        retry = self.breaker.retry_after_seconds(now)
        if self.breaker.state is BreakerState.CLOSED:
            return DatabaseUnavailable("Database unavailable", retry_after=retry)
        return BreakerOpen("Database circuit breaker is open", retry_after=retry)


class Guarded:
    """Reports each database outcome to the breaker. A domain error raised
    inside (wrong token, conflict) means the database answered: a success.
    A class, not @contextmanager: ~4x cheaper on the hot path."""

    __slots__ = ("_atomic", "_guard", "_inner", "_now", "_started")

    def __init__(self, guard: StoreGuard, now: datetime, atomic: bool) -> None:
        self._guard = guard
        self._now = now
        self._atomic = atomic
        self._inner: object = None
        self._started = 0.0

    def __enter__(self) -> UnitOfWork:
        guard, now = self._guard, self._now
        breaker = guard.breaker
        if not breaker.allow(now):
            raise guard.unavailable(now)
        if breaker.slow_call_s is not None:
            self._started = guard.timer()
        store = guard.store
        inner = store.transaction() if self._atomic else store.autocommit()
        self._inner = inner
        try:
            uow = inner.__enter__()
        except StorageUnavailable as exc:
            breaker.record_failure(now, wrote=self._atomic)
            raise guard.unavailable(now) from exc
        if breaker.state is BreakerState.HALF_OPEN:
            # The trial must reach the database: a cached read proves nothing.
            try:
                uow.ping()
            except BaseException as exc:
                self.__exit__(type(exc), exc, exc.__traceback__)
                raise
        return uow

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> Literal[False]:
        guard, now = self._guard, self._now
        breaker = guard.breaker
        inner = self._inner
        assert inner is not None
        try:
            # May raise StorageUnavailable or ConstraintViolation (translated SQL errors).
            inner.__exit__(kind, error, trace)  # type: ignore[attr-defined]
            if isinstance(error, StorageUnavailable):
                raise error
        except StorageUnavailable as exc:
            breaker.record_failure(now, wrote=self._atomic)
            raise guard.unavailable(now) from exc
        except ConstraintViolation:
            breaker.record_success(now, wrote=self._atomic)
            raise
        except BaseException:
            breaker.release()
            raise
        if error is None or isinstance(error, LicensingError | ConstraintViolation):
            # The database answered, whatever the request (too slowly counts as failing).
            elapsed = guard.timer() - self._started if breaker.slow_call_s is not None else 0.0
            breaker.record_success(now, wrote=self._atomic, elapsed_s=elapsed)
        else:
            breaker.release()  # a bug or a cancellation says nothing about the database
        return False
