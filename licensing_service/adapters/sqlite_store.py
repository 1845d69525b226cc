"""SQLite storage: one file, WAL, parameterized SQL only.

The SQL here is kept to what PostgreSQL also speaks (no INSERT OR REPLACE,
no datetime('now')); time always comes in as a bound parameter.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from licensing_service.adapters.sqlite_billing import SqliteBillingTx
from licensing_service.adapters.sqlite_cache import CustomerCache, DeferredValidations
from licensing_service.adapters.sqltime import from_db, to_db
from licensing_service.domain.sessions import SessionRecord, SessionStatus
from licensing_service.service.errors import ConstraintViolation, StorageUnavailable
from licensing_service.service.ports import (
    AuditEntry,
    CustomerRecord,
    NewCustomer,
    NewEmail,
    QueuedEmail,
)

log = logging.getLogger(__name__)

_CUSTOMER_COLUMNS = (
    "id, email, name, unlock_token, subscription_status, subscription_id, stripe_session_id,"
    " machine_fingerprint, current_period_end, next_billing_date, last_validation, last_seen"
)
_SESSION_COLUMNS = "session_id, customer_id, status, last_heartbeat, device_info"


@dataclass(slots=True)
class FaultSwitch:
    """Lets a test-clock server rehearse a database outage on demand."""

    failing: bool = False


def connect(path: str | Path, busy_timeout_ms: int = 2000) -> sqlite3.Connection:
    conn = sqlite3.connect(
        str(path), isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
    )
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a power cut may lose the last commits, never corrupt.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    return conn


class Checkpointer:
    """Runs WAL checkpoints on its own connection, in a thread.

    A checkpoint fsyncs the database file; left to SQLite's auto-checkpoint
    it runs inside some unlucky request's COMMIT, on the event loop, and on a
    shared disk that fsync took up to ~100 ms (the p99 of the benchmark).
    PASSIVE mode never blocks the serving connection's writes, and sqlite3
    releases the GIL while it does the I/O.
    """

    def __init__(self, path: Path, interval_seconds: float = 0.5) -> None:
        self._path = path
        self._interval = interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpointer", daemon=True)

    def start(self) -> Checkpointer:
        self._thread.start()
        return self

    def _run(self) -> None:
        # Below the event loop's priority: on a single core the scheduler then
        # lets requests run first and copies pages in the gaps (Linux: per thread).
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        conn = connect(self._path)
        failing = False
        try:
            while not self._stop.wait(self._interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:
                    # Retried next interval; meanwhile the WAL grows, which an operator must see.
                    if not failing:
                        log.warning("WAL checkpoints failing (%s); the WAL file grows", exc)
                    failing = True
                    continue
                if failing:
                    log.warning("WAL checkpoints succeed again")
                failing = False
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)


class SqliteStore:
    def __init__(
        self,
        path: str | Path,
        *,
        faults: FaultSwitch | None = None,
        background_checkpoints: bool = True,
        cache: CustomerCache | None = None,
    ) -> None:
        self.path = Path(path)
        self.faults = faults or FaultSwitch()
        try:
            self._conn = connect(self.path)
            if background_checkpoints:
                self._conn.execute("PRAGMA wal_autocheckpoint=0")
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"cannot open database: {exc}") from exc
        self.cache = cache if cache is not None else CustomerCache()
        self.deferred = DeferredValidations()
        self._tx = SqliteTx(self._conn, self.cache, self.deferred)
        self._checkpointer = Checkpointer(self.path).start() if background_checkpoints else None
        self._change_listener: Callable[[list[str]], None] | None = None
        self._change_cursor = 0

    def transaction(self) -> _Scope:
        """BEGIN IMMEDIATE ... COMMIT: writers serialise here, across processes too."""
        return _Scope(self, atomic=True)

    def autocommit(self) -> _Scope:
        """Each statement commits on its own: for a read followed by at most one write."""
        return _Scope(self, atomic=False)

    def pending_writes(self) -> int:
        return len(self.deferred)

    def watch_license_changes(self, listener: Callable[[list[str]], None]) -> None:
        """Call ``listener(emails)`` with the licenses another process changed,
        as soon as a transaction notices that process's commit."""
        row = self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM license_changes").fetchone()
        self._change_cursor = int(row[0])
        self._change_listener = listener

    def read_license_changes(self) -> None:
        if self._change_listener is None:
            return
        rows = self._conn.execute(
            "SELECT seq, email FROM license_changes WHERE seq > ? ORDER BY seq",
            (self._change_cursor,),
        ).fetchall()
        if rows:
            self._change_cursor = rows[-1][0]
            self._change_listener([row[1] for row in rows])

    def ping(self) -> None:
        """Probe the database outside any transaction (health checks)."""
        if self.faults.failing:
            raise StorageUnavailable("database unavailable (injected fault)")
        try:
            self._conn.execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise StorageUnavailable(str(exc)) from exc

    def connection(self) -> sqlite3.Connection:
        return self._conn

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self._conn.close()


