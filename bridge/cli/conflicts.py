"""``relbridge conflicts``: review the conflicts relbridge met and settle them by hand."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import click

from bridge.cli.common import config_option, handle_errors, main, runtime
from bridge.errors import BadInput


@main.group("conflicts")
def conflicts_group() -> None:
    """Edits of one field made on both sides: review them, and settle them by hand."""


@conflicts_group.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--all", "include_settled", is_flag=True, help="Include conflicts already settled by a person.")
@handle_errors
def conflicts_list(config_path: Path | None, as_json: bool, include_settled: bool) -> None:
    """List conflicts nobody settled yet: record, field, both values, when, the policy
    applied and the value it kept.

    \b
    Example:
      relbridge conflicts list --config config.toml
      relbridge conflicts list --all --json
    """
    from bridge.reports.conflicts import conflict_documents, render_conflicts

    rt = runtime(config_path)
    try:
        documents = conflict_documents(rt.store, include_settled=include_settled)
    finally:
        rt.close()
    click.echo(json.dumps(documents, indent=2, default=str) if as_json else render_conflicts(documents))


@conflicts_group.command("resolve")
@config_option
@click.argument("conflict_id", metavar="ID", type=int)
@click.option("--take", required=True, metavar="servicenow|jira|VALUE",
              help="Keep one side's value, or give the value itself (read as the field's type).")
@click.option("--by", "by", metavar="NAME", help="Who settles it, for the history. Default: your login name.")
@handle_errors
def conflicts_resolve(config_path: Path | None, conflict_id: int, take: str, by: str | None) -> None:
    """Settle conflict ID: write the chosen value to both systems and record who chose it.

    The value goes through the normal write path (record lock, safety brake, gate for a
    release state); the record's history shows the change and who settled it.

    \b
    Example:
      relbridge conflicts resolve 12 --take jira --config config.toml
      relbridge conflicts resolve 13 --take "Prod window Friday 18:00" --by "Ada Lovelace"
    """
    from bridge.engine.settle import settle

    who = (by if by is not None else _login()).strip()
    if not who:
        raise BadInput("--by: give a name")
    rt = runtime(config_path, writes=True)
    try:
        done = settle(rt.engine, conflict_id, take, who)
    finally:
        rt.close()
    row = done.conflict
    source = f"the {done.took} side" if done.took != "value" else "the value given"
    click.echo(f"settled conflict {row.id}: {row.entity} {row.key} {row.field} = {done.value!r} "
               f"({source}), by {who}")
    if done.report.errors:
        for error in done.report.errors:
            click.echo(f"error: {error}", err=True)
        click.echo("the value is saved and will be written by the next sync", err=True)
        raise SystemExit(1)


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in this environment (a container without a user)
        return ""
