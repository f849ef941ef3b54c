"""Time logged on Jira issues: worklogs (``started``, ``timeSpentSeconds``, ``author``), as
``bridge.adapter.WorklogEntry`` values.

A search or read asked for the ``worklog`` field carries an issue's first 20 worklogs in
the same answer (no extra call); only an issue with more (``total`` above what came back)
costs a ``GET issue/{id}/worklog`` per page of ``WORKLOG_PAGE``.

Entries carry no group (``[kpi] group_rates`` does not apply to them). A worklog names no
team: only its author and, optionally, a ``visibility`` restriction to a group or role,
which says who may read it, not who did the work. The author's groups cost a call per
person (``user/groups``) and are not teams either (everyone is in ``jira-software-users``;
picking the one group that has a rate would be a guess). The issue's Team field
(``com.atlassian.teams:rm-teams-custom-field-team``, ``{"id", "name", "title"}``) would
be free to read with the search, but its id differs per site and it exists only where
Atlassian Teams are enabled: a setting naming it is the way to add one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from bridge.adapter import WorklogEntry
from relbridge_jira.connection import JiraConnection
from relbridge_jira.records import parse_datetime

WORKLOG_FIELD = "worklog"
WORKLOG_PAGE = 1000


def worklog_entries(value: Any) -> tuple[list[WorklogEntry], bool]:
    """The entries of an issue's ``worklog`` field, and whether they are all of them."""
    if not isinstance(value, Mapping):
        return [], True
    worklogs = [w for w in value.get("worklogs") or [] if isinstance(w, Mapping)]
    total = value.get("total")
    complete = not isinstance(total, int) or total <= len(worklogs)
    return [e for e in map(entry, worklogs) if e is not None], complete


def entry(worklog: Mapping[str, Any]) -> WorklogEntry | None:
    """One worklog; None for one without a start time (it cannot be placed in a state)."""
    author = worklog.get("author") if isinstance(worklog.get("author"), Mapping) else {}
    seconds = worklog.get("timeSpentSeconds")
    try:
        started = parse_datetime(str(worklog.get("started")))
    except ValueError:
        return None
    return WorklogEntry(id=str(worklog.get("id")), started=started,
                        seconds=seconds if isinstance(seconds, int) and seconds > 0 else 0,
                        author=str(author.get("displayName") or author.get("name") or author.get("accountId") or ""))


def all_worklogs(conn: JiraConnection, issue_id: str) -> list[WorklogEntry]:
    """Every worklog of the issue, one call per page."""
    return [e for e in map(entry, _pages(conn, issue_id)) if e is not None]


def _pages(conn: JiraConnection, issue_id: str) -> Iterator[Mapping[str, Any]]:
    start = 0
    while True:
        page = conn.get(f"issue/{issue_id}/worklog", {"startAt": start, "maxResults": WORKLOG_PAGE})
        worklogs = page.get("worklogs") or []
        yield from worklogs
        start += len(worklogs)
        if not worklogs or start >= int(page.get("total") or 0):
            return
