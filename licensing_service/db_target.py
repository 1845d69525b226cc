"""Which database ``LH_DB`` / ``--db`` names: parsed once, in the settings.

A plain path or ``sqlite:///path`` is a SQLite file; ``postgresql://...`` or
``postgres://...`` a PostgreSQL server. Everything that used to treat the
setting as a path (the harness clock file, the email sink, the db.lock fault,
seeding, migrations) asks the target instead, so it works for both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True, slots=True)
class SqliteTarget:
    path: Path

    def __str__(self) -> str:
        return str(self.path)

    def describe(self) -> str:
        return str(self.path)

    def state_dir(self) -> Path:
        """Where files that belong with this database live (beside it)."""
        return self.path.parent

    def state_name(self) -> str:
        return self.path.name


@dataclass(frozen=True, slots=True)
class PostgresTarget:
    url: str

    def __str__(self) -> str:
        # Round-trips through the environment to worker processes (credentials included).
        return self.url

    def describe(self) -> str:
        """The URL without its password, for logs and messages."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        host = parts.hostname or ""
        netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))

    @property
    def database(self) -> str:
        return urlsplit(self.url).path.lstrip("/") or "postgres"

    def state_dir(self) -> Path:
        # No file to sit beside: files of this database go under var/ on each machine.
        return Path("var")

    def state_name(self) -> str:
        parts = urlsplit(self.url)
        return f"pg-{parts.hostname or 'local'}-{parts.port or 5432}-{self.database}"


DbTarget = SqliteTarget | PostgresTarget


def parse_db(value: object) -> DbTarget:
    """``LH_DB`` as a target; a ValueError naming LH_DB for anything else."""
    if isinstance(value, SqliteTarget | PostgresTarget):
        return value
    if isinstance(value, Path):
        return SqliteTarget(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError("LH_DB must be a file path, sqlite:///path or postgresql://...")
    text = value.strip()
    scheme = _SCHEME.match(text)
    if scheme is None:
        return SqliteTarget(Path(text))
    name = scheme[1].lower()
    if name == "sqlite":
        path = text[len("sqlite://") :]
        if not path.startswith("/") or path == "/":
            raise ValueError("LH_DB: sqlite URLs are sqlite:///relative/or//absolute/path")
        # sqlite:///var/x.db is the relative var/x.db; sqlite:////tmp/x.db the absolute /tmp/x.db.
        return SqliteTarget(Path(path[1:]))
    if name in ("postgresql", "postgres"):
        parts = urlsplit(text)
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise ValueError(f"LH_DB: bad port in the PostgreSQL URL ({exc})") from None
        return PostgresTarget(text)
    raise ValueError(
        f"LH_DB: unknown scheme {name!r}; use a path, sqlite:///path or postgresql://..."
    )
