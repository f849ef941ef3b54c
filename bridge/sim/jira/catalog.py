"""The fixed configuration of the simulated Jira: projects, issue types, workflows, fields.

A real instance is configured by an administrator before anyone syncs with it; the simulator
has that configuration built in, identical for every seed (DESIGN §7): project `OPS` with the
issue types `Change`, `Incident`, `Task`,
`Bug` and `Sub-task`, their workflows, and the link types relbridge
uses. Only versions, issues, links and webhooks are data (see `jira_state`).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

#: Jira's three status categories (ids and keys as real instances report them).
STATUS_CATEGORIES: dict[str, dict[str, Any]] = {
    "new": {"id": 2, "key": "new", "colorName": "blue-gray", "name": "To Do"},
    "indeterminate": {"id": 4, "key": "indeterminate", "colorName": "yellow",
                      "name": "In Progress"},
    "done": {"id": 3, "key": "done", "colorName": "green", "name": "Done"},
}


@dataclass(frozen=True)
class Status:
    id: str
    name: str
    category: str  # a key of STATUS_CATEGORIES
    description: str = ""


@dataclass(frozen=True)
class Transition:
    """A workflow transition; `sources` None means global (from any status but the target)."""

    id: str
    name: str
    to: str
    sources: tuple[str, ...] | None = None

    def available_from(self, status_id: str, closed: frozenset[str]) -> bool:
        if self.sources is None:
            return status_id != self.to and status_id not in closed
        return status_id in self.sources


@dataclass(frozen=True)
class Workflow:
    name: str
    initial: str
    transitions: tuple[Transition, ...]
    #: Statuses a global transition cannot leave (terminal states).
    terminal: frozenset[str] = frozenset()

    def available(self, status_id: str) -> list[Transition]:
        return [t for t in self.transitions if t.available_from(status_id, self.terminal)]


@dataclass(frozen=True)
class IssueType:
    id: str
    name: str
    description: str
    workflow: Workflow
    avatar_id: int
    subtask: bool = False


@dataclass(frozen=True)
class LinkType:
    id: str
    name: str
    inward: str
    outward: str


@dataclass(frozen=True)
class Project:
    id: int
    key: str
    name: str
    description: str
    issue_type_ids: tuple[str, ...]


@dataclass(frozen=True)
class User:
    """A Jira user: Cloud knows it by `account_id`, Server/DC by `name` and `key`."""

    name: str
    key: str
    account_id: str
    display_name: str
    email: str
    time_zone: str = "UTC"
    # Jira Cloud profile visibility: a user may hide the e-mail from everyone; the API then
    # leaves emailAddress out, and user search finds the user by the full address only.
    email_visible: bool = True


@dataclass(frozen=True)
class FieldDef:
    """One entry of `GET /field`; `schema` is Jira's JsonTypeBean for the field."""

    id: str
    name: str
    schema: dict[str, Any]
    clause_names: tuple[str, ...]
    custom: bool = False
    orderable: bool = True
    navigable: bool = True
    searchable: bool = True


STATUSES: dict[str, Status] = {s.id: s for s in (
    # Change workflow (ITIL change lifecycle, mirrors ServiceNow's change states).
    Status("10100", "New", "new", "The change has been requested."),
    Status("10101", "Assess", "indeterminate", "Peer review and technical approval."),
    Status("10102", "Authorize", "indeterminate", "Change management and CAB approval."),
    Status("10103", "Scheduled", "indeterminate", "Approved and scheduled for implementation."),
    Status("10104", "Implement", "indeterminate", "Being implemented."),
    Status("10105", "Review", "indeterminate", "Post-implementation review."),
    Status("10107", "Canceled", "done", "The change was canceled."),
    # Jira's classic statuses, shared by the Incident and Change workflows.
    Status("1", "Open", "new", "The issue is open and ready for the assignee to start work on it."),
    Status("3", "In Progress", "indeterminate", "This issue is being actively worked on."),
    Status("5", "Resolved", "done", "A resolution has been taken, awaiting verification."),
    Status("6", "Closed", "done", "The issue is considered finished."),
    # Task workflow.
    Status("10000", "To Do", "new", ""),
    Status("10001", "Done", "done", ""),
)}

