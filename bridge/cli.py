"""The ``relbridge`` command line.

Exit codes: 0 ok, 2 bad input (config, mapping, arguments — one-line reason, no
traceback), 1 failure. Every command takes ``--config PATH`` (or ``RELBRIDGE_CONFIG``, or
finds ``./relbridge.toml``) and refuses to start without one; only ``demo`` and ``sim`` run
on built-in settings. ``sync`` and ``run`` check plugins, store, systems and the mappings
against live metadata before their first write (``bridge.preflight``).
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
from bridge.config import Config, load_config, locate_config
from bridge.errors import BadInput, RelbridgeError
from bridge.model import SYSTEMS
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
        help="Config file (TOML). Default: env RELBRIDGE_CONFIG, else ./relbridge.toml.",
    )(func)


def load(config_path: Path | None) -> Config:
    return load_config(locate_config(config_path))


def runtime(config_path: Path | None, *, writes: bool = False) -> Runtime:
    """The runtime for a command; ``writes``: the command leads to writes in the systems,
    so a plugin that failed to load (perhaps the gate) stops it instead of a warning."""
    config = load(config_path)
    logging.basicConfig(level=config.log.level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rt = Runtime(config)
    if writes:
        from bridge.preflight import refuse_broken_plugins

        refuse_broken_plugins(rt.plugin_manager)
    return rt


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


# --- sync, status, release ---------------------------------------------------------------------


class Progress:
    """One status line per phase on stderr: rewritten in place on a terminal, else printed
    every few hundred records so logs stay readable."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.phase = ""

    def __call__(self, phase: str, done: int) -> None:
        if phase != self.phase:
            if self.tty and self.phase:
                click.echo("", err=True)
            self.phase = phase
        if self.tty:
            click.echo(f"\r{phase}: {done}", err=True, nl=False)
        elif done % 500 == 0 and done:
            click.echo(f"{phase}: {done}", err=True)

    def close(self) -> None:
        if self.tty and self.phase:
            click.echo("", err=True)


def print_report(report: Any) -> None:
    rows = report.as_dict()["by_entity"]
    columns = ("created", "updated", "unchanged", "conflicts", "errors", "deleted", "held")
    click.echo(f"{'entity/system':<22}" + "".join(f"{c:>11}" for c in columns))
    for name, counts in rows.items():
        click.echo(f"{name:<22}" + "".join(f"{counts.get(c, 0):>11}" for c in columns))
    for error in report.errors:
        click.echo(f"error: {error}", err=True)


@main.command("sync")
@config_option
@click.option("--once", is_flag=True, required=True, help="One full pass, then exit (the daemon is `relbridge run`).")
@click.option("--reconcile", is_flag=True,
              help="Also find objects deleted in either system that no change listing shows "
                   "(lists every object once; the daemon does this every "
                   "[sync] reconcile_interval_seconds).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary (or the --dry-run plan) as JSON.")
@click.option("--dry-run", is_flag=True,
              help="Read everything and print the plan (creates, updates old -> new, links, transitions, "
                   "held destructive writes); write nothing to either system or to the store.")
@click.option("--allow-destructive", is_flag=True,
              help="Make destructive writes without the [safety] max_destructive_writes bound, the ones "
                   "held earlier included.")
