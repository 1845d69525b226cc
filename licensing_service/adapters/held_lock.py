"""What the ``db.lock`` fault's lock holders share (``sqlite_lock.py``,
``pg_lock.py``): a second connection of its own, opened and locked by
:meth:`HeldLock.hold` (a no-op while held) and rolled back and closed by
:meth:`HeldLock.release`. A driver error in either step is the database
refusing: StorageUnavailable, and no connection left open."""

from __future__ import annotations

import contextlib
from typing import Generic, Protocol, TypeVar

from licensing_service.service.errors import StorageUnavailable


class _Closes(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Closes)


class HeldLock(Generic[C]):
    driver_error: type[Exception] = Exception  # the driver's error class

    def __init__(self) -> None:
        self._conn: C | None = None

    def connect(self) -> C:
        """A new connection, on which taking the lock waits a short while at most."""
        raise NotImplementedError

    def take(self, conn: C) -> None:
        """Take the lock in ``conn`` (held until its transaction ends)."""
        raise NotImplementedError

    def rollback(self, conn: C) -> None:
        raise NotImplementedError

    def hold(self) -> None:
        if self._conn is not None:
            return
        try:
            conn = self.connect()
        except self.driver_error as exc:
            raise StorageUnavailable(str(exc)) from exc
        try:
            self.take(conn)
        except self.driver_error as exc:
            conn.close()
            raise StorageUnavailable(str(exc)) from exc
        self._conn = conn

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(self.driver_error):
            self.rollback(conn)
        conn.close()
