"""Versioned, forward-only schema migrations for PostgreSQL (``migrations_pg/``,
the same versions as SQLite's in PostgreSQL's dialect).

All of them run in ONE transaction that first takes the advisory lock
MIGRATE_LOCK (``pg_advisory_xact_lock``, released at commit or rollback):
N replicas starting at the same moment queue on it, the first applies what is
missing, and the others then find every version recorded and apply nothing.
DDL is transactional in PostgreSQL, so a failed migration leaves nothing half
done.
"""

from __future__ import annotations

from datetime import datetime

import psycopg

from licensing_service.adapters.sqlite_migrations import available
from licensing_service.adapters.sqltime import to_db

# Advisory lock keys of this service (one int8 space per database): 7_300_000 +.
MIGRATE_LOCK = 7_300_000
PACKAGE = "licensing_service.adapters.migrations_pg"


def migrate(
    conn: psycopg.Connection[tuple[object, ...]], now: datetime, *, lock: bool = True
) -> list[int]:
    """Apply what is missing; return the versions applied by this call.
    ``lock=False`` exists only so a test can show what the lock prevents."""
    done: list[int] = []
    with conn.transaction():
        if lock:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        applied = {row[0] for row in conn.execute("SELECT version FROM schema_version")}
        for migration in available(PACKAGE):
            if migration.version in applied:
                continue
            # No parameters: psycopg sends the file as one simple query (functions included).
            conn.execute(migration.sql.encode())
            conn.execute(
                "INSERT INTO schema_version (version, description, applied_at) VALUES (%s, %s, %s)",
                (migration.version, migration.description, to_db(now)),
            )
            done.append(migration.version)
    return done