_CHANGE_OPEN = ("10100", "10101", "10102", "10103", "10104", "10105")
CHANGE_WORKFLOW = Workflow(
    name="relbridge Change Workflow",
    initial="10100",
    terminal=frozenset({"6", "10107"}),
    transitions=(
        Transition("11", "Assess", "10101", ("10100",)),
        Transition("21", "Authorize", "10102", ("10101",)),
        Transition("31", "Scheduled", "10103", ("10102",)),
        Transition("41", "Implement", "10104", ("10103",)),
        Transition("51", "Review", "10105", ("10104",)),
        Transition("61", "Closed", "6", ("10105",)),
        Transition("71", "Canceled", "10107", _CHANGE_OPEN),
    ),
)
INCIDENT_WORKFLOW = Workflow(
    name="relbridge Incident Workflow",
    initial="1",
    transitions=(
        Transition("11", "In Progress", "3", ("1",)),
        Transition("21", "Resolved", "5", ("3",)),
        Transition("31", "Closed", "6", ("5",)),
        Transition("41", "Reopen", "3", ("5",)),
    ),
)
TASK_WORKFLOW = Workflow(
    name="Software Simplified Workflow",
    initial="10000",
    transitions=(
        Transition("11", "To Do", "10000", None),
        Transition("21", "In Progress", "3", None),
        Transition("31", "Done", "10001", None),
    ),
)

ISSUE_TYPES: dict[str, IssueType] = {t.id: t for t in (
    IssueType("10001", "Task", "A small, distinct piece of work.", TASK_WORKFLOW, 10318),
    IssueType("10002", "Change", "A change request to the production environment.",
              CHANGE_WORKFLOW, 10310),
    IssueType("10003", "Incident", "An unplanned interruption or reduction in quality of "
              "a service.", INCIDENT_WORKFLOW, 10303),
    IssueType("10004", "Bug", "A problem which impairs or prevents the functions of the "
              "product.", TASK_WORKFLOW, 10303),
    IssueType("10005", "Sub-task", "A small piece of work that's part of a larger task.",
              TASK_WORKFLOW, 10316, subtask=True),
)}

#: The users of the instance; the API user (`admin`) is the first.
USERS: tuple[User, ...] = (
    User("admin", "JIRAUSER10000", "5b10a2844c20165700ede21g", "Administrator",
         "admin@example.com"),
    User("alice", "JIRAUSER10100", "5b10ac8d82e05b22cc7d4ef5", "Alice Change-Manager",
         "alice@example.com", "Europe/Berlin"),
    User("bob", "JIRAUSER10101", "5b10a0effa615349cb016cd8", "Bob On-Call",
         "bob@example.com", "America/New_York"),
    User("carol", "JIRAUSER10102", "5b10a0effa615349cb016cd9", "Carol Private",
         "carol@example.com", "Europe/London", email_visible=False),
)
API_USER = USERS[0]
#: Users created by `POST /user` on the simulator serving the current request (its state's).
CREATED_USERS: ContextVar[list[User]] = ContextVar("created_users", default=[])  # noqa: B039


def all_users() -> tuple[User, ...]:
    """The seeded users, then those created on this simulator."""
    return USERS + tuple(CREATED_USERS.get())


def add_user(user: User) -> None:
    CREATED_USERS.get().append(user)

PROJECTS: dict[int, Project] = {p.id: p for p in (
    Project(10000, "OPS", "Operations", "Release, change and incident records.",
            ("10001", "10002", "10003", "10004", "10005")),
)}

LINK_TYPES: dict[str, LinkType] = {t.id: t for t in (
    LinkType("10000", "Blocks", "is blocked by", "blocks"),
    LinkType("10003", "Relates", "relates to", "relates to"),
    LinkType("10100", "Problem/Incident", "is caused by", "causes"),
)}

PRIORITIES: dict[str, str] = {"1": "Highest", "2": "High", "3": "Medium", "4": "Low",
                              "5": "Lowest"}
DEFAULT_PRIORITY = "3"

RESOLUTIONS: dict[str, tuple[str, str]] = {
    "10000": ("Done", "Work has been completed on this issue."),
    "10001": ("Won't Do", "This issue won't be actioned."),
}
DONE_RESOLUTION = "10000"
CANCELED_STATUSES = frozenset({"10107"})
CANCELED_RESOLUTION = "10001"


