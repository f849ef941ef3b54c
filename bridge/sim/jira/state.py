"""The data of the simulated Jira: versions, issues, links, webhooks, and how they persist.

Everything here is plain data; rules (validation, workflows, events) live in `jira_store`.
The whole state round-trips through JSON so a simulator can be stopped and started again
with what it held (`relbridge sim` keeps a state file; tests check the restart).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.sim.jira.catalog import User

STATE_FORMAT = 1


@dataclass
class Version:
    id: int
    project_id: int
    name: str
    sequence: int
    description: str | None = None
    archived: bool = False
    released: bool = False
    start_date: date | None = None
    release_date: date | None = None


@dataclass
class Issue:
    id: int
    key: str
    project_id: int
    issuetype_id: str
    summary: str
    status_id: str
    created: datetime
    updated: datetime
    description: str | None = None
    priority_id: str = "3"
    labels: list[str] = field(default_factory=list)
    fix_versions: list[int] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    resolution_id: str | None = None
    resolution_date: datetime | None = None
    due_date: date | None = None
    custom: dict[str, Any] = field(default_factory=dict)
    #: Change history, newest last: {"id", "created" (datetime), "items": [...]}.
    history: list[dict[str, Any]] = field(default_factory=list)
    #: Comments, oldest first: {"id", "body", "author", "created", "updated"} (user names).
    comments: list[dict[str, Any]] = field(default_factory=list)
    #: Work logged, oldest first: {"id", "comment", "author", "started", "seconds",
    #: "created", "updated"}.
    worklogs: list[dict[str, Any]] = field(default_factory=list)
    reporter: str | None = "admin"
    assignee: str | None = None
    creator: str = "admin"
    parent_id: int | None = None


@dataclass
class IssueLink:
    """`source` does the outward verb to `dest` ("CHG-1 causes INC-2")."""

    id: int
    type_id: str
    source_id: int
    dest_id: int


@dataclass
class Webhook:
    id: int
    name: str
    url: str
    events: list[str]
    secret: str | None = None
    enabled: bool = True


@dataclass
class JiraState:
    versions: dict[int, Version] = field(default_factory=dict)
    issues: dict[int, Issue] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)
    links: dict[int, IssueLink] = field(default_factory=dict)
    webhooks: dict[int, Webhook] = field(default_factory=dict)
    #: Next id per kind ("version", "issue", "link", "webhook", "history").
    next_ids: dict[str, int] = field(default_factory=lambda: {
        "version": 10000, "issue": 10000, "link": 10000, "webhook": 1, "history": 10000})
    #: Next issue number per project id (keys are `<PROJECT>-<n>`).
    issue_numbers: dict[int, int] = field(default_factory=dict)
    #: Users created by `POST /user` (the seeded ones are `catalog.USERS`).
    users: list[User] = field(default_factory=list)

    def new_id(self, kind: str) -> int:
        value = self.next_ids.get(kind, 10000)  # kinds added later start where others did
        self.next_ids[kind] = value + 1
        return value

    def add_issue(self, issue: Issue) -> None:
        self.issues[issue.id] = issue
        self.keys[issue.key.upper()] = issue.id

    def remove_issue(self, issue: Issue) -> None:
        del self.issues[issue.id]
        self.keys.pop(issue.key.upper(), None)


class Clock:
    """Jira timestamps with millisecond precision that never repeat or go backwards.

    Pollers use `updated` as a watermark, so two writes must never share a timestamp.
    """

    def __init__(self) -> None:
        self._last = datetime(1970, 1, 1, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            current = datetime.now(UTC)
            current = current.replace(microsecond=current.microsecond // 1000 * 1000)
            if current <= self._last:
                current = self._last + timedelta(milliseconds=1)
            self._last = current
            return current


# -- persistence -----------------------------------------------------------------------------

def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, date):
        return {"$d": value.isoformat()}
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "$dt" in value and len(value) == 1:
            return datetime.fromisoformat(value["$dt"])
        if "$d" in value and len(value) == 1:
            return date.fromisoformat(value["$d"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def state_to_dict(state: JiraState) -> dict[str, Any]:
    return {
        "format": STATE_FORMAT,
        "versions": [_encode(asdict(v)) for v in state.versions.values()],
        "issues": [_encode(asdict(i)) for i in state.issues.values()],
        "links": [asdict(link) for link in state.links.values()],
        "webhooks": [asdict(w) for w in state.webhooks.values()],
        "next_ids": dict(state.next_ids),
        "issue_numbers": {str(k): v for k, v in state.issue_numbers.items()},
        "users": [asdict(u) for u in state.users],
    }


def state_from_dict(data: dict[str, Any]) -> JiraState:
    if data.get("format") != STATE_FORMAT:
        raise ValueError(f"unsupported Jira simulator state format: {data.get('format')!r}")
    state = JiraState(next_ids=dict(data["next_ids"]),
                      issue_numbers={int(k): v for k, v in data["issue_numbers"].items()})
    for raw in data["versions"]:
        version = Version(**_decode(raw))
        state.versions[version.id] = version
    for raw in data["issues"]:
        state.add_issue(Issue(**_decode(raw)))
    for raw in data["links"]:
        link = IssueLink(**raw)
        state.links[link.id] = link
    for raw in data["webhooks"]:
        hook = Webhook(**raw)
        state.webhooks[hook.id] = hook
    state.users = [User(**raw) for raw in data.get("users", [])]
    return state


def save_state(state: JiraState, path: Path) -> None:
    """Write atomically: a crash mid-save leaves the previous file intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state_to_dict(state), separators=(",", ":")), encoding="utf-8")
    os.replace(tmp, path)


def load_state(path: Path) -> JiraState:
    return state_from_dict(json.loads(path.read_text(encoding="utf-8")))
