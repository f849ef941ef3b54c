"""Checks behind ``relbridge mappings check``: warnings about a mapping that loads fine.

``check_offline`` looks at the files alone (a state that can never be written, a required
field nothing fills); ``check_against`` compares them with what a live system defines
(``Adapter.metadata()``, keyed by the mapping's object names). ``live_check`` splits the
latter into what the system lacks (``sync`` and ``run`` refuse to start on it, see
``bridge.preflight``) and what the mapping leaves out (a warning). Each problem is one line:
``file: dotted.key — message``, with a suggestion where a close name exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bridge.adapter import FieldInfo, Metadata
from bridge.errors import did_you_mean
from bridge.mapping.codecs import as_text
from bridge.mapping.spec import EntitySpec, FieldSpec, FileSpec, enum_of
from bridge.model import model_for


def check_offline(spec: FileSpec, owners: Mapping[tuple[str, str], str]) -> list[str]:
    lines: list[str] = []
    for entity in spec.entities.values():
        lines += _required_fields(spec, entity)
        for field in entity.fields.values():
            lines += _unwritable_values(spec, field)
            lines += _dead_field(spec, field, owners.get((field.entity, field.field), "any"))
            if field.ref is not None and field.ref not in spec.entities:
                lines.append(
                    f"{spec.label}: {field.dotted}.ref — points to {field.ref!r}, which this file does "
                    "not map, so the reference can never be resolved"
                )
    return lines


def _required_fields(spec: FileSpec, entity: EntitySpec) -> list[str]:
    lines = []
    for name, info in model_for(entity.entity).model_fields.items():
        if name == "key" or not info.is_required():
            continue
        field = entity.fields.get(name)
        if field is None or field.direction == "outbound":
            lines.append(
                f"{spec.label}: {entity.entity}.fields.{name} — required canonical field is not read "
                f"from {spec.system}; records born there cannot be created"
            )
    return lines


def _unwritable_values(spec: FileSpec, field: FieldSpec) -> list[str]:
    if field.values is None or field.direction == "inbound":
        return []
    enum = enum_of(model_for(field.entity).model_fields[field.field].annotation)
    if enum is None:
        return []
    covered = {value for rule in field.values for value in rule.canonical}
    return [
        f"{spec.label}: {field.dotted}.values — canonical {member.value!r} has no {spec.system} value; "
        "records holding it cannot be written there"
        for member in enum
        if member.value not in covered
    ]


def _dead_field(spec: FileSpec, field: FieldSpec, owner: str) -> list[str]:
    if owner in ("any", spec.system) or field.direction != "inbound":
        return []
    return [
        f'{spec.label}: {field.dotted} — owned by {owner} and direction = "inbound": '
        f"{spec.system} never supplies it and it is never written, so the mapping does nothing"
    ]


def check_against(spec: FileSpec, metadata: Metadata) -> list[str]:
    """Every live problem: what the system lacks, then what the mapping leaves out."""
    live = live_check(spec, metadata)
    return live.missing + live.unmapped


@dataclass(frozen=True)
class LiveCheck:
    """``missing``: an object, field or choice the mapping names that the system does not
    have (``sync`` and ``run`` refuse to start on these); ``unmapped``: choices the system
    has that the mapping does not cover (records holding them are skipped: a warning)."""

    missing: list[str]
    unmapped: list[str]


def live_check(spec: FileSpec, metadata: Metadata) -> LiveCheck:
    missing: list[str] = []
    unmapped: list[str] = []
    for entity in spec.entities.values():
        columns = metadata.objects.get(entity.object)
        if columns is None:
            missing.append(
                f"{spec.label}: {entity.entity}.object — {spec.system} has no object "
                f"{entity.object!r}{did_you_mean(entity.object, metadata.objects)}"
            )
            continue
        for field in entity.fields.values():
            missing += _missing(spec, entity, field, columns, metadata.pseudo_fields)
            unmapped += _unmapped(spec, entity, field, columns)
        missing += _missing_comment_fields(spec, entity, columns, metadata.pseudo_fields)
    return LiveCheck(missing, unmapped)


def _missing_comment_fields(spec: FileSpec, entity: EntitySpec, columns: Mapping[str, FieldInfo],
                            pseudo_fields: frozenset[tuple[str, str]]) -> list[str]:
    """The comment fields ``[<entity>.comments]`` names must exist too."""
    comments = entity.comments
    if comments is None:
        return []
    named = [("read", name) for name in comments.read] + [("write", comments.write)]
    if comments.write_internal:
        named.append(("write_internal", comments.write_internal))
    return [
        f"{spec.label}: {entity.entity}.comments.{key} — {entity.object} has no comment field "
        f"{name!r}{did_you_mean(name, columns)}"
        for key, name in named
        if name not in columns and (entity.entity, name) not in pseudo_fields
    ]


def _missing(
    spec: FileSpec, entity: EntitySpec, field: FieldSpec, columns: Mapping[str, FieldInfo],
    pseudo_fields: frozenset[tuple[str, str]],
) -> list[str]:
    info = columns.get(field.source)
    if info is None:
        if (field.entity, field.source) in pseudo_fields:
            return []  # built by the adapter
        return [
            f"{spec.label}: {field.dotted}.source — {entity.object} has no field "
            f"{field.source!r}{did_you_mean(field.source, columns)}"
        ]
    if field.values is None or not info.choices:
        return []
    return [
        f"{spec.label}: {field.dotted}.values — {entity.object}.{field.source} has no choice "
        f"{rule.key!r}{did_you_mean(as_text(rule.system_value), info.choices)}"
        for rule in field.values
        if as_text(rule.system_value) not in info.choices
    ]


def _unmapped(
    spec: FileSpec, entity: EntitySpec, field: FieldSpec, columns: Mapping[str, FieldInfo]
) -> list[str]:
    info = columns.get(field.source)
    if info is None or field.values is None or not info.choices or field.direction == "outbound":
        return []
    keys = {as_text(rule.system_value) for rule in field.values}
    return [
        f"{spec.label}: {field.dotted}.values — choice {choice!r} of {entity.object}.{field.source} "
        "is not mapped; records holding it will be skipped"
        for choice in info.choices
        if choice not in keys
    ]
