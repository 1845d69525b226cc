"""The ``license_changes`` feed, read and pruned the same way by both SQL stores.

The feed tells each process which licenses another process changed
(each store reads it in its revalidation step); a reader keeps a cursor, the last ``seq``
it has read. Without pruning the table grows by a row or two for every
license change, for ever.

THE RETENTION BOUND. The audit flusher (``LicensingService.prune_license_changes``,
at most every ``LICENSE_CHANGES_PRUNE_EVERY`` of the service's clock, ten
minutes) deletes the oldest rows, every one up to the newest written more than
``LICENSE_CHANGES_RETENTION`` (a day) ago, and records the highest ``seq`` it
deleted in ``license_changes_pruned.through_seq``.
Retention is a day, where readers look every 50 ms (PostgreSQL's
invalidation bound) or at their next commit by another process (SQLite): a
reader is that far behind only when its process took no request for hours.
Such a reader cannot tell which changes it missed, so it is told
``None``: drop everything held about every license (its caches fill again
from the database). The check is in the same statement as the read, so no
prune can fall between them; and it does not depend on any clock: a reader
whose cursor is below ``through_seq`` drops everything, whatever the rows'
``changed_at`` say.
"""

from __future__ import annotations

from datetime import datetime

from licensing_service.adapters.sql import Sql
from licensing_service.adapters.sqltime import to_db

# The changes after a cursor, and the prune mark if it passed the cursor (its
# row has no email). One statement: one snapshot on PostgreSQL's autocommit.
_SINCE = (
    "SELECT seq, email FROM license_changes WHERE seq > ?"
    " UNION ALL SELECT through_seq, NULL FROM license_changes_pruned WHERE through_seq > ?"
    " ORDER BY seq"
)


def latest(sql: Sql) -> int:
    """Where a new reader starts: after every change, and after every prune."""
    row = sql.execute(
        "SELECT (SELECT COALESCE(MAX(seq), 0) FROM license_changes),"
        " (SELECT through_seq FROM license_changes_pruned)"
    ).fetchone()
    return max(int(row[0]), int(row[1] or 0))


def since(sql: Sql, cursor: int) -> tuple[int, list[str] | None]:
    """The new cursor, and the emails changed after ``cursor``; None for the
    emails when rows after ``cursor`` may have been pruned unread."""
    rows = sql.execute(_SINCE, (cursor, cursor)).fetchall()
    if not rows:
        return cursor, []
    new_cursor = max(cursor, *(int(row[0]) for row in rows))
    if any(row[1] is None for row in rows):
        return new_cursor, None
    return new_cursor, [str(row[1]) for row in rows]


def prune(sql: Sql, before: datetime) -> int:
    """Delete every change up to the newest one written before ``before``
    (in a transaction); returns the rows deleted."""
    row = sql.execute(
        "SELECT MAX(seq) FROM license_changes WHERE changed_at < ?", (to_db(before),)
    ).fetchone()
    through = row[0] if row else None
    if through is None:
        return 0
    deleted = sql.execute("DELETE FROM license_changes WHERE seq <= ?", (through,)).rowcount
    sql.execute(
        "INSERT INTO license_changes_pruned (id, through_seq) VALUES (1, ?)"
        " ON CONFLICT (id) DO UPDATE SET through_seq = excluded.through_seq"
        " WHERE license_changes_pruned.through_seq < excluded.through_seq",
        (through,),
    )
    return int(deleted)
