"""Release plans in ServiceNow: phases in ``rm_release_phase``, tasks in ``rm_task``.

Both tables extend ``planned_task``: a phase references its release (``release``), a task
its release and its phase (``phase``); planned dates are ``start_date``/``end_date`` and
the item's tag is its ``correlation_id`` (with ``correlation_display`` "relbridge"), so a
rerun finds what an earlier run made. States are the Release Management ones: Pending (-5)
and Open (1) stand for ``to_do``, Work in Progress (2) for ``in_progress``, the closed
states (3 Closed Complete, 4 Closed Incomplete, 7 Closed Skipped) for ``done``; setting a
state writes Open, Work in Progress or Closed Complete.

Costs: ``objects`` one query per table per 150 tags; ``create`` one POST; ``set_state``
one PATCH.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bridge.adapter import PlanItem, PlanObject
from relbridge_servicenow.api import TableApi, checked_sys_id
from relbridge_servicenow.values import format_datetime, in_lists, parse_datetime

TABLES = {"phase": "rm_release_phase", "task": "rm_task"}
STATE_OF_VALUE = {"-5": "to_do", "1": "to_do", "2": "in_progress", "3": "done", "4": "done", "7": "done"}
VALUE_OF_STATE = {"to_do": "1", "in_progress": "2", "done": "3"}
COLUMNS = ("sys_id", "number", "correlation_id", "state", "sys_updated_on")
CORRELATION_DISPLAY = "relbridge"


class Plans:
    def __init__(self, api: TableApi) -> None:
        self._api = api

    def objects(self, tags: Iterable[str]) -> dict[str, PlanObject]:
        wanted = sorted(set(tags))
        found: dict[str, PlanObject] = {}
        for table in TABLES.values():
            for operand in in_lists(wanted):
                query = f"correlation_idIN{operand}^ORDERBYsys_created_on^ORDERBYsys_id"
                for row in self._api.list(table, query=query, fields=COLUMNS, limit=len(wanted) * 2):
                    tag = str(row.get("correlation_id") or "")
                    if tag in wanted:  # the instance matches ignoring case; tags are exact
                        found.setdefault(tag, self._object(table, row))
        return found

    def create(self, release_id: str, item: PlanItem, phase_id: str | None) -> PlanObject:
        body: dict[str, Any] = {
            "short_description": item.name,
            "description": f"Release plan {'phase' if item.kind == 'phase' else 'task of phase ' + item.phase}.",
            "release": checked_sys_id(release_id, "ServiceNow release id"),
            "start_date": format_datetime(item.start),
            "end_date": format_datetime(item.end),
            "correlation_id": item.tag,
            "correlation_display": CORRELATION_DISPLAY,
        }
        if item.kind == "task" and phase_id:
            body["phase"] = checked_sys_id(phase_id, "ServiceNow phase id")
        table = TABLES[item.kind]
        return self._object(table, self._api.create(table, body))

    def set_state(self, kind: str, sys_id: str, state: str) -> None:
        self._api.patch(TABLES[kind], checked_sys_id(sys_id), {"state": VALUE_OF_STATE[state]})

    def _object(self, table: str, row: dict[str, Any]) -> PlanObject:
        sys_id = str(row["sys_id"])
        return PlanObject(id=sys_id, key=str(row.get("number") or ""), tag=str(row.get("correlation_id") or ""),
                          state=STATE_OF_VALUE.get(str(row.get("state")), "to_do"),
                          updated_at=parse_datetime(str(row["sys_updated_on"])),
                          url=self._api.record_url(table, sys_id))
