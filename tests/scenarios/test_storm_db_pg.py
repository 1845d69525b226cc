"""The storm's database judges on PostgreSQL (``scenarios.storm_db`` reads it
with psycopg and SQL on the documented schema, as it reads a SQLite file): after
a real storm against the service on PostgreSQL nothing is found, and rows then
removed or doubled in the database are each found. Skips with "no PostgreSQL at
..." where no server answers (fails instead under LH_TEST_PG_REQUIRED=1)."""

from __future__ import annotations

from collections.abc import Callable

import psycopg

from scenarios.storm import StormConfig, run_storm
from scenarios.storm_db import read_stored
from scenarios.storm_judge import judge
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.live import LiveServer

STORES = ("postgres",)
SMALL = StormConfig(events=300, storm_seconds=300, concurrency=8, outage_seconds=0)


def test_the_database_judges_read_postgresql_and_find_rows_removed_or_doubled(
    make_server: Callable[..., LiveServer], pg_url: str
) -> None:
    server = make_server()
    url = str(server.parts.settings.db)
    assert url.startswith("postgresql://")
    result = run_storm(server.url, [TEST_WEBHOOK_SECRET], SMALL, db=url)
    assert result.passed, result.examples
    oracle, events = result.stream.oracle, result.stream.events
    stored = read_stored(url, oracle)
    # Read, not skipped: every license, its audit trail and its emails are there.
    assert len(stored.licenses) == len(oracle)
    assert stored.audit and stored.outbox and stored.completed

    def judged() -> list[str]:
        return judge(result.attempts_log, events, oracle, read_stored(url, oracle)).all()

    assert judged() == []
    with psycopg.connect(url, autocommit=True) as conn:
        last = conn.execute(
            b"SELECT max(id) FROM audit_log WHERE action = 'status_change' AND customer_id IN"
            b" (SELECT customer_id FROM audit_log WHERE action = 'status_change'"
            b"  GROUP BY customer_id HAVING count(*) >= 2)"
        ).fetchone()
        assert last is not None and last[0] is not None
        conn.execute(b"DELETE FROM audit_log WHERE id = %s", (last[0],))
        conn.execute(b"DELETE FROM email_log WHERE id = (SELECT min(id) FROM email_log)")
        conn.execute(
            b"INSERT INTO audit_log (customer_id, action, outcome, created_at)"
            b" SELECT customer_id, action, outcome, created_at FROM audit_log"
            b" WHERE action = 'license_created' LIMIT 1"
        )
        conn.execute(b"DELETE FROM webhook_events WHERE id = (SELECT min(id) FROM webhook_events)")
    problems = judged()
    assert any("acknowledged 2xx but not completed" in p for p in problems)
    assert any("2 license_created audit rows" in p for p in problems)
    assert any("last status_change says" in p for p in problems)
    assert any("0 in the outbox, expected 1" in p for p in problems)
