"""Configuration: file, environment overrides, errors, secrets, relative paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import load_config, locate_config
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
    ('[jira]\ntimezone = "Mars/Olympus"\n', {}, "jira.timezone — unknown time zone 'Mars/Olympus'"),
    ('[webhooks]\nbind = "8090"\n', {}, "webhooks.bind — '8090' is not host:port"),
    ('[nonsense]\nx = 1\n', {}, "nonsense — unknown key"),
    ('[jira\n', {}, "invalid TOML"),
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


@pytest.mark.parametrize("text, env, expected", [
    ('[sync]\nworkers = 2\n', {"RELBRIDGE_SYNC__RECONCILE_INTERVAL_SECONDS": "-5"},
     "environment variable RELBRIDGE_SYNC__RECONCILE_INTERVAL_SECONDS: sync.reconcile_interval_seconds"
     " — Input should be greater than or equal to 0"),
    ('[sync]\nworkers = 2\n', {"RELBRIDGE_SYNC__INTERVALL_SECONDS": "5"},
     "environment variable RELBRIDGE_SYNC__INTERVALL_SECONDS: sync.intervall_seconds — unknown key "
     "(did you mean 'interval_seconds'?)"),
    ('', {"RELBRIDGE_NONSENSE__X": "1"}, "environment variable RELBRIDGE_NONSENSE__X: nonsense — unknown key"),
    ('', {"RELBRIDGE_JIRA__PROJECTS": "[]"},
     "environment variable RELBRIDGE_JIRA__PROJECTS: jira.projects — List should have at least 1 item"),
    ('', {"RELBRIDGE_JIRA__PROJECTS": "[oops"}, "environment variable RELBRIDGE_JIRA__PROJECTS: not valid JSON"),
])
def test_an_error_about_a_key_from_the_environment_names_the_variable(
    tmp_path: Path, text: str, env: dict, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=env)
    assert str(caught.value).startswith(expected)
    assert str(path) not in str(caught.value)


def test_a_bad_key_in_the_file_still_names_the_file_when_the_environment_sets_others(tmp_path: Path) -> None:
    path = write(tmp_path, "[sync]\nworkers = 0\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={"RELBRIDGE_SYNC__PAGE_SIZE": "10"})
    assert str(caught.value) == f"{path}: sync.workers — Input should be greater than or equal to 1"


def test_locate_config_prefers_the_given_path_then_relbridge_toml(tmp_path: Path) -> None:
    given = tmp_path / "given.toml"
    assert locate_config(given, cwd=tmp_path) == given
    with pytest.raises(ConfigError) as caught:
        locate_config(None, cwd=tmp_path)
    assert str(caught.value).startswith(
        f"no configuration found: no --config, no RELBRIDGE_CONFIG and no ./relbridge.toml in {tmp_path}")
    (tmp_path / "relbridge.toml").write_text("")
    assert locate_config(None, cwd=tmp_path) == tmp_path / "relbridge.toml"


def test_the_example_leaves_mappings_to_the_packaged_defaults(tmp_path: Path) -> None:
    """Copied anywhere, the example must not point at mapping files that are not there."""
    copy = write(tmp_path, EXAMPLE.read_text())
    config = load_config(copy, env={})
    assert config.mappings.servicenow is None and config.mappings.jira is None


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
