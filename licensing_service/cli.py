"""``licensing-service serve | seed``: the reference service's own commands.

``licensing-harness`` (``licensing_harness.cli``) offers the same commands beside
the other parts'; this module knows none of them, so a service-only install has
a command too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from licensing_service import logs
from licensing_service.config import ConfigError, Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="licensing-service")
    add_commands(parser.add_subparsers(required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    return int(args.run(args))


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser("serve", help="run the reference licensing service")
    serve.add_argument("--host", help="bind address (LH_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (LH_PORT, default 8787)")
    serve.add_argument(
        "--db",
        help="SQLite file, sqlite:///path or postgresql://... (LH_DB, default var/licensing.db)",
    )
    serve.add_argument("--workers", type=int, help="worker processes (LH_WORKERS, default 1)")
    serve.add_argument(
        "--test-clock",
        action="store_true",
        default=None,
        help="add /__harness__/ routes to move time and inject faults (LH_TEST_CLOCK)",
    )
    serve.set_defaults(run=_configured(_serve, serve.prog))

    seed = sub.add_parser("seed", help="write customers straight to the database for load tests")
    seed.add_argument("--db", required=True, help="SQLite file or postgresql://... URL")
    seed.add_argument("--customers", type=_positive, required=True)
    seed.add_argument(
        "--inactive-ratio",
        type=_ratio,
        default=0.0,
        help="share of customers made inactive: exactly round(customers * ratio)",
    )
    seed.add_argument("--out", type=Path, required=True, help="JSON lines, one per customer")
    seed.add_argument("--seed", type=int, default=None, help="makes statuses reproducible")
    seed.set_defaults(run=_configured(_seed, seed.prog))


def _configured(
    command: Callable[[argparse.Namespace], int], prog: str
) -> Callable[[argparse.Namespace], int]:
    """Settings the service refuses become one line and exit 2, not a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (ConfigError, ValidationError) as exc:
            print(f"{prog}: configuration refused: {_reason(exc)}", file=sys.stderr)
            return 2

    return run


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)
        )
    return str(exc)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _ratio(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _overrides(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from licensing_service.adapters.clock import SystemClock
    from licensing_service.api.server import uvicorn_options
    from licensing_service.bootstrap import create_app, open_store, reset_test_clock

    settings = Settings(**_overrides(args, ("host", "port", "db", "workers", "test_clock")))
    logs.configure(settings.log_level)
    if settings.test_clock:
        reset_test_clock(settings.db)  # a restart starts at real time
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        **uvicorn_options(settings),
    }
    if settings.workers == 1:
        uvicorn.run(create_app(settings), **common)
        return 0
    # Worker processes rebuild the settings from the environment.
    os.environ.update(_as_env(settings))
    open_store(settings, SystemClock()).close()  # migrate once, before the workers
    uvicorn.run(
        "licensing_service.bootstrap:create_app_from_env",
        factory=True,
        workers=settings.workers,
        **common,
    )
    return 0


def _as_env(settings: Settings) -> dict[str, str]:
    env = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        # Secrets came from the environment, which the workers inherit; a
        # SecretStr would only print as asterisks.
        if value is not None and not isinstance(value, SecretStr):
            env[f"LH_{name.upper()}"] = (
                str(value).lower() if isinstance(value, bool) else str(value)
            )
    return env


def _seed(args: argparse.Namespace) -> int:
    from licensing_service.adapters.clock import SystemClock
    from licensing_service.bootstrap import open_store
    from licensing_service.domain.credentials import new_unlock_token
    from licensing_service.service.ports import NewCustomer

    settings = Settings(db=args.db)
    clock = SystemClock()
    now = clock.now()
    store = open_store(settings, clock)
    rng = random.Random(args.seed)  # noqa: S311 - picks statuses; tokens use a CSPRNG
    batch = f"{rng.getrandbits(32):08x}"
    inactive = inactive_indices(rng, args.customers, args.inactive_ratio)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with args.out.open("w", encoding="utf-8") as out, store.transaction() as uow:
        for i in range(args.customers):
            customer = NewCustomer(
                email=f"seed-{batch}-{i:07d}@example.test",
                name=f"Seeded Till {i}",
                unlock_token=new_unlock_token(),
                subscription_status="inactive" if i in inactive else "active",
                subscription_id=f"sub_seed{batch}{i:07d}",
                current_period_start=now - timedelta(days=1),
                current_period_end=now + timedelta(days=30),
                next_billing_date=now + timedelta(days=30),
            )
            customer_id = uow.licenses.insert(customer, now)
            out.write(
                json.dumps(
                    {
                        "email": customer.email,
                        "token": customer.unlock_token,
                        "customer_id": customer_id,
                        "status": customer.subscription_status,
                    }
                )
                + "\n"
            )
            written += 1
            _progress(written, args.customers)
    store.close()
    where = settings.db.describe()
    print(f"seeded {written} customers into {where}; credentials in {args.out}", file=sys.stderr)
    return 0


def inactive_indices(rng: random.Random, customers: int, ratio: float) -> set[int]:
    """Exactly ``round(customers * ratio)`` of the indices, drawn at random, so a
    load test of 12 customers at 0.5 drives 6 of each (a per-customer coin toss
    could give 3 or 9)."""
    return set(rng.sample(range(customers), round(customers * ratio)))


def _progress(done: int, total: int) -> None:
    """A bar redrawn in place on a terminal; elsewhere (a CI log) a plain line
    per fifth, never a carriage return. The service keeps this to itself rather
    than take on the harness's progress library for one command."""
    terminal = sys.stderr.isatty()
    step = max(1, total // (20 if terminal else 5))
    if done % step and done != total:
        return
    if not terminal:
        print(f"seeding: {done}/{total}", file=sys.stderr, flush=True)
        return
    width = 30
    filled = width * done // total
    bar = "#" * filled + "." * (width - filled)
    end = "" if done < total else "\n"
    print(f"\rseeding [{bar}] {done}/{total}", end=end, file=sys.stderr, flush=True)
