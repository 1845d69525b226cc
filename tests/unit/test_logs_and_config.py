import io
import logging

import pytest
from pydantic import ValidationError

from licensing_service import logs
from licensing_service.config import ConfigError, Settings


def test_secrets_are_masked_in_log_output() -> None:
    stream = io.StringIO()
    handler = logs.configure("info", stream)
    try:
        log = logging.getLogger("licensing_service.test")
        log.info("token POSPAL-ABCD-EFGH-JKLM-NPQR from till")
        log.info('body {"token": "hunter2", "machineFingerprint": "raw-serial-99"}')
        log.info("Authorization: Bearer re_live_abcdefghijkl and whsec_abcdefghijkl")
    finally:
        logging.getLogger().removeHandler(handler)
    output = stream.getvalue()
    for secret in ("POSPAL-ABCD", "hunter2", "raw-serial-99", "re_live_abc", "whsec_abc"):
        assert secret not in output
    assert output.count(logs.MASK) >= 5


def test_production_refuses_test_clock_and_wildcard_cors() -> None:
    with pytest.raises((ConfigError, ValidationError), match="test-clock"):
        Settings(environment="production", test_clock=True)
    with pytest.raises((ConfigError, ValidationError), match="CORS"):
        Settings(environment="production", cors_origins="*")
    Settings(environment="development", cors_origins="*")  # fine outside production


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LH_PORT", "9999")
    monkeypatch.setenv("RESEND_API_KEY", "re_from_env")
    settings = Settings()
    assert settings.port == 9999
    assert settings.resend_api_key is not None
    assert settings.resend_api_key.get_secret_value() == "re_from_env"
    assert "re_from_env" not in repr(settings)