def _system(type_: str, system: str, items: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": type_, "system": system}
    if items:
        schema["items"] = items
    return schema


def _custom(type_: str, custom: str, custom_id: int) -> dict[str, Any]:
    return {"type": type_, "custom": custom, "customId": custom_id}


FIELDS: tuple[FieldDef, ...] = (
    FieldDef("summary", "Summary", _system("string", "summary"), ("summary",)),
    FieldDef("description", "Description", _system("string", "description"), ("description",)),
    FieldDef("issuetype", "Issue Type", _system("issuetype", "issuetype"),
             ("issuetype", "type")),
    FieldDef("project", "Project", _system("project", "project"), ("project",)),
    FieldDef("status", "Status", _system("status", "status"), ("status",)),
    FieldDef("priority", "Priority", _system("priority", "priority"), ("priority",)),
    FieldDef("labels", "Labels", _system("array", "labels", "string"), ("labels",)),
    FieldDef("fixVersions", "Fix versions", _system("array", "fixVersions", "version"),
             ("fixVersion",)),
    FieldDef("versions", "Affects versions", _system("array", "versions", "version"),
             ("affectedVersion",)),
    FieldDef("issuelinks", "Linked Issues", _system("array", "issuelinks", "issuelinks"),
             ("issueLink",), orderable=False),
    FieldDef("created", "Created", _system("datetime", "created"), ("created", "createdDate"),
             orderable=False),
    FieldDef("updated", "Updated", _system("datetime", "updated"), ("updated", "updatedDate"),
             orderable=False),
    FieldDef("resolution", "Resolution", _system("resolution", "resolution"), ("resolution",)),
    FieldDef("resolutiondate", "Resolved", _system("datetime", "resolutiondate"),
             ("resolutiondate", "resolved"), orderable=False),
    FieldDef("duedate", "Due date", _system("date", "duedate"), ("due", "duedate")),
    FieldDef("reporter", "Reporter", _system("user", "reporter"), ("reporter",)),
    FieldDef("assignee", "Assignee", _system("user", "assignee"), ("assignee",)),
    FieldDef("creator", "Creator", _system("user", "creator"), ("creator",), orderable=False),
    FieldDef("comment", "Comment", _system("comments-page", "comment"), ("comment",),
             navigable=False),
    # As Jira: no JQL clause of its own (worklogDate, worklogAuthor search worklogs).
    FieldDef("worklog", "Log Work", _system("array", "worklog", "worklog"), (), navigable=False),
    FieldDef("parent", "Parent", _system("issuelink", "parent"), ("parent",)),
    FieldDef("customfield_10010", "Change risk",
             _custom("string", "com.atlassian.jira.plugin.system.customfieldtypes:textfield",
                     10010), ("cf[10010]", "Change risk"), custom=True),
    FieldDef("customfield_10011", "Planned start",
             _custom("datetime", "com.atlassian.jira.plugin.system.customfieldtypes:datetime",
                     10011), ("cf[10011]", "Planned start"), custom=True),
    FieldDef("customfield_10012", "Planned end",
             _custom("datetime", "com.atlassian.jira.plugin.system.customfieldtypes:datetime",
                     10012), ("cf[10012]", "Planned end"), custom=True),
)
FIELD_IDS: frozenset[str] = frozenset(f.id for f in FIELDS)
NAVIGABLE_FIELD_IDS: frozenset[str] = frozenset(f.id for f in FIELDS if f.navigable)
CUSTOM_FIELD_TYPES: dict[str, str] = {f.id: f.schema["type"] for f in FIELDS if f.custom}


@dataclass(frozen=True)
class Catalog:
    """Lookup helpers over the fixed configuration (by id, key or case-insensitive name)."""

    projects: dict[int, Project] = field(default_factory=lambda: dict(PROJECTS))

    def project(self, ref: Any) -> Project | None:
        text = str(ref).strip()
        if text.isdigit():
            return self.projects.get(int(text))
        for project in self.projects.values():
            if project.key.lower() == text.lower():
                return project
        return None

    @staticmethod
    def issue_type(ref: Any, project: Project | None = None) -> IssueType | None:
        text = str(ref).strip()
        allowed = project.issue_type_ids if project else tuple(ISSUE_TYPES)
        for type_id in allowed:
            issue_type = ISSUE_TYPES[type_id]
            if text == issue_type.id or text.lower() == issue_type.name.lower():
                return issue_type
        return None

    @staticmethod
    def statuses_named(ref: Any) -> list[Status]:
        text = str(ref).strip().lower()
        return [s for s in STATUSES.values() if text in (s.id, s.name.lower())]

    @staticmethod
    def link_type(ref: dict[str, Any]) -> LinkType | None:
        if ref.get("id") is not None:
            return LINK_TYPES.get(str(ref["id"]))
        name = str(ref.get("name", "")).lower()
        for link_type in LINK_TYPES.values():
            if link_type.name.lower() == name:
                return link_type
        return None

    @staticmethod
    def priority(ref: dict[str, Any]) -> str | None:
        if ref.get("id") is not None:
            return str(ref["id"]) if str(ref["id"]) in PRIORITIES else None
        name = str(ref.get("name", "")).lower()
        return next((pid for pid, pname in PRIORITIES.items() if pname.lower() == name), None)

    @staticmethod
    def resolution(ref: dict[str, Any]) -> str | None:
        if ref.get("id") is not None:
            return str(ref["id"]) if str(ref["id"]) in RESOLUTIONS else None
        name = str(ref.get("name", "")).lower()
        return next((rid for rid, (rname, _) in RESOLUTIONS.items()
                     if rname.lower() == name), None)
