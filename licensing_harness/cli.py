"""``licensing-harness``: the commands of every part of the project, in one.

Each part keeps its commands in its own CLI module (``add_commands(sub)``),
which imports only the standard library and the part's light modules at its
top: its commands import their libraries when they run. So ``serve`` never
loads Faker, aiohttp, Locust or matplotlib, which cost the service ~13% of its
throughput when it did (``tests/contract/test_boundaries.py`` checks it).

A part needs its extra installed (``pip install 'licensing-harness[harness]'``);
without it, its commands are refused in one line that names the extra.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass

# The modules each extra installs (pyproject.toml's optional-dependencies), by
# the names they are imported under.
FIXTURES = ("faker", "aiohttp", "rich")
HARNESS = (*FIXTURES, "locust", "hdrh", "matplotlib", "respx")


@dataclass(frozen=True, slots=True)
class Part:
    cli: str  # the module with the part's add_commands(sub)
    extra: str | None = None  # None: in the base install
    needs: tuple[str, ...] = ()

    def missing(self) -> list[str]:
        return [name for name in self.needs if importlib.util.find_spec(name) is None]


PARTS = (
    Part("licensing_service.cli"),  # serve, seed
    Part("fixtures.stripe.cli", "fixtures", FIXTURES),  # stripe generate | send | replay
    Part("loadtests.harness.cli", "harness", HARNESS),  # gate
    Part("scenarios.cli", "harness", HARNESS),  # rehearse
    Part("licensing_harness.replicas_cli", "harness", HARNESS),  # replicas
)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    part: Part = args.part
    missing = part.missing()
    if missing:
        print(
            f"licensing-harness {args.command}: needs the {part.extra} extra"
            f" (missing {', '.join(missing)}): pip install 'licensing-harness[{part.extra}]'",
            file=sys.stderr,
        )
        return 2
    return int(args.run(args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="licensing-harness")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    for part in PARTS:
        before = set(sub.choices)
        importlib.import_module(part.cli).add_commands(sub)
        for command in sub.choices.keys() - before:
            sub.choices[command].set_defaults(part=part, command=command)
    return parser
