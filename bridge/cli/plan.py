"""Release plans from deployment models: ``release plan`` and ``deployment-models list|show``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from bridge.cli.common import config_option, handle_errors, load, main, runtime
from bridge.cli.records import release_group
from bridge.errors import BadInput, did_you_mean


@release_group.command("plan")
@config_option
@click.argument("ref")
@click.option("--model", "model_name", required=True, help="The deployment model (relbridge deployment-models list).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="A value for a variable the model uses ({region} in a name, when = { scale = ... }).")
@click.option("--dry-run", is_flag=True, help="Show what would be created; create nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@handle_errors
def release_plan(config_path: Path | None, ref: str, model_name: str, sets: tuple[str, ...],
                 dry_run: bool, as_json: bool) -> None:
    """Make a release's phases and tasks from a deployment model, in both systems.

    Dates count from the release's planned start. A rerun creates nothing new; a run cut
    short resumes. REF is the canonical key, the ServiceNow number or the Jira version name.

    \b
    Example:
      relbridge release plan RLSE0001001 --model staged --set region=eu-west --set scale=large
    """
    from bridge.release.models import load_model
    from bridge.release.plan import Planner, parse_sets

    values = parse_sets(sets)
    rt = runtime(config_path, writes=not dry_run)
    try:
        model = load_model(model_name, rt.config.deployment.models_dir)
        key = _release_key(rt, ref)
        result = Planner(rt.store, rt.adapters).plan(key, model, values, dry_run=dry_run)
    finally:
        rt.close()
    document = _plan_document(result, dry_run)
    click.echo(json.dumps(document, indent=2, default=str) if as_json else _render_plan(document))


def _release_key(rt: Any, ref: str) -> str:
    from bridge.reports.releases import release_names
    from bridge.reports.status import find_release

    key = find_release(rt.store, ref)
    if key is None:
        raise BadInput(f"no release {ref!r}{did_you_mean(ref, release_names(rt.store))} "
                       "(relbridge release list shows them)")
    return key  # type: ignore[no-any-return]


def _plan_document(result: Any, dry_run: bool) -> dict[str, Any]:
    return {
        "release": result.release_key, "model": result.model, "dry_run": dry_run,
        "items": [{"kind": p.item.kind, "phase": p.item.phase, "name": p.item.name,
                   "planned_start": p.item.start, "planned_end": p.item.end,
                   "before_go_live": p.blocks_go_live} for p in result.items],
        "created": result.created, "existing": result.existing, "systems_without_plans": result.skipped,
    }


def _render_plan(document: dict[str, Any]) -> str:
    lines = [f"{document['release']}: plan from model {document['model']!r}"]
    for item in document["items"]:
        indent = "  " if item["kind"] == "phase" else "    "
        mark = "  (before go-live)" if item["before_go_live"] else ""
        lines.append(f"{indent}{item['name']}  {item['planned_start']:%Y-%m-%d %H:%M} → "
                     f"{item['planned_end']:%Y-%m-%d %H:%M}{mark}")
    verb = "would create" if document["dry_run"] else "created"
    for system, made in sorted(document["created"].items()):
        lines.append(f"{system}: {verb} {len(made)}, {document['existing'].get(system, 0)} there already")
    for system in document["systems_without_plans"]:
        lines.append(f"{system}: its adapter makes no plans (skipped)")
    return "\n".join(lines)


@main.group("deployment-models")
def models_group() -> None:
    """Deployment models: templates of phases and tasks for `relbridge release plan`."""


@models_group.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@handle_errors
def models_list(config_path: Path | None, as_json: bool) -> None:
    """List the models (shipped ones and [deployment] models_dir's), each checked.

    A model with a problem is listed with it, and the command exits 2.

    \b
    Example:
      relbridge deployment-models list --config config.toml
    """
    from bridge.release.models import ModelError, model_files, parse_model

    rows, problems = [], []
    for name, (source, text) in model_files(load(config_path).deployment.models_dir).items():
        try:
            model = parse_model(text, source, expected_name=name)
        except ModelError as exc:
            problems.append(str(exc))
            rows.append({"name": name, "source": source, "description": "", "phases": 0, "ok": False})
            continue
        rows.append({"name": name, "source": source, "description": model.description,
                     "phases": len(model.phases), "ok": True})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        for row in rows:
            click.echo(f"{row['name']:<16} {row['phases']} phases  {row['description'] or '(invalid)'}  [{row['source']}]")
    if problems:
        raise BadInput("\n".join(problems))


@models_group.command("show")
@config_option
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@handle_errors
def models_show(config_path: Path | None, name: str, as_json: bool) -> None:
    """Show one model: its phases with offsets and durations, its tasks and their conditions.

    \b
    Example:
      relbridge deployment-models show staged
    """
    from bridge.release.models import load_model

    model = load_model(name, load(config_path).deployment.models_dir)
    if as_json:
        click.echo(json.dumps(_model_document(model), indent=2))
        return
    click.echo(f"{model.name}: {model.description}  [{model.source}]")
    variables = ", ".join(model.variables())
    click.echo(f"variables: {variables or 'none'}")
    for phase in model.phases:
        click.echo(f"  {phase.name}  day {phase.offset_days:+d}, {phase.duration_days} day(s){_when(phase.when)}")
        for task in phase.tasks:
            click.echo(f"    {task.name}  {task.duration_hours:g} h{_when(task.when)}")


def _when(when: dict[str, str] | Any) -> str:
    return "  when " + ", ".join(f"{k}={v}" for k, v in when.items()) if when else ""


def _model_document(model: Any) -> dict[str, Any]:
    return {
        "name": model.name, "description": model.description, "source": model.source,
        "variables": list(model.variables()),
        "phases": [{"name": p.name, "offset_days": p.offset_days, "duration_days": p.duration_days,
                    "when": dict(p.when), "tasks": [{"name": t.name, "duration_hours": t.duration_hours,
                                                     "when": dict(t.when)} for t in p.tasks]}
                   for p in model.phases],
    }
