"""What this process knows about customers (licenses), in one place, and the
one way it is told to forget.

Three kinds of knowledge, with three lifetimes:

* **Fresh rows** by email: what the database said, reused while nothing says
  it changed. Only a store reads them (``row``), and only inside a unit of
  work that has first asked its database whether another process committed
  (SQLite's ``PRAGMA data_version``, PostgreSQL's ``license_changes`` feed).
* **Pending validation stamps**: the last-validation time of each validation,
  group-committed with the audit batch instead of one COMMIT per request
  (measured: per-request SQL was half the server's time). Every row a store
  hands out is overlaid with them, so cache tiers stay exact within the
  process. Another process sees a stamp up to one flush interval late, and a
  crash loses at most one interval of them (later tiers are then more
  conservative, never more generous).
* **Last-known-good records**: the state of each license last confirmed by
  the database, answered from while the breaker is open (degraded answers).
  They outlive fresh rows on purpose: they are for when the database cannot
  be asked.

Invalidation, the stores' whole vocabulary (they never reach inside):

* ``invalidate(emails)``: another process changed these licenses (the
  ``license_changes`` feed, on every store). Fresh rows *and* last-known-good
  records go: a degraded answer from a record known to be stale is a grace
  period (a suspended license answered "active"), so the license is refused
  503 until the database is read again.
* ``invalidate_all()``: another connection committed something, what is
  unknown (SQLite's ``data_version`` moved). Every fresh row goes;
  last-known-good records stay. ``data_version`` moves on every commit of
  another worker, its 50 ms audit flush included, so dropping them there would
  leave a multi-worker service nothing to answer from when the database goes.
  The change a degraded answer turns on, a status change, is written to the
  feed in the same transaction as the change, and the store reads the feed
  in the same step, calling ``invalidate(emails)``. (On PostgreSQL a trigger
  feeds every change to a customer row but its stamps, whoever makes it; on
  SQLite the feed holds the service's status changes only, so a change made
  behind the service's back reaches the fresh rows, not these records.)
* ``forget_everything()``: the feed was pruned past this process's cursor,
  so which licenses changed is unknown: fresh rows and last-known-good
  records all go.
* ``wrote(customer_id)``: this process wrote the row: the fresh row goes, and
  the id is remembered until the unit of work ends.
* ``committed()`` / ``rolled_back()``: the unit ended. A rollback drops every
  row the unit wrote (a read after a write inside it may have cached
  uncommitted state) and keeps the stamps a failed flush had taken, a newer
  stamp winning. ``rolled_back_to_savepoint()``: the same for rows only; the
  ids stay remembered, since the unit's earlier writes may still roll back.

Per process, single-threaded (one serving connection), bounded: fresh rows
are dropped all at once when full (a re-warm is cheaper than LRU bookkeeping
on every hit), last-known-good records least recently confirmed first.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from licensing_service.service.ports import CustomerRecord


def with_validation(record: CustomerRecord, when: datetime) -> CustomerRecord:
    # Spelled out: dataclasses.replace() costs ~5 us, a quarter of a cache hit's budget.
    return CustomerRecord(
        record.id,
        record.email,
        record.name,
        record.unlock_token,
        record.subscription_status,
        record.subscription_id,
        record.stripe_session_id,
        record.machine_fingerprint,
        record.current_period_end,
        record.next_billing_date,
        when,
        when,
    )


class CustomerView:
    __slots__ = (
        "_email_by_id",
        "_inflight",
        "_known",
        "_pending",
        "_rows",
        "_touched",
        "max_known",
        "max_rows",
    )

    def __init__(self, max_rows: int = 200_000, max_known: int = 200_000) -> None:
        self.max_rows = max_rows
        self.max_known = max_known
        self._rows: dict[str, CustomerRecord] = {}
        self._email_by_id: dict[int, str] = {}
        self._pending: dict[int, datetime] = {}
        self._inflight: dict[int, datetime] = {}
        self._known: dict[str, CustomerRecord] = {}
        # Customers written in the current unit of work.
        self._touched: set[int] = set()

    # ------------------------------------------------------------ fresh rows

    def row(self, email: str) -> CustomerRecord | None:
        """The fresh row, stamps overlaid; None: read the database."""
        return self._rows.get(email)

    def remember(self, record: CustomerRecord) -> CustomerRecord:
        """Keep a row just read from the database; returns it overlaid."""
        record = self.overlay(record)
        if len(self._rows) >= self.max_rows:
            self.invalidate_all()
        self._rows[record.email] = record
        self._email_by_id[record.id] = record.email
        return record

    def overlay(self, record: CustomerRecord) -> CustomerRecord:
        """A row read from the database, with this process's unwritten stamp."""
        pending = self._pending.get(record.id) or self._inflight.get(record.id)
        return record if pending is None else with_validation(record, pending)

    def fresh_rows(self) -> int:
        return len(self._rows)

    # ------------------------------------------------------ validation stamps

    def stamp(self, customer_id: int, when: datetime) -> None:
        """A validation at ``when``: written later (``take_stamps``)."""
        self._pending[customer_id] = when
        email = self._email_by_id.get(customer_id)
        if email is not None:
            record = self._rows.get(email)
            if record is not None:
                self._rows[email] = with_validation(record, when)

    def take_stamps(self, limit: int | None = None) -> dict[int, datetime]:
        """Move pending stamps in flight, for the unit of work that writes them:
        its commit settles them, its rollback puts them back."""
        pending, inflight = self._pending, self._inflight
        if limit is None or limit >= len(pending):
            inflight.update(pending)
            pending.clear()
        else:
            for customer_id in list(pending)[:limit]:
                inflight[customer_id] = pending.pop(customer_id)
        return dict(inflight)

    def pending_stamps(self) -> int:
        return len(self._pending) + len(self._inflight)

    # ------------------------------------------------ last-known-good records

    def confirm(self, record: CustomerRecord) -> None:
        """The database just vouched for this state: degraded answers use it."""
        known = self._known
        known.pop(record.email, None)  # to the back of the eviction order
        known[record.email] = record
        if len(known) > self.max_known:
            del known[next(iter(known))]

    def last_known_good(self, email: str) -> CustomerRecord | None:
        return self._known.get(email)

    def known_records(self) -> int:
        return len(self._known)

    # ------------------------------------------------------------ invalidation

    def invalidate(self, emails: Iterable[str]) -> None:
        """Another process changed these licenses: forget everything about them."""
        rows, known = self._rows, self._known
        for email in emails:
            record = rows.pop(email, None)
            if record is not None:  # so the id index never outgrows the rows
                self._email_by_id.pop(record.id, None)
            known.pop(email, None)

    def invalidate_all(self) -> None:
        """Another connection committed, what is unknown: every fresh row goes
        (last-known-good records stay; see the module's docstring)."""
        self._rows.clear()
        self._email_by_id.clear()

    def forget_everything(self) -> None:
        """Any license may have changed elsewhere, which ones is unknown (the
        ``license_changes`` feed was pruned past this process's cursor): fresh
        rows and last-known-good records both go, as ``invalidate`` would for
        every license. Pending stamps stay: they are this process's writes."""
        self.invalidate_all()
        self._known.clear()

    def wrote(self, customer_id: int) -> None:
        """This process wrote the row, inside the current unit of work."""
        self._discard_id(customer_id)
        self._touched.add(customer_id)

    def committed(self) -> None:
        # Runs at the end of every unit, the hot path's included: two clears.
        self._inflight.clear()
        self._touched.clear()

    def rolled_back(self) -> None:
        for customer_id, stamp in self._inflight.items():
            self._pending.setdefault(customer_id, stamp)  # a newer stamp wins
        self._inflight.clear()
        self.rolled_back_to_savepoint()
        self._touched.clear()

    def rolled_back_to_savepoint(self) -> None:
        for customer_id in self._touched:
            self._discard_id(customer_id)

    def _discard_id(self, customer_id: int) -> None:
        email = self._email_by_id.pop(customer_id, None)
        if email is not None:
            self._rows.pop(email, None)
