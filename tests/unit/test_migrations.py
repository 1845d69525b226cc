import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from licensing_service.adapters.sqlite_migrations import applied, available, migrate

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TABLES = {
    "customers",
    "audit_log",
    "email_log",
    "active_sessions",
    "refund_requests",
    "webhook_events",
    "schema_version",
}


def test_migrations_apply_once_in_order(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    versions = [m.version for m in available()]
    assert versions == sorted(versions) and versions[0] == 1
    assert migrate(conn, NOW) == versions
    assert migrate(conn, NOW) == []  # idempotent
    assert applied(conn) == set(versions)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables >= TABLES


def test_hot_paths_have_their_indexes(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    migrate(conn, NOW)

    def plan(sql: str) -> str:
        return " ".join(str(r[-1]) for r in conn.execute("EXPLAIN QUERY PLAN " + sql))

    assert "USING INDEX" in plan("SELECT * FROM customers WHERE email = 'a'")
    assert "USING INDEX" in plan(
        "SELECT * FROM active_sessions WHERE customer_id = 1 AND status = 'active'"
    )
    assert "USING INDEX" in plan("SELECT * FROM active_sessions WHERE session_id = 's'")
    assert "USING INDEX" in plan(
        "SELECT * FROM email_log WHERE delivery_status = 'pending' AND next_attempt_at <= 'x'"
    )
    assert "USING INDEX" in plan("SELECT * FROM webhook_events WHERE stripe_event_id = 'e'")
