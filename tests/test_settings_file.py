"""The TOML settings file beside the env vars: precedence, strictness, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from flightrec.settings import Settings, SettingsFileError


def settings_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, **env: str) -> Settings:
    path = tmp_path / "flightrec.toml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("FLIGHTREC_CONFIG", str(path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def test_the_file_sets_settings_and_env_vars_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(
        tmp_path, monkeypatch,
        'retention_days = 200\nmax_future_s = 60\ningest_tokens = ["agent-a", "agent-b"]\n'
        '[prices."my-model"]\ninput_per_mtok = 1.5\noutput_per_mtok = 3.0\n',
        FLIGHTREC_MAX_FUTURE_S="90",
    )
    assert settings.retention_days == 200
    assert settings.max_future_s == 90  # the environment overrides the file
    assert settings.ingest_tokens == ["agent-a", "agent-b"]
    assert settings.prices["my-model"].output_per_mtok == 3.0
    assert Settings(retention_days=365).retention_days == 365  # options override both


def test_an_unknown_key_is_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsFileError, match="unknown setting\\(s\\) retension"):
        settings_from(tmp_path, monkeypatch, "retention_days = 10\nretension = 3\n")


def test_bad_toml_names_the_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsFileError, match="line 2"):
        settings_from(tmp_path, monkeypatch, "retention_days = 10\nhost = \n")


def test_a_bad_value_names_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="retention_days"):
        settings_from(tmp_path, monkeypatch, 'retention_days = "many"\n')


def test_a_missing_file_is_an_error_not_a_silent_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLIGHTREC_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(SettingsFileError, match="does not exist"):
        Settings()
