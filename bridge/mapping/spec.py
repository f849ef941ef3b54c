"""The mapping file format: parse and validate one ``mappings/*.toml`` file.

Admins edit these files by hand, so every problem is reported at once, one line each, as
``file: dotted.key — what is wrong (did you mean …?)``. Nothing here converts values;
``mapping.py`` runs the validated specs.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from functools import cache
from typing import Annotated, Any, get_args

from pydantic import TypeAdapter, ValidationError

from bridge.errors import did_you_mean
from bridge.mapping.codecs import TYPES, VALUE_MAP_TYPES, as_text, codec_for
from bridge.model import Entity, System, model_for

OWNERS = ("any", System.SERVICENOW.value, System.JIRA.value)
DIRECTIONS = ("both", "inbound", "outbound")
ENTITIES = tuple(entity.value for entity in Entity)
NOT_MAPPABLE = frozenset({"key", "refs"})  # identity, kept by the engine itself
FIELD_KEYS = ("source", "type", "owner", "direction", "values", "default", "transform", "ref")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()  # "no default given" (None is not a TOML value, but be explicit)


@dataclass(frozen=True)
class Transform:
    """A named value conversion a plugin contributes through ``relbridge_transforms()``.

    ``to_canonical`` receives the system value as the adapter presents it (possibly empty)
    and returns the canonical value; ``to_system`` does the reverse. Either may raise
    ``ValueError`` for a value it cannot convert.
    """

    name: str
    to_canonical: Callable[[Any], Any]
    to_system: Callable[[Any], Any]


@dataclass(frozen=True)
class ValueRule:
    """One entry of a value map: a system value and the canonical values it stands for."""

    key: str  # as written in the file
    system_value: Any  # what is written to the system (the key through the field's codec)
    normal: Any  # the key's normal form, compared against normalised system values
    canonical: tuple[Any, ...]  # the set S(v), first element preferred


@dataclass(frozen=True)
class FieldSpec:
    entity: str
    field: str  # canonical field name
    source: str  # system field name
    type: str
    owner: str | None  # as stated in this file; None when the file leaves it to the default
    direction: str
    values: tuple[ValueRule, ...] | None
    default: Any
    transform: str | None
    ref: str | None
    nullable: bool  # whether the canonical field accepts None

    @property
    def dotted(self) -> str:
        return f"{self.entity}.fields.{self.field}"


@dataclass(frozen=True)
class CommentSpec:
    """``[<entity>.comments]``: which comment fields of the system cross to the other one.

    ``read``: the fields whose comments are copied out (ServiceNow journal fields, Jira's
    ``comment``); ``write``: where comments from the other system go; ``write_internal``:
    where internal ones go instead (ServiceNow work notes, Jira comments restricted by
    visibility), when set.
    """

    read: tuple[str, ...]
    write: str
    write_internal: str | None = None

    def target(self, internal: bool) -> str:
        return self.write_internal if internal and self.write_internal else self.write


COMMENT_KEYS = ("read", "write", "write_internal")


@dataclass(frozen=True)
class EntitySpec:
    entity: str
    object: str
    fields: dict[str, FieldSpec]
    comments: CommentSpec | None = None


@dataclass(frozen=True)
class FileSpec:
    system: str
    label: str  # how messages name the file
    entities: dict[str, EntitySpec]


def canonical_fields(entity: str) -> tuple[str, ...]:
    return tuple(name for name in model_for(entity).model_fields if name not in NOT_MAPPABLE)


@cache
def _adapter(entity: str, field: str) -> TypeAdapter[Any]:
    info = model_for(entity).model_fields[field]
    annotation: Any = info.annotation
    if info.metadata:  # ge/le/min_length… live here, not in the annotation
        annotation = Annotated[(annotation, *info.metadata)]
    return TypeAdapter(annotation)


def enum_of(annotation: Any) -> type[Enum] | None:
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return annotation
    for arg in get_args(annotation):
        found = enum_of(arg)
        if found is not None:
            return found
    return None


def canonical_value(entity: str, field: str, value: Any) -> Any:
    """``value`` validated as ``entity.field`` would validate it; raises ``ValueError``."""
    enum = enum_of(model_for(entity).model_fields[field].annotation)
    if enum is not None and isinstance(value, str):
        allowed = [member.value for member in enum]
        if value not in allowed:
            raise ValueError(
                f"{value!r} is not a valid {field}{did_you_mean(value, allowed)}; valid: {', '.join(allowed)}"
            )
    try:
        result = _adapter(entity, field).validate_python(value)
    except ValidationError as exc:
        raise ValueError(f"{value!r} is not a valid {field}: {exc.errors()[0]['msg']}") from None
    return result.value if isinstance(result, Enum) else result


def is_nullable(entity: str, field: str) -> bool:
    try:
        _adapter(entity, field).validate_python(None)
    except ValidationError:
        return False
    return True


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def read_toml(text: str, label: str) -> tuple[dict[str, Any] | None, list[str]]:
    """Parse TOML; a syntax error becomes ``file: line L, column C — invalid TOML: …``."""
    try:
        return tomllib.loads(text), []
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_POSITION.search(message)
        if match:
            where = f"line {match[1]}, column {match[2]}"
            message = message[: match.start()]
        else:
            where = f"line {text.count(chr(10)) + 1} (end of file)"
            message = message.replace(" (at end of document)", "")
        return None, [f"{label}: {where} — invalid TOML: {message}"]


class _Problems:
    """Collects ``file: dotted.key — message`` lines."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.lines: list[str] = []

    def add(self, dotted: str, message: str) -> None:
        self.lines.append(f"{self.label}: {dotted} — {message}")


