"""``relbridge plugins`` and ``relbridge mappings check | preview``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from bridge.cli.common import config_option, handle_errors, main, runtime
from bridge.errors import BadInput
from bridge.model import SYSTEMS
from bridge.runtime import Runtime

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
    for system in SYSTEMS:
        mapping = rt.mappings.for_system(system)
        problems += [f"{system}: {p}" for p in mapping.check_offline()]
        if not offline:
            problems += [f"{system}: {p}" for p in mapping.check_against(rt.adapters[system].metadata())]
    if problems:
        raise BadInput("mappings have problems:\n  " + "\n  ".join(problems))
    click.echo("mappings ok" + (" (offline)" if offline else " (checked against both systems)"))


@mappings_group.command("preview")
@config_option
@click.option("--system", type=click.Choice(list(SYSTEMS)), required=True)
@click.option("--entity", type=click.Choice(["release", "change", "incident"]), required=True)
@click.option(
    "--record",
    "record_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON file: one system record (its fields), or a canonical record (with \"canonical\": true).",
)
@click.option("--number", help="Read this record from the live system instead: a ServiceNow number "
                               "(CHG0030001), a Jira issue key (OPS-12) or version name.")
@handle_errors
def mappings_preview(config_path: Path | None, system: str, entity: str, record_file: Path | None,
                     number: str | None) -> None:
    """Show what a mapping does to one record.

    A system record (as the API returns it, a {"result": ...} envelope with one record
    is fine) prints as the canonical record; a canonical record (a JSON object with
    "canonical": true) prints as the system payload. --number reads the record from the
    live system through the adapter (read only).

    \b
    Example:
      relbridge mappings preview --system servicenow --entity change --record chg.json
      relbridge mappings preview --system servicenow --entity change --number CHG0030001
      relbridge mappings preview --system jira --entity release --number "Release 1.1"
    """
    from bridge.mapping.loader import preview

    if (record_file is None) == (number is None):
        raise BadInput("give one of --record FILE or --number NUMBER")
    rt = runtime(config_path)
    try:
        mapping = rt.mappings.for_system(system)
        if number is not None:
            record, found = live_record(rt, system, entity, number, mapping.fields_to_read(entity))
        else:
            assert record_file is not None
            record, found = one_record(record_file), {}
        direction = "to_system" if record.pop("canonical", False) else "to_canonical"
        result = {**found, **preview(mapping, entity, record, direction)}
    finally:
        rt.close()
    click.echo(json.dumps(result, indent=2, default=str))


def one_record(record_file: Path) -> dict[str, Any]:
    """The one record in a JSON file: a bare object, or the one record of a ``{"result":
    ...}`` envelope (ServiceNow) or a list; any other count is refused with a hint."""
    try:
        data = json.loads(record_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BadInput(f"{record_file}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except OSError as exc:
        raise BadInput(f"{record_file}: cannot read ({exc.strerror})") from None
    if isinstance(data, dict) and set(data) == {"result"}:
        data = data["result"]
    if isinstance(data, list):
        if len(data) != 1:
            raise BadInput(
                f"{record_file}: holds {len(data)} records; preview takes exactly one — keep one "
                "record in the file, or preview a live one with --number NUMBER"
            )
        data = data[0]
    if not isinstance(data, dict):
        raise BadInput(f"{record_file}: expected one record, a JSON object of its fields")
    return data


def live_record(rt: Runtime, system: str, entity: str, number: str,
                fields: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The live record's fields, read through the adapter, and where it came from."""
    adapter = rt.adapters.get(system)
    find = getattr(adapter, "find_by_key", None)
    if find is None:
        raise BadInput(f"the {system} adapter cannot look records up by number; use --record FILE")
    found = find(entity, number, fields)
    if found is None:
        raise BadInput(f"{system} has no {entity} {number!r}")
    return dict(found.fields), {"id": found.id, "number": found.key, "url": found.url}
