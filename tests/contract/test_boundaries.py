"""The parts import one another one way only, and no module imports itself back.

Read from the source with ``ast``, every ``import`` anywhere in a file counts:
those inside functions (lazy) and under ``if TYPE_CHECKING:`` too, since a lazy
import is as much a dependency as a top-level one; it only runs later.

Allowed directions (an arrow: "may import"):

    licensing_harness -> anything
    scenarios  -> loadtests, fixtures, licensing_service.contract
    loadtests  -> fixtures, licensing_service.contract
    fixtures   -> licensing_service.contract
    licensing_service -> none of the others

The no-cycle rule is over modules (a file each), lazy imports included. An edge
goes to the module an import names (``from a.b import c`` names ``a.b.c`` when
that is a module, else ``a.b``); the package ``__init__`` files Python runs on
the way are not edges, so a package re-exporting its own modules is no cycle.
"""

from __future__ import annotations

import ast
import graphlib
import itertools
import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("licensing_service", "fixtures", "loadtests", "scenarios", "licensing_harness")
SERVICE = "licensing_service"
CONTRACT = "licensing_service.contract"
# What each part must not import; the parts in CONTRACT_ONLY see only the
# service's contract of it.
FORBIDDEN: Mapping[str, frozenset[str]] = {
    "licensing_service": frozenset({"fixtures", "loadtests", "scenarios", "licensing_harness"}),
    "fixtures": frozenset({"loadtests", "scenarios", "licensing_harness"}),
    "loadtests": frozenset({"scenarios", "licensing_harness"}),
    "scenarios": frozenset({"licensing_harness"}),
    "licensing_harness": frozenset(),
}
CONTRACT_ONLY = frozenset({"fixtures", "loadtests", "scenarios"})
Cycles = tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True)
class Import:
    importer: str  # module name
    path: Path
    line: int
    target: str  # the module (or package) the import names

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} imports {self.target}"


# --------------------------------------------------------------- the checker


