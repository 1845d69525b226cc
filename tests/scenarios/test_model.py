"""Rehearsal files: the shipped ones load; a bad one is refused naming the file,
the key and what was expected, every problem at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.harness.errors import ConfigError
from scenarios.cli import shipped
from scenarios.model import load_rehearsal, loads_rehearsal
from scenarios.steps import FaultStep, ProxyStep, WaitStep

MINIMAL = """
[scenario]
name = "tiny"
needs = ["faults"]

[[method]]
kind = "fault"
db = { errors = true }

[[expect]]
kind = "wrong_answers"
"""


def refused(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        loads_rehearsal(text)
    return caught.value


def lines(error: ConfigError) -> list[str]:
    return str(error).splitlines()


@pytest.mark.parametrize("name", sorted(shipped()))
def test_every_shipped_rehearsal_loads(name: str) -> None:
    reh = load_rehearsal(shipped()[name])
    assert reh.name == name  # the file's stem is its name
    assert reh.method and reh.expect
    fast = reh.fast_variant()
    assert fast.load.users <= reh.load.users


def test_the_minimal_file_is_typed() -> None:
    reh = loads_rehearsal(MINIMAL)
    step = reh.method[0]
    assert isinstance(step, FaultStep)
    assert step.request().db is not None and step.request().db.errors is True
    assert reh.needs() == {"faults"}


def test_unknown_top_level_key_names_the_allowed_ones() -> None:
    err = refused(MINIMAL + "\n[lod]\nusers = 3\n")
    assert err.key == "lod"
    assert "unknown key; expected one of: scenario, service, load, fast" in err.problem


def test_bad_value_names_key_and_expectation() -> None:
    err = refused(MINIMAL + "\n[load]\nusers = 0\n")
    assert (err.key, err.problem) == ("load.users", "must be at least 1, not 0")
    err = refused(MINIMAL + '\n[load]\nusers = "5"\n')
    assert (err.key, err.problem) == ("load.users", "must be an integer, not '5'")


def test_unknown_step_kind() -> None:
    err = refused(MINIMAL + '\n[[method]]\nkind = "explode"\n')
    assert err.key == "method[2].kind"
    assert "unknown kind 'explode'; expected one of: fault, load, clock, wait" in err.problem


def test_a_typo_inside_a_fault_names_the_faults_keys() -> None:
    text = MINIMAL.replace("db = { errors = true }", "db = { errorz = true }")
    err = refused(text)
    assert err.key == "method[1].db.errorz"
    assert err.problem == "unknown key; expected one of: errors, latency_ms, lock"


def test_a_fault_value_out_of_the_contracts_range() -> None:
    text = MINIMAL.replace("db = { errors = true }", "db = { latency_ms = 999999 }")
    err = refused(text)
    assert err.key == "method[1].db.latency_ms"
    assert "60000" in err.problem


def test_unknown_expectation_key() -> None:
    err = refused(MINIMAL + '\n[[expect]]\nkind = "answered_ratio"\nmin = 0.9\nfualt = "db"\n')
    assert err.key == "expect[2].fualt"
    assert "expected one of: kind, min, fault" in err.problem


def test_every_problem_at_once_with_the_file_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        MINIMAL.replace('kind = "wrong_answers"', 'kind = "wrong_answers"\nmax = -1')
        + '\n[[method]]\nkind = "wait"\nseconds = 0\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_rehearsal(path)
    text = lines(caught.value)
    assert f"{path}: method[2].seconds: must be positive, not 0" in text
    assert f"{path}: expect[1].max: must not be negative, not -1" in text


def test_a_method_that_moves_the_clock_must_say_so() -> None:
    err = refused(MINIMAL + '\n[[method]]\nkind = "clock"\nadvance = 30\n')
    assert err.key == "scenario.needs"
    assert "'test_clock'" in err.problem


def test_steps_whose_modules_are_missing_are_refused_not_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A build without the storms work (scenarios.proxy): a file using its step is
    # refused at load, not halfway through a rehearsal.
    monkeypatch.setattr(ProxyStep, "module", "scenarios.not_in_this_build")
    err = refused(MINIMAL + '\n[[method]]\nkind = "proxy"\nblackhole = true\n')
    assert err.key == "method[2].kind"
    assert err.problem.startswith("'proxy' is not available yet: scenarios.not_in_this_build")


def test_empty_method_and_no_expectations() -> None:
    err = refused('method = []\nexpect = []\n[scenario]\nname = "x"\n')
    assert (err.key, err.problem) == ("method", "an empty method rehearses nothing")


def test_name_must_be_a_slug() -> None:
    err = refused(MINIMAL.replace('name = "tiny"', 'name = "Tiny One"'))
    assert err.key == "scenario.name"


def test_not_toml() -> None:
    assert refused("[scenario\n").key == "(toml)"


def test_fast_variant_scales_waits_but_not_bounds() -> None:
    reh = loads_rehearsal(
        MINIMAL
        + '\n[fast]\ntime_scale = 0.1\nusers = 2\n[[method]]\nkind = "wait"\nseconds = 10\n'
        + '[[method]]\nkind = "wait"\nseconds = 10\nuntil = "breaker_open"\n'
    )
    fast = reh.fast_variant()
    plain, bounded = fast.method[1], fast.method[2]
    assert isinstance(plain, WaitStep) and isinstance(bounded, WaitStep)
    assert plain.seconds == pytest.approx(1.0)
    assert bounded.seconds == 10
    assert fast.load.users == 2


# Each shipped rehearsal judges its invariants with the kinds whose failure on a
# broken recording or service tests/scenarios/test_expectations.py (and
# test_rehearse_e2e.py) show.
BREAKER_OUTAGE = {
    "breaker_opens",
    "half_open_trials",
    "breaker_closes",
    "answered_ratio",
    "degraded_marked",
    "fail_fast",
    "wrong_answers",
}
INVARIANTS = {
    "db-outage": BREAKER_OUTAGE,
    "db-slow": {
        "breaker_opens",
        "latency_p99",
        "answered_ratio",
        "client_failures",
        "wrong_answers",
    },
    "stripe-api-outage": {"fail_fast", "unaffected", "wrong_answers"},
    "email-outage": {"outbox_drains", "unaffected"},
    "clock-jump": {"sessions_expired", "tiers_recomputed", "server_errors", "wrong_answers"},
    "network-partition": {"client_failures", "recovers", "wrong_answers"},
    "webhook-retry-storm": {"storm_exactly_once"},
    "crash-restart": {"storm_exactly_once"},
    # Issue 11, item 6: on PostgreSQL.
    "replica-kill": {
        "storm_exactly_once",
        "replica_failover",
        "one_session_per_license",
        "server_errors",
    },
    "db-unreachable": BREAKER_OUTAGE | {"storm_exactly_once"},
    # The same, the path a black hole: the store's client-side deadline.
    "db-blackhole": BREAKER_OUTAGE,
}


def test_every_rehearsal_the_issue_names_is_shipped_with_its_invariants() -> None:
    assert set(shipped()) == set(INVARIANTS)
    for name, kinds in INVARIANTS.items():
        reh = load_rehearsal(shipped()[name])
        assert kinds <= {e.name for e in reh.expect}, name


ON_POSTGRESQL = """
[scenario]
name = "on-pg"
needs = ["faults", "test_clock", "process", "postgresql"]

