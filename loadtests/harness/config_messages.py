"""A refused gate file, told as a person reads it: the file, the key as a dotted path, the fix.

Validation is pydantic's (:mod:`loadtests.harness.gate_config`); this module turns its
``ValidationError`` into a :class:`ConfigError` with the project's wording. Pydantic's
own text is not shown: it links to its documentation and echoes the input, where ours
shows at most a short scalar as written (``not 'yes'``) and a table only as "a table".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from loadtests.harness.errors import ConfigError

SHOWN_CHARS = 20  # longer strings are not echoed: no key in a gate file is that long
RULE = "gate_rule"  # the error type of refuse(); ctx["at"] says under which key to report it


def refuse(problem: str, **context: Any) -> PydanticCustomError:
    """The error a validator raises: ``problem`` is the message, word for word;
    ``at=("key",)`` reports a rule across keys under that key of the table."""
    # Pydantic reads the message as a template: braces in a problem are not fields.
    return PydanticCustomError(RULE, problem.replace("{", "{{").replace("}", "}}"), context)


def config_error(
    exc: ValidationError,
    keys: Mapping[str, Sequence[str]],
    *,
    within: tuple[str | int, ...] = (),
    file_names: Mapping[str, str] | None = None,
) -> ConfigError:
    """Every problem of ``exc``, the first as the error's key and problem.

    ``keys``: the keys each table allows (``""`` for the top level), named when a
    key is unknown. For a model built in code rather than read from a file:
    ``within``, the table it is; ``file_names``, the file's name of each field
    whose name differs (``duration_s`` is ``duration``).
    """
    renamed = file_names or {}
    errors = [
        {**e, "loc": (*within, *(renamed.get(str(p), p) for p in e["loc"]))}
        for e in exc.errors(include_url=False)
    ]
    (key, problem), *more = [(dotted_key(e), _problem(e, keys)) for e in errors]
    return ConfigError(key, problem, more=more)


def dotted_key(error: Mapping[str, Any]) -> str:
    """``("threshold", 1, "max")`` → ``threshold[2].max``: the file's own numbering."""
    at = error.get("ctx", {}).get("at", ()) if error["type"] == RULE else ()
    key = ""
    for part in (*error["loc"], *at):
        if isinstance(part, int):
            key += f"[{part + 1}]"
        else:
            key += f".{part}" if key else str(part)
    return key or "(file)"


def _problem(error: Mapping[str, Any], keys: Mapping[str, Sequence[str]]) -> str:
    kind, ctx, loc = error["type"], error.get("ctx", {}), error["loc"]
    if kind == RULE:
        return str(error["msg"])
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        # The innermost table named in the key: a rehearsal's tables nest deeper
        # (method[2].db.errorz names the keys of `db`); the gate's are one deep.
        table = next((p for p in reversed(loc[:-1]) if isinstance(p, str)), "")
        return f"unknown key; expected one of: {', '.join(keys[table])}"
    if kind in _PROBLEMS:
        at_zero = kind in _PROBLEMS_AT_ZERO and 0 in ctx.values()
        template = _PROBLEMS_AT_ZERO[kind] if at_zero else _PROBLEMS[kind]
        return template.format(value=shown(error.get("input")), **ctx)
    if kind in ("dataclass_type", "model_type", "dict_type"):
        return f"must be a table: write {_table_header(loc)}"
    if kind == "tuple_type":
        return f"must be an array of tables: write [[{loc[-1]}]]"
    return str(error["msg"])  # pydantic's words, which never carry the input


_PROBLEMS = {
    "missing": "missing",
    "int_type": "must be an integer, not {value}",
    "float_type": "must be a number, not {value}",
    "bool_type": "must be true or false, not {value}",
    "string_type": "must be a string, not {value}",
    "string_too_short": "must be a non-empty string, not {value}",
    "finite_number": "must be finite, not {value}",
    "greater_than": "must be above {gt}, not {value}",
    "greater_than_equal": "must be at least {ge}, not {value}",
}
_PROBLEMS_AT_ZERO = {  # the same bounds at 0, in plainer words
    "greater_than": "must be positive, not {value}",
    "greater_than_equal": "must not be negative, not {value}",
}


def shown(value: object) -> str:
    """A value as written if short, else by its kind: a typo is worth echoing, a
    pasted token or a whole table is not."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and len(value) > SHOWN_CHARS:
        return f"a string of {len(value)} characters"
    return repr(value)


def _table_header(loc: tuple[int | str, ...]) -> str:
    name = next(str(p) for p in reversed(loc) if isinstance(p, str))
    return f"[[{name}]]" if isinstance(loc[-1], int) else f"[{name}]"


__all__ = ["RULE", "config_error", "dotted_key", "refuse", "shown"]
