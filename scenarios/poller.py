"""``/health``, polled on a thread of its own: the breaker's state and failures with
timestamps, as the rehearsal's timeline and the breaker expectations read them."""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx

from licensing_service.contract import routes
from scenarios.recording import BreakerSample

POLL_S = 0.05  # fast enough to see an OPEN period of a fraction of a second


class HealthPoller:
    def __init__(
        self, base_url: str, clock: Callable[[], float], interval_s: float = POLL_S
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self.interval_s = interval_s
        self._samples: list[BreakerSample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="health-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def samples(self) -> list[BreakerSample]:
        with self._lock:
            return list(self._samples)

    def latest(self) -> BreakerSample | None:
        with self._lock:
            return self._samples[-1] if self._samples else None

    def poll_once(self, client: httpx.Client) -> BreakerSample:
        t = self.clock()
        try:
            body = client.get(routes.HEALTH).json()
            breaker = body["circuitBreaker"]
            sample = BreakerSample(
                # When the answer came back: the state it reports was read between
                # the request and now, so it is stamped no earlier than it could
                # have been seen. (Stamped at the request, a /health held up behind
                # a stalled database read as a breaker open before the fault that
                # opened it.)
                t=self.clock(),
                state=str(breaker["state"]),
                failures=int(breaker["failures"]),
                health=str(body.get("status", "?")),
                server_time=body.get("timestamp"),
                next_attempt=breaker.get("nextAttempt"),
            )
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            sample = BreakerSample(t=t, state="unreachable", failures=-1, health="unreachable")
        with self._lock:
            self._samples.append(sample)
        return sample

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while not self._stop.is_set():
                self.poll_once(client)
                self._stop.wait(self.interval_s)


__all__ = ["POLL_S", "HealthPoller"]
