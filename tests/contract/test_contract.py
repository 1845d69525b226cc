"""The public contract: what it exports, and that the docs describe the real settings."""

import re
from pathlib import Path

from pydantic import AliasChoices

import licensing_service.contract as contract
from licensing_service.config import Settings
from licensing_service.contract import ERROR_SPECS, ROUTES, ErrorCode

ROOT = Path(__file__).resolve().parents[2]


def test_exports_exist_once_each() -> None:
    # (ruff's RUF022 keeps __all__ sorted)
    assert len(contract.__all__) == len(set(contract.__all__))
    assert all(hasattr(contract, name) for name in contract.__all__)


def test_every_error_code_has_a_status_and_classification() -> None:
    assert set(ERROR_SPECS) == set(ErrorCode)
    retryable = {code for code, spec in ERROR_SPECS.items() if spec.retryable}
    assert {ErrorCode.DATABASE_ERROR, ErrorCode.CIRCUIT_BREAKER_OPEN} <= retryable
    assert ErrorCode.INVALID_CREDENTIALS not in retryable


def test_route_table_has_no_duplicates() -> None:
    keys = [(route.method, route.path) for route in ROUTES]
    assert len(keys) == len(set(keys))


def test_readme_configuration_table_matches_the_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `((?:LH_)?[A-Z_]+)` \|", table, re.M))
    expected = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        # A field with aliases is documented by its first (the seeds' name, e.g. STRIPE_*).
        expected.add(alias.choices[0] if isinstance(alias, AliasChoices) else f"LH_{name.upper()}")
    assert "STRIPE_WEBHOOK_SECRET" in expected
    assert documented == expected