def parse_file(
    data: Mapping[str, Any],
    *,
    label: str,
    system: str,
    timezone: str,
    transforms: Mapping[str, Transform],
) -> tuple[FileSpec, list[str]]:
    """Validate a parsed mapping file; returns the spec and every problem found."""
    problems = _Problems(label)
    stated = data.get("system", system)
    if stated != system:
        problems.add("system", f"this file says {stated!r} but is loaded as the {system} mapping")
    entities: dict[str, EntitySpec] = {}
    for name, table in data.items():
        if name == "system":
            continue
        if name not in ENTITIES:
            problems.add(
                name, f"unknown entity{did_you_mean(name, ENTITIES)}; valid: {', '.join(ENTITIES)}"
            )
            continue
        if not isinstance(table, dict):
            problems.add(name, "must be a table ([" + name + "])")
            continue
        entity = _parse_entity(name, table, problems, system, timezone, transforms)
        if entity is not None:
            entities[name] = entity
    return FileSpec(system=system, label=label, entities=entities), problems.lines


def _parse_entity(
    entity: str,
    table: Mapping[str, Any],
    problems: _Problems,
    system: str,
    timezone: str,
    transforms: Mapping[str, Transform],
) -> EntitySpec | None:
    for key in table:
        if key not in ("object", "fields", "comments"):
            problems.add(f"{entity}.{key}", f"unknown key{did_you_mean(key, ('object', 'fields', 'comments'))}")
    obj = table.get("object")
    if not isinstance(obj, str) or not obj.strip():
        problems.add(
            f"{entity}.object", "missing: the system object (table, 'version' or issue type)"
        )
    raw_fields = table.get("fields", {})
    if not isinstance(raw_fields, dict):
        problems.add(f"{entity}.fields", "must be a table of fields")
        raw_fields = {}
    valid = canonical_fields(entity)
    fields: dict[str, FieldSpec] = {}
    for name, spec in raw_fields.items():
        dotted = f"{entity}.fields.{name}"
        if name in NOT_MAPPABLE:
            problems.add(dotted, f"{name!r} is kept by relbridge itself and cannot be mapped")
        elif name not in valid:
            problems.add(
                dotted, f"unknown canonical field{did_you_mean(name, valid)}; valid: {', '.join(valid)}"
            )
        elif not isinstance(spec, dict):
            problems.add(dotted, "must be a table with at least `source`")
        else:
            parsed = _FieldParser(
                entity, name, spec, problems, system, timezone, transforms
            ).parse()
            if parsed is not None:
                fields[name] = parsed
    _check_shared_sources(entity, fields.values(), problems)
    comments = _parse_comments(entity, table.get("comments"), problems) if "comments" in table else None
    if not isinstance(obj, str) or not obj.strip():
        return None
    return EntitySpec(entity=entity, object=obj, fields=fields, comments=comments)


