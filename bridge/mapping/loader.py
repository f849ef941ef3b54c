"""Mappings: system records <-> canonical records, as the admin's mapping files say.

A mapping file (``mappings/servicenow.toml``, ``mappings/jira.toml``; format in
``spec.py``) says, per canonical entity, which system object holds it and how each
system field becomes a canonical field. ``load_mappings`` reads and validates both files;
``SystemMapping`` (``convert.py``) runs one of them in both directions.

Per-field ``owner`` (``any`` | ``servicenow`` | ``jira``) may be stated in either file; the
two files must agree, and unstated owners follow DESIGN §8. Bad files are ``MappingError``
at load, every problem of both files at once, one ``file: dotted.key — message`` a line.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from bridge.errors import MappingError
from bridge.mapping.convert import (
    IdentityResolver,
    InboundResult,
    OutboundResult,
    PendingRef,
    RefResolver,
    SystemMapping,
    UnmappableValue,
    UnresolvedRef,
)
from bridge.mapping.spec import FileSpec, Transform, parse_file, read_toml
from bridge.model import System
from bridge.timeutil import zone

__all__ = [
    "DEFAULT_OWNERS",
    "IdentityResolver",
    "InboundResult",
    "Mappings",
    "OutboundResult",
    "PendingRef",
    "RefResolver",
    "SystemMapping",
    "Transform",
    "UnmappableValue",
    "UnresolvedRef",
    "load_mappings",
    "preview",
]

# DESIGN §8: approvals happen in ServiceNow; every other field is last-writer-wins.
DEFAULT_OWNERS: dict[tuple[str, str], str] = {
    ("change", "approval"): System.SERVICENOW.value,
    ("change", "risk"): System.SERVICENOW.value,
}


@dataclass(frozen=True)
class Mappings:
    """Both systems' mappings plus the per-field owners they agree on."""

    servicenow: SystemMapping
    jira: SystemMapping
    owners: Mapping[tuple[str, str], str]
    #: system -> the mapping file's text as loaded (what the start-up check fingerprints)
    sources: Mapping[str, str] = field(default_factory=dict)

    def for_system(self, system: str) -> SystemMapping:
        if system == System.SERVICENOW:
            return self.servicenow
        if system == System.JIRA:
            return self.jira
        raise MappingError(f"no mapping for system {system!r} (known: servicenow, jira)")

    def owner(self, entity: str, field: str) -> str:
        """``any`` | ``servicenow`` | ``jira``: which system may change this field."""
        return self.owners.get((str(entity), field), "any")


def load_mappings(
    servicenow: Path | None,
    jira: Path | None,
    *,
    timezone: str = "UTC",
    transforms: Mapping[str, Transform] | None = None,
) -> Mappings:
    """Load and validate both mapping files (None = the default shipped with relbridge).

    ``timezone`` is ``[jira] timezone`` (for Jira's date-only fields); ``transforms`` are
    the plugins' named value transforms (None: those of the installed plugins). Raises ``MappingError`` listing every problem of
    both files, one ``file: dotted.key — message`` per line.
    """
    transforms = installed_transforms() if transforms is None else transforms
    try:
        zone(timezone)
    except ValueError as exc:
        raise MappingError(str(exc)) from None
    problems: list[str] = []
    specs: dict[str, FileSpec] = {}
    sources: dict[str, str] = {}
    for system, path in ((System.SERVICENOW.value, servicenow), (System.JIRA.value, jira)):
        label, text = _read(system, path)
        sources[system] = text
        data, errors = read_toml(text, label)
        problems += errors
        if data is not None:
            specs[system], errors = parse_file(
                data, label=label, system=system, timezone=timezone, transforms=transforms
            )
            problems += errors
    owners, errors = _merge_owners(specs)
    problems += errors
    if problems:
        raise MappingError("\n".join(problems))
    built = {
        name: SystemMapping(spec, owners, timezone, transforms) for name, spec in specs.items()
    }
    return Mappings(**built, owners=owners, sources=sources)


def installed_transforms() -> dict[str, Transform]:
    """The transforms of the installed plugins (entry points), for mappings loaded without a
    runtime (tests, tools): the default mappings name some (``jira_wiki``)."""
    from bridge.plugins import Hooks, make_plugin_manager

    return Hooks(make_plugin_manager()).transforms()  # type: ignore[no-any-return]


def _read(system: str, path: Path | None) -> tuple[str, str]:
    if path is None:
        resource = importlib.resources.files("bridge.default_mappings") / f"{system}.toml"
        return f"default mappings/{system}.toml", resource.read_text(encoding="utf-8")
    label = str(path)
    try:
        return label, Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MappingError(f"{label}: file not found") from None
    except OSError as exc:
        raise MappingError(f"{label}: cannot read ({exc.strerror})") from None


def _merge_owners(specs: Mapping[str, FileSpec]) -> tuple[dict[tuple[str, str], str], list[str]]:
    """Owners stated in either file, over the defaults; the files must not disagree."""
    owners = dict(DEFAULT_OWNERS)
    stated_by: dict[tuple[str, str], tuple[str, str]] = {}  # (entity, field) -> (owner, file)
    problems = []
    for spec in specs.values():
        for entity in spec.entities.values():
            for f in entity.fields.values():
                if f.owner is None:
                    continue
                key = (f.entity, f.field)
                if key in stated_by and stated_by[key][0] != f.owner:
                    other_owner, other_file = stated_by[key]
                    problems.append(
                        f"{spec.label}: {f.dotted}.owner — says {f.owner!r} but {other_file} says "
                        f"{other_owner!r}; the owner of a field must be the same in both files"
                    )
                    continue
                stated_by[key] = (f.owner, spec.label)
                owners[key] = f.owner
    return owners, problems


def preview(
    mapping: SystemMapping,
    entity: str,
    record: Mapping[str, Any],
    direction: Literal["to_canonical", "to_system"],
) -> dict[str, Any]:
    """What the mapping makes of ``record``, JSON-ready, for ``relbridge mappings preview``.

    References are shown as they are (no store is consulted). Raises ``UnmappableValue``
    for a value the mapping cannot convert, ``MappingError`` for an unknown direction.
    """
    resolver = IdentityResolver()
    base = {
        "system": mapping.system,
        "entity": entity,
        "object": mapping.object(entity),
        "direction": direction,
    }
    if direction == "to_canonical":
        inbound = mapping.to_canonical(entity, record, None, resolver)
        return {
            **base,
            "values": _jsonable(inbound.values),
            "unresolved": [list(ref) for ref in inbound.unresolved],
        }
    if direction == "to_system":
        outbound = mapping.to_system(entity, record, None, resolver)
        return {
            **base,
            "payload": _jsonable(outbound.payload),
            "pending": [list(ref) for ref in outbound.pending],
        }
    raise MappingError(f"unknown direction {direction!r} (use to_canonical or to_system)")


def _jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: v.isoformat() if isinstance(v, datetime | date) else v for name, v in values.items()
    }
