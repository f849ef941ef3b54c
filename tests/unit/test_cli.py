"""The command line: help with examples, exit codes, one-line errors without tracebacks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bridge.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.example.toml"


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real process: exit codes and stderr exactly as a user or a script sees them.
    ``env`` is added to a copy of this process's environment, minus RELBRIDGE_CONFIG."""
    full = {k: v for k, v in os.environ.items() if k != "RELBRIDGE_CONFIG"}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "bridge", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120, env=full)


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        path = (*prefix, name)
        if isinstance(command, click.Group):
            found += all_commands(command, path)
        else:
            found.append(path)
    return found


@pytest.mark.parametrize("path", all_commands(main), ids=" ".join)
def test_every_command_has_help_with_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output


def test_version_help_plugins_and_offline_check_exit_zero() -> None:
    assert run("--version").stdout.startswith("relbridge, version ")
    assert run("--help").returncode == 0
    plugins = run("plugins", "--config", str(EXAMPLE))
    assert plugins.returncode == 0 and "relbridge_adapters" in plugins.stdout
    check = run("mappings", "check", "--offline", "--config", str(EXAMPLE))
    assert check.returncode == 0, check.stderr
    assert "mappings ok" in check.stdout


def bad_mapping(tmp_path: Path, edit: tuple[str, str]) -> Path:
    text = (ROOT / "mappings" / "jira.toml").read_text()
    old, new = edit
    assert old in text
    mapping = tmp_path / "jira.toml"
    mapping.write_text(text.replace(old, new, 1))
    config = tmp_path / "config.toml"
    config.write_text(f'[mappings]\njira = "{mapping}"\n')
    return config


@pytest.mark.parametrize("edit, expected", [
    (("[change.fields.summary]", "[change.fields.sumary]"),
     "change.fields.sumary — unknown canonical field (did you mean 'summary'?)"),
    (('Resolved = "resolved"', 'Resolved = "fixed"'), "incident.fields.state.values.Resolved"),
    (("[change.fields.summary]", "[change.fields.summary"), "line "),
])
def test_bad_mapping_exits_2_naming_file_and_key(tmp_path: Path, edit: tuple[str, str], expected: str) -> None:
    config = bad_mapping(tmp_path, edit)
    result = run("mappings", "check", "--offline", "--config", str(config))
    assert result.returncode == 2, result.stderr
    assert str(tmp_path / "jira.toml") in result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_config_with_unknown_key_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[sync]\nintervall_seconds = 5\n')
    result = run("sync", "--once", "--config", str(config))
    assert result.returncode == 2
    assert "sync.intervall_seconds — unknown key (did you mean 'interval_seconds'?)" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_arguments_exit_2() -> None:
    assert run("kpi", "--format", "xml").returncode == 2
    assert run("mappings", "preview", "--system", "sap").returncode == 2
    assert run("no-such-command").returncode == 2


def test_preview_shows_the_canonical_record_and_the_payload(tmp_path: Path) -> None:
    record = tmp_path / "chg.json"
    record.write_text('{"short_description": "Patch", "state": "-2", "approval": "approved", "type": "normal", "risk": "3"}')
    config = ("--config", str(EXAMPLE))
    result = run("mappings", "preview", "--system", "servicenow", "--entity", "change", "--record", str(record), *config)
    assert result.returncode == 0, result.stderr
    assert '"state": "scheduled"' in result.stdout and '"approval": "approved"' in result.stdout
    canonical = tmp_path / "canonical.json"
    canonical.write_text('{"canonical": true, "summary": "Patch", "state": "implement"}')
    result = run("mappings", "preview", "--system", "jira", "--entity", "change", "--record", str(canonical), *config)
    assert result.returncode == 0, result.stderr
    assert '"status": "Implement"' in result.stdout
    broken = tmp_path / "broken.json"
    broken.write_text("{nope")
    result = run("mappings", "preview", "--system", "jira", "--entity", "change", "--record", str(broken), *config)
    assert result.returncode == 2 and "not valid JSON" in result.stderr


def test_unknown_release_is_bad_input(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp_path}/s.db"\n')
    result = run("release", "show", "NOPE-1", "--config", str(config))
    assert result.returncode == 2 and "no release 'NOPE-1'" in result.stderr


