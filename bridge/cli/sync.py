"""Commands that move data: ``sim``, ``sync --once``, ``run``, ``demo`` and ``held``."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bridge.cli.common import config_option, handle_errors, load, main, runtime
from bridge.config import Config
from bridge.errors import BadInput
from bridge.runtime import Runtime

if TYPE_CHECKING:
    from bridge.engine.envelope import SyncReport

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
    from bridge.preflight import check_before_writing

    rt = runtime(config_path, writes=True)
    if dry_run:
        check_before_writing(rt, dry_run=True)
        sys.exit(dry_run_command(rt, reconcile=reconcile, as_json=as_json, allow_destructive=allow_destructive))
    progress = None if as_json else Progress()
    try:
        check_before_writing(rt)
        report, held, still_held = _one_pass(rt, reconcile, allow_destructive, progress)
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


def _one_pass(rt: Runtime, reconcile: bool, allow_destructive: bool,
              progress: Progress | None) -> tuple[SyncReport, list[Any], int]:
    """The pass itself: the report, the writes the brake held now, and how many held writes
    wait in the store."""
    from bridge.engine.envelope import SyncReport
    from bridge.engine.safety import put_back

    put_back_report = SyncReport()
    if allow_destructive:
        rt.engine.brake.unbounded = True
        put_back(rt.engine, rt.store.held_writes(), put_back_report)
    report = rt.engine.sync_once(progress=progress)
    rt.engine.verifier.resume()  # verifications a crash or a stop cut short
    report.merge(put_back_report)
    if reconcile:
        rt.engine.reconcile(report)
    return report, list(rt.engine.brake.held), rt.store.held_count()


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
