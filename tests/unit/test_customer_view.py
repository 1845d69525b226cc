"""The customer view on its own: what each invalidation forgets and keeps,
stamps through a flush that fails, the bounds. No store, no clock (the
revalidation bounds are the stores': tests/integration/test_sqlite_cache.py,
test_pg_concurrency.py)."""

from datetime import UTC, datetime, timedelta

from licensing_service.service.customer_view import CustomerView
from licensing_service.service.ports import CustomerRecord

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LATER = T0 + timedelta(seconds=5)


def record(n: int, status: str = "active") -> CustomerRecord:
    return CustomerRecord(
        n, f"{n}@x.test", None, f"POSPAL-{n}", status, None, None, None, None, None, None, None
    )


def test_a_remembered_row_is_served_with_the_pending_stamp() -> None:
    view = CustomerView()
    view.stamp(1, T0)  # validated before the row was (re-)read
    assert view.remember(record(1)).last_validation == T0
    fresh = view.row("1@x.test")
    assert fresh is not None and fresh.last_validation == T0
    assert view.row("2@x.test") is None


def test_a_stamp_reaches_the_fresh_row_at_once() -> None:
    view = CustomerView()
    view.remember(record(1))
    view.stamp(1, T0)
    fresh = view.row("1@x.test")
    assert fresh is not None and (fresh.last_validation, fresh.last_seen) == (T0, T0)


def test_stamps_taken_in_chunks_and_put_back_by_a_failed_flush_newer_winning() -> None:
    view = CustomerView()
    for n in range(4):
        view.stamp(n, T0)
    assert sorted(view.take_stamps(2)) == [0, 1]
    assert view.overlay(record(0)).last_validation == T0  # in flight, still overlaid
    view.stamp(0, LATER)  # newer, while 0 is in flight
    view.rolled_back()
    assert view.pending_stamps() == 4
    assert view.take_stamps()[0] == LATER
    view.committed()
    assert view.pending_stamps() == 0
    assert view.overlay(record(0)).last_validation is None


def test_a_change_elsewhere_forgets_the_license_and_nothing_else() -> None:
    view = CustomerView()
    for n in (1, 2):
        view.confirm(view.remember(record(n)))
    view.invalidate(["1@x.test"])
    assert view.row("1@x.test") is None
    assert view.last_known_good("1@x.test") is None  # no degraded answer from stale data
    assert view.row("2@x.test") is not None
    assert view.last_known_good("2@x.test") is not None


def test_an_unknown_commit_elsewhere_drops_fresh_rows_but_not_last_known_good() -> None:
    view = CustomerView()
    view.confirm(view.remember(record(1)))
    view.invalidate_all()
    assert view.row("1@x.test") is None
    assert view.fresh_rows() == 0
    assert view.last_known_good("1@x.test") is not None


def test_an_own_write_drops_the_row_and_a_rollback_drops_what_was_read_after_it() -> None:
    view = CustomerView()
    view.remember(record(1))
    view.wrote(1)
    assert view.row("1@x.test") is None
    view.remember(record(1, "inactive"))  # read back inside the unit: uncommitted
    view.rolled_back()
    assert view.row("1@x.test") is None


def test_a_committed_write_is_not_dropped_by_the_next_units_rollback() -> None:
    view = CustomerView()
    view.wrote(1)
    view.committed()
    view.remember(record(1, "inactive"))  # committed state
    view.rolled_back()
    assert view.row("1@x.test") is not None


def test_a_write_before_a_failed_savepoint_is_still_dropped_when_the_unit_rolls_back() -> None:
    view = CustomerView()
    view.wrote(1)  # event 1 of a webhook batch
    view.wrote(2)  # event 2, in a savepoint that fails
    view.rolled_back_to_savepoint()
    view.remember(record(1, "inactive"))  # event 3 reads event 1's uncommitted row
    view.rolled_back()  # the batch's COMMIT fails
    assert view.row("1@x.test") is None


def test_fresh_rows_are_bounded_dropped_all_at_once() -> None:
    view = CustomerView(max_rows=2)
    for n in range(3):
        view.remember(record(n))
    assert view.fresh_rows() == 1
    assert view.row("2@x.test") is not None


def test_last_known_good_is_bounded_least_recently_confirmed_first() -> None:
    view = CustomerView(max_known=2)
    view.confirm(record(1))
    view.confirm(record(2))
    view.confirm(record(1))  # confirmed again: now the newest
    view.confirm(record(3))
    assert view.known_records() == 2
    assert view.last_known_good("2@x.test") is None
    assert view.last_known_good("1@x.test") is not None


def test_a_feed_pruned_past_the_cursor_forgets_every_license_but_keeps_the_stamps() -> None:
    view = CustomerView()
    for n in (1, 2):
        view.confirm(view.remember(record(n)))
    view.stamp(1, T0)  # this process's own, not yet flushed
    view.forget_everything()
    assert view.row("1@x.test") is None and view.row("2@x.test") is None
    assert view.known_records() == 0  # unlike invalidate_all: which changed is unknown
    assert view.pending_stamps() == 1
