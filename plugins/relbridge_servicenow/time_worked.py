"""Time worked on ServiceNow tasks: ``task_time_worked`` rows (``task`` = the task's
sys_id, ``time_in_seconds``, ``time_worked`` a duration, ``user``, ``sys_created_on`` =
when the time was logged, UTC), as ``bridge.adapter.WorklogEntry`` values.

Costs: one query per page of records (``taskIN`` their sys_ids; more only when a page's
tasks hold more than ``TIME_PAGE`` entries); the author's user name and the team come
dot-walked in the same query. ``task_time_worked`` has no team of its own: an entry is
charged to the group its task is assigned to (``task.assignment_group.name``, for
``[kpi] group_rates``), as that group is when the entry is read, so moving a task to
another group prices its earlier entries at the new group's rate too. A task assigned
to no group gives entries without a group (priced at ``[kpi] hourly_rate``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from bridge.adapter import WorklogEntry
from relbridge_servicenow.api import TableApi
from relbridge_servicenow.values import in_lists, parse_datetime, reference_value

TIME_TABLE = "task_time_worked"
#: Entries per query: a page of changes with a few entries each fits in one.
TIME_PAGE = 5000
_COLUMNS = ("sys_id", "task", "time_in_seconds", "time_worked", "sys_created_on", "user.user_name",
            "task.assignment_group.name")
_EPOCH = datetime(1970, 1, 1)


def time_worked(api: TableApi, sys_ids: Iterable[str]) -> dict[str, list[WorklogEntry]]:
    """Every entry logged against each task, by task sys_id (an id with none maps to [])."""
    ids = sorted({str(i) for i in sys_ids if i})
    found: dict[str, list[WorklogEntry]] = defaultdict(list)
    for operand in in_lists(ids):
        query = f"taskIN{operand}^ORDERBYsys_created_on^ORDERBYsys_id"
        for page in api.paged(TIME_TABLE, query=query, fields=_COLUMNS, page_size=TIME_PAGE):
            for row in page:
                entry = _entry(row)
                if entry is not None:
                    found[reference_value(row.get("task"))].append(entry)
    return {sys_id: found.get(sys_id, []) for sys_id in ids}


def _seconds(row: dict[str, Any]) -> int:
    """``time_in_seconds``, else the ``time_worked`` duration (``1970-01-01 01:30:00``)."""
    text = str(row.get("time_in_seconds") or "").strip()
    if text.lstrip("-").isdigit() and int(text) > 0:
        return int(text)
    try:
        return int((datetime.strptime(str(row.get("time_worked")), "%Y-%m-%d %H:%M:%S") - _EPOCH).total_seconds())
    except ValueError:
        return 0


def _entry(row: dict[str, Any]) -> WorklogEntry | None:
    try:
        logged = parse_datetime(str(row.get("sys_created_on")))
    except ValueError:
        return None  # an entry without a time cannot be placed in a release state
    return WorklogEntry(id=str(row.get("sys_id")), started=logged, seconds=max(_seconds(row), 0),
                        author=str(row.get("user.user_name") or reference_value(row.get("user")) or ""),
                        group=str(row.get("task.assignment_group.name") or "").strip() or None)
