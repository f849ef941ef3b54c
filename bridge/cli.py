"""The ``relbridge`` command line.

Exit codes: 0 ok, 2 bad input (config, mapping, arguments — one-line reason, no
traceback), 1 failure. Every command takes ``--config PATH`` (or ``RELBRIDGE_CONFIG``).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from bridge import __version__
from bridge.config import Config, load_config
from bridge.errors import BadInput, RelbridgeError
from bridge.runtime import Runtime

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handle_errors(func: F) -> F:
    """Turn domain errors into exit codes with a one-line message, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BadInput as exc:
            fail(str(exc), 2)
        except RelbridgeError as exc:
            fail(str(exc), 1)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # a bug or an unexpected environment problem
            if os.environ.get("RELBRIDGE_DEBUG"):
                raise
            fail(f"{type(exc).__name__}: {exc} (set RELBRIDGE_DEBUG=1 for the traceback)", 1)

    return wrapper  # type: ignore[return-value]


def config_option(func: F) -> F:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="RELBRIDGE_CONFIG",
        help="Config file (TOML). Default: built-in settings for `relbridge sim`; env RELBRIDGE_CONFIG.",
    )(func)


def load(config_path: Path | None) -> Config:
    return load_config(config_path)


def runtime(config_path: Path | None) -> Runtime:
    config = load(config_path)
    logging.basicConfig(level=config.log.level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return Runtime(config)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="relbridge")
def main() -> None:
    """Keep one authoritative release record across ServiceNow and Jira.

    \b
    Try it with no accounts:
      relbridge demo
    Run the service:
      relbridge run --config config.toml
    """


# --- plugins ---------------------------------------------------------------------------------


@main.command("plugins")
@config_option
@handle_errors
def plugins_command(config_path: Path | None) -> None:
    """List loaded plugins, their versions and the hooks each implements.

    \b
    Example:
      relbridge plugins --config config.toml
    """
    from bridge.plugins import describe

    rt = runtime(config_path)
    for info in describe(rt.plugin_manager):
        click.echo(f"{info.name} {info.version}  [{info.source}]")
        for hook in info.hooks:
            click.echo(f"    {hook}")
    for problem in rt.plugin_manager.problems:
        click.echo(f"{problem.name}  FAILED TO LOAD: {problem.error}")


# --- mappings --------------------------------------------------------------------------------


@main.group("mappings")
def mappings_group() -> None:
    """Check and preview field mappings."""


@mappings_group.command("check")
@config_option
@click.option("--offline", is_flag=True, help="Only static checks; do not contact the systems.")
@handle_errors
def mappings_check(config_path: Path | None, offline: bool) -> None:
    """Validate the mapping files; without --offline also against the live systems' metadata.

    \b
    Example:
      relbridge mappings check --offline --config config.toml
    """
    rt = runtime(config_path)
    problems: list[str] = []
    for system in ("servicenow", "jira"):
        mapping = rt.mappings.for_system(system)
        problems += [f"{system}: {p}" for p in mapping.check_offline()]
        if not offline:
            problems += [f"{system}: {p}" for p in mapping.check_against(rt.adapters[system].metadata())]
    if problems:
        raise BadInput("mappings have problems:\n  " + "\n  ".join(problems))
    click.echo("mappings ok" + (" (offline)" if offline else " (checked against both systems)"))


@mappings_group.command("preview")
@config_option
@click.option("--system", type=click.Choice(["servicenow", "jira"]), required=True)
@click.option("--entity", type=click.Choice(["release", "change", "incident"]), required=True)
@click.option(
    "--record",
    "record_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="JSON file: a system record (its fields), or a canonical record (with \"canonical\": true).",
)
@handle_errors
def mappings_preview(config_path: Path | None, system: str, entity: str, record_file: Path) -> None:
    """Show what a mapping does to one record.

    A system record (as the API returns it) prints as the canonical record; a canonical
    record (a JSON object with "canonical": true) prints as the system payload.

    \b
    Example:
      relbridge mappings preview --system servicenow --entity change --record chg.json
    """
    from bridge.mapping import preview

    rt = runtime(config_path)
    try:
        record = json.loads(record_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BadInput(f"{record_file}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(record, dict):
        raise BadInput(f"{record_file}: expected a JSON object")
    direction = "to_system" if record.pop("canonical", False) else "to_canonical"
    result = preview(rt.mappings.for_system(system), entity, record, direction)
    click.echo(json.dumps(result, indent=2, default=str))


# --- simulators ------------------------------------------------------------------------------


@main.command("sim")
@click.option("--servicenow-port", type=click.IntRange(0, 65535), default=8081, show_default=True)
@click.option("--jira-port", type=click.IntRange(0, 65535), default=8082, show_default=True)
@click.option("--jira-flavor", type=click.Choice(["cloud", "server"]), default="cloud", show_default=True)
@click.option("--latency-ms", type=click.IntRange(0, 60_000), default=0, show_default=True,
              help="Added to every response, to behave like a remote instance.")
@click.option("--seed", type=click.Choice(["demo", "empty"]), default="demo", show_default=True)
@click.option("--state", "state_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Keep the simulators' data in this file across restarts.")
@handle_errors
def sim_command(servicenow_port: int, jira_port: int, jira_flavor: str, latency_ms: int, seed: str,
                state_file: Path | None) -> None:
    """Run the ServiceNow and Jira simulators until Ctrl-C.

    \b
    Example (then point config.example.toml at them):
      relbridge sim --seed demo --latency-ms 20
    """
    from bridge.sim import run_simulators

    run_simulators(servicenow_port=servicenow_port, jira_port=jira_port, jira_flavor=jira_flavor,
                   latency_ms=latency_ms, seed=seed, state_file=state_file)


if __name__ == "__main__":  # pragma: no cover
    main()
