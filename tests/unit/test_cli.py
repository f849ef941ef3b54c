"""The command line: help with examples, exit codes, one-line errors without tracebacks."""

from __future__ import annotations

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


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real process: exit codes and stderr exactly as a user or a script sees them."""
    return subprocess.run([sys.executable, "-m", "bridge", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


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
    result = run("mappings", "preview", "--system", "servicenow", "--entity", "change", "--record", str(record))
    assert result.returncode == 0, result.stderr
    assert '"state": "scheduled"' in result.stdout and '"approval": "approved"' in result.stdout
    canonical = tmp_path / "canonical.json"
    canonical.write_text('{"canonical": true, "summary": "Patch", "state": "implement"}')
    result = run("mappings", "preview", "--system", "jira", "--entity", "change", "--record", str(canonical))
    assert result.returncode == 0, result.stderr
    assert '"status": "Implement"' in result.stdout
    broken = tmp_path / "broken.json"
    broken.write_text("{nope")
    result = run("mappings", "preview", "--system", "jira", "--entity", "change", "--record", str(broken))
    assert result.returncode == 2 and "not valid JSON" in result.stderr


def test_unknown_release_is_bad_input(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp_path}/s.db"\n')
    result = run("release", "show", "NOPE-1", "--config", str(config))
    assert result.returncode == 2 and "no release 'NOPE-1'" in result.stderr


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
                     "bridge/sim/servicenow.py"):
        assert expected in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[relbridge]" in text and "gate = relbridge_gate" in text
