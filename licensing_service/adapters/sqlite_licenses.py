"""SQLite side of licenses (the ``customers`` table), reading through the
process's customer view (fresh rows, deferred validation stamps: see
``service/customer_view.py``).

Every write to ``customers`` goes through :meth:`SqliteLicenses.write`, which
tells the view (``wrote``), so a rolled-back unit drops the row too; the
billing repository writes customers through it as well.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from licensing_service.adapters.sql import Sql
from licensing_service.adapters.sqltime import from_db, opt_to_db, to_db
from licensing_service.service.customer_view import CustomerView
from licensing_service.service.ports import CustomerRecord, NewCustomer

_CUSTOMER_COLUMNS = (
    "id, email, name, unlock_token, subscription_status, subscription_id, stripe_session_id,"
    " machine_fingerprint, current_period_end, next_billing_date, last_validation, last_seen"
)


def _customer(row: tuple[Any, ...] | None) -> CustomerRecord | None:
    if row is None:
        return None
    return CustomerRecord(
        id=row[0],
        email=row[1],
        name=row[2],
        unlock_token=row[3],
        subscription_status=row[4],
        subscription_id=row[5],
        stripe_session_id=row[6],
        machine_fingerprint=row[7],
        current_period_end=from_db(row[8]),
        next_billing_date=from_db(row[9]),
        last_validation=from_db(row[10]),
        last_seen=from_db(row[11]),
    )


class SqliteLicenses:
    def __init__(self, conn: Sql, view: CustomerView) -> None:
        self._c = conn
        self._view = view

    def write(self, customer_id: int, sql: str, params: tuple[Any, ...]) -> None:
        """Run a write to ``customers``; the view drops the row."""
        self._c.execute(sql, params)
        self._view.wrote(customer_id)

    def where(self, condition: str, params: tuple[Any, ...]) -> CustomerRecord | None:
        """One customer by an SQL condition, read through (never from the view's rows)."""
        sql = f"SELECT {_CUSTOMER_COLUMNS} FROM customers WHERE {condition}"
        record = _customer(self._c.execute(sql, params).fetchone())
        return None if record is None else self._view.overlay(record)

    # ----------------------------------------------------------- the port

    def by_email(self, email: str) -> CustomerRecord | None:
        fresh = self._view.row(email)
        if fresh is not None:
            return fresh
        sql = f"SELECT {_CUSTOMER_COLUMNS} FROM customers WHERE email = ?"
        record = _customer(self._c.execute(sql, (email,)).fetchone())
        return None if record is None else self._view.remember(record)

    def by_id(self, customer_id: int) -> CustomerRecord | None:
        return self.where("id = ?", (customer_id,))

    def insert(self, customer: NewCustomer, now: datetime) -> int:
        stamp = to_db(now)
        # RETURNING, not lastrowid: PostgreSQL has no lastrowid (SQLite >= 3.35 has both).
        row = self._c.execute(
            "INSERT INTO customers (email, name, unlock_token, subscription_status,"
            " stripe_customer_id, stripe_session_id, subscription_id, current_period_start,"
            " current_period_end, next_billing_date, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                customer.email,
                customer.name,
                customer.unlock_token,
                customer.subscription_status,
                customer.stripe_customer_id,
                customer.stripe_session_id,
                customer.subscription_id,
                opt_to_db(customer.current_period_start),
                opt_to_db(customer.current_period_end),
                opt_to_db(customer.next_billing_date),
                stamp,
                stamp,
            ),
        ).fetchone()
        new_id = int(row[0])
        # A rollback must drop the row if a later read of the same unit cached it.
        self._view.wrote(new_id)
        return new_id

    def record_validation(self, customer_id: int, now: datetime) -> None:
        """Deferred: group-committed by ``flush_validations`` (see customer_view)."""
        self._view.stamp(customer_id, now)

    def flush_validations(self, limit: int | None = None) -> int:
        batch = sorted(self._view.take_stamps(limit).items())  # id order: neighbouring pages
        self._c.executemany(
            "UPDATE customers SET last_validation = ?, last_seen = ? WHERE id = ?",
            [(to_db(when), to_db(when), cid) for cid, when in batch],
        )
        return len(batch)

    def set_fingerprint(self, customer_id: int, fingerprint: str) -> None:
        """Written at once, in the caller's transaction (with its audit and email)."""
        self.write(
            customer_id,
            "UPDATE customers SET machine_fingerprint = ? WHERE id = ?",
            (fingerprint, customer_id),
        )

    def set_status(self, customer_id: int, status: str, now: datetime) -> None:
        self.write(
            customer_id,
            "UPDATE customers SET subscription_status = ?, updated_at = ? WHERE id = ?",
            (status, to_db(now), customer_id),
        )
