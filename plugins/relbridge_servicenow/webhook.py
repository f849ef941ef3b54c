"""ServiceNow webhook bodies -> hints.

ServiceNow has no standard outbound webhook, so relbridge defines one (docs/ has the
business rule that sends it)::

    {"table": "change_request", "sys_id": "…", "number": "CHG0030001",
     "operation": "insert" | "update" | "delete",
     "sys_updated_on": "2025-03-04 10:11:12", "sys_mod_count": "5"}

A link row (``rm_m2m_release_task``) changing means its change's ``release`` changed, so it
becomes a hint for that change when the body says which change (``task``, top level or in
a ``record`` object). The body is only a hint: the worker re-reads the record. Every
sys_id in it must be 32 hex digits (``api.checked_sys_id``), or the body is refused with a
400 before it can become part of a URL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bridge.adapter import WebhookHint
from bridge.errors import BadInput
from relbridge_servicenow.api import checked_sys_id
from relbridge_servicenow.links import M2M_TABLE
from relbridge_servicenow.values import reference_value

SYSTEM = "servicenow"
OPERATIONS = frozenset({"insert", "update", "delete"})


def parse_webhook(body: Any, entity_of_table: Mapping[str, str]) -> list[WebhookHint]:
    """Hints for one delivery; [] for tables relbridge does not sync.

    Raises ``BadInput`` (answered with a 400) when the body is not our contract.
    """
    if not isinstance(body, dict):
        raise BadInput("ServiceNow webhook: body must be a JSON object")
    table = _required(body, "table", re.compile(r"[0-9A-Za-z_]{1,80}"))
    if not body.get("sys_id"):
        raise BadInput("ServiceNow webhook: sys_id is missing")
    sys_id = checked_sys_id(body["sys_id"], "ServiceNow webhook: sys_id")
    operation = _required(body, "operation", re.compile(r"[a-z]+"))
    if operation not in OPERATIONS:
        raise BadInput(f"ServiceNow webhook: operation must be one of {sorted(OPERATIONS)}")
    mod_count = body.get("sys_mod_count")
    if isinstance(mod_count, bool) or not isinstance(mod_count, int | str) or mod_count == "":
        raise BadInput("ServiceNow webhook: sys_mod_count is missing or not a number")
    delivery_id = f"{table}:{sys_id}:{mod_count}:{operation}"

    if table == M2M_TABLE:
        return _link_hint(body, delivery_id, entity_of_table)
    entity = entity_of_table.get(table)
    if entity is None:
        return []
    return [WebhookHint(system=SYSTEM, entity=entity, id=sys_id, delivery_id=delivery_id,
                        deleted=operation == "delete")]


def _link_hint(body: dict[str, Any], delivery_id: str, entity_of_table: Mapping[str, str]) -> list[WebhookHint]:
    """A link row changed: the change it points at has a new (or no) release."""
    if "change" not in entity_of_table.values():
        return []
    record = body.get("record")
    task = reference_value(body.get("task")) or (
        reference_value(record.get("task")) if isinstance(record, dict) else ""
    )
    if not task:
        return []  # the body does not say which change; the next poll will see it
    checked_sys_id(task, "ServiceNow webhook: task")
    return [WebhookHint(system=SYSTEM, entity="change", id=task, delivery_id=delivery_id)]


def _required(body: Mapping[str, Any], key: str, pattern: re.Pattern[str]) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise BadInput(f"ServiceNow webhook: {key} is missing or malformed")
    return value