@handle_errors
def sync_command(config_path: Path | None, once: bool, reconcile: bool, as_json: bool, dry_run: bool,
                 allow_destructive: bool) -> None:
    """Sync both systems once: read every change since the last sync, then write it across.

    Exit code 1 when some records could not be synced (they are listed; the rest landed),
    or when the safety brake held destructive writes (see `relbridge held list`). With
    --dry-run the exit code is the one the real pass would have. Before the first write it
    checks plugins, store, both systems and the mappings against the systems' live fields
    (remembered while the mapping file stays the same); any problem stops it with one line
    and nothing written.

    \b
    Example:
      relbridge sync --once --config config.toml
      relbridge sync --once --dry-run --config config.toml
      relbridge sync --once --reconcile --config config.toml
    """
    from bridge.engine.envelope import SyncReport
    from bridge.engine.safety import put_back
    from bridge.preflight import check_before_writing

    rt = runtime(config_path, writes=True)
    if dry_run:
        check_before_writing(rt, dry_run=True)
        sys.exit(dry_run_command(rt, reconcile=reconcile, as_json=as_json, allow_destructive=allow_destructive))
    progress = None if as_json else Progress()
    try:
        check_before_writing(rt)
        put_back_report = SyncReport()
        if allow_destructive:
            rt.engine.brake.unbounded = True
            put_back(rt.engine, rt.store.held_writes(), put_back_report)
        report = rt.engine.sync_once(progress=progress)
        report.merge(put_back_report)
        if reconcile:
            rt.engine.reconcile(report)
        held, still_held = list(rt.engine.brake.held), rt.store.held_count()
    finally:
        if progress:
            progress.close()
        rt.close()
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        print_report(report)
    if held:
        click.echo(f"error: {brake_message(rt.config, len(held))}", err=True)
    elif still_held:
        click.echo(f"note: {still_held} destructive write(s) held earlier are waiting: relbridge held list", err=True)
    if report.errors or held:
        sys.exit(1)


def brake_message(config: Config, held: int) -> str:
    limit = config.safety.max_destructive_writes
    return (f"safety brake: held {held} destructive write(s), more than [safety] max_destructive_writes = "
            f"{limit} in one pass; review them with `relbridge held list`, apply them with "
            "`relbridge held release --all` or `relbridge sync --once --allow-destructive`")


