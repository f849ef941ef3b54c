"""``relbridge demo``: the whole product in one command, with no accounts.

Starts both simulators with the demo seed and a SQLite store in a temporary folder, syncs,
plans one release from the shipped "standard" deployment model (phases and tasks in both
systems; its tasks before "Deploy" must be done before it may go live), makes the changes a
release team would make (the tasks done, one in each system; ServiceNow approves a change
and records its backout plan, which readiness requires; Jira releases two versions — one authorized, one
not — and an incident is opened against a change), shows the plan of the next sync with a
dry run (nothing written), syncs again, verifies the deployed release against a health
page, and shows what moved where and the final release records (readiness, verification,
early-life incidents).
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from bridge.config import Config
from bridge.engine import SyncReport
from bridge.engine.dryrun import dry_run, render_plan
from bridge.reports.status import release_document, render_release
from bridge.runtime import Runtime
from bridge.sim import start_simulators

AUTH = ("admin", "admin")

Echo = Callable[[str], None]


def run_demo(echo: Echo, *, keep: Path | None = None) -> int:
    folder = keep or Path(tempfile.mkdtemp(prefix="relbridge-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    with start_simulators(seed="demo") as sims, _health_page() as health_url:
        assert sims.jira_url is not None
        echo(f"ServiceNow simulator: {sims.servicenow_url}")
        echo(f"Jira simulator:       {sims.jira_url}")
        echo(f"State store:          {folder / 'relbridge.db'}")
        echo(f"Portal health page:   {health_url}  ([[verify.checks]] after a go-live)")
        echo("Readiness:            [gate] require_change_fields = [\"backout_plan\"]\n")
        rt = Runtime(_demo_config(sims.servicenow_url, sims.jira_url, folder, health_url))
        try:
            echo("== 1. First sync: both systems into one release record")
            _summary(echo, rt.engine.sync_once())
            mark = datetime.now(UTC)
            _plan(echo, rt, "Customer portal 5.2")

            echo("\n== 2. What the team does next")
            team = Team(sims.servicenow_url, sims.jira_url, echo)
            team.finish_plan_tasks(("Freeze the release branch", "Run the acceptance tests"))
            team.approve_pending_change("Customer portal 5.2")
            team.release_version("Customer portal 5.2")
            team.release_version("Mobile app 3.0")
            team.open_incident("Release new login flow", "Portal sessions expire after release")
            team.work_note("Release new login flow", "Smoke tests passed in staging")
            team.jira_comment("Release new login flow", "Rollback plan reviewed: go for Friday")

            echo("\n== 3. Dry run: what the second sync will do (relbridge sync --once --dry-run)")
            for line in render_plan(dry_run(rt), limit=4).splitlines():
                echo(f"  {line}")

            echo("\n== 4. Second sync")
            _summary(echo, rt.engine.sync_once())
            # The next pass reads back what the second one wrote (the gate's revert, derived
            # states) and finds nothing more to do.
            rt.engine.sync_once()
            rt.engine.finish_release_work()  # the go-live's verification runs off the sync worker

            _show_results(echo, rt, team, mark)
        finally:
            rt.close()
    echo("Done. Try: relbridge sim --seed demo   (then relbridge sync --once --config config.example.toml)")
    return 0


def _plan(echo: Echo, rt: Runtime, name: str) -> None:
    """Step 1b: the release's phases and tasks from the shipped "standard" model, twice
    (the rerun makes nothing new)."""
    from bridge.release.models import load_model
    from bridge.release.plan import Planner
    from bridge.reports.status import find_release

    key = find_release(rt.store, name)
    if key is None:
        return
    echo(f"\n== 1b. Plan it: relbridge release plan {key} --model standard")
    planner = Planner(rt.store, rt.adapters)
    model = load_model("standard", None)
    for attempt in ("first run", "rerun"):
        result = planner.plan(key, model, {})
        made = ", ".join(f"{system} {len(items)}" for system, items in sorted(result.created.items()))
        echo(f"  {attempt}: created {made} (phases and tasks; tasks before Deploy must be done to go live)")


def _demo_config(servicenow_url: str, jira_url: str, folder: Path, health_url: str) -> Config:
    """The simulators, a SQLite store in ``folder``, readiness on and one verification check."""
    return Config.model_validate({
        "servicenow": {"url": servicenow_url},
        "jira": {"url": jira_url},
        "store": {"url": f"sqlite:///{folder / 'relbridge.db'}"},
        "sync": {"overlap_seconds": 5},
        "gate": {"require_change_fields": ["backout_plan"]},
        "verify": {"checks": [{"name": "portal health", "url": health_url, "body_contains": "up"}]},
    })


def _show_results(echo: Echo, rt: Runtime, team: Team, mark: datetime) -> None:
    """Steps 5 and 6: what moved where since ``mark``, and the release records."""
    echo("\n== 5. What moved where")
    for row in rt.store.history(since=mark):
        if not row.field.startswith("_"):
            echo(f"  {row.entity:<8} {row.key:<14} {row.field:<16} {_short(row.old)} -> {_short(row.new)}"
                 f"   (from {row.source})")
    for veto in rt.store.vetoes(since=mark):
        echo(f"  gate     {veto.release_key:<14} vetoed {veto.old} -> {veto.new}: {veto.reason}")

    for name in ("Customer portal 5.2", "Mobile app 3.0"):
        echo(f"  Jira now says version {name!r} released={team.version_released(name)}")
    for where, text in team.comments("Release new login flow"):
        echo(f"  {where}: {text}")

    echo("\n== 6. Release records")
    for key, _ in rt.store.records("release"):
        echo(render_release(release_document(rt.engine, key)))
        echo("")


@contextmanager
def _health_page() -> Iterator[str]:
    """The deployed service's health page, which the demo's verification check reads."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            body = b"customer portal 5.2: up"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, name="demo-health", daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/health"
    finally:
        server.shutdown()
        server.server_close()