class _Scope:
    """A class-based context manager: ~4x cheaper than @contextmanager on the hot path."""

    __slots__ = ("_atomic", "_store")

    def __init__(self, store: SqliteStore, *, atomic: bool) -> None:
        self._store = store
        self._atomic = atomic

    def __enter__(self) -> SqliteTx:
        store = self._store
        if store.faults.failing:
            raise StorageUnavailable("database unavailable (injected fault)")
        conn = store._conn
        try:
            if self._atomic:
                conn.execute("BEGIN IMMEDIATE")
            # Another connection committed since we last looked: forget cached rows.
            if store.cache.due() and store.cache.sync(
                conn.execute("PRAGMA data_version").fetchone()[0]
            ):
                store.read_license_changes()
        except sqlite3.Error as exc:
            if self._atomic:
                _rollback(conn)
            raise StorageUnavailable(str(exc)) from exc
        return store._tx

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> Literal[False]:
        store = self._store
        conn = store._conn
        if kind is None:
            if self._atomic:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    _rollback(conn)
                    store.deferred.restore()
                    raise StorageUnavailable(str(exc)) from exc
            store.deferred.settle()
            store._tx.forget_touched()
            return False
        if self._atomic:
            _rollback(conn)
        store.deferred.restore()
        store._tx.evict_touched()
        if isinstance(error, sqlite3.IntegrityError):
            raise ConstraintViolation(str(error)) from error
        if isinstance(error, sqlite3.Error):
            raise StorageUnavailable(str(error)) from error
        return False


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite may already have ended the transaction itself (e.g. on SQLITE_FULL).
    with contextlib.suppress(sqlite3.Error):
        conn.execute("ROLLBACK")


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


def _session(row: tuple[Any, ...]) -> SessionRecord:
    heartbeat = from_db(row[3])
    assert heartbeat is not None
    return SessionRecord(row[0], row[1], row[2], heartbeat, row[4])