def dry_run_command(rt: Runtime, *, reconcile: bool, as_json: bool, allow_destructive: bool) -> int:
    """``sync --once --dry-run``: print the plan; the exit code the real pass would have."""
    from bridge.engine.dryrun import dry_run, render_plan

    progress = None if as_json else Progress()
    try:
        plan = dry_run(rt, reconcile=reconcile, allow_destructive=allow_destructive, progress=progress)
    finally:
        if progress:
            progress.close()
        rt.close()
    click.echo(json.dumps(plan.as_dict(), indent=2, default=str) if as_json else render_plan(plan))
    if plan.held and not as_json:
        click.echo(f"error: {brake_message(rt.config, len(plan.held))} (dry run: nothing was held)", err=True)
    return 1 if plan.errors or plan.held else 0


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
            raise BadInput(f"no release {ref!r} (try a key, a ServiceNow number or a Jira version name)")
        document = release_document(rt.engine, key)
    finally:
        rt.close()
    click.echo(json.dumps(document, indent=2, default=str) if as_json else render_release(document))


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
    incidents_by_release, time_in_state_hours, lead_times_hours, vetoed_releases.

    \b
    Example:
      relbridge kpi --since 2026-01-01 --until 2026-03-31 --format json
      relbridge kpi --html kpi.html
    """
    from datetime import UTC, datetime

    from bridge.reports.kpi import kpis_from_store, render, render_html

    if html_file and not html_file.parent.is_dir():
        raise BadInput(f"--html {html_file}: folder {str(html_file.parent)!r} does not exist (create it first)")
    rt = runtime(config_path)
    try:
        kpis = kpis_from_store(rt.store, since=since.date() if since else None,
                               until=until.date() if until else None, now=datetime.now(UTC))
    finally:
        rt.close()
    click.echo(render(kpis, fmt))
    if html_file:
        try:
            html_file.write_text(render_html(kpis), encoding="utf-8")
        except OSError as exc:
            raise BadInput(f"--html {html_file}: cannot write ({exc.strerror})") from None
        click.echo(f"wrote {html_file}", err=True)


# --- demo -------------------------------------------------------------------------------------


@main.command("demo")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the demo's state store in this folder (default: a temporary folder).")
@handle_errors
def demo_command(keep: Path | None) -> None:
    """Run the whole product on built-in simulators: no accounts, no config needed.

    Starts ServiceNow and Jira simulators with demo data, syncs them, makes the changes a
    release team would make, syncs again and shows what moved where.

    \b
    Example:
      relbridge demo
    """
    from bridge.demo import run_demo

    logging.basicConfig(level=logging.ERROR)
    sys.exit(run_demo(click.echo, keep=keep))


# --- daemon and dead letters ------------------------------------------------------------------


@main.command("run")
@config_option
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None,
              help="Log lines as text or one JSON object each (default: [log] format).")
@click.option("--instance-id", default=None, help="Name of this instance in leases and logs (default: host:pid).")
@handle_errors
def run_command(config_path: Path | None, log_format: str | None, instance_id: str | None) -> None:
    """Run the daemon: pollers, the webhook receiver and workers, until SIGTERM or Ctrl-C.

    The receiver listens on [webhooks] bind and serves /webhooks/jira,
    /webhooks/servicenow, /healthz, /readyz, /metrics and /openapi.json. Several
    instances can share one PostgreSQL store. Like `sync`, it refuses to start (nothing
    written) when a plugin failed to load, the store or a system does not answer, or the
    mappings name a field the live systems lack.

    \b
    Example:
      relbridge run --config /etc/relbridge/config.toml --log-format json
    """
    from bridge.daemon.logs import configure_logging
    from bridge.daemon.service import run
    from bridge.preflight import check_before_writing

    rt = Runtime(load(config_path))
    configure_logging(rt.config, log_format or rt.config.log.format)  # type: ignore[arg-type]
    try:
        check_before_writing(rt)
    except BaseException:
        rt.close()
        raise
    sys.exit(run(rt, log_format=log_format, instance_id=instance_id))  # type: ignore[arg-type]


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


# --- held destructive writes ------------------------------------------------------------------


@main.group("held")
def held_group() -> None:
    """Destructive writes held back by the safety brake ([safety] max_destructive_writes)."""


@held_group.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@handle_errors
def held_list(config_path: Path | None, as_json: bool) -> None:
    """List held destructive writes, oldest first: what would change where, and why it waits.

    \b
    Example:
      relbridge held list --config config.toml
    """
    from bridge.engine.safety import describe_held, held_document

    rt = runtime(config_path)
    try:
        rows = rt.store.held_writes()
    finally:
        rt.close()
    if as_json:
        click.echo(json.dumps([held_document(row) for row in rows], indent=2, default=str))
        return
    if not rows:
        click.echo("no held writes")
        return
    for row in rows:
        click.echo(describe_held(row))
    click.echo(f"{len(rows)} held write(s): apply with `relbridge held release ID` or `--all`")


@held_group.command("release")
@config_option
@click.argument("ids", metavar="[ID]...", nargs=-1, type=int)
@click.option("--all", "release_all", is_flag=True, help="Apply every held write.")
@handle_errors
def held_release(config_path: Path | None, ids: tuple[int, ...], release_all: bool) -> None:
    """Apply held destructive writes now, past the bound.

    Each target object is read first: a newer edit made there since the write was held wins
    over it (the held write then ends without being written).

    \b
    Example:
      relbridge held release 3 --config config.toml
      relbridge held release --all --config config.toml
    """
    from bridge.engine.envelope import SyncReport
    from bridge.engine.safety import release

    rt = runtime(config_path, writes=True)
    try:
        if bool(ids) == release_all:
            raise BadInput("give held write ids or --all (see `relbridge held list`)")
        rows = rt.store.held_writes(ids=None if release_all else ids)
        missing = sorted(set(ids) - {row.id for row in rows})
        if missing:
            raise BadInput(f"no held write {', '.join(map(str, missing))} (see `relbridge held list`)")
        report = SyncReport()
        result = release(rt.engine, rows, report)
    finally:
        rt.close()
    click.echo(f"applied {len(result.applied)}, no longer needed {len(result.ended)}, "
               f"still held {len(result.still_held)}")
    for error in report.errors:
        click.echo(f"error: {error}", err=True)
    if result.still_held or report.errors:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