def modules(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(root: Path, packages: tuple[str, ...] = PACKAGES) -> Iterator[Import]:
    known = modules(root, packages)
    for name, path in known.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            for target in _targets(node, name, is_package, known):
                yield Import(name, path.relative_to(root), node.lineno, target)


def _targets(node: ast.AST, module: str, is_package: bool, known: Mapping[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = resolve(module, is_package, node.level, node.module)
    # `from a import b` names the module a.b when there is one, else a's attribute b.
    return [
        f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names
    ]


def resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of ``from <level dots><name> import ...`` in ``module``."""
    if level == 0:
        return name or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    anchor = package[: len(package) - (level - 1)]
    return ".".join([*anchor, *([name] if name else [])])


def violations(found: Iterator[Import]) -> list[str]:
    return [str(i) for i in found if not allowed(i.importer, i.target)]


def allowed(importer: str, target: str) -> bool:
    part, to = importer.split(".")[0], target.split(".")[0]
    if to in FORBIDDEN.get(part, frozenset()):
        return False
    if part in CONTRACT_ONLY and to == SERVICE:
        return target == CONTRACT or target.startswith(CONTRACT + ".")
    return True


def graph(found: Iterator[Import], allowed_cycles: Cycles = ()) -> dict[str, set[str]]:
    """First-party module -> the first-party modules it imports, without the
    edges of the allowed cycles."""
    skipped = {edge for c in allowed_cycles for edge in itertools.pairwise((*c, c[0]))}
    edges: dict[str, set[str]] = {}
    for i in found:
        edges.setdefault(i.importer, set())
        first_party = i.target.split(".")[0] in PACKAGES and i.target != i.importer
        if first_party and (i.importer, i.target) not in skipped:
            edges[i.importer].add(i.target)
    return edges


def cycles(edges: dict[str, set[str]], most: int = 20) -> list[list[str]]:
    """Up to ``most`` cycles, each as the modules around it (first repeated last)."""
    edges = {node: set(targets) for node, targets in edges.items()}
    found = []
    while len(found) < most:
        try:
            graphlib.TopologicalSorter(edges).prepare()
        except graphlib.CycleError as exc:
            cycle = list(reversed(exc.args[1]))  # graphlib lists it against the arrows
            found.append(cycle)
            edges[cycle[0]].discard(cycle[1])  # break it to look for the next one
        else:
            break
    return found


# ------------------------------------------------------------ the project


def test_the_parts_import_one_another_one_way_only() -> None:
    problems = violations(imports(ROOT))
    assert not problems, "imports across a boundary:\n" + "\n".join(problems)


def test_no_module_imports_itself_back() -> None:
    found = cycles(graph(imports(ROOT)))
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_checker_reads_the_whole_project() -> None:
    names = modules(ROOT)
    assert {"licensing_service.cli", "fixtures.target", "loadtests.harness.gate"} <= names.keys()
    assert len(list(imports(ROOT))) > 300


# ----------------------------------------------------- the checker itself


def _plant(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for package in PACKAGES:
        for folder in [root / package, *(root / package).rglob("*")]:
            if folder.is_dir():
                (folder / "__init__.py").touch()
    return root


def test_a_planted_violation_is_reported_with_file_line_and_import(tmp_path: Path) -> None:
    root = _plant(
        tmp_path,
        {
            "licensing_service/contract/routes.py": "",
            "licensing_service/bootstrap.py": "",
            "licensing_service/cli.py": "import os\n\ndef f():\n    from fixtures import stripe\n",
            "fixtures/ok.py": "from licensing_service.contract import routes\n",
            "fixtures/stripe/leak.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    import loadtests.gate\n"
                "from ...licensing_service import bootstrap\n"
            ),
            "loadtests/gate.py": "from fixtures.stripe import leak\nimport licensing_service\n",
            "scenarios/story.py": "from licensing_harness import cli\n",
            "licensing_harness/cli.py": "import scenarios.story, licensing_service.bootstrap\n",
        },
    )
    assert sorted(violations(imports(root))) == sorted(
        [
            "fixtures/stripe/leak.py:3: fixtures.stripe.leak imports loadtests.gate",
            "fixtures/stripe/leak.py:4: fixtures.stripe.leak imports licensing_service.bootstrap",
            "licensing_service/cli.py:4: licensing_service.cli imports fixtures.stripe",
            "loadtests/gate.py:2: loadtests.gate imports licensing_service",
            "scenarios/story.py:1: scenarios.story imports licensing_harness.cli",
        ]
    )


@pytest.mark.parametrize(
    ("module", "is_package", "level", "name", "expected"),
    [
        ("fixtures.stripe.cli", False, 1, "recording", "fixtures.stripe.recording"),
        ("fixtures.stripe.cli", False, 2, "target", "fixtures.target"),
        ("fixtures.stripe", True, 1, "ids", "fixtures.stripe.ids"),
        ("fixtures.stripe.cli", False, 1, None, "fixtures.stripe"),
        ("fixtures.stripe.cli", False, 0, "os", "os"),
    ],
)
def test_relative_imports_are_resolved(
    module: str, is_package: bool, level: int, name: str | None, expected: str
) -> None:
    assert resolve(module, is_package, level, name) == expected


def test_a_planted_cycle_is_reported_around_its_modules(tmp_path: Path) -> None:
    root = _plant(
        tmp_path,
        {
            "loadtests/a.py": "from . import b\n",
            "loadtests/b.py": "def f():\n    from loadtests.c import x\n",
            "loadtests/c.py": "from .a import y\n",
            "loadtests/d.py": "from loadtests import a\n",  # into the cycle, not part of it
            "fixtures/e.py": "import fixtures.f\n",
            "fixtures/f.py": "from fixtures import e\n",
        },
    )
    found = cycles(graph(imports(root)))
    assert sorted(map(frozenset, found), key=sorted) == [
        frozenset({"fixtures.e", "fixtures.f"}),
        frozenset({"loadtests.a", "loadtests.b", "loadtests.c"}),
    ]
    around = next(c for c in found if "loadtests.a" in c)
    assert around[0] == around[-1] and len(around) == 4
    edges = graph(imports(root))
    assert all(after in edges[before] for before, after in itertools.pairwise(around))
    assert cycles(graph(imports(root), (("fixtures.e", "fixtures.f"),))) == [around]


# ------------------------------------------------ what `serve` loads

# httpx too: it drags in its optional CLI (click, pygments, rich) where they are
# installed, ~4,000 objects for the serving process's garbage collector; the
# service imports it only when Resend or Stripe is configured.
HEAVY = ("faker", "aiohttp", "locust", "matplotlib", "gevent", "hdrh", "rich", "httpx")
OTHER_PARTS = ("fixtures", "loadtests", "scenarios", "licensing_harness")
# Runs a command up to the point where uvicorn would take over, then lists
# what the process has imported.
_PROBE = """
import json, sys
import uvicorn
uvicorn.run = lambda *args, **kwargs: None
from {module} import main
code = main(sys.argv[1:])
print(json.dumps({{"code": code, "modules": sorted(sys.modules)}}))
"""


def _serve_modules(module: str, tmp_path: Path) -> list[str]:
    probe = _PROBE.format(module=module)
    argv = ["serve", "--port", "0", "--db", str(tmp_path / "probe.db")]
    result = subprocess.run(
        [sys.executable, "-c", probe, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
        env={"PATH": "", "LH_ENVIRONMENT": "test", "LH_LOG_LEVEL": "warning"},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["code"] == 0
    modules_loaded: list[str] = report["modules"]
    assert "licensing_service.bootstrap" in modules_loaded  # the probe really built the app
    return modules_loaded


def _tops(names: list[str], wanted: tuple[str, ...]) -> list[str]:
    """The top-level packages of ``wanted`` that were imported."""
    return sorted({n.split(".")[0] for n in names} & set(wanted))


def test_serve_through_licensing_harness_loads_no_harness_library(tmp_path: Path) -> None:
    assert _tops(_serve_modules("licensing_harness.cli", tmp_path), HEAVY) == []


def test_licensing_service_serve_loads_no_other_part(tmp_path: Path) -> None:
    loaded = _serve_modules("licensing_service.cli", tmp_path)
    assert _tops(loaded, HEAVY) == []
    assert _tops(loaded, OTHER_PARTS) == []
