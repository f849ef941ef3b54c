"""Commands that read the record: ``status``, ``release show``, ``kpi`` and ``dlq``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from bridge.cli.common import config_option, handle_errors, main, runtime
from bridge.errors import BadInput, did_you_mean
from bridge.model import ReleaseState


@main.command("status")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@handle_errors
def status_command(config_path: Path | None, as_json: bool) -> None:
    """Show watermarks, record counts, conflicts and records that failed to sync.

    \b
    Example:
      relbridge status --json --config config.toml
    """
    from bridge.reports.status import collect_status, render_status

    rt = runtime(config_path)
    try:
        status = collect_status(rt.store)
    finally:
        rt.close()
    click.echo(json.dumps(status, indent=2, default=str) if as_json else render_status(status))


@main.group("release")
def release_group() -> None:
    """Look at release records."""


@release_group.command("show")
@config_option
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@handle_errors
def release_show(config_path: Path | None, ref: str, as_json: bool) -> None:
    """Show one release: fields, owners, where it lives, changes, incidents, history, vetoes.

    REF is the canonical key, the ServiceNow number or the Jira version name.

    \b
    Example:
      relbridge release show RLSE0001001 --config config.toml
    """
    from bridge.reports.status import find_release, release_document, render_release

    rt = runtime(config_path)
    try:
        key = find_release(rt.store, ref)
        if key is None:
            from bridge.reports.releases import release_names

            hint = did_you_mean(ref, release_names(rt.store))
            raise BadInput(f"no release {ref!r}{hint} (try a key, a ServiceNow number or a Jira version name; "
                           "relbridge release list shows them)")
        document = release_document(rt.engine, key)
    finally:
        rt.close()
    click.echo(json.dumps(document, indent=2, default=str) if as_json else render_release(document))


@release_group.command("list")
@config_option
@click.option("--state", type=click.Choice([s.value for s in ReleaseState]), help="Only releases in this state.")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="Only releases planned to end on or after this day.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@handle_errors
def release_list(config_path: Path | None, state: str | None, since: Any, as_json: bool) -> None:
    """List releases, latest planned end first: state, authorization, plan against actual.

    \b
    Example:
      relbridge release list --state deploying --since 2026-01-01 --config config.toml
    """
    from bridge.reports.releases import release_rows, render_release_rows

    rt = runtime(config_path)
    try:
        rows = release_rows(rt.store, state=state, since=since.date() if since else None)
    finally:
        rt.close()
    click.echo(json.dumps(rows, indent=2, default=str) if as_json else render_release_rows(rows))


# --- KPIs -------------------------------------------------------------------------------------


@main.command("kpi")
@config_option
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="First planned-end day to include (YYYY-MM-DD).")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Last planned-end day to include (YYYY-MM-DD).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--html", "html_file", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Also write a self-contained HTML report with charts to this file.")
@handle_errors
def kpi_command(config_path: Path | None, since: Any, until: Any, fmt: str, html_file: Path | None) -> None:
    """Release KPIs over releases whose planned end falls in the period.

    JSON keys (a stable contract): releases, completed_as_planned_pct,
    rescheduled_or_delayed_pct, needing_revision_pct, incidents_caused_total,
    incidents_by_release, time_in_state_hours, lead_times_hours, vetoed_releases,
    satisfaction_avg, deployment_frequency_per_week, lead_time_for_changes_hours,
    change_failure_rate_pct, time_to_restore_hours, early_life_incidents,
    effort_hours_by_state, direct_cost_total, direct_cost_by_state (time logged,
    at [kpi] hourly_rate or group_rates), by_month, no_data (why a figure is null). --html saves the console's KPI dashboard as one file.

    \b
    Example:
      relbridge kpi --since 2026-01-01 --until 2026-03-31 --format json
      relbridge kpi --html kpi.html
    """
    from datetime import UTC, datetime

    from bridge.reports.kpi import Rates, kpis_from_store, render, render_html

    if html_file and not html_file.parent.is_dir():
        raise BadInput(f"--html {html_file}: folder {str(html_file.parent)!r} does not exist (create it first)")
    rt = runtime(config_path)
    try:
        kpis = kpis_from_store(rt.store, since=since.date() if since else None,
                               until=until.date() if until else None, now=datetime.now(UTC),
                               early_life_days=rt.config.verify.early_life_days,
                               rates=Rates.of_config(rt.config.kpi))
    finally:
        rt.close()
    click.echo(render(kpis, fmt))
    if html_file:
        try:
            html_file.write_text(render_html(kpis), encoding="utf-8")
        except OSError as exc:
            raise BadInput(f"--html {html_file}: cannot write ({exc.strerror})") from None
        click.echo(f"wrote {html_file}", err=True)


@main.group("dlq")
def dlq_group() -> None:
    """Dead letters: events that failed permanently (with the reason), ready to replay."""


@dlq_group.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@handle_errors
def dlq_list(config_path: Path | None, as_json: bool) -> None:
    """List dead letters, most recent first.

    \b
    Example:
      relbridge dlq list --config config.toml
    """
    from bridge.reports.dlq import list_dead_letters, render_dead_letters

    rt = runtime(config_path)
    try:
        click.echo(render_dead_letters(list_dead_letters(rt), as_json=as_json))
    finally:
        rt.close()


@dlq_group.command("retry")
@config_option
@click.argument("event_id", type=int)
@handle_errors
def dlq_retry(config_path: Path | None, event_id: int) -> None:
    """Put a dead letter back in the inbox; it re-reads the current source state when processed.

    \b
    Example (after fixing the cause, e.g. a mapping or a permission):
      relbridge dlq retry 42 --config config.toml
    """
    from bridge.reports.dlq import retry_dead_letter

    rt = runtime(config_path, writes=True)
    try:
        retry_dead_letter(rt, event_id)
    finally:
        rt.close()
    click.echo(f"dead letter {event_id} is queued again")


@dlq_group.command("drop")
@config_option
@click.argument("event_id", type=int)
@handle_errors
def dlq_drop(config_path: Path | None, event_id: int) -> None:
    """Forget a dead letter for good.

    \b
    Example:
      relbridge dlq drop 42 --config config.toml
    """
    from bridge.reports.dlq import drop_dead_letter

    rt = runtime(config_path)
    try:
        drop_dead_letter(rt, event_id)
    finally:
        rt.close()
    click.echo(f"dead letter {event_id} dropped")
