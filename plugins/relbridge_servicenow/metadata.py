"""What a live instance defines for the synced tables: fields, their types, choice values.

Used by ``relbridge mappings check``, which looks objects up by the mapping's ``object``
(the table name) and knows the link pseudo-fields itself, so only real columns are listed.
Fields are read from ``sys_dictionary`` and choices
from ``sys_choice``, one paged query each for all tables together. ServiceNow tables
inherit (``rm_release`` → ``planned_task`` → ``task``; ``short_description`` and ``state``
are defined on ``task``), so the ancestors found in ``sys_db_object`` are read too and
their fields merged in, the table's own definitions winning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from bridge.adapter import FieldInfo, Metadata
from bridge.errors import PermanentError
from relbridge_servicenow.api import TableApi
from relbridge_servicenow.surveys import SURVEY_FIELD
from relbridge_servicenow.values import in_lists, reference_value

log = logging.getLogger(__name__)

_MAX_DEPTH = 10  # table inheritance is a few levels deep; this only guards against cycles


# A change's or incident's release is a row of rm_m2m_release_task, not a column; a
# release's survey score is the mean of asmt_metric_result rows (``surveys``).
PSEUDO_FIELDS = frozenset({("change", "release"), ("incident", "release"), ("release", SURVEY_FIELD)})


def read_metadata(api: TableApi, table_names: Iterable[str], page_size: int) -> Metadata:
    """``Metadata`` keyed by table name (``rm_release``, ``change_request``, …)."""
    tables = sorted(set(table_names))
    try:
        lineage = _lineage(api, tables, page_size)
    except PermanentError as exc:  # no access to sys_db_object, or no such table: own fields
        level = logging.WARNING if exc.status in (401, 403) else logging.INFO
        log.log(level, "cannot read table inheritance, listing own fields only: %s", exc)
        lineage = {table: [table] for table in tables}
    every_table = sorted({t for chain in lineage.values() for t in chain})
    types = _field_types(api, every_table, page_size)
    choices = _choices(api, every_table, page_size)
    metadata = Metadata(pseudo_fields=PSEUDO_FIELDS)
    for table in tables:
        fields: dict[str, FieldInfo] = {}
        for name in _merged(lineage[table], types):
            own_choices = next((choices[t][name] for t in lineage[table] if name in choices.get(t, {})), [])
            type_ = next(types[t][name] for t in lineage[table] if name in types.get(t, {}))
            fields[name] = FieldInfo(name=name, type=type_, choices=tuple(own_choices))
        metadata.objects[table] = fields
    return metadata


def _lineage(api: TableApi, tables: Iterable[str], page_size: int) -> dict[str, list[str]]:
    """table -> [table, parent, grandparent, …] from ``sys_db_object.super_class``."""
    name_of: dict[str, str] = {}  # sys_db_object sys_id -> table name
    parent_of: dict[str, str] = {}  # table name -> parent's sys_db_object sys_id
    queries = [f"nameIN{operand}" for operand in in_lists(sorted(set(tables)))]
    for _ in range(_MAX_DEPTH):
        wanted: set[str] = set()
        for query in queries:
            for page in api.paged("sys_db_object", query=f"{query}^ORDERBYsys_id",
                                  fields=("sys_id", "name", "super_class"), page_size=page_size):
                for row in page:
                    name_of[str(row["sys_id"])] = str(row["name"])
                    parent = reference_value(row.get("super_class"))
                    if parent:
                        parent_of[str(row["name"])] = parent
                        wanted.add(parent)
        wanted -= set(name_of)
        if not wanted:
            break
        queries = [f"sys_idIN{operand}" for operand in in_lists(sorted(wanted))]
    lineage = {}
    for table in tables:
        chain = [table]
        while (parent := name_of.get(parent_of.get(chain[-1], ""))) and parent not in chain:
            chain.append(parent)
        lineage[table] = chain
    return lineage


def _field_types(api: TableApi, tables: list[str], page_size: int) -> dict[str, dict[str, str]]:
    """table -> element -> internal_type (the table's own row has no element: skipped)."""
    found: dict[str, dict[str, str]] = {}
    pages = (page for operand in in_lists(tables)
             for page in api.paged("sys_dictionary", query=f"nameIN{operand}^ORDERBYsys_id",
                                   page_size=page_size, fields=("name", "element", "internal_type")))
    for page in pages:
        for row in page:
            if row.get("element"):
                type_ = reference_value(row.get("internal_type")) or "string"
                found.setdefault(str(row["name"]), {})[str(row["element"])] = type_
    return found


def _choices(api: TableApi, tables: list[str], page_size: int) -> dict[str, dict[str, list[str]]]:
    """table -> element -> active choice values (several languages collapse to one value)."""
    found: dict[str, dict[str, list[str]]] = {}
    pages = (page for operand in in_lists(tables)
             for page in api.paged("sys_choice", query=f"nameIN{operand}^ORDERBYsys_id",
                                   page_size=page_size,
                                   fields=("name", "element", "value", "label", "inactive")))
    for page in pages:
        for row in page:
            if str(row.get("inactive", "")).lower() in ("true", "1"):
                continue
            values = found.setdefault(str(row["name"]), {}).setdefault(str(row["element"]), [])
            value = str(row.get("value", ""))
            if value not in values:
                values.append(value)
    return found


def _merged(chain: list[str], types: Mapping[str, Mapping[str, str]]) -> list[str]:
    """Field names of a table and its ancestors, in a stable order."""
    names: dict[str, None] = {}
    for table in reversed(chain):
        names.update(dict.fromkeys(types.get(table, {})))
    return list(names)
