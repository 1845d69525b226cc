"""PostgreSQL for the rehearsals that run on it: where the server is, a database
of the run's own (created, then dropped), and what the judges read from it.

The admin URL: ``rehearse --pg URL``, else ``LH_REHEARSE_PG``, else
``LH_TEST_PG`` (what the tests and ``.ci/run`` use), else the local server our
machines run (``postgresql://postgres@127.0.0.1:5432/postgres``). Its user must
be allowed to create databases. Each run creates ``lh_rehearse_<name>_<hex>``
and drops it (``WITH (FORCE)``) at the end, whatever happened. No server
answering: the rehearsal is skipped with the reason (an ERROR instead with
``LH_TEST_PG_REQUIRED=1``, as ``.ci/run`` sets). A password in a URL is never
printed: :func:`redacted`.

This talks to PostgreSQL with psycopg directly, in SQL on the reference
service's documented schema (``licensing_service/adapters/migrations_pg/``),
not through the service's code: ``scenarios`` may import its contract only.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CONNECT_TIMEOUT_S = 3


def admin_url(given: str | None = None) -> str:
    return (
        given
        or os.environ.get("LH_REHEARSE_PG")
        or os.environ.get("LH_TEST_PG")
        or DEFAULT_ADMIN_URL
    )


def redacted(url: str) -> str:
    """The URL as a message may show it: its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def with_address(url: str, host: str, port: int) -> str:
    """The same URL (user, password, database) to another host and port: the
    fault proxy in front of the server."""
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    netloc = (f"{auth}@" if auth else "") + f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 5432


def required() -> bool:
    return os.environ.get("LH_TEST_PG_REQUIRED") == "1"


def unreachable(url: str) -> str | None:
    """None when the admin URL answers; else why not (the skip reason)."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[postgres]')"
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            conn.execute(b"SELECT 1")
    except psycopg.Error as exc:
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        return f"no PostgreSQL at {redacted(url)} ({first}); give --pg URL or set LH_REHEARSE_PG"
    return None


@contextlib.contextmanager
def scratch_database(url: str, name: str) -> Iterator[str]:
    """A new, empty database for one run (the service migrates it); its URL.
    Dropped at the end, connections and all."""
    import psycopg

    db = f"lh_rehearse_{name.replace('-', '_')}_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        conn.execute(f'CREATE DATABASE "{db}"'.encode())
    try:
        yield with_database(url, db)
    finally:
        with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'.encode())


def sessions_alive(url: str) -> tuple[int, int]:
    """(licenses with an active session, licenses with more than one): read
    straight from ``active_sessions``, not from any answer."""
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        row = conn.execute(
            b"SELECT COUNT(*), COUNT(*) FILTER (WHERE n > 1) FROM"
            b" (SELECT customer_id, COUNT(*) AS n FROM active_sessions"
            b"  WHERE status = 'active' GROUP BY customer_id) AS alive"
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)
