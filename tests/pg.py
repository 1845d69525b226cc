"""PostgreSQL for the tests: one database per xdist worker, made from the
admin URL ``LH_TEST_PG`` (default: the local server CI machines run),
migrated once, emptied between tests, dropped at the end of the session.

Tests reach it through the ``pg_url`` fixture (tests/conftest.py), which
skips with "no PostgreSQL at ..." when no server answers (fails instead with
``LH_TEST_PG_REQUIRED=1``, as .ci/run sets)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from licensing_service.adapters import pg_migrations

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TABLES = (
    "customers, audit_log, email_log, active_sessions, refund_requests, webhook_events,"
    " billing_state, license_changes, license_changes_pruned, rate_limit_failures"
)


def admin_url() -> str:
    return os.environ.get("LH_TEST_PG") or DEFAULT_ADMIN_URL


def redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(parts.password, "***")))


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def database_name(worker: str) -> str:
    # The pid too: two test runs on one machine (helpers, CI) must not share one.
    return f"lh_test_{worker}_{os.getpid()}"


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(admin_url(), autocommit=True, connect_timeout=3)


def reachable() -> str | None:
    """None when the admin URL answers; else why not (the skip reason)."""
    try:
        with _admin() as conn:
            conn.execute(b"SELECT 1")
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"no PostgreSQL at {redacted(admin_url())} ({first}); set LH_TEST_PG"
    return None


def create(name: str) -> str:
    """A fresh, migrated database; its URL."""
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    url = with_database(admin_url(), name)
    with psycopg.connect(url, autocommit=True) as conn:
        pg_migrations.migrate(conn, T0)
    return url


def drop(name: str) -> None:
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def truncate(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE".encode())


def session_database(worker: str) -> Iterator[str]:
    """For a session fixture: the worker's database, or a skip."""
    reason = reachable()
    if reason is not None:
        if os.environ.get("LH_TEST_PG_REQUIRED") == "1":  # .ci/run: the server must be there
            pytest.fail(reason)
        pytest.skip(reason)
    name = database_name(worker)
    url = create(name)
    try:
        yield url
    finally:
        drop(name)