def _parse_comments(entity: str, table: Any, problems: _Problems) -> CommentSpec | None:
    dotted = f"{entity}.comments"
    if not isinstance(table, dict):
        problems.add(dotted, "must be a table with `read` and `write`")
        return None
    for key in table:
        if key not in COMMENT_KEYS:
            problems.add(f"{dotted}.{key}", f"unknown key{did_you_mean(key, COMMENT_KEYS)}; valid: {', '.join(COMMENT_KEYS)}")
    read = table.get("read", [])
    if not isinstance(read, list) or not all(isinstance(r, str) and r for r in read):
        problems.add(f"{dotted}.read", "must be a list of field names, e.g. [\"work_notes\"]")
        return None
    names = {}
    for key in ("write", "write_internal"):
        value = table.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            problems.add(f"{dotted}.{key}", "must be a field name")
            return None
        names[key] = value
    if names["write"] is None:
        problems.add(f"{dotted}.write", "missing: the field comments from the other system go to")
        return None
    return CommentSpec(read=tuple(dict.fromkeys(read)), write=names["write"],
                       write_internal=names["write_internal"])


def _check_shared_sources(entity: str, fields: Iterable[FieldSpec], problems: _Problems) -> None:
    """Two fields written to one system field would overwrite each other."""
    writers: dict[str, str] = {}
    for spec in fields:
        if spec.direction == "inbound":
            continue
        if spec.source in writers:
            problems.add(
                spec.dotted,
                f"source {spec.source!r} is also written by {entity}.fields.{writers[spec.source]}; "
                'make one of them direction = "inbound"',
            )
        else:
            writers[spec.source] = spec.field