def test_release_list_and_did_you_mean(tmp_path: Path) -> None:
    from bridge.store import Store

    url = f"sqlite:///{tmp_path}/s.db"
    store = Store(url)
    for key, name, state, end in (("RLSE1", "Spring <b>launch</b>", "deploying", "2026-03-10T00:00:00Z"),
                                  ("RLSE2", "Summer release", "closed", "2026-06-10T00:00:00Z"),
                                  ("RLSE3", "Undated", "planned", None)):
        store.put_record("release", key, {"fields": {"name": name, "state": state, "planned_end": end,
                                                     "actual_end": "2026-06-12T00:00:00Z" if state == "closed" else None}})
    store.close()
    config = tmp_path / "config.toml"
    config.write_text(f'[store]\nurl = "{url}"\n')
    listed = run("release", "list", "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["KEY", "STATE", "AUTH", "PLANNED", "END", "ACTUAL", "END", "SLIP", "NAME"]
    assert [line.split()[0] for line in lines[1:]] == ["RLSE2", "RLSE1", "RLSE3"]  # latest planned end first
    assert "+2d" in lines[1] and lines[2].endswith("Spring <b>launch</b>")
    only = run("release", "list", "--state", "deploying", "--since", "2026-01-01", "--json", "--config", str(config))
    rows = __import__("json").loads(only.stdout)
    assert [(r["key"], r["authorized"], r["missing_for_authorization"]) for r in rows] == [
        ("RLSE1", False, ["no change requests"])]
    assert run("release", "list", "--since", "2026-04-01", "--config", str(config)).stdout.count("RLSE") == 1
    bad = run("release", "list", "--state", "live", "--config", str(config))
    assert bad.returncode == 2 and "'live' is not one of" in bad.stderr
    typo = run("release", "show", "Sumer release", "--config", str(config))
    assert typo.returncode == 2 and "did you mean 'Summer release'?" in typo.stderr
    assert run("release", "show", "Summer release", "--config", str(config)).returncode == 0


def test_status_on_a_fresh_store(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp_path}/s.db"\n')
    result = run("status", "--json", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert '"servicenow/release": null' in result.stdout


@pytest.mark.slow
def test_wheel_ships_plugins_and_default_mappings(tmp_path: Path) -> None:
    """`pip install .` (not only -e) must carry the plugins and the mapping files."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    [wheel] = tmp_path.glob("relbridge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("relbridge_servicenow/__init__.py", "relbridge_jira/adapter.py", "relbridge_gate/__init__.py",
                     "bridge/default_mappings/servicenow.toml", "bridge/default_mappings/jira.toml",
                     "bridge/sim/servicenow/app.py"):
        assert expected in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[relbridge]" in text and "gate = relbridge_gate" in text


# -- fail closed at start, and the messages a new admin meets -------------------------------

#: Arguments each command needs besides --config, so that only the missing config can fail.
ARGUMENTS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("release", "show"): ("RLSE0001001",),
    ("release", "plan"): ("RLSE0001001", "--model", "standard"),
    ("deployment-models", "show"): ("standard",),
    ("dlq", "retry"): ("1",),
    ("dlq", "drop"): ("1",),
    ("held", "release"): ("--all",),
    ("conflicts", "resolve"): ("1", "--take", "jira"),
    ("sync",): ("--once",),
    ("mappings", "preview"): ("--system", "servicenow", "--entity", "change", "--number", "CHG0030001"),
}
NEEDS_NO_CONFIG = {("demo",), ("sim",)}


@pytest.mark.parametrize("path", [p for p in all_commands(main) if p not in NEEDS_NO_CONFIG], ids=" ".join)
def test_without_a_config_every_command_but_demo_and_sim_exits_2(
    path: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, [*path, *ARGUMENTS.get(path, ())], env={"RELBRIDGE_CONFIG": None})
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert "no configuration found: no --config, no RELBRIDGE_CONFIG and no ./relbridge.toml" in lines[0]
    assert str(tmp_path) in lines[0] and "copy config.example.toml" in lines[0]
    assert list(tmp_path.iterdir()) == []  # no ./relbridge.db or anything else was created


def test_relbridge_toml_in_the_working_folder_and_relbridge_config_are_found(tmp_path: Path) -> None:
    (tmp_path / "relbridge.toml").write_text('[jira]\nprojects = ["WEB"]\n')
    assert run("mappings", "check", "--offline", cwd=tmp_path).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert run("mappings", "check", "--offline", cwd=elsewhere).returncode == 2
    found = run("mappings", "check", "--offline", cwd=elsewhere,
                env={"RELBRIDGE_CONFIG": str(tmp_path / "relbridge.toml")})
    assert found.returncode == 0, found.stderr


def test_the_example_config_copied_to_another_folder_works(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE, tmp_path / "relbridge.toml")
    result = run("mappings", "check", "--offline", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "mappings ok" in result.stdout


def test_a_bad_key_from_the_environment_names_the_variable_not_the_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[sync]\nworkers = 2\n")
    result = run("status", "--config", str(config), env={"RELBRIDGE_SYNC__WORKERS": "0"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: environment variable RELBRIDGE_SYNC__WORKERS: sync.workers — "
        "Input should be greater than or equal to 1")
    assert str(config) not in result.stderr


def test_an_unreachable_store_is_a_failure_not_bad_input(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[store]\nurl = "postgresql://relbridge@127.0.0.1:1/relbridge?connect_timeout=2"\n')
    result = run("status", "--config", str(config))
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: cannot open the store at postgresql://relbridge@127.0.0.1:1/relbridge")


def test_kpi_html_into_a_missing_folder_is_one_line_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp_path}/s.db"\n')
    target = tmp_path / "no-such-folder" / "kpi.html"
    result = run("kpi", "--html", str(target), "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: --html {target}: folder '{target.parent}' does not exist (create it first)")
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("body, expected", [
    ('{"result": [{"short_description": "Patch", "state": "-2"}]}', 0),
    ('{"result": {"short_description": "Patch", "state": "-2"}}', 0),
    ('[{"short_description": "Patch", "state": "-2"}]', 0),
    ('{"result": [{"state": "-2"}, {"state": "-1"}]}', "holds 2 records; preview takes exactly one"),
    ('{"result": []}', "holds 0 records; preview takes exactly one"),
    ('"just text"', "expected one record"),
])
def test_preview_takes_exactly_one_record(tmp_path: Path, body: str, expected: int | str) -> None:
    record = tmp_path / "chg.json"
    record.write_text(body)
    result = run("mappings", "preview", "--system", "servicenow", "--entity", "change",
                 "--record", str(record), "--config", str(EXAMPLE))
    if expected == 0:
        assert result.returncode == 0, result.stderr
        assert '"state": "scheduled"' in result.stdout and '"summary": "Patch"' in result.stdout
        return
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert str(expected) in line
    if "records" in line:
        assert "--number" in line


def test_preview_needs_a_record_or_a_number() -> None:
    neither = run("mappings", "preview", "--system", "jira", "--entity", "change", "--config", str(EXAMPLE))
    assert neither.returncode == 2 and "give one of --record FILE or --number NUMBER" in neither.stderr


BROKEN_PLUGIN = "raise RuntimeError('boom at import')\n"


@pytest.mark.parametrize("command, expected", [
    (("sync", "--once"), 2),
    (("dlq", "retry", "1"), 2),
    (("held", "release", "--all"), 2),
    (("status",), 0),
    (("plugins",), 0),
])
def test_a_plugin_that_fails_to_load_stops_every_command_that_writes(
    tmp_path: Path, command: tuple[str, ...], expected: int
) -> None:
    (tmp_path / "acme_gate.py").write_text(BROKEN_PLUGIN)
    config = tmp_path / "config.toml"
    # Systems that do not answer: a refusal must come before any attempt to reach them.
    config.write_text(f'[plugins]\nmodules = ["acme_gate"]\n[store]\nurl = "sqlite:///{tmp_path}/s.db"\n'
                      '[servicenow]\nurl = "http://127.0.0.1:1"\n[jira]\nurl = "http://127.0.0.1:1"\n')
    result = run(*command, "--config", str(config), env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == expected, result.stderr
    if expected == 2:
        error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert error == [
            "error: plugin failed to load ('acme_gate': RuntimeError: boom at import); relbridge "
            "does not write without it — fix or install it, or name it in [plugins] disabled if it "
            "is meant to be off"]
    elif command == ("plugins",):
        assert "acme_gate  FAILED TO LOAD: RuntimeError: boom at import" in result.stdout
