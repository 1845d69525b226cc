"""``licensing-harness rehearse``: outage rehearsals, with a live timeline and a report.

Imports only the standard library at its top, as every part's CLI: the command
loads httpx, rich and matplotlib when it runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REHEARSALS = Path(__file__).resolve().parent / "rehearsals"


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rehearse = sub.add_parser(
        "rehearse",
        help="outage rehearsals: exit 0 pass, 1 an expectation failed, 2 could not judge",
        description=(
            "Rehearse outages against the reference service (started for each scenario:"
            " temporary SQLite, --test-clock) or a --target. SCENARIO is a shipped"
            " name (see --list) or a path to a rehearsal file."
        ),
    )
    rehearse.add_argument("scenarios", nargs="*", metavar="SCENARIO")
    rehearse.add_argument("--all", action="store_true", help="every shipped rehearsal")
    rehearse.add_argument(
        "--fast", action="store_true", help="the CI variants: fewer users, shorter waits"
    )
    rehearse.add_argument(
        "--list", action="store_true", help="list the shipped rehearsals and exit"
    )
    rehearse.add_argument("--target", help="an external deployment's base URL (default: start one)")
    rehearse.add_argument(
        "--report",
        type=Path,
        default=Path("var/rehearse"),
        help="report folder (default var/rehearse)",
    )
    rehearse.add_argument(
        "--pg",
        metavar="URL",
        help=(
            "PostgreSQL admin URL for the rehearsals on it (default $LH_REHEARSE_PG, else"
            " $LH_TEST_PG, else postgresql://postgres@127.0.0.1:5432/postgres); each run"
            " creates a database of its own and drops it; no server: those are skipped"
        ),
    )
    rehearse.add_argument(
        "--webhook-secret",
        action="append",
        default=[],
        help="the target's webhook secret (default $STRIPE_WEBHOOK_SECRET)",
    )
    rehearse.set_defaults(run=_rehearse)


def shipped() -> dict[str, Path]:
    return {p.stem: p for p in sorted(REHEARSALS.glob("*.toml"))}


def _rehearse(args: argparse.Namespace) -> int:
    if args.list:
        from scenarios.model import load_rehearsal

        for name, path in shipped().items():
            reh = load_rehearsal(path)
            print(
                f"{name:20} needs {', '.join(sorted(reh.needs())) or 'nothing'}:"
                f" {reh.scenario.description}"
            )
        return 0
    paths = _chosen(args)
    if isinstance(paths, str):
        print(f"rehearse: {paths}", file=sys.stderr)
        return 2
    if (
        args.target is not None
        and not _loopback(args.target)
        and not os.environ.get("LH_GATE_ALLOW_REMOTE")
    ):
        print(
            "rehearse: --target is not a loopback address; set LH_GATE_ALLOW_REMOTE=1 to go on",
            file=sys.stderr,
        )
        return 2
    from loadtests.harness.errors import ConfigError
    from scenarios.model import load_rehearsal
    from scenarios.report import overall_exit, print_verdicts, write_report
    from scenarios.runner import RunOptions, run_scenario

    rehearsals = []
    problems = []
    for path in paths:
        try:
            rehearsals.append(load_rehearsal(path))
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        print("rehearse: rehearsal file refused:", file=sys.stderr)
        for problem in problems:
            for line in problem.splitlines():
                print(f"  {line}", file=sys.stderr)
        return 2
    options = RunOptions(
        target=args.target,
        fast=args.fast,
        webhook_secrets=tuple(args.webhook_secret),
        pg=args.pg,
    )
    results = []
    for reh in rehearsals:
        try:
            result = run_scenario(reh, options)
        except KeyboardInterrupt:
            # Before the method began (setting up): nothing to roll back.
            print(f"rehearse: {reh.name}: interrupted while setting up", file=sys.stderr)
            break
        results.append(result)
        print_verdicts(result, sys.stdout)
        if result.interrupted:
            break
    written = write_report(args.report, results)
    code = overall_exit(results)
    print(
        f"rehearse: {len(results)} scenario(s); report in {args.report}"
        f" ({len(written)} files); exit code {code}"
    )
    return code


def _chosen(args: argparse.Namespace) -> list[Path] | str:
    known = shipped()
    if args.all:
        if args.scenarios:
            return "give scenarios or --all, not both"
        return list(known.values())
    if not args.scenarios:
        return f"name a scenario or give --all; shipped: {', '.join(known)}"
    paths = []
    for name in args.scenarios:
        if name in known:
            paths.append(known[name])
        elif Path(name).is_file():
            paths.append(Path(name))
        else:
            return f"no scenario {name!r}: not a shipped one ({', '.join(known)}) nor a file"
    return paths


def _loopback(url: str) -> bool:
    from urllib.parse import urlsplit

    from fixtures.target import is_loopback

    host = urlsplit(url).hostname
    return host is not None and is_loopback(host)
