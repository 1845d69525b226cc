"""Cross-replica concurrency control on PostgreSQL (adapters/pg_repositories.py,
pg_migrations.py, migrations_pg/0003): two or more stores on one database
stand for replicas.

Each scenario interleaves the replicas deterministically: replica A stops in
the middle of its transaction, holding what it holds; replica B runs on a
thread until PostgreSQL reports it waiting on a lock (``pg_locks``) or it is
done; then A commits. Each test runs the scenario twice: with the control,
asserting the invariant, and on a planted store without it, asserting that
the same check then fails, so the check is shown able to fail.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from licensing_service.adapters import pg_migrations
from licensing_service.adapters.pg_store import CACHE_BOUND_SECONDS, PgStore, pool
from licensing_service.bootstrap import build_service
from licensing_service.config import Settings
from licensing_service.domain.billing import BillingFact, merge
from licensing_service.domain.credentials import new_unlock_token
from licensing_service.domain.sessions import SessionRecord, SessionStatus
from licensing_service.domain.stripe_events import EventHeader
from licensing_service.domain.webhook_claims import Claim, decide_claim
from licensing_service.service.emails import EmailType, compose
from licensing_service.service.errors import SessionConflict, SessionIdTaken, SessionKicked
from licensing_service.service.licensing import Call, LicensingService
from licensing_service.service.ports import NewCustomer, UnitOfWork
from licensing_service.service.webhooks import WebhookResult, WebhookService
from tests import pg

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=2)


@dataclass
class Replicas:
    url: str
    made: list[PgStore]

    def store(self, **kwargs: Any) -> PgStore:
        made = PgStore(pool(self.url, max_size=2), **kwargs)
        self.made.append(made)
        return made


@pytest.fixture
def replicas(pg_url: str) -> Iterator[Replicas]:
    made = Replicas(pg_url, [])
    yield made
    for store in made.made:
        store.close()


class Background:
    """Replica B's work on a thread, with what it returned or raised."""

    def __init__(self, work: Callable[[], object]) -> None:
        self.value: object = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(work,), daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[], object]) -> None:
        try:
            self.value = work()
        except BaseException as exc:
            self.error = exc

    def blocked_or_done(self, url: str) -> None:
        """Until B waits on a lock in this database, or has finished (bounded)."""
        deadline = time.monotonic() + 10
        with psycopg.connect(url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                if not self._thread.is_alive():
                    return
                waiting = conn.execute(
                    b"SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                    b" WHERE NOT l.granted AND a.datname = current_database()"
                ).fetchone()
                if waiting and waiting[0]:
                    return
                time.sleep(0.002)  # polling PostgreSQL's lock table, not timing anything
        raise AssertionError("replica B neither finished nor waited on a lock")

    def result(self) -> object:
        self._thread.join(timeout=10)
        assert not self._thread.is_alive(), "replica B did not finish"
        if self.error is not None:
            raise self.error
        return self.value


def call() -> Call:
    return Call("req_pg", "127.0.0.1", T0)


def license_(store: PgStore, email: str = "till@x.test") -> tuple[int, str]:
    token = new_unlock_token()
    new = NewCustomer(email, "Till", token, "active", current_period_end=T0 + timedelta(days=30))
    with store.transaction() as uow:
        return uow.licenses.insert(new, T0), token


def service(store: PgStore) -> LicensingService:
    return build_service(Settings(rate_limit_ip=10_000, rate_limit_email=10_000), store, store.view)


def active(store: PgStore, customer_id: int) -> list[str]:
    with store.autocommit() as uow:
        return sorted(s.session_id for s in uow.sessions.open_for(customer_id))


def hold_session(uow: UnitOfWork, customer_id: int, session_id: str, kick: tuple[str, ...]) -> None:
    """Replica A mid-start or mid-takeover: decided and written, not committed."""
    uow.sessions.open_for(customer_id)
    uow.sessions.set_status(kick, SessionStatus.KICKED, T0)
    record = SessionRecord(session_id, customer_id, SessionStatus.ACTIVE, T0, "{}")
    uow.sessions.start(record, None, None, T0)


def plant_sessions(store: PgStore, locking: bool) -> None:
    store._uow.sessions.locking = locking


# ------------------------------------------------------------ migrations


def concurrent_migrations(lock: bool, migrators: int = 4) -> tuple[list[int], int]:
    """Versions applied (by all), and how many migrators failed."""
    name = pg.database_name(f"migrate{int(lock)}")
    pg.drop(name)
    with psycopg.connect(pg.admin_url(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
    url = pg.with_database(pg.admin_url(), name)
    start = threading.Barrier(migrators)
    applied: list[int] = []
    failures = [0]
    guard = threading.Lock()

    def one() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            start.wait()
            try:
                done = pg_migrations.migrate(conn, T0, lock=lock)
            except psycopg.Error:
                with guard:
                    failures[0] += 1
                return
        with guard:
            applied.extend(done)

    try:
        threads = [threading.Thread(target=one) for _ in range(migrators)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        pg.drop(name)
    return sorted(applied), failures[0]


def test_replicas_starting_at_once_migrate_exactly_once(pg_url: str) -> None:
    del pg_url  # a reachable server; these migrations make databases of their own
    versions = [m.version for m in pg_migrations.available(pg_migrations.PACKAGE)]
    assert concurrent_migrations(lock=True) == (versions, 0)
    # Without the advisory lock, the racing migrators collide (or apply twice).
    assert concurrent_migrations(lock=False) != (versions, 0)


# -------------------------------------------------------------- sessions


def two_starts(replicas: Replicas, *, locking: bool) -> BaseException | None:
    a, b = replicas.store(), replicas.store()
    p = f"{int(locking)}-"  # session ids are unique across licenses and runs
    plant_sessions(a, locking)
    plant_sessions(b, locking)
    cid, token = license_(a, f"start-{int(locking)}@x.test")
    with a.transaction() as uow:
        hold_session(uow, cid, f"{p}s-a", ())
        other = Background(
            lambda: service(b).start_session(
                call(), f"start-{int(locking)}@x.test", token, f"{p}s-b", "fp-b", {}
            )
        )
        other.blocked_or_done(replicas.url)
    assert active(a, cid) == [f"{p}s-a"]
    try:
        other.result()
    except (SessionConflict, SessionIdTaken) as exc:
        return exc
    return None


def test_concurrent_starts_on_two_replicas_one_wins_the_other_sees_the_holder(
    replicas: Replicas,
) -> None:
    assert isinstance(two_starts(replicas, locking=True), SessionConflict)
    # Planted: no license lock; the loser only meets the unique index ("retry").
    assert not isinstance(two_starts(replicas, locking=False), SessionConflict)


def heartbeat_during_takeover(replicas: Replicas, *, locking: bool) -> BaseException | None:
    a, b = replicas.store(), replicas.store()
    p = f"{int(locking)}-"  # session ids are unique across licenses and runs
    plant_sessions(a, locking)
    plant_sessions(b, locking)
    email = f"beat-{int(locking)}@x.test"
    cid, token = license_(a, email)
    service(a).start_session(call(), email, token, f"{p}s-1", "fp-1", {})
    with a.transaction() as uow:
        hold_session(uow, cid, f"{p}s-2", (f"{p}s-1",))  # A takes over from s-1
        beat = Background(lambda: service(b).heartbeat(call(), f"{p}s-1", email, token))
        beat.blocked_or_done(replicas.url)
    try:
        beat.result()
    except SessionKicked as exc:
        return exc
    return None


def test_a_heartbeat_racing_a_takeover_never_answers_alive_after_the_kick(
    replicas: Replicas,
) -> None:
    assert isinstance(heartbeat_during_takeover(replicas, locking=True), SessionKicked)
    # Planted: the heartbeat read s-1 active before the kick and answered alive.
    assert heartbeat_during_takeover(replicas, locking=False) is None


def two_takeovers(replicas: Replicas, *, locking: bool) -> tuple[object, list[str]]:
    a, b = replicas.store(), replicas.store()
    p = f"{int(locking)}-"  # session ids are unique across licenses and runs
    plant_sessions(a, locking)
    plant_sessions(b, locking)
    email = f"take-{int(locking)}@x.test"
    cid, token = license_(a, email)
    service(a).start_session(call(), email, token, f"{p}s-1", "fp-1", {})
    with a.transaction() as uow:
        hold_session(uow, cid, f"{p}s-2", (f"{p}s-1",))
        other = Background(
            lambda: (
                service(b)
                .start_session(call(), email, token, f"{p}s-3", "fp-3", {}, takeover=True)
                .session_id
            )
        )
        other.blocked_or_done(replicas.url)
    try:
        outcome: object = other.result()
    except SessionIdTaken as exc:
        outcome = exc
    return outcome, active(a, cid)


def test_two_takeovers_on_two_replicas_the_later_one_wins_and_one_session_is_alive(
    replicas: Replicas,
) -> None:
    assert two_takeovers(replicas, locking=True) == ("1-s-3", ["1-s-3"])
    outcome, alive = two_takeovers(replicas, locking=False)
    assert outcome != "0-s-3"  # planted: refused with "retry" by the unique index
    assert len(alive) == 1  # the index still holds the invariant itself


# -------------------------------------------------------------- webhooks


def claim(uow: UnitOfWork, event_id: str, now: datetime) -> Claim:
    """What WebhookService._claim does with the repository (minus the events)."""
    row = uow.billing.webhook_event(event_id)
    decided = decide_claim(
        row.status if row else None,
        row.lease_until if row else None,
        row.received_at if row else None,
        now,
        LEASE,
    )
    if decided in (Claim.NEW, Claim.RETRY, Claim.TAKE_OVER):
        uow.billing.claim_event(
            event_id, "invoice.paid", T0, now, now + LEASE, retry=decided is not Claim.NEW
        )
    return decided


def plant_billing(store: PgStore, locking: bool) -> None:
    store._uow.billing.locking = locking


def duplicate_on_another_replica(replicas: Replicas, *, locking: bool) -> object:
    a, b = replicas.store(), replicas.store()
    plant_billing(a, locking)
    plant_billing(b, locking)
    event = f"evt_dup_{locking}"

    def deliver_to_b() -> Claim:
        with b.transaction() as uow:
            return claim(uow, event, T0)

    with a.transaction() as uow:
        assert claim(uow, event, T0) is Claim.NEW
        other = Background(deliver_to_b)
        other.blocked_or_done(replicas.url)
        uow.billing.finish_event(event, "applied", None, T0)
    try:
        return other.result()
    except Exception as exc:
        return type(exc).__name__


def test_a_duplicate_on_another_replica_waits_and_finds_it_completed(
    replicas: Replicas,
) -> None:
    assert duplicate_on_another_replica(replicas, locking=True) is Claim.DUPLICATE
    # Planted: both claim it new; only the UNIQUE key stops B, with an error.
    assert duplicate_on_another_replica(replicas, locking=False) == "ConstraintViolation"


def stuck_claim_taken_over_twice(replicas: Replicas, *, locking: bool) -> list[Claim]:
    a, b = replicas.store(), replicas.store()
    plant_billing(a, locking)
    plant_billing(b, locking)
    event = f"evt_stuck_{locking}"
    with a.transaction() as uow:  # a replica died mid-event: its lease runs out
        claim(uow, event, T0)
    later = T0 + LEASE * 2

    def take_over_on_b() -> Claim:
        with b.transaction() as uow:
            return claim(uow, event, later)

    with a.transaction() as uow:
        first = claim(uow, event, later)
        other = Background(take_over_on_b)
        other.blocked_or_done(replicas.url)
    second = other.result()
    assert isinstance(second, Claim)
    return [first, second]


def test_a_stuck_claim_is_taken_over_by_one_replica(replicas: Replicas) -> None:
    assert stuck_claim_taken_over_twice(replicas, locking=True) == [
        Claim.TAKE_OVER,
        Claim.IN_FLIGHT,
    ]
    # Planted: both read the expired lease and both process the event.
    assert stuck_claim_taken_over_twice(replicas, locking=False) == [
        Claim.TAKE_OVER,
        Claim.TAKE_OVER,
    ]


def two_failed_payments(replicas: Replicas, *, locking: bool) -> int:
    a, b = replicas.store(), replicas.store()
    plant_billing(a, locking)
    plant_billing(b, locking)
    customer = f"cus_{locking}"

    def apply(uow: UnitOfWork, event_id: str, created: int) -> None:
        fact = BillingFact(event_id, created, payment_failed=True)
        merged = merge(uow.billing.billing_state(customer), fact)
        uow.billing.save_billing_state(customer, merged.state, T0)

    def on_b() -> None:
        with b.transaction() as uow:
            apply(uow, "evt_fail_2", 200)

    with a.transaction() as uow:
        apply(uow, "evt_fail_1", 100)
        other = Background(on_b)
        other.blocked_or_done(replicas.url)
    other.result()
    with a.autocommit() as uow:
        state = uow.billing.billing_state(customer)
    assert state is not None
    return state.payment_failures


def test_billing_state_merges_every_event_across_replicas(replicas: Replicas) -> None:
    assert two_failed_payments(replicas, locking=True) == 2
    # Planted: B merged into the state before A's commit; A's fact is lost.
    assert two_failed_payments(replicas, locking=False) == 1


# ---------------------------------------------------------------- outbox


def two_drains(replicas: Replicas, *, skip_locked: bool) -> tuple[list[int], list[int]]:
    a, b = replicas.store(), replicas.store()
    for store in (a, b):
        store._uow.outbox.skip_locked = skip_locked
    with a.transaction() as uow:
        for n in range(10):
            uow.outbox.enqueue(compose(EmailType.REACTIVATION, f"m{n}@x.test", None), T0)

    def drain_b() -> list[int]:
        with b.transaction() as uow:
            return [e.id for e in uow.outbox.claim_due(T0, 5, LEASE)]

    with a.transaction() as uow:
        mine = [e.id for e in uow.outbox.claim_due(T0, 5, LEASE)]
        other = Background(drain_b)
        other.blocked_or_done(replicas.url)
    theirs = other.result()
    assert isinstance(theirs, list)
    return mine, theirs


def test_two_replicas_draining_the_outbox_claim_each_email_once(replicas: Replicas) -> None:
    mine, theirs = two_drains(replicas, skip_locked=True)
    assert len(mine) == len(theirs) == 5
    assert not set(mine) & set(theirs)
    # Planted: a plain SELECT hands B the rows A is about to send.
    mine, theirs = two_drains(replicas, skip_locked=False)
    assert set(mine) & set(theirs)


# ------------------------------------------------- caches and the snapshot


class Monotonic:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def suspension_seen_by_other_replica(replicas: Replicas, *, feed: bool) -> list[object]:
    """What replica B answers (status; whether it still has a last-known-good
    record to answer from while its breaker is open) before and after the bound."""
    a = replicas.store()
    clock = Monotonic()
    b = replicas.store(revalidate_seconds=CACHE_BOUND_SECONDS, monotonic=clock, feed=feed)
    email = f"susp-{int(feed)}@x.test"
    cid, _ = license_(a, email)

    def status_on_b() -> str:
        with b.autocommit() as uow:
            found = uow.licenses.by_email(email)
        assert found is not None
        return found.subscription_status

    seen: list[object] = [status_on_b()]  # B caches the active license
    found = b.view.row(email)
    assert found is not None
    b.view.confirm(found)  # as a validation on B does
    with a.transaction() as uow:
        uow.licenses.set_status(cid, "inactive", T0)
    clock.now = CACHE_BOUND_SECONDS / 2
    seen.append(status_on_b())  # inside the bound: B may still answer from its cache
    clock.now = CACHE_BOUND_SECONDS
    seen.append(status_on_b())  # at the bound: B has read the feed
    seen.append(b.view.last_known_good(email) is not None)
    return seen


def test_a_suspension_on_one_replica_reaches_the_others_cache_within_the_bound(
    replicas: Replicas,
) -> None:
    assert suspension_seen_by_other_replica(replicas, feed=True) == [
        "active",
        "active",
        "inactive",
        False,  # no last-known-good record left for a degraded answer either
    ]
    # Planted: B does not read the feed; its cache answers "active" forever.
    planted = suspension_seen_by_other_replica(replicas, feed=False)
    assert planted[2] == "active" and planted[3] is True


def _feed_after(url: str, cursor: int) -> list[tuple[int, str]]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            b"SELECT seq, email FROM license_changes WHERE seq > %s ORDER BY seq", (cursor,)
        ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def test_the_feed_records_changes_in_commit_order(replicas: Replicas) -> None:
    """seq order is commit order (migrations_pg/0007): a change made first but
    committed later must not land below a cursor another replica has already
    passed. Planted, seqs drawn at insert (no LICENSE_FEED lock at commit): A's
    change lands below B's and a reader past B's never sees it."""
    a, b = replicas.store(), replicas.store()
    first, _ = license_(a, "feed-1@x.test")
    second, _ = license_(a, "feed-2@x.test")
    start = max([0, *(seq for seq, _ in _feed_after(replicas.url, 0))])
    with a.transaction() as uow:
        uow.licenses.set_status(first, "inactive", T0)  # made first, committed last
        with b.transaction() as other:  # B neither waits for A nor is waited for
            other.licenses.set_status(second, "inactive", T0)
        seen = _feed_after(replicas.url, start)
        assert [email for _, email in seen] == ["feed-2@x.test"]
        cursor = seen[-1][0]  # a replica reads the feed here, passing B's change
    assert [email for _, email in _feed_after(replicas.url, cursor)] == ["feed-1@x.test"]


def test_feed_changes_in_two_transactions_waiting_on_each_others_locks_do_not_deadlock(
    replicas: Replicas,
) -> None:
    """Two webhook batches on two replicas: A notes a change, then waits for a
    per-customer lock that B holds; B notes a change and commits. With the feed
    lock taken at the change (migrations_pg/0003 alone) B waited for A's feed
    lock and PostgreSQL failed one of them: "deadlock detected" (a 503 to Stripe)."""
    store = replicas.store()
    one, _ = license_(store, "lock-1@x.test")
    two, _ = license_(store, "lock-2@x.test")
    start = max([0, *(seq for seq, _ in _feed_after(replicas.url, 0))])
    update = b"UPDATE customers SET subscription_status = 'inactive' WHERE id = %s"
    per_customer = b"SELECT pg_advisory_xact_lock(424242)"
    b_holds = threading.Event()

    def replica_b() -> None:
        with psycopg.connect(replicas.url) as conn:  # one transaction, committed on exit
            conn.execute(per_customer)
            b_holds.set()
            assert a_waits.wait(10)
            conn.execute(update, (two,))

    a_waits = threading.Event()
    other = Background(replica_b)
    assert b_holds.wait(10)
    with psycopg.connect(replicas.url) as conn:
        conn.execute(b"SET lock_timeout = '10s'")
        conn.execute(update, (one,))  # notes lock-1@ in the feed
        a_waits.set()
        conn.execute(per_customer)  # held by B until B commits
    other.result()
    assert [email for _, email in _feed_after(replicas.url, start)] == [
        "lock-2@x.test",
        "lock-1@x.test",
    ]


# ------------------------------------------------------- webhook batch lock order


def _failed_payment(event_id: str, stripe_customer: str) -> EventHeader:
    invoice = {"id": f"in_{event_id}", "object": "invoice", "customer": stripe_customer}
    return EventHeader(event_id, "invoice.payment_failed", int(T0.timestamp()), invoice)


def crossed_batches(replicas: Replicas, *, ordered: bool) -> list[object]:
    """Two webhook batches on two replicas, for Stripe customers X and Y in
    crossed orders; each, after its first event, gives the other up to 0.5 s
    to apply its own first event (as a busy machine interleaves them)."""
    a, b = replicas.store(), replicas.store()
    run = "ordered" if ordered else "planted"  # events and customers of their own
    if not ordered:  # planted: the batch takes each lock as its event comes
        for store in (a, b):
            store._uow.billing.lock_batch = lambda *_: None  # type: ignore[method-assign]
    firsts = {"A": threading.Event(), "B": threading.Event()}

    def batch(store: PgStore, me: str, other: str, customers: tuple[str, str]) -> list[object]:
        def after_each(event_id: str) -> None:
            if event_id.endswith("-1"):
                firsts[me].set()
                firsts[other].wait(0.5)

        hooks = WebhookService(service(store), ["whsec_unused"], fail_hook=after_each)
        events = [
            _failed_payment(f"ev_{run}{me}-{n}", f"{c}{run}") for n, c in enumerate(customers, 1)
        ]
        return list(hooks.receive_batch([(call(), e) for e in events]))

    other = Background(lambda: batch(b, "B", "A", ("cus_Y", "cus_X")))
    mine = batch(a, "A", "B", ("cus_X", "cus_Y"))
    theirs = other.result()
    assert isinstance(theirs, list)
    return [*mine, *theirs]


def test_webhook_batches_on_two_replicas_take_their_locks_in_one_order(
    replicas: Replicas,
) -> None:
    outcomes = crossed_batches(replicas, ordered=True)
    assert [type(o).__name__ for o in outcomes] == ["WebhookResult"] * 4
    # Planted, each lock as its event comes: "deadlock detected" fails one batch.
    planted = crossed_batches(replicas, ordered=False)
    assert any(not isinstance(o, WebhookResult) for o in planted), planted
