"""SQLite side of the audit log (``audit_log``): rows are only ever added."""

from __future__ import annotations

import json
from collections.abc import Sequence

from licensing_service.adapters.sql import Sql
from licensing_service.adapters.sqltime import to_db
from licensing_service.service.ports import AuditEntry


class SqliteAudit:
    def __init__(self, conn: Sql) -> None:
        self._c = conn

    def record(self, entries: Sequence[AuditEntry]) -> None:
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
