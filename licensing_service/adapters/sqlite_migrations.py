"""Versioned, forward-only schema migrations for SQLite.

Each ``migrations/NNNN_description.sql`` runs once, inside a transaction,
and is recorded in ``schema_version``. Running them again changes nothing.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from importlib import resources

from licensing_service.adapters.sqltime import to_db

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    sql: str


def available(package: str = "licensing_service.adapters.migrations") -> list[Migration]:
    """The migrations of one dialect (``pg_migrations`` holds PostgreSQL's)."""
    found = []
    for entry in resources.files(package).iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(
                Migration(int(match[1]), match[2].replace("_", " "), entry.read_text("utf-8"))
            )
    return sorted(found, key=lambda m: m.version)


def applied(conn: sqlite3.Connection) -> set[int]:
    _ensure_version_table(conn)
    return {row[0] for row in conn.execute("SELECT version FROM schema_version")}


def migrate(conn: sqlite3.Connection, now: datetime) -> list[int]:
    """Apply what is missing; return the versions applied by this call."""
    _ensure_version_table(conn)
    done: list[int] = []
    for migration in available():
        # IMMEDIATE so two processes starting together cannot both apply it.
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT 1 FROM schema_version WHERE version = ?", (migration.version,)
            ).fetchone()
            if row is None:
                for statement in _statements(migration.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, description, applied_at)"
                    " VALUES (?, ?, ?)",
                    (migration.version, migration.description, to_db(now)),
                )
                done.append(migration.version)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return done


def _ensure_version_table(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )


def _statements(sql: str) -> list[str]:
    # executescript() would commit our transaction; split instead. Migrations
    # hold no semicolons inside literals or triggers.
    without_comments = re.sub(r"--[^\n]*", "", sql)
    return [s.strip() for s in without_comments.split(";") if s.strip()]
