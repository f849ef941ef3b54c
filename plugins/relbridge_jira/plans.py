"""Release plans in Jira: each phase and task a ``Task`` issue whose fix version is the release.

An issue carries two labels: ``relbridge-plan`` (what it is) and its plan tag (which item it
is), so a rerun finds it with one search however many items the plan has. A phase's issue
is the phase itself; a task's names its phase in the description (Jira has no phases). The
plan's state follows the status category: To Do ("new") is ``to_do``, any status "in
progress" is ``in_progress``, a done status is ``done``; a state is set through the
workflow's transitions (``workflow.walk_to_status``).

Costs: ``plan_objects`` one search per page; ``create_plan_item`` one ``POST issue``;
``set_plan_state`` one ``GET`` (current status and transitions) and a ``POST`` per step.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from bridge.adapter import PlanItem, PlanObject
from bridge.errors import PermanentError
from relbridge_jira.connection import JiraConnection
from relbridge_jira.records import jql_projects, jql_string, parse_datetime
from relbridge_jira.workflow import TransitionCache, walk_to_status

ISSUE_TYPE = "Task"
PLAN_LABEL = "relbridge-plan"
STATUS_OF_STATE = {"to_do": "To Do", "in_progress": "In Progress", "done": "Done"}
STATE_OF_CATEGORY = {"new": "to_do", "indeterminate": "in_progress", "done": "done"}
TAGS_PER_SEARCH = 50  # keeps the JQL (a GET parameter) well under URL limits


class Plans:
    """Plan items as Jira ``Task`` issues in the first configured project."""

    def __init__(self, conn: JiraConnection, projects: Sequence[str], page_size: int) -> None:
        self._conn = conn
        self._projects = list(projects)
        self._page_size = page_size
        self._transitions = TransitionCache()

    def objects(self, tags: Iterable[str]) -> dict[str, PlanObject]:
        wanted = sorted(set(tags))
        found: dict[str, PlanObject] = {}
        for start in range(0, len(wanted), TAGS_PER_SEARCH):
            chunk = wanted[start:start + TAGS_PER_SEARCH]
            jql = (f"{jql_projects(self._projects)} AND labels = {jql_string(PLAN_LABEL)} AND labels in "
                   f"({', '.join(jql_string(tag) for tag in chunk)}) ORDER BY created ASC")
            for raw in self._conn.search(jql, "labels,status,updated", self._page_size):
                plan_object = self._object(raw, chunk)
                if plan_object is not None:
                    found.setdefault(plan_object.tag, plan_object)  # the oldest, were there two
        return found

    def create(self, release_id: str, item: PlanItem) -> PlanObject:
        what = "Phase" if item.kind == "phase" else f"Task of phase {item.phase!r}"
        fields: dict[str, Any] = {
            "project": {"key": self._projects[0]},
            "issuetype": {"name": ISSUE_TYPE},
            "summary": item.name,
            "description": (f"{what} of the release plan, planned "
                            f"{item.start:%Y-%m-%d %H:%M} to {item.end:%Y-%m-%d %H:%M} UTC."),
            "labels": [PLAN_LABEL, item.tag],
            "fixVersions": [{"id": release_id}],
            "duedate": item.end.date().isoformat(),
        }
        created = self._conn.send("POST", "issue", {"fields": fields})
        if not created or "id" not in created:
            raise PermanentError(f"jira: POST issue for plan item {item.tag} returned no issue id")
        key = str(created.get("key") or "")
        return PlanObject(id=str(created["id"]), key=key, tag=item.tag, state="to_do",
                          updated_at=datetime.now(UTC), url=f"{self._conn.url}/browse/{key}")

    def set_state(self, issue_id: str, state: str) -> None:
        walk_to_status(self._conn, issue_id, STATUS_OF_STATE[state], lambda: [],
                       cache=self._transitions, workflow=f"{self._projects[0]}/{ISSUE_TYPE}")

    def _object(self, raw: dict[str, Any], tags: list[str]) -> PlanObject | None:
        fields = raw.get("fields") or {}
        tag = next((label for label in fields.get("labels") or [] if label in tags), None)
        if tag is None:
            return None
        status = fields.get("status") or {}
        category = str((status.get("statusCategory") or {}).get("key") or "new")
        key = str(raw.get("key") or "")
        return PlanObject(id=str(raw["id"]), key=key, tag=tag,
                          state=STATE_OF_CATEGORY.get(category, "in_progress"),
                          updated_at=parse_datetime(str(fields.get("updated"))),
                          url=f"{self._conn.url}/browse/{key}")
