"""psycopg 3 (sync, with psycopg_pool) against asyncpg on the PostgreSQL
store's hot-path statements, on a database of its own (made and dropped here):

* ``by_email``: one customer by email (a validation that misses the cache);
* ``flush``: the deferred validation flush, 64 stamps in one transaction;
* ``claim``: a webhook claim (BEGIN, the event's advisory lock, the claim
  read, the INSERT, COMMIT).

Each driver runs each statement ``--ops`` times per run, ``--runs`` runs;
the report is the median microseconds per operation, and the CPU steal and
load average seen. Pin it with taskset for steadier figures:

    taskset -c 1 .venv/bin/python benchmarks/pg_drivers.py [--ops 2000] [--runs 5]

Only the server at ``--admin-url`` (default: LH_TEST_PG or the local one) is
reached; every loop is bounded by its operation count.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psycopg
from common import cpu_times
from psycopg_pool import ConnectionPool

from fixtures.progress import Progress
from licensing_service.adapters import pg_migrations
from licensing_service.adapters.pg_repositories import WEBHOOK_EVENT_LOCK

CUSTOMERS = 10_000
BATCH = 64
STAMP = "2026-03-01 12:00:00.000000"
BY_EMAIL = (
    "SELECT id, email, name, unlock_token, subscription_status, subscription_id,"
    " stripe_session_id, machine_fingerprint, current_period_end, next_billing_date,"
    " last_validation, last_seen FROM customers WHERE email = {}"
)
FLUSH = "UPDATE customers SET last_validation = {}, last_seen = {} WHERE id = {}"
LOCK = "SELECT pg_advisory_xact_lock({}, hashtext({}))"
READ_CLAIM = (
    "SELECT processing_status, outcome, retry_count, lease_until, received_at"
    " FROM webhook_events WHERE stripe_event_id = {}"
)
INSERT_CLAIM = (
    "INSERT INTO webhook_events (stripe_event_id, event_type, processing_status,"
    " event_created, received_at, lease_until) VALUES ({}, 'invoice.paid', 'processing',"
    " {}, {}, {})"
)


def psycopg_sql(template: str, n: int) -> bytes:
    return template.format(*(["%s"] * n)).encode()


def asyncpg_sql(template: str, n: int) -> str:
    return template.format(*(f"${i + 1}" for i in range(n)))


def database_url(admin: str, name: str) -> str:
    return urlunsplit(urlsplit(admin)._replace(path="/" + name))


def prepare(admin: str, name: str) -> str:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    url = database_url(admin, name)
    with psycopg.connect(url, autocommit=True) as conn:
        from datetime import UTC, datetime

        pg_migrations.migrate(conn, datetime(2026, 3, 1, tzinfo=UTC))
        with conn.cursor() as cur:
            cur.executemany(
                b"INSERT INTO customers (email, unlock_token, created_at, updated_at)"
                b" VALUES (%s, %s, %s, %s)",
                [(f"b{i}@x.test", f"POSPAL-B{i}", STAMP, STAMP) for i in range(CUSTOMERS)],
            )
        conn.execute(b"ANALYZE")
    return url


def timed(ops: int, one: Callable[[int], None]) -> float:
    started = time.perf_counter()
    for i in range(ops):
        one(i)
    return (time.perf_counter() - started) / ops * 1e6


def run_psycopg(url: str, ops: int, run: int) -> dict[str, float]:
    pool: ConnectionPool[psycopg.Connection[tuple[object, ...]]] = ConnectionPool(
        url, min_size=1, max_size=2, kwargs={"autocommit": True}, open=True
    )
    by_email, flush = psycopg_sql(BY_EMAIL, 1), psycopg_sql(FLUSH, 3)
    lock, read, insert = (
        psycopg_sql(LOCK, 2),
        psycopg_sql(READ_CLAIM, 1),
        psycopg_sql(INSERT_CLAIM, 4),
    )

    def email(i: int) -> None:
        with pool.connection() as conn:
            conn.execute(by_email, (f"b{i % CUSTOMERS}@x.test",)).fetchone()

    def stamps(i: int) -> None:
        with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            base = (i * BATCH) % CUSTOMERS
            rows = [(STAMP, STAMP, 1 + (base + k) % CUSTOMERS) for k in range(BATCH)]
            cur.executemany(flush, rows)

    def claim(i: int) -> None:
        event = f"evt_ps_{run}_{i}"
        with pool.connection() as conn, conn.transaction():
            conn.execute(lock, (WEBHOOK_EVENT_LOCK, event))
            conn.execute(read, (event,)).fetchone()
            conn.execute(insert, (event, STAMP, STAMP, STAMP))

    try:
        return {
            "by_email": timed(ops, email),
            "flush": timed(max(1, ops // 10), stamps),
            "claim": timed(ops, claim),
        }
    finally:
        pool.close()


def run_asyncpg(url: str, ops: int, run: int) -> dict[str, float]:
    async def main() -> dict[str, float]:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        by_email, flush = asyncpg_sql(BY_EMAIL, 1), asyncpg_sql(FLUSH, 3)
        lock, read = asyncpg_sql(LOCK, 2), asyncpg_sql(READ_CLAIM, 1)
        insert = asyncpg_sql(INSERT_CLAIM, 4)

        async def timed_async(n: int, one: Callable[[int], object]) -> float:
            started = time.perf_counter()
            for i in range(n):
                await one(i)  # type: ignore[misc]
            return (time.perf_counter() - started) / n * 1e6

        async def email(i: int) -> None:
            async with pool.acquire() as conn:
                await conn.fetchrow(by_email, f"b{i % CUSTOMERS}@x.test")

        async def stamps(i: int) -> None:
            base = (i * BATCH) % CUSTOMERS
            async with pool.acquire() as conn, conn.transaction():
                rows = [(STAMP, STAMP, 1 + (base + k) % CUSTOMERS) for k in range(BATCH)]
                await conn.executemany(flush, rows)

        async def claim(i: int) -> None:
            event = f"evt_ap_{run}_{i}"
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(lock, WEBHOOK_EVENT_LOCK, event)
                await conn.fetchrow(read, event)
                await conn.execute(insert, event, STAMP, STAMP, STAMP)

        try:
            return {
                "by_email": await timed_async(ops, email),
                "flush": await timed_async(max(1, ops // 10), stamps),
                "claim": await timed_async(ops, claim),
            }
        finally:
            await pool.close()

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("LH_TEST_PG") or "postgresql://postgres@127.0.0.1:5432/postgres",
    )
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    name = f"lh_bench_drivers_{os.getpid()}"
    url = prepare(args.admin_url, name)
    drivers = {"psycopg": run_psycopg, "asyncpg": run_asyncpg}
    figures: dict[str, dict[str, list[float]]] = {d: {} for d in drivers}
    steal_before = cpu_times()
    try:
        with Progress("driver runs", args.runs * len(drivers), unit="runs") as progress:
            for run in range(args.runs):
                for n, (driver, bench) in enumerate(drivers.items()):
                    for statement, micros in bench(url, args.ops, run).items():
                        figures[driver].setdefault(statement, []).append(micros)
                    progress.update(run * len(drivers) + n + 1)
    finally:
        with psycopg.connect(args.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
    total_after, steal_after = cpu_times()
    total_before, stolen_before = steal_before
    steal = (steal_after - stolen_before) / max(1, total_after - total_before) * 100
    print(f"median us/op over {args.runs} runs of {args.ops} ops (flush: {BATCH} stamps/op)")
    for driver, by_statement in figures.items():
        cells = ", ".join(f"{s} {statistics.median(v):.0f}" for s, v in by_statement.items())
        print(f"  {driver:8s} {cells}")
    print(f"cpu steal {steal:.1f}%, loadavg {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
