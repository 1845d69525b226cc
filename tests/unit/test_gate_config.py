"""The gate's configuration: the packaged file, every key read, every refusal named."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pydantic import ValidationError

from loadtests.harness.gate_config import (
    DEFAULT_CONFIG,
    KNOWN_CHECKS,
    ConfigError,
    LoadConfig,
    Threshold,
    load_config,
    loads_config,
    parse_duration,
    with_load,
)

# --------------------------------------------------------------------------- parsing


def test_the_packaged_default_parses_with_the_projects_defaults() -> None:
    config = load_config(None)
    assert config == load_config(DEFAULT_CONFIG)
    # The file and the dataclass defaults must not drift apart.
    assert config.load == LoadConfig()
    assert config.load.users == 50 and config.load.duration_s == 60
    assert config.load.workload == "mixed"
    assert [t.label for t in config.thresholds] == [
        "validate p99 <= 10 ms",
        "validate error_rate <= 0",
        "* error_rate <= 0",
        "validate rps >= 100/s",
        "webhook p99 <= 100 ms",
    ]
    assert config.checks == dict.fromkeys(KNOWN_CHECKS, True)


def test_a_minimal_file_takes_load_defaults_and_enables_every_check() -> None:
    config = loads_config('[[threshold]]\nselect = "validate"\nmetric = "p99"\nmax = 10\n')
    assert config.load == LoadConfig()
    assert config.checks == dict.fromkeys(KNOWN_CHECKS, True)
    assert config.thresholds == (Threshold("validate", "p99", max=10.0),)


def test_every_load_key_is_read() -> None:
    config = loads_config(
        """
        [load]
        workload = "open"
        users = 7
        spawn_rate = 2.5
        duration = "1m30s"
        processes = -1
        warmup = 15
        abort_early = true
        open_rate = 42
        customers = 9
        [checks]
        no_grace = false
        """
    )
    assert config.load == LoadConfig("open", 7, 2.5, 90, -1, 15, True, 42.0, 9)
    assert config.checks["no_grace"] is False and config.checks["cache_tiers"] is True
    assert config.thresholds == ()


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("2m", 120), ("1m30s", 90), ("1h", 3600), ("0s", 0)]
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


def th(*lines: str) -> str:
    """A [[threshold]] block of the given lines."""
    return "[[threshold]]\n" + "".join(f"{line}\n" for line in lines)


V = 'select = "v"'
T = th(V, 'metric = "p99"', "max = 10")


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        (th(V, 'metric = "p98"', "max = 1"), "threshold[1].metric", "unknown metric"),
        (th(V, 'metric = "p99"'), "threshold[1]", "max or min"),
        (T + th(V, 'metric = "p99"', "mx = 10"), "threshold[2].mx", "unknown key"),
        (T + th('metric = "p99"', "max = 1"), "threshold[2].select", "missing"),
        (th('select = "tag:"', 'metric = "p99"', "max = 1"), "threshold[1].select", "empty tag"),
        (th(V, 'metric = "error_rate"', "max = 5"), "threshold[1].max", "0..1"),
        (th(V, 'metric = "p99"', "max = -1"), "threshold[1].max", "negative"),
        (th(V, 'metric = "p99"', 'max = "10"'), "threshold[1].max", "number"),
        (th(V, 'metric = "p99"', "min = 5", "max = 1"), "threshold[1].min", "above max"),
        ('[threshold]\nselect = "v"\nmetric = "p99"\nmax = 1\n', "threshold", "array of tables"),
        (T + '[load]\nduration = "-10s"\n', "load.duration", "negative duration"),
        (T + "[load]\nduration = -10\n", "load.duration", "negative duration"),
        (T + '[load]\nduration = "1x"\n', "load.duration", "unparseable duration"),
        (T + '[load]\nduration = "90"\n', "load.duration", "unparseable duration"),
        (T + '[load]\nduration = "0s"\n', "load.duration", "positive"),
        (T + '[load]\nwarmup = "1.5s"\n', "load.warmup", "unparseable duration"),
        (T + "[load]\nabort_early = true\nwarmup = 60\n", "load.warmup", "shorter"),
        (T + "[load]\nuserz = 5\n", "load.userz", "unknown key"),
        (T + "[load]\nusers = true\n", "load.users", "integer"),
        (T + "[load]\nusers = 0\n", "load.users", "at least 1"),
        (T + "[load]\nspawn_rate = 0\n", "load.spawn_rate", "positive"),
        (T + "[load]\nprocesses = 0\n", "load.processes", "-1"),
        (T + '[load]\nworkload = "burst"\n', "load.workload", "unknown workload"),
        (T + '[load]\nabort_early = "yes"\n', "load.abort_early", "true or false"),
        (T + "[checks]\ncache_tier = true\n", "checks.cache_tier", "unknown key"),
        (T + '[checks]\nno_grace = "yes"\n', "checks.no_grace", "true or false"),
        (T + "[lod]\nusers = 5\n", "lod", "unknown key"),
        ("load = 5\n" + T, "load", "table"),
        ("[checks]\n" + "\n".join(f"{c} = false" for c in KNOWN_CHECKS), "threshold", "nothing"),
        ("[load\n", "(toml)", "not valid TOML"),
    ],
)
def test_every_config_error_names_its_key(text: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        loads_config(text)
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{key}: ")
    assert problem in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_a_file_error_names_the_file_too(tmp_path: Path) -> None:
    path = tmp_path / "gate.toml"
    path.write_text('[load]\nduration = "1x"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"gate\.toml: load\.duration: unparseable"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


# --------------------------------------------------------------------------- strictness


def refused(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        loads_config(text)
    return caught.value


LOAD_KEYS = "workload, users, spawn_rate, duration, processes, warmup, abort_early, open_rate"


@pytest.mark.parametrize(
    ("text", "key", "allowed"),
    [
        ("[lod]\nusers = 5\n" + T, "lod", "load, threshold, checks"),
        (T + "[load]\nduration_s = 60\n", "load.duration_s", LOAD_KEYS),
        (T + "[load]\nmax_steal_pct = 5\n", "load.max_steal_pct", LOAD_KEYS),
        (T + th(V, 'metric = "p99"', "max = 1", "maximum = 2"), "threshold[2].maximum", "min"),
        (T + "[checks]\nnograce = false\n", "checks.nograce", "no_grace, webhook_idempotency"),
    ],
)
def test_an_unknown_key_at_any_level_is_refused_with_the_keys_allowed_there(
    text: str, key: str, allowed: str
) -> None:
    # The field names behind `duration` and `max_steal` are no file keys either.
    refusal = refused(text)
    assert refusal.key == key
    assert refusal.problem.startswith("unknown key; expected one of: ")
    assert allowed in refusal.problem


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        (T + "[load]\nworkload = 5\n", "load.workload", "must be a string, not 5"),
        (T + "[load]\nusers = 1.5\n", "load.users", "must be an integer, not 1.5"),
        (T + '[load]\ncustomers = "9"\n', "load.customers", "must be an integer, not '9'"),
        (T + '[load]\nopen_rate = "fast"\n', "load.open_rate", "must be a number, not 'fast'"),
        (T + "[load]\nspawn_rate = true\n", "load.spawn_rate", "must be a number, not true"),
        (T + "[load]\nwarmup = true\n", "load.warmup", 'like "90s", "2m" or "1m30s", not true'),
        (T + "[load]\nduration = 1.5\n", "load.duration", 'or "1m30s", not 1.5'),
        (T + "[load]\nabort_early = 1\n", "load.abort_early", "must be true or false, not 1"),
        (th("select = 5", 'metric = "p99"', "max = 1"), "threshold[1].select", "string, not 5"),
        (th(V, 'metric = ""', "max = 1"), "threshold[1].metric", "non-empty string, not ''"),
        (th(V, 'metric = "p99"', "min = true"), "threshold[1].min", "must be a number, not true"),
        (T + "[checks]\nno_grace = 1\n", "checks.no_grace", "must be true or false, not 1"),
        (T + "[load]\nusers = [1]\n", "load.users", "must be an integer, not an array"),
        ("threshold = [5]\n", "threshold[1]", "must be a table: write [[threshold]]"),
        ("checks = true\n" + T, "checks", "must be a table: write [checks]"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_not_coerced(
    text: str, key: str, problem: str
) -> None:
    refusal = refused(text)
    assert refusal.key == key and problem in refusal.problem


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        (T + "[load]\ncustomers = 0\n", "load.customers", "must be at least 1, not 0"),
        (T + "[load]\nopen_rate = -1\n", "load.open_rate", "must be positive, not -1"),
        (T + "[load]\nmax_steal = 0\n", "load.max_steal", "must be positive, not 0"),
        (T + "[load]\nmax_steal = inf\n", "load.max_steal", "must be finite, not inf"),
        (T + "[load]\nspawn_rate = nan\n", "load.spawn_rate", "must be finite, not nan"),
        (T + "[load]\nprocesses = -2\n", "load.processes", "or -1 for one per core, not -2"),
        (T + "[load]\nduration = 0\n", "load.duration", "must be positive, not 0"),
        (th(V, 'metric = "rps"', "min = -5"), "threshold[1].min", "must not be negative, not -5"),
        (th(V, 'metric = "p99"', "max = inf"), "threshold[1].max", "must be finite, not inf"),
        (th(V, 'metric = "error_rate"', "min = 2"), "threshold[1].min", "fraction 0..1, not 2"),
    ],
)
def test_a_value_out_of_range_is_refused(text: str, key: str, problem: str) -> None:
    refusal = refused(text)
    assert refusal.key == key and problem in refusal.problem


def test_every_problem_in_a_file_is_told_at_once_each_naming_file_and_key(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gate.toml"
    path.write_text(
        "[load]\nusers = 0\nuserz = 5\n" + th(V, 'metric = "p98"', "max = 1"), encoding="utf-8"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).splitlines() == [
        f"{path}: load.users: must be at least 1, not 0",
        f"{path}: load.userz: unknown key; expected one of: {LOAD_KEYS}, customers, max_steal",
        f"{path}: threshold[1].metric: unknown metric 'p98'; expected one of: "
        "p50, p90, p95, p99, p99.9, max, mean, corrected_p50, corrected_p90, corrected_p95, "
        "corrected_p99, corrected_p99.9, corrected_max, corrected_mean, error_rate, rps",
    ]
    assert (caught.value.key, caught.value.source) == ("load.users", str(path))
    assert [key for key, _ in caught.value.more] == ["load.userz", "threshold[1].metric"]


def test_a_refusal_carries_no_pydantic_text_and_no_table_contents() -> None:
    secret = "sk_live_" + "x" * 24
    text = T + f'[load]\nworkload = {{ token = "{secret}" }}\ncustomers = "{secret}"\n'
    with pytest.raises(ConfigError) as caught:
        loads_config(text)
    message = str(caught.value)
    assert message.splitlines()[0] == "load.workload: must be a string, not a table"
    assert secret not in message  # a long string is only counted, a table never shown
    assert "load.customers: must be an integer, not a string of 32 characters" in message
    for pydantic_words in ("pydantic", "input_value", "Input should", "validation error"):
        assert pydantic_words not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_the_models_are_frozen_and_validate_when_built_in_code() -> None:
    load = LoadConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        load.users = 5  # type: ignore[misc]
    with pytest.raises(ValidationError):
        LoadConfig(users=0)
    with pytest.raises(ValidationError):
        Threshold("validate", "p99")  # no bound
    with pytest.raises(ValidationError):
        Threshold("validate", "p98", max=1.0)


def test_command_line_overrides_are_checked_like_the_file() -> None:
    config = loads_config(T + "[load]\nabort_early = true\nwarmup = 10\nduration = 60\n")
    assert with_load(config, duration_s=30, users=3).load.duration_s == 30
    with pytest.raises(ConfigError) as caught:
        with_load(config, duration_s=5)
    assert str(caught.value) == "load.warmup: must be shorter than load.duration when abort_early"
    with pytest.raises(ConfigError, match=r"^load\.duration: must be positive, not 0$"):
        with_load(config, duration_s=0)


def test_the_checks_table_knows_every_check_the_harness_runs() -> None:
    from loadtests.harness.checks.runner import CHECKS

    assert tuple(CHECKS) == KNOWN_CHECKS


def test_a_long_string_is_not_echoed_even_where_a_typo_would_be() -> None:
    pasted = "whsec_" + "s" * 30
    for text in (th(V, f'metric = "{pasted}"', "max = 1"), T + f'[load]\nduration = "{pasted}"\n'):
        message = str(refused(text))
        assert pasted not in message and "a string of 36 characters" in message


def test_every_workload_the_file_may_name_has_a_locustfile() -> None:
    import loadtests
    from loadtests.harness.gate_config import WORKLOADS
    from loadtests.harness.locust_process import WORKLOADS as LOCUSTFILES

    assert tuple(LOCUSTFILES) == WORKLOADS
    assert all((Path(loadtests.__file__).parent / f).is_file() for f in LOCUSTFILES.values())


def test_the_gate_refuses_a_bad_file_with_exit_2_one_problem_a_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from loadtests.harness.gate import GateOptions, main

    bad = tmp_path / "gate.toml"
    bad.write_text('[load]\nusers = "many"\nwarmup_s = 5\n' + T, encoding="utf-8")
    assert main(GateOptions(config=bad, report_dir=tmp_path / "report", pin=False)) == 2
    assert capsys.readouterr().err.splitlines() == [
        "gate: configuration refused:",
        f"  {bad}: load.users: must be an integer, not 'many'",
        f"  {bad}: load.warmup_s: unknown key; expected one of: {LOAD_KEYS}, customers, max_steal",
    ]
    assert not (tmp_path / "report").exists()  # refused before anything ran


# ------------------------------------------------------------- [checks].propagation


@pytest.mark.parametrize(
    ("value", "millis"),
    [('"0ms"', 0.0), ('"100ms"', 100.0), ('"37.5ms"', 37.5), ('"0.2s"', 200.0), ('"1s"', 1000.0)],
)
def test_the_propagation_bound_is_read_in_milliseconds(value: str, millis: float) -> None:
    config = loads_config(T + f"[checks]\npropagation = {value}\n")
    assert config.propagation_ms == millis
    assert config.checks == dict.fromkeys(KNOWN_CHECKS, True)  # no check named propagation


def test_the_propagation_bound_defaults_to_exact() -> None:
    assert loads_config(T).propagation_ms == 0.0
    assert load_config(None).propagation_ms == 0.0


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('"-5ms"', "negative duration '-5ms'"),
        ('"100"', "unparseable duration '100'"),
        ('"fast"', "unparseable duration 'fast'"),
        ('"1m"', "unparseable duration '1m'"),
        ("100", 'must be a duration like "100ms", "0ms" or "0.2s", not 100'),
        ("true", 'must be a duration like "100ms", "0ms" or "0.2s", not true'),
    ],
)
def test_a_bad_propagation_bound_is_refused_naming_the_key(value: str, problem: str) -> None:
    message = str(refused(T + f"[checks]\npropagation = {value}\n"))
    assert message.startswith("checks.propagation: "), message
    assert problem in message


def test_the_propagation_field_name_is_no_file_key() -> None:
    message = str(refused(T + '[checks]\npropagation_ms = "5ms"\n'))
    assert message.startswith("checks.propagation_ms: unknown key")
    assert "propagation" in message.split("expected one of:")[1]


def test_the_command_line_propagation_overrides_the_file_and_is_refused_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from licensing_harness.cli import main as cli_main
    from loadtests.harness.gate import GateOptions, _overridden

    config = loads_config(T + '[checks]\npropagation = "0ms"\n')
    assert _overridden(config, GateOptions(propagation="100ms")).propagation_ms == 100.0
    assert _overridden(config, GateOptions()).propagation_ms == 0.0
    with pytest.raises(ConfigError, match=r"^--propagation: negative duration '-1ms'$"):
        _overridden(config, GateOptions(propagation="-1ms"))
    code = cli_main(["gate", "--propagation", "soon", "--report", str(tmp_path / "r"), "--no-pin"])
    assert code == 2
    assert "--propagation: unparseable duration 'soon'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