class _FieldParser:
    """Validates one ``[entity.fields.name]`` table."""

    def __init__(
        self,
        entity: str,
        field: str,
        spec: Mapping[str, Any],
        problems: _Problems,
        system: str,
        timezone: str,
        transforms: Mapping[str, Transform],
    ) -> None:
        self.entity, self.field, self.spec = entity, field, spec
        self.problems, self.system, self.timezone, self.transforms = (
            problems,
            system,
            timezone,
            transforms,
        )
        self.dotted = f"{entity}.fields.{field}"
        self.ok = True

    def fail(self, key: str | None, message: str) -> None:
        self.ok = False
        self.problems.add(f"{self.dotted}.{key}" if key else self.dotted, message)

    def parse(self) -> FieldSpec | None:
        for key in self.spec:
            if key not in FIELD_KEYS:
                self.fail(
                    key, f"unknown key{did_you_mean(key, FIELD_KEYS)}; valid: {', '.join(FIELD_KEYS)}"
                )
        source = self.spec.get("source")
        if not isinstance(source, str) or not source:
            self.fail("source", "missing: the system field this canonical field maps to")
        owner = self._choice("owner", OWNERS, None)
        direction = self._choice("direction", DIRECTIONS, "both")
        ref = self._ref()
        type_name = self._type(ref)
        transform = self._transform(type_name)
        values = self._values(type_name) if "values" in self.spec else None
        default = self._default()
        if not self.ok:
            return None
        return FieldSpec(
            entity=self.entity,
            field=self.field,
            source=str(source),
            type=type_name,
            owner=owner,
            direction=str(direction),
            values=values,
            default=default,
            transform=transform,
            ref=ref,
            nullable=is_nullable(self.entity, self.field),
        )

    def _choice(self, key: str, options: tuple[str, ...], fallback: str | None) -> str | None:
        if key not in self.spec:
            return fallback
        value = self.spec[key]
        if value not in options:
            self.fail(
                key,
                f"unknown {key} {value!r}{did_you_mean(str(value), options)}; valid: {', '.join(options)}",
            )
            return fallback
        return str(value)

    def _ref(self) -> str | None:
        if "ref" not in self.spec:
            if self.spec.get("type") == "ref":
                self.fail(
                    "ref", f"missing: the entity the reference points to ({', '.join(ENTITIES)})"
                )
            return None
        ref = self.spec["ref"]
        if ref not in ENTITIES:
            self.fail(
                "ref",
                f"unknown entity {ref!r}{did_you_mean(str(ref), ENTITIES)}; valid: {', '.join(ENTITIES)}",
            )
            return None
        return str(ref)

    def _type(self, ref: str | None) -> str:
        type_name = self.spec.get("type", "ref" if "ref" in self.spec else "string")
        if type_name not in TYPES:
            self.fail(
                "type",
                f"unknown type {type_name!r}{did_you_mean(str(type_name), TYPES)}; valid: {', '.join(TYPES)}",
            )
            return "string"
        if "ref" in self.spec and type_name != "ref":
            self.fail("type", f"a field with `ref` has type 'ref', not {type_name!r}")
        return str(type_name)

    def _transform(self, type_name: str) -> str | None:
        if "transform" not in self.spec:
            return None
        name = self.spec["transform"]
        if not isinstance(name, str) or name not in self.transforms:
            known = sorted(self.transforms)
            listing = ", ".join(known) if known else "none are installed"
            self.fail(
                "transform",
                f"no plugin provides transform {name!r}{did_you_mean(str(name), known)}; available: {listing}",
            )
        for other in ("type", "values", "ref"):
            if other in self.spec:
                self.fail(
                    other, "cannot be combined with `transform` (the transform converts the value)"
                )
        return str(name)

    def _values(self, type_name: str) -> tuple[ValueRule, ...] | None:
        table = self.spec["values"]
        if not isinstance(table, dict) or not table:
            self.fail(
                "values", "must be a non-empty table: system value = canonical value or [values]"
            )
            return None
        if type_name not in VALUE_MAP_TYPES:
            self.fail(
                "values",
                f"a value map works with types {', '.join(VALUE_MAP_TYPES)}, not {type_name!r}",
            )
            return None
        codec = codec_for(type_name, self.system, self.timezone)
        rules = []
        for key, mapped in table.items():
            rule = self._rule(key, mapped, codec)
            if rule is not None:
                rules.append(rule)
        return tuple(rules)

    def _rule(self, key: str, mapped: Any, codec: Any) -> ValueRule | None:
        where = f"values.{_toml_key(key)}"
        try:
            normal = codec.to_canonical(key)
            system_value = codec.to_system(normal)
        except ValueError:
            self.fail(where, f"system value {key!r} is not {codec.expected} (type {codec.name!r})")
            return None
        targets = mapped if isinstance(mapped, list) else [mapped]
        if not targets:
            self.fail(where, "maps to an empty list; give at least one canonical value")
            return None
        canonical = []
        for target in targets:
            try:
                canonical.append(canonical_value(self.entity, self.field, target))
            except ValueError as exc:
                self.fail(where, str(exc))
        return ValueRule(
            key=key, system_value=system_value, normal=normal, canonical=tuple(canonical)
        )

    def _default(self) -> Any:
        if "default" not in self.spec:
            return MISSING
        try:
            return canonical_value(self.entity, self.field, self.spec["default"])
        except ValueError as exc:
            self.fail("default", str(exc))
            return MISSING


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else f'"{as_text(key)}"'
