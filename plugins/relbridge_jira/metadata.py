"""What the live Jira defines, for ``relbridge mappings check``.

Objects: ``version`` (its fields and the ``state`` pseudo-field) and one per configured
issue type (``Change``, ``Incident``): every field from ``GET field`` keyed by field id
(what the REST API and mappings use), plus the pseudo-fields with their choices — status
names from the project's workflow, priority names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bridge.adapter import FieldInfo, Metadata
from relbridge_jira.records import VERSION_STATES

VERSION_OBJECT = {
    "name": FieldInfo("name"),
    "description": FieldInfo("description"),
    "startDate": FieldInfo("startDate", "date"),
    "releaseDate": FieldInfo("releaseDate", "date"),
    "projectId": FieldInfo("projectId", "number"),
    "state": FieldInfo("state", "choice", VERSION_STATES),
}


# Fields the adapter builds rather than reads: a version's state from its released and
# archived flags, an issue's release from fixVersions/versions, caused_by from its links.
PSEUDO_FIELDS = frozenset({("release", "state"), ("change", "release"), ("incident", "release"),
                           ("incident", "caused_by")})


def build_metadata(
    fields: Sequence[Mapping[str, Any]],
    projects: Iterable[Mapping[str, Any]],
    statuses: Mapping[str, Sequence[str]],
    priorities: Sequence[str],
    issue_types: Mapping[str, str],
) -> Metadata:
    """``projects``: project JSON with ``issueTypes``; ``statuses``: type name → status names;
    ``issue_types``: entity → type name. An issue type missing from every project gets no
    object, which is what the mapping check reports."""
    metadata = Metadata(objects={"version": dict(VERSION_OBJECT)}, pseudo_fields=PSEUDO_FIELDS)
    present = {t.get("name") for p in projects for t in p.get("issueTypes") or []}
    plain = {
        str(f["id"]): FieldInfo(str(f["id"]), _field_type(f))
        for f in fields
        if f.get("id")
    }
    for entity, type_name in issue_types.items():
        if type_name not in present:
            continue
        info = dict(plain)
        info["status"] = FieldInfo("status", "choice", tuple(statuses.get(type_name, ())))
        info["priority"] = FieldInfo("priority", "choice", tuple(priorities))
        info["labels"] = FieldInfo("labels", "array")
        info["release"] = FieldInfo("release", "reference")
        if entity == "incident":
            info["caused_by"] = FieldInfo("caused_by", "reference")
        metadata.objects[type_name] = info
    return metadata


def _field_type(field: Mapping[str, Any]) -> str:
    schema = field.get("schema")
    if isinstance(schema, Mapping) and isinstance(schema.get("type"), str):
        return schema["type"]
    return "string"
