"""PostgreSQL's repositories: the shared ones (``sqlite_*.py``) plus the
cross-replica concurrency control each needs.

SQLite serialises every writer with ``BEGIN IMMEDIATE`` (one file lock), so
the read-decide-write steps of the service are atomic there across worker
processes. PostgreSQL runs READ COMMITTED transactions side by side; each
step below takes the narrowest lock that makes its decision atomic again,
and each is tested by a planted store without it (tests/pg_concurrency).

Advisory keys are (namespace, key) int4 pairs, namespaces 7_300_0xx; string
keys go through ``hashtext``: a collision only serialises two unrelated keys.
Every lock here is transaction-level: released at commit or rollback, so a
replica that dies cannot leave one held.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from licensing_service.adapters.sqlite_billing import SqliteBilling
from licensing_service.adapters.sqlite_outbox import SqliteOutbox
from licensing_service.adapters.sqlite_sessions import SqliteSessions
from licensing_service.adapters.sqltime import to_db
from licensing_service.domain.billing import BillingState
from licensing_service.domain.sessions import SessionRecord
from licensing_service.service.ports import QueuedEmail, WebhookEventRow

SESSIONS_LOCK = 7_300_010  # + customer id: one license's session decisions
WEBHOOK_EVENT_LOCK = 7_300_011  # + hashtext(event id): one Stripe event's claim
BILLING_LOCK = 7_300_012  # + hashtext(Stripe customer id): one customer's billing state


class PgSessions(SqliteSessions):
    """LICENSE SESSIONS LOCK (``pg_advisory_xact_lock(SESSIONS_LOCK, customer_id)``).

    Start, takeover, heartbeat and end each read a license's sessions and
    then decide (conflict, kick, expire, touch). Without the lock two
    replicas decide on the same snapshot: two starts both see no holder (the
    partial unique index then refuses one with a retry error instead of a
    conflict naming the holder), and a heartbeat reads its session active
    while a takeover on another replica kicks it, then answers "alive" after
    the kick committed. Taken before reading, held to commit: the decisions
    of one license are serial across replicas, as on SQLite."""

    locking = True

    def _lock_license(self, customer_id: int) -> None:
        if self.locking:
            self._c.execute("SELECT pg_advisory_xact_lock(?, ?)", (SESSIONS_LOCK, customer_id))

    def get(self, session_id: str) -> SessionRecord | None:
        if self.locking:
            row = self._c.execute(
                "SELECT customer_id FROM active_sessions WHERE session_id = ?", (session_id,)
            ).fetchone()
            if row is None:
                return None
            self._lock_license(int(row[0]))
        # Read again under the lock: READ COMMITTED sees what the holder committed.
        return super().get(session_id)

    def open_for(self, customer_id: int) -> list[SessionRecord]:
        self._lock_license(customer_id)
        return super().open_for(customer_id)


class PgBilling(SqliteBilling):
    """WEBHOOK EVENT LOCK and BILLING STATE LOCK.

    ``webhook_event`` is where a delivery decides new / duplicate / in flight
    / stuck (lease run out: take it over). The lock on the event id, held to
    commit, makes that decision and the claim one step: a duplicate delivered
    to another replica waits for the first to commit and then finds it
    completed; of two replicas taking over one stuck claim, one does. The
    UNIQUE key on the event id remains the last word.

    ``billing_state`` is read, merged with the event (domain/billing.py) and
    written back; two events for one Stripe customer on two replicas would
    otherwise merge into the same old state and the later commit would drop
    the other's fact (the order-proof merge needs the latest state). The row
    may not exist yet, so the lock is an advisory one on the customer id."""

    locking = True

    def webhook_event(self, event_id: str) -> WebhookEventRow | None:
        if self.locking:
            self._c.execute(
                "SELECT pg_advisory_xact_lock(?, hashtext(?))", (WEBHOOK_EVENT_LOCK, event_id)
            )
        return super().webhook_event(event_id)

    def billing_state(self, stripe_customer_id: str) -> BillingState | None:
        if self.locking:
            self._c.execute(
                "SELECT pg_advisory_xact_lock(?, hashtext(?))", (BILLING_LOCK, stripe_customer_id)
            )
        return super().billing_state(stripe_customer_id)

    def lock_batch(self, event_ids: Sequence[str], stripe_customer_ids: Sequence[str]) -> None:
        """BATCH LOCK ORDER. A webhook batch is one transaction, so it holds
        each event's lock and each customer's until COMMIT: two batches on two
        replicas with events for customers X and Y in crossed orders each held
        one and waited for the other ("deadlock detected": 80 of a 10,000-event
        storm over three replicas failed so, and were retried). So the batch
        takes them all first, in one global order: event locks, then billing
        locks, each by key (the lock's identity is the hash, so the hashes are
        sorted, not the ids). The handler's own calls then find them held
        (advisory locks are re-entrant within a transaction). A single
        delivery, taking one event lock and then one billing lock, follows the
        same order."""
        if not self.locking:
            return
        for namespace, ids in (
            (WEBHOOK_EVENT_LOCK, event_ids),
            (BILLING_LOCK, stripe_customer_ids),
        ):
            if not ids:
                continue
            hashes = self._c.execute(
                "SELECT DISTINCT hashtext(x) FROM unnest(?::text[]) AS t(x)", (list(ids),)
            ).fetchall()
            # A function scan yields the array's order, and the aggregate calls
            # the lock row by row in it.
            self._c.execute(
                "SELECT count(pg_advisory_xact_lock(?, k)) FROM unnest(?::int[]) AS t(k)",
                (namespace, sorted(int(row[0]) for row in hashes)),
            ).fetchall()


class PgOutbox(SqliteOutbox):
    """OUTBOX ROW LOCKS (``FOR UPDATE SKIP LOCKED``).

    The due emails are selected with row locks, skipping rows another
    replica's claim holds, then leased forward in the same transaction; two
    replicas draining at once get disjoint batches and neither waits. With a
    plain SELECT both would pick the same rows before either's lease
    commits, and each email would be sent twice."""

    skip_locked = True

    def claim_due(self, now: datetime, limit: int, lease: timedelta) -> list[QueuedEmail]:
        lock = " FOR UPDATE SKIP LOCKED" if self.skip_locked else ""
        rows = self._c.execute(
            "SELECT id, email_type, recipient, customer_id, payload, attempts FROM email_log"
            " WHERE delivery_status = 'pending' AND next_attempt_at <= ?"
            " ORDER BY next_attempt_at, id LIMIT ?" + lock,
            (to_db(now), limit),
        ).fetchall()
        return self.lease(rows, now, lease)
