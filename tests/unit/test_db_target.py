"""LH_DB / --db, parsed once into a typed target (licensing_service/db_target.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from licensing_service import bootstrap
from licensing_service.config import Settings
from licensing_service.db_target import PostgresTarget, SqliteTarget, parse_db


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("var/licensing.db", Path("var/licensing.db")),
        ("sqlite:///var/licensing.db", Path("var/licensing.db")),
        ("sqlite:////srv/lh/licensing.db", Path("/srv/lh/licensing.db")),
    ],
)
def test_paths_and_sqlite_urls_are_sqlite(text: str, path: Path) -> None:
    assert parse_db(text) == SqliteTarget(path)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "PostgreSQL"])
def test_postgresql_urls_are_postgresql(scheme: str) -> None:
    url = f"{scheme}://lh:secret@db.internal:5433/licensing"
    target = parse_db(url)
    assert target == PostgresTarget(url)
    assert isinstance(target, PostgresTarget)
    assert target.database == "licensing"
    assert "secret" not in target.describe()  # what logs and messages show
    assert str(target) == url  # what worker processes get through LH_DB


@pytest.mark.parametrize(
    "bad", ["mysql://h/x", "sqlite://relative.db", "sqlite:///", "postgresql://h:99999/x", " "]
)
def test_anything_else_is_refused_naming_lh_db(bad: str) -> None:
    with pytest.raises(ValueError, match="LH_DB"):
        Settings(db=bad)


def test_the_harness_clock_file_sits_beside_sqlite_and_under_var_for_postgresql() -> None:
    assert bootstrap.test_clock_file(SqliteTarget(Path("x/a.db"))) == Path("x/a.db.test-clock")
    pg = PostgresTarget("postgresql://127.0.0.1:5432/licensing")
    assert bootstrap.test_clock_file(pg) == Path("var/pg-127.0.0.1-5432-licensing.test-clock")


def test_the_default_stays_the_sqlite_file() -> None:
    assert Settings().db == SqliteTarget(Path("var/licensing.db"))
