"""The service on PostgreSQL end to end: a live server on ``LH_DB=postgresql://``
(the worker's test database), driven over HTTP like the SQLite one."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from licensing_service.config import Settings
from licensing_service.contract import routes
from licensing_service.db_target import PostgresTarget
from tests.conftest import add_customer
from tests.conftest import test_settings as settings_for
from tests.live import LiveServer


@pytest.fixture
def pg_server(pg_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(settings_for(tmp_path, db=pg_url)).start()
    yield live
    live.stop()


def body(email: str, token: str, **extra: object) -> dict[str, object]:
    return {"operation": "validate", "credentials": {"email": email, "token": token}, **extra}


def test_the_url_selects_postgresql(pg_url: str, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, db=pg_url)
    assert isinstance(settings.db, PostgresTarget)
    # Harness-mode files that sat beside the SQLite file go under var/ instead.
    assert settings.sink_path() == Path("var") / "emails.jsonl"


def test_validations_and_sessions_on_postgresql(pg_server: LiveServer) -> None:
    c = add_customer(pg_server)
    with httpx.Client(base_url=pg_server.url, timeout=10) as http:
        ok = http.post(routes.VALIDATE_UNIFIED, json=body(c.email, c.token))
        assert ok.status_code == 200, ok.text
        wrong = http.post(routes.VALIDATE_UNIFIED, json=body(c.email, "POSPAL-XXXX-XXXX-XXXX"))
        assert wrong.status_code == 401
        creds = {"email": c.email, "token": c.token, "sessionId": "pg-s1"}
        start = {
            "operation": "session",
            "action": "start",
            "credentials": creds,
            "device": {"machineFingerprint": "till-pg"},
        }
        assert http.post(routes.VALIDATE_UNIFIED, json=start).status_code == 200
        second = dict(start, credentials=dict(creds, sessionId="pg-s2"))
        assert http.post(routes.VALIDATE_UNIFIED, json=second).status_code == 409
        health = http.get(routes.HEALTH)
        assert health.status_code == 200


def test_db_lock_blocks_writes_and_the_breaker_sees_it(pg_url: str, tmp_path: Path) -> None:
    live = LiveServer(settings_for(tmp_path, db=pg_url, db_timeout_ms=300)).start()
    try:
        c = add_customer(live)
        with httpx.Client(base_url=live.url, timeout=10) as http:
            faults = http.post("/__harness__/faults", json={"db": {"lock": True}})
            assert faults.status_code == 200, faults.text
            creds = {"email": c.email, "token": c.token, "sessionId": "pg-lock"}
            start = {
                "operation": "session",
                "action": "start",
                "credentials": creds,
                "device": {"machineFingerprint": "till-pg"},
            }
            blocked = http.post(routes.VALIDATE_UNIFIED, json=start)
            assert blocked.status_code == 503, blocked.text  # a write waited lock_timeout
            assert http.post("/__harness__/faults", json={"clear": True}).status_code == 200
    finally:
        live.stop()


def test_a_bad_url_is_refused_naming_lh_db() -> None:
    with pytest.raises(ValueError, match="LH_DB"):
        Settings(db="mysql://127.0.0.1/licensing")
    run = subprocess.run(
        [sys.executable, "-m", "licensing_service", "serve", "--db", "mysql://h/x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert "LH_DB" in run.stderr and "Traceback" not in run.stderr


def test_no_server_is_storage_unavailable_not_a_crash() -> None:
    from licensing_service.adapters.pg_store import pool
    from licensing_service.service.errors import StorageUnavailable

    with pytest.raises(StorageUnavailable):
        pool("postgresql://postgres@127.0.0.1:1/nothing", timeout_ms=200)


def terminate_backends(url: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as admin:
        rows = admin.execute(
            b"SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            b" WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


def test_a_lost_connection_is_storage_unavailable_then_the_pool_reconnects(pg_url: str) -> None:
    from licensing_service.adapters.pg_store import PgStore, pool
    from licensing_service.service.errors import StorageUnavailable

    store = PgStore(pool(pg_url, max_size=1))
    try:
        store.ping()
        assert terminate_backends(pg_url) >= 1  # PostgreSQL restarted, as far as we can tell
        with pytest.raises(StorageUnavailable):
            store.ping()  # the pooled connection was dead: the breaker's input
        with store.autocommit() as uow:  # a unit of work waits for the pool's new connection
            uow.ping()  # the pool replaced it: answers again, nothing to restart
    finally:
        store.close()


def test_a_lost_connection_is_never_a_500(pg_server: LiveServer, pg_url: str) -> None:
    c = add_customer(pg_server)
    creds = {"email": c.email, "token": c.token, "sessionId": "pg-lost"}
    start = {
        "operation": "session",
        "action": "start",
        "credentials": creds,
        "device": {"machineFingerprint": "till-pg"},
    }
    with httpx.Client(base_url=pg_server.url, timeout=10) as http:
        terminate_backends(pg_url)
        first = http.post(routes.VALIDATE_UNIFIED, json=start)
        assert first.status_code == 503, first.text  # refused as unavailable, not crashed
        again = http.post(routes.VALIDATE_UNIFIED, json=start)
        assert again.status_code == 200, again.text  # reconnected


def test_seed_writes_into_postgresql(pg_url: str, tmp_path: Path) -> None:
    import psycopg

    out = tmp_path / "creds.jsonl"
    seed = ["seed", "--db", pg_url, "--customers", "3", "--out", str(out)]
    run = subprocess.run(
        [sys.executable, "-m", "licensing_service", *seed],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(b"SELECT count(*) FROM customers").fetchone()
    assert row is not None and row[0] == 3
    assert len(out.read_text().splitlines()) == 3
