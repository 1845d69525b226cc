"""The gate's two ways of not judging (exit 2): a refused configuration, a harness that failed.

Neither is a verdict on the service: the result is unknown, not a failure.
"""

from __future__ import annotations

from collections.abc import Sequence


class ConfigError(ValueError):
    """A gate file the gate refuses; the message names the key and the problem.

    ``key``/``problem`` are the first problem found; ``more`` the others, each
    on a line of its own in the message, so one run shows every typo.
    """

    def __init__(
        self,
        key: str,
        problem: str,
        source: str | None = None,
        more: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.key = key
        self.problem = problem
        self.source = source
        self.more = tuple(more)
        where = f"{source}: " if source else ""
        lines = [f"{where}{k}: {p}" for k, p in ((key, problem), *self.more)]
        super().__init__("\n".join(lines))

    def in_file(self, source: str) -> ConfigError:
        return ConfigError(self.key, self.problem, source, self.more)


class GateError(Exception):
    """The gate could not do its job (exit 2): the result is unknown, not a failure."""


__all__ = ["ConfigError", "GateError"]
