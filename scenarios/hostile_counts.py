"""What a hostile-input run compares: the service's own request counts by
status (``/metrics``) and a snapshot of its licensing state (the SQLite file)."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections import Counter
from pathlib import Path

import httpx

from licensing_service.contract import routes

_REQUESTS = re.compile(
    r'^licensing_http_requests_total\{method="([^"]*)",route="([^"]*)",status="(\d+)"\} (\S+)$',
    re.MULTILINE,
)
# SQLite's own bookkeeping, not the service's state.
_INTERNAL = ("sqlite_%",)


def status_counts(url: str) -> Counter[int]:
    """Requests the service has answered since it started, by status."""
    text = httpx.get(url + routes.METRICS, timeout=10).text
    counts: Counter[int] = Counter()
    for _method, _route, status, value in _REQUESTS.findall(text):
        counts[int(status)] += int(float(value))
    return counts


def answered_since(before: Counter[int], after: Counter[int]) -> Counter[int]:
    """Answers between two ``status_counts`` (the metrics scrape itself excluded)."""
    diff = after.copy()
    diff.subtract(before)
    diff[200] -= 1  # the scrape that read ``after`` was counted before it answered
    return +diff


def licensing_state(db: Path) -> dict[str, tuple[int, str]]:
    """Each table of the service's database: ``(rows, sha256 of every row)``.
    Read-only; the rows are hashed in a fixed order, so equal state gives
    equal snapshots whatever the file's page layout."""
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        tables = [
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE ?",
                _INTERNAL,
            )
        ]
        state = {}
        for table in sorted(tables):
            rows = connection.execute(f'SELECT * FROM "{table}"').fetchall()
            digest = hashlib.sha256(repr(sorted(map(repr, rows))).encode()).hexdigest()
            state[table] = (len(rows), digest)
        return state
    finally:
        connection.close()


def changed_tables(
    before: dict[str, tuple[int, str]], after: dict[str, tuple[int, str]]
) -> dict[str, tuple[int, int]]:
    """Tables whose rows differ: ``{table: (rows before, rows after)}``."""
    return {
        table: (before.get(table, (0, ""))[0], after.get(table, (0, ""))[0])
        for table in sorted(set(before) | set(after))
        if before.get(table) != after.get(table)
    }
