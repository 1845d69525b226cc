"""SQLite side of Stripe webhooks: event claims, billing state, license links.

Runs on the serving connection, inside the caller's ``BEGIN IMMEDIATE``
transaction, so an event's claim, its billing state and the license change
it causes commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from licensing_service.adapters import license_feed
from licensing_service.adapters.sql import Sql
from licensing_service.adapters.sqlite_licenses import SqliteLicenses
from licensing_service.adapters.sqltime import from_db, to_db
from licensing_service.domain.billing import BillingState, Version
from licensing_service.domain.credentials import normalize_email
from licensing_service.domain.stripe_events import Refund
from licensing_service.domain.subscription import SubscriptionStatus
from licensing_service.service.ports import CustomerRecord, WebhookEventRow

_STATE_COLUMNS = (
    "status, version_created, version_rank, version_event_id, period_end, subscription_id,"
    " subscription_created, subscription_rank, subscription_event_id, payment_failures"
)


class SqliteBilling:
    def __init__(self, conn: Sql, licenses: SqliteLicenses) -> None:
        self._c = conn
        # Reads and writes of `customers` go through the licenses' cache-evicting ones.
        self._licenses = licenses

    # ---------------------------------------------------------------- events

    def webhook_event(self, event_id: str) -> WebhookEventRow | None:
        row = self._c.execute(
            "SELECT processing_status, outcome, retry_count, lease_until, received_at"
            " FROM webhook_events WHERE stripe_event_id = ?",
            (event_id,),
        ).fetchone()
        if row is None:
            return None
        received = from_db(row[4])
        assert received is not None
        return WebhookEventRow(row[0], row[1], row[2], from_db(row[3]), received)

    def claim_event(
        self,
        event_id: str,
        event_type: str,
        created: datetime,
        now: datetime,
        lease_until: datetime,
        *,
        retry: bool,
    ) -> None:
        if retry:
            self._c.execute(
                "UPDATE webhook_events SET processing_status = 'processing',"
                " retry_count = retry_count + 1, lease_until = ?, error_message = NULL"
                " WHERE stripe_event_id = ?",
                (to_db(lease_until), event_id),
            )
            return
        # Insert first: the UNIQUE constraint, not a prior SELECT, is what
        # guarantees one claim per event.
        self._c.execute(
            "INSERT INTO webhook_events (stripe_event_id, event_type, processing_status,"
            " event_created, received_at, lease_until) VALUES (?, ?, 'processing', ?, ?, ?)",
            (event_id, event_type, to_db(created), to_db(now), to_db(lease_until)),
        )

    def finish_event(
        self, event_id: str, outcome: str, customer_id: int | None, now: datetime
    ) -> None:
        self._c.execute(
            "UPDATE webhook_events SET processing_status = 'completed', outcome = ?,"
            " customer_id = ?, processed_at = ?, lease_until = NULL WHERE stripe_event_id = ?",
            (outcome, customer_id, to_db(now), event_id),
        )

    def fail_event(self, event_id: str, event_type: str, error: str, now: datetime) -> None:
        stamp = to_db(now)
        self._c.execute(
            "INSERT INTO webhook_events (stripe_event_id, event_type, processing_status,"
            " error_message, received_at) VALUES (?, ?, 'failed', ?, ?)"
            " ON CONFLICT (stripe_event_id) DO UPDATE SET processing_status = 'failed',"
            " error_message = excluded.error_message, lease_until = NULL",
            (event_id, event_type, error[:500], stamp),
        )

    # --------------------------------------------------------- billing state

    def billing_state(self, stripe_customer_id: str) -> BillingState | None:
        row = self._c.execute(
            f"SELECT {_STATE_COLUMNS} FROM billing_state WHERE stripe_customer_id = ?",
            (stripe_customer_id,),
        ).fetchone()
        if row is None:
            return None
        return BillingState(
            status=SubscriptionStatus(row[0]) if row[0] is not None else None,
            version=Version(row[1], row[2], row[3]) if row[1] is not None else None,
            period_end=from_db(row[4]),
            subscription_id=row[5],
            subscription_version=Version(row[6], row[7], row[8]) if row[6] is not None else None,
            payment_failures=row[9],
        )

    def save_billing_state(
        self, stripe_customer_id: str, state: BillingState, now: datetime
    ) -> None:
        v, sv = state.version, state.subscription_version
        params = (
            stripe_customer_id,
            state.status.value if state.status is not None else None,
            v.created if v else None,
            v.rank if v else None,
            v.event_id if v else None,
            to_db(state.period_end) if state.period_end else None,
            state.subscription_id,
            sv.created if sv else None,
            sv.rank if sv else None,
            sv.event_id if sv else None,
            state.payment_failures,
            to_db(now),
        )
        self._c.execute(
            f"INSERT INTO billing_state (stripe_customer_id, {_STATE_COLUMNS}, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (stripe_customer_id) DO UPDATE SET status = excluded.status,"
            " version_created = excluded.version_created, version_rank = excluded.version_rank,"
            " version_event_id = excluded.version_event_id, period_end = excluded.period_end,"
            " subscription_id = excluded.subscription_id,"
            " subscription_created = excluded.subscription_created,"
            " subscription_rank = excluded.subscription_rank,"
            " subscription_event_id = excluded.subscription_event_id,"
            " payment_failures = excluded.payment_failures, updated_at = excluded.updated_at",
            params,
        )

    # -------------------------------------------------------------- licenses

    def license_for(self, stripe_customer_id: str, email: str | None) -> CustomerRecord | None:
        found = self._licenses.where("stripe_customer_id = ?", (stripe_customer_id,))
        if found is None and email is not None:
            found = self._licenses.where(
                "email = ? AND stripe_customer_id IS NULL", (normalize_email(email),)
            )
        return found

    def link(
        self,
        customer_id: int,
        stripe_customer_id: str,
        now: datetime,
        *,
        checkout_session_id: str | None = None,
        name: str | None = None,
    ) -> None:
        self._licenses.write(
            customer_id,
            "UPDATE customers SET stripe_customer_id = ?,"
            " stripe_session_id = COALESCE(?, stripe_session_id), name = COALESCE(name, ?),"
            " updated_at = ? WHERE id = ?",
            (stripe_customer_id, checkout_session_id, name, to_db(now), customer_id),
        )

    def apply_billing(self, customer_id: int, state: BillingState, now: datetime) -> None:
        assert state.status is not None
        active = state.status is SubscriptionStatus.ACTIVE
        period_end = to_db(state.period_end) if state.period_end else None
        self._licenses.write(
            customer_id,
            "UPDATE customers SET subscription_status = ?, current_period_end = ?,"
            " next_billing_date = ?, subscription_id = COALESCE(?, subscription_id),"
            " payment_failures = ?, updated_at = ? WHERE id = ?",
            (
                state.status.value,
                period_end,
                period_end if active else None,
                state.subscription_id,
                state.payment_failures,
                to_db(now),
                customer_id,
            ),
        )

    def note_license_change(self, email: str, now: datetime) -> None:
        self._c.execute(
            "INSERT INTO license_changes (email, changed_at) VALUES (?, ?)", (email, to_db(now))
        )

    def prune_license_changes(self, before: datetime) -> int:
        return license_feed.prune(self._c, before)

    def lock_batch(self, event_ids: Sequence[str], stripe_customer_ids: Sequence[str]) -> None:
        """Nothing to order: ``BEGIN IMMEDIATE`` lets one writer in at a time."""
        del event_ids, stripe_customer_ids

    def record_refund(self, customer_id: int | None, refund: Refund, now: datetime) -> bool:
        stamp = to_db(now)
        cursor = self._c.execute(
            "INSERT INTO refund_requests (customer_id, stripe_charge_id, stripe_refund_id,"
            " amount_cents, currency, reason, status, created_at, processed_at)"
            " VALUES (?, ?, ?, ?, ?, 'stripe_refund', 'processed', ?, ?)"
            " ON CONFLICT (stripe_refund_id) DO NOTHING",
            (
                customer_id,
                refund.charge_id,
                refund.key,
                refund.amount_cents,
                refund.currency,
                stamp,
                stamp,
            ),
        )
        return cursor.rowcount == 1

    def stripe_customer_id(self, customer_id: int) -> str | None:
        row = self._c.execute(
            "SELECT stripe_customer_id FROM customers WHERE id = ?", (customer_id,)
        ).fetchone()
        return None if row is None else row[0]
