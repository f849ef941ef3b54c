"""Seed data for the simulated Jira (`relbridge sim --seed empty|demo`).

`empty` is a freshly configured instance: the catalog only, no versions or issues. `demo`
adds a release history around today: released, current and future versions, Change issues
in every stage of their workflow, and an Incident that "is caused by" one of the changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from bridge.sim.jira.catalog import (
    CANCELED_RESOLUTION,
    CANCELED_STATUSES,
    DONE_RESOLUTION,
    ISSUE_TYPES,
    PROJECTS,
    STATUSES,
)
from bridge.sim.jira.state import Issue, IssueLink, JiraState, Version

SEEDS = ("empty", "demo")
OPS = PROJECTS[10000]
TYPE_IDS = {t.name: t.id for t in ISSUE_TYPES.values()}
STATUS_IDS = {(t.name, s.name): s.id for t in ISSUE_TYPES.values()
              for s in STATUSES.values()
              if s.id == t.workflow.initial or any(tr.to == s.id for tr in t.workflow.transitions)}


@dataclass(frozen=True)
class _Release:
    name: str
    description: str
    start: int  # days from today
    end: int
    released: bool
    archived: bool = False


@dataclass(frozen=True)
class _Ticket:
    type: str
    summary: str
    status: str
    release: str | None  # fixVersion (Change/Task) or affected version (Incident)
    age_days: int
    priority: str = "3"
    labels: tuple[str, ...] = ()
    description: str | None = None


_RELEASES = (
    _Release("2025.09 Legacy cleanup", "Retired services and old schedulers.", -150, -130,
             True, archived=True),
    _Release("Release 1.0", "Database and certificate maintenance.", -60, -45, True),
    _Release("Release 1.1", "Payment service v2.", -30, -14, True),
    _Release("Release 1.2", "Messaging and web tier upkeep.", -7, 7, False),
    _Release("Release 1.3", "Read scaling and API retirement.", 14, 28, False),
)
_TICKETS = (
    _Ticket("Change", "Upgrade PostgreSQL to 16", "Closed", "Release 1.0", 70,
            labels=("database",)),
    _Ticket("Change", "Rotate TLS certificates", "Closed", "Release 1.0", 65,
            priority="2", labels=("security",)),
    _Ticket("Change", "Deploy payment service v2", "Closed", "Release 1.1", 40, priority="2",
            description="Blue/green rollout of the payment service, version 2.0.0."),
    _Ticket("Change", "Enable new checkout feature flag", "Canceled", "Release 1.1", 35),
    _Ticket("Change", "Migrate message queue cluster", "Scheduled", "Release 1.2", 20,
            labels=("messaging",)),
    _Ticket("Change", "Patch kernel on web tier", "Authorize", "Release 1.2", 12,
            priority="2", labels=("security",)),
    _Ticket("Change", "Update CDN configuration", "Implement", "Release 1.2", 9),
    _Ticket("Change", "Introduce read replicas", "New", "Release 1.3", 3, labels=("database",)),
    _Ticket("Change", "Decommission legacy API v1", "Assess", "Release 1.3", 2),
    _Ticket("Incident", "Checkout errors after payment service deploy", "Resolved",
            "Release 1.1", 13, priority="1",
            description="HTTP 500 on checkout for 4% of requests after the v2 rollout."),
    _Ticket("Incident", "Elevated latency on web tier", "Open", None, 1, priority="2"),
    _Ticket("Task", "Write runbook for the queue migration", "To Do", "Release 1.2", 6),
)
#: (change summary, incident summary): the change "causes" the incident.
_CAUSES = (("Deploy payment service v2", "Checkout errors after payment service deploy"),)


def build_seed(name: str, now: datetime | None = None) -> JiraState:
    """A fresh state for seed `name`; raise ValueError for an unknown seed."""
    if name not in SEEDS:
        raise ValueError(f"unknown Jira seed {name!r} (choose from {', '.join(SEEDS)})")
    state = JiraState()
    if name == "demo":
        _add_demo(state, now or datetime.now(UTC))
    return state


def _add_demo(state: JiraState, now: datetime) -> None:
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    today = now.date()
    versions: dict[str, Version] = {}
    for sequence, release in enumerate(_RELEASES, start=1):
        version = Version(id=state.new_id("version"), project_id=OPS.id, name=release.name,
                          sequence=sequence, description=release.description,
                          archived=release.archived, released=release.released,
                          start_date=_day(today, release.start),
                          release_date=_day(today, release.end))
        state.versions[version.id] = version
        versions[release.name] = version
    issues: dict[str, Issue] = {}
    for number, ticket in enumerate(_TICKETS, start=1):
        issue = _issue(state, ticket, number, now, versions)
        state.add_issue(issue)
        issues[ticket.summary] = issue
    state.issue_numbers[OPS.id] = len(_TICKETS) + 1
    for change, incident in _CAUSES:
        link = IssueLink(state.new_id("link"), "10100", issues[change].id, issues[incident].id)
        state.links[link.id] = link


def _issue(state: JiraState, ticket: _Ticket, number: int, now: datetime,
           versions: dict[str, Version]) -> Issue:
    created = now - timedelta(days=ticket.age_days, minutes=number * 7)
    status_id = STATUS_IDS[(ticket.type, ticket.status)]
    issue = Issue(id=state.new_id("issue"), key=f"{OPS.key}-{number}", project_id=OPS.id,
                  issuetype_id=TYPE_IDS[ticket.type], summary=ticket.summary,
                  status_id=status_id, created=created,
                  updated=created + timedelta(hours=ticket.age_days * 3 + 1),
                  description=ticket.description, priority_id=ticket.priority,
                  labels=list(ticket.labels))
    if ticket.release:
        version_ids = [versions[ticket.release].id]
        if ticket.type == "Incident":
            issue.versions = version_ids
        else:
            issue.fix_versions = version_ids
    if STATUSES[status_id].category == "done":
        issue.resolution_id = (CANCELED_RESOLUTION if status_id in CANCELED_STATUSES
                               else DONE_RESOLUTION)
        issue.resolution_date = issue.updated
    return issue


def _day(today: date, offset: int) -> date:
    return today + timedelta(days=offset)