class SqliteTx:
    def __init__(
        self, conn: sqlite3.Connection, cache: CustomerCache, deferred: DeferredValidations
    ) -> None:
        self._c = conn
        self._cache = cache
        self._deferred = deferred
        # Customers written in the current scope: evicted from the cache if it rolls back.
        self._touched: set[int] = set()
        self.billing = SqliteBillingTx(conn, self._write_customer, self._customer_where)

    def forget_touched(self) -> None:
        self._touched.clear()

    def evict_touched(self) -> None:
        for customer_id in self._touched:
            self._cache.discard_id(customer_id)
        self._touched.clear()

    def _write_customer(self, customer_id: int, sql: str, params: tuple[Any, ...]) -> None:
        self._c.execute(sql, params)
        self._cache.discard_id(customer_id)
        self._touched.add(customer_id)

    def ping(self) -> None:
        self._c.execute("SELECT 1").fetchone()

    def customer_by_email(self, email: str) -> CustomerRecord | None:
        cached = self._cache.get(email)
        if cached is not None:
            return cached
        sql = f"SELECT {_CUSTOMER_COLUMNS} FROM customers WHERE email = ?"
        record = _customer(self._c.execute(sql, (email,)).fetchone())
        if record is None:
            return None
        record = self._deferred.overlay(record)
        self._cache.put(record)
        return record

    def customer_by_id(self, customer_id: int) -> CustomerRecord | None:
        return self._customer_where("id = ?", (customer_id,))

    def _customer_where(self, condition: str, params: tuple[Any, ...]) -> CustomerRecord | None:
        sql = f"SELECT {_CUSTOMER_COLUMNS} FROM customers WHERE {condition}"
        record = _customer(self._c.execute(sql, params).fetchone())
        return None if record is None else self._deferred.overlay(record)

    def insert_customer(self, customer: NewCustomer, now: datetime) -> int:
        stamp = to_db(now)
        cursor = self._c.execute(
            "INSERT INTO customers (email, name, unlock_token, subscription_status,"
            " stripe_customer_id, stripe_session_id, subscription_id, current_period_start,"
            " current_period_end, next_billing_date, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                customer.email,
                customer.name,
                customer.unlock_token,
                customer.subscription_status,
                customer.stripe_customer_id,
                customer.stripe_session_id,
                customer.subscription_id,
                _opt(customer.current_period_start),
                _opt(customer.current_period_end),
                _opt(customer.next_billing_date),
                stamp,
                stamp,
            ),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def record_validation(self, customer_id: int, now: datetime) -> None:
        """Deferred: group-committed by ``flush_deferred`` (see sqlite_cache)."""
        self._deferred.add(customer_id, now)
        self._cache.touch(customer_id, now)

    def set_fingerprint(self, customer_id: int, fingerprint: str) -> None:
        """Written at once, in the caller's transaction (with its audit and email)."""
        self._write_customer(
            customer_id,
            "UPDATE customers SET machine_fingerprint = ? WHERE id = ?",
            (fingerprint, customer_id),
        )

    def flush_deferred(self, limit: int | None = None) -> int:
        batch = sorted(self._deferred.take(limit).items())  # id order: neighbouring pages
        self._c.executemany(
            "UPDATE customers SET last_validation = ?, last_seen = ? WHERE id = ?",
            [(to_db(when), to_db(when), cid) for cid, when in batch],
        )
        return len(batch)

    def set_subscription_status(self, customer_id: int, status: str, now: datetime) -> None:
        self._write_customer(
            customer_id,
            "UPDATE customers SET subscription_status = ?, updated_at = ? WHERE id = ?",
            (status, to_db(now), customer_id),
        )

    def open_sessions(self, customer_id: int) -> list[SessionRecord]:
        rows = self._c.execute(
            f"SELECT {_SESSION_COLUMNS} FROM active_sessions WHERE customer_id = ? AND status = ?",
            (customer_id, SessionStatus.ACTIVE.value),
        ).fetchall()
        return [_session(r) for r in rows]

    def session(self, session_id: str) -> SessionRecord | None:
        row = self._c.execute(
            f"SELECT {_SESSION_COLUMNS} FROM active_sessions WHERE session_id = ?", (session_id,)
        ).fetchone()
        return None if row is None else _session(row)

    def set_session_status(self, session_ids: Sequence[str], status: str, now: datetime) -> None:
        stamp = to_db(now)
        self._c.executemany(
            "UPDATE active_sessions SET status = ?, ended_at = ? WHERE session_id = ?",
            [(status, stamp, sid) for sid in session_ids],
        )

    def start_session(
        self,
        record: SessionRecord,
        fingerprint: str | None,
        client_address: str | None,
        now: datetime,
    ) -> None:
        row = {
            "session_id": record.session_id,
            "customer_id": record.customer_id,
            "status": record.status,
            "device_info": record.device_info,
            "fingerprint": fingerprint,
            "client": client_address,
            "stamp": to_db(now),
        }
        updated = self._c.execute(
            "UPDATE active_sessions SET status = :status, device_info = :device_info,"
            " machine_fingerprint = :fingerprint, client_address = :client,"
            " started_at = :stamp, last_heartbeat = :stamp, ended_at = NULL"
            " WHERE session_id = :session_id AND customer_id = :customer_id",
            row,
        ).rowcount
        if updated == 0:
            self._c.execute(
                "INSERT INTO active_sessions (session_id, customer_id, status, device_info,"
                " machine_fingerprint, client_address, started_at, last_heartbeat)"
                " VALUES (:session_id, :customer_id, :status, :device_info, :fingerprint,"
                " :client, :stamp, :stamp)",
                row,
            )

    def touch_session(self, session_id: str, now: datetime) -> None:
        self._c.execute(
            "UPDATE active_sessions SET last_heartbeat = ? WHERE session_id = ?",
            (to_db(now), session_id),
        )

    def alive_sessions(self, since: datetime) -> int:
        row = self._c.execute(
            "SELECT COUNT(*) FROM active_sessions WHERE status = ? AND last_heartbeat > ?",
            (SessionStatus.ACTIVE.value, to_db(since)),
        ).fetchone()
        return int(row[0])

    def audit(self, entries: Sequence[AuditEntry]) -> None:
        self._c.executemany(
            "INSERT INTO audit_log (customer_id, action, outcome, request_id, client_address,"
            " details, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    e.customer_id,
                    e.action,
                    e.outcome,
                    e.request_id,
                    e.client_address,
                    None if e.details is None else json.dumps(e.details, sort_keys=True),
                    to_db(e.at),
                )
                for e in entries
            ],
        )

    def enqueue_email(self, email: NewEmail, now: datetime) -> bool:
        """Queue an email; False when its dedupe key was already queued."""
        stamp = to_db(now)
        params = (
            email.customer_id,
            email.email_type,
            email.recipient,
            json.dumps(email.payload, sort_keys=True),
            stamp,
            email.dedupe_key,
            stamp,
        )
        cursor = self._c.execute(
            "INSERT INTO email_log (customer_id, email_type, recipient, payload,"
            " next_attempt_at, dedupe_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (dedupe_key) DO NOTHING",
            params,
        )
        return cursor.rowcount == 1

    def claim_due_emails(self, now: datetime, limit: int, lease: timedelta) -> list[QueuedEmail]:
        """Due emails, each claimed until ``now + lease`` so that no other worker
        sends it meanwhile; a sender that dies lets the lease run out and the
        email is sent again (at least once, never lost)."""
        rows = self._c.execute(
            "SELECT id, email_type, recipient, customer_id, payload, attempts FROM email_log"
            " WHERE delivery_status = 'pending' AND next_attempt_at <= ?"
            " ORDER BY next_attempt_at, id LIMIT ?",
            (to_db(now), limit),
        ).fetchall()
        self._c.executemany(
            "UPDATE email_log SET next_attempt_at = ? WHERE id = ?",
            [(to_db(now + lease), r[0]) for r in rows],
        )
        return [QueuedEmail(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5]) for r in rows]

    def mark_email_delivered(self, email_id: int, provider_id: str, now: datetime) -> None:
        self._c.execute(
            "UPDATE email_log SET delivery_status = 'delivered', resend_id = ?, delivered_at = ?,"
            " attempts = attempts + 1, last_error = NULL WHERE id = ?",
            (provider_id, to_db(now), email_id),
        )

    def mark_email_retry(self, email_id: int, error: str, next_attempt: datetime) -> None:
        self._c.execute(
            "UPDATE email_log SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?"
            " WHERE id = ?",
            (error, to_db(next_attempt), email_id),
        )

    def mark_email_failed(self, email_id: int, error: str) -> None:
        self._c.execute(
            "UPDATE email_log SET delivery_status = 'failed', attempts = attempts + 1,"
            " last_error = ? WHERE id = ?",
            (error, email_id),
        )

    def outbox(self, limit: int, recipients: Sequence[str] = ()) -> list[dict[str, Any]]:
        where = ""
        if recipients:
            where = f" WHERE recipient IN ({', '.join('?' * len(recipients))})"
        rows = self._c.execute(
            "SELECT id, customer_id, email_type, recipient, payload, delivery_status, attempts,"
            f" next_attempt_at, last_error, created_at, delivered_at FROM email_log{where}"
            " ORDER BY id LIMIT ?",
            (*recipients, limit),
        ).fetchall()
        keys = [
            "id",
            "customer_id",
            "email_type",
            "recipient",
            "payload",
            "delivery_status",
            "attempts",
            "next_attempt_at",
            "last_error",
            "created_at",
            "delivered_at",
        ]
        result = [dict(zip(keys, row, strict=True)) for row in rows]
        for item in result:
            item["payload"] = json.loads(item["payload"])
        return result

    def pending_emails(self) -> int:
        row = self._c.execute(
            "SELECT COUNT(*) FROM email_log WHERE delivery_status = 'pending'"
        ).fetchone()
        return int(row[0])


def _opt(when: datetime | None) -> str | None:
    return None if when is None else to_db(when)