def _summary(echo: Echo, report: SyncReport) -> None:
    for name, counts in report.as_dict()["by_entity"].items():
        parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if v)
        echo(f"  {name:<20} {parts}")
    for error in report.errors:
        echo(f"  ! {error}")


def _short(value: Any) -> str:
    text = "-" if value in (None, "", []) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Team:
    """The people: they edit ServiceNow and Jira through the APIs, not through relbridge."""

    def __init__(self, servicenow_url: str, jira_url: str, echo: Echo) -> None:
        self.sn = f"{servicenow_url}/api/now/table"
        self.jira = f"{jira_url}/rest/api/2"
        self.http = requests.Session()
        self.http.auth = AUTH
        self.echo = echo

    def _sn(self, table: str, query: str) -> list[dict[str, Any]]:
        r = self.http.get(f"{self.sn}/{table}", params={"sysparm_query": query, "sysparm_exclude_reference_link": "true"})
        r.raise_for_status()
        return r.json()["result"]

    def approve_pending_change(self, release_name: str) -> None:
        releases = self._sn("rm_release", f"short_description={release_name}")
        if not releases:
            return
        links = self._sn("rm_m2m_release_task", f"release={releases[0]['sys_id']}")
        for link in links:
            change = self.http.get(f"{self.sn}/change_request/{link['task']}").json()["result"]
            if change["approval"] == "approved" and change["backout_plan"]:
                continue
            self.http.patch(f"{self.sn}/change_request/{change['sys_id']}", json={
                "approval": "approved", "state": change["state"] if change["approval"] == "approved" else "-2",
                "backout_plan": change["backout_plan"] or "Redeploy the previous build",
            }).raise_for_status()
            self.echo(f"  ServiceNow: {change['number']} approved and scheduled, backout plan recorded"
                      f" ({change['short_description']})")

    def finish_plan_tasks(self, names: tuple[str, str]) -> None:
        """The first task closed in ServiceNow, the second done in Jira: both sides follow."""
        for task in self._sn("rm_task", f"short_description={names[0]}")[:1]:
            self.http.patch(f"{self.sn}/rm_task/{task['sys_id']}", json={"state": "3"}).raise_for_status()
            self.echo(f"  ServiceNow: release task {task['number']} closed ({names[0]})")
        r = self.http.get(f"{self.jira}/search/jql", params={
            "jql": 'project = OPS AND labels = "relbridge-plan" AND issuetype = Task', "fields": "summary"})
        r.raise_for_status()
        for issue in (i for i in r.json()["issues"] if i["fields"]["summary"] == names[1]):
            moves = self.http.get(f"{self.jira}/issue/{issue['key']}/transitions").json()["transitions"]
            done = next(t for t in moves if t["to"]["name"] == "Done")
            self.http.post(f"{self.jira}/issue/{issue['key']}/transitions",
                           json={"transition": {"id": done["id"]}}).raise_for_status()
            self.echo(f"  Jira: task {issue['key']} done ({names[1]})")

    def release_version(self, name: str) -> None:
        versions = self.http.get(f"{self.jira}/project/OPS/versions").json()
        for version in versions:
            if version["name"] == name:
                self.http.put(f"{self.jira}/version/{version['id']}", json={"released": True}).raise_for_status()
                self.echo(f"  Jira: version {name!r} marked released")

    def version_released(self, name: str) -> bool | None:
        versions = self.http.get(f"{self.jira}/project/OPS/versions").json()
        return next((v["released"] for v in versions if v["name"] == name), None)

    def _issue_key(self, summary: str) -> str | None:
        r = self.http.get(f"{self.jira}/search/jql", params={
            "jql": f'project = OPS AND issuetype = Change AND summary ~ "\\"{summary}\\""', "fields": "summary"})
        r.raise_for_status()
        return next((i["key"] for i in r.json()["issues"] if i["fields"]["summary"] == summary), None)

    def work_note(self, change_summary: str, text: str) -> None:
        for change in self._sn("change_request", f"short_description={change_summary}")[:1]:
            self.http.patch(f"{self.sn}/change_request/{change['sys_id']}", json={"work_notes": text}).raise_for_status()
            self.echo(f"  ServiceNow: work note on {change['number']}: {text!r}")

    def jira_comment(self, change_summary: str, text: str) -> None:
        key = self._issue_key(change_summary)
        if key:
            self.http.post(f"{self.jira}/issue/{key}/comment", json={"body": text}).raise_for_status()
            self.echo(f"  Jira: comment on {key}: {text!r}")

    def comments(self, change_summary: str) -> list[tuple[str, str]]:
        """The change's work notes and its Jira issue's comments, each on one line."""
        shown = []
        for change in self._sn("change_request", f"short_description={change_summary}")[:1]:
            for note in self._sn("sys_journal_field", f"element_id={change['sys_id']}^ORDERBYsys_created_on"):
                shown.append((f"ServiceNow {change['number']} work note", note["value"].split("\n")[0]))
        key = self._issue_key(change_summary)
        if key:
            for comment in self.http.get(f"{self.jira}/issue/{key}/comment").json()["comments"]:
                shown.append((f"Jira {key} comment", comment["body"].split("\n")[0]))
        return shown

    def open_incident(self, change_summary: str, summary: str) -> None:
        changes = self._sn("change_request", f"short_description={change_summary}")
        if not changes:
            return
        incident = self.http.post(f"{self.sn}/incident", json={
            "short_description": summary, "state": "1", "priority": "2", "caused_by": changes[0]["sys_id"],
        }).json()["result"]
        self.echo(f"  ServiceNow: incident {incident['number']} opened, caused by {changes[0]['number']}")
