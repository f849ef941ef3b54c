"""Configuration: file, environment overrides, errors, secrets, relative paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import load_config
from bridge.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_example_config_loads_and_matches_simulator_defaults() -> None:
    config = load_config(EXAMPLE, env={})
    assert config.servicenow.url == "http://127.0.0.1:8081"
    assert config.jira.url == "http://127.0.0.1:8082"
    assert config.jira.projects == ["OPS"]
    assert config.servicenow.password.get_secret_value() == "admin"


def test_defaults_without_a_file() -> None:
    config = load_config(None, env={})
    assert config.sync.interval_seconds == 60 and config.gate.policy == "revert"
    assert config.mappings.servicenow is None  # the packaged default mapping


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[jira]\nprojects = ["A"]\ntoken = "from-file"\n[sync]\nworkers = 2\n')
    env = {
        "RELBRIDGE_JIRA__PROJECTS": '["OPS", "WEB"]',
        "RELBRIDGE_JIRA__TOKEN": "from-env",
        "RELBRIDGE_SYNC__WORKERS": "8",
        "UNRELATED": "x",
    }
    config = load_config(path, env=env)
    assert config.jira.projects == ["OPS", "WEB"]
    assert config.jira.token.get_secret_value() == "from-env"
    assert config.sync.workers == 8


def test_secrets_never_show_in_repr_or_dump(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[servicenow]\npassword = "hunter2-secret"\n'), env={})
    assert "hunter2-secret" not in repr(config)
    assert "hunter2-secret" not in config.model_dump_json()


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    path = write(tmp_path, '[store]\nurl = "sqlite:///state/relbridge.db"\n[mappings]\njira = "maps/jira.toml"\n')
    config = load_config(path, env={})
    assert config.store.url == f"sqlite:///{tmp_path / 'state' / 'relbridge.db'}"
    assert config.mappings.jira == tmp_path / "maps" / "jira.toml"


@pytest.mark.parametrize("text, env, expected", [
    ('[jira]\nprojetcs = ["A"]\n', {}, "jira.projetcs — unknown key (did you mean 'projects'?)"),
    ('[sync]\ninterval_seconds = -1\n', {}, "sync.interval_seconds — Input should be greater than 0"),
    ('', {"RELBRIDGE_SYNC__RECONCILE_INTERVAL_SECONDS": "-5"},
     "sync.reconcile_interval_seconds — Input should be greater than or equal to 0"),
    ('[jira]\ntimezone = "Mars/Olympus"\n', {}, "jira.timezone — unknown time zone 'Mars/Olympus'"),
    ('[webhooks]\nbind = "8090"\n', {}, "webhooks.bind — '8090' is not host:port"),
    ('[nonsense]\nx = 1\n', {}, "nonsense — unknown key"),
    ('[jira\n', {}, "invalid TOML"),
    ('', {"RELBRIDGE_JIRA__PROJECTS": "[oops"}, "RELBRIDGE_JIRA__PROJECTS — not valid JSON"),
])
def test_errors_name_the_file_and_the_dotted_key(tmp_path: Path, text: str, env: dict, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=env)
    assert str(caught.value).startswith(f"{path}: ")
    assert expected in str(caught.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml", env={})


def test_safety_brake_keys_defaults_file_and_environment(tmp_path: Path) -> None:
    defaults = load_config(None, env={}).safety
    assert (defaults.max_destructive_writes, defaults.window_seconds) == (10, 600)
    example = load_config(EXAMPLE, env={}).safety
    assert (example.max_destructive_writes, example.window_seconds) == (10, 600)
    path = write(tmp_path, "[safety]\nmax_destructive_writes = 0\nwindow_seconds = 60\n")
    config = load_config(path, env={"RELBRIDGE_SAFETY__WINDOW_SECONDS": "120"})
    assert (config.safety.max_destructive_writes, config.safety.window_seconds) == (0, 120)


@pytest.mark.parametrize("text, message", [
    ("[safety]\nmax_destructive_writes = -1\n", "safety.max_destructive_writes — Input should be greater than or equal to 0"),
    ("[safety]\nwindow_seconds = 0\n", "safety.window_seconds — Input should be greater than 0"),
    ("[safety]\nmax_destructive_write = 3\n", "did you mean 'max_destructive_writes'?"),
])
def test_bad_safety_values_are_config_errors_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), env={})