[service]
store = "postgresql"
replicas = 3
db_proxy = true

[[method]]
kind = "db_proxy"
reset = true

[[method]]
kind = "storm"
outage = "db_proxy"
kill_replica = 2

[[method]]
kind = "restart"
replica = 2

[[expect]]
kind = "replica_failover"
"""


def test_a_rehearsal_on_postgresql_is_typed() -> None:
    reh = loads_rehearsal(ON_POSTGRESQL)
    assert reh.service.store == "postgresql" and reh.service.replicas == 3
    assert "postgresql" in reh.needs()
    assert reh.method[0].describe() == "database proxy reset"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (('store = "postgresql"\n', ""), "service.replicas: several replicas need store"),
        (("kill_replica = 2", "kill_replica = 3"), "names replica 3; with 3 replica(s)"),
        (("replica = 2\n", "replica = 0\n"), "method[3].replica: must be at least 1"),
        (("db_proxy = true\n", ""), "service.db_proxy: a db_proxy step needs db_proxy = true"),
        (('"process", "postgresql"', '"process"'), "add 'postgresql' to needs"),
    ],
)
def test_a_rehearsal_on_postgresql_is_refused_naming_the_key(
    change: tuple[str, str], problem: str
) -> None:
    text = ON_POSTGRESQL.replace(*change)
    assert any(problem in line for line in lines(refused(text))), lines(refused(text))
