"""Running one system's mapping: a system record's fields <-> canonical fields.

* **inbound** (``to_canonical``): convert by type, look values up in value maps, resolve
  references to canonical keys. A lossy value map is *set-valued*: ServiceNow release state
  ``2`` stands for {in_progress, authorized, deploying, deployed}, so when the canonical
  record already holds one of those it is kept (no flapping); otherwise the first is taken.
  Lossy types (a Jira date for a canonical date/time) keep the stored value the same way.
* **outbound** (``to_system``): the reverse, writing only fields whose system value really
  changes, so an idle sync costs no API call and echoes are rare.

A system never supplies a field another system owns. Fields with ``direction = "inbound"``
are never written, ``"outbound"`` ones never read into the record. Bad system values are
record-level problems (``UnmappableValue``): the engine reports them on that record and
skips it whole, so a half-mapped record is never written anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from bridge.adapter import Metadata
from bridge.errors import MappingError, PermanentError
from bridge.mapping.check import LiveCheck, check_against, check_offline, live_check
from bridge.mapping.codecs import Codec, as_datetime, as_text, codec_for, is_empty, unwrap
from bridge.mapping.spec import (
    MISSING,
    CommentSpec,
    EntitySpec,
    FieldSpec,
    FileSpec,
    Transform,
    ValueRule,
)


class UnmappableValue(PermanentError):
    """A value has no counterpart on the other side (or cannot be converted).

    Raised per record: the engine reports it on that record and skips the record whole,
    so a half-mapped record is never written anywhere.
    """

    code = "unmappable_value"

    def __init__(
        self,
        entity: str,
        field: str,
        system_field: str,
        value: Any,
        known_values: Iterable[Any] = (),
        *,
        expected: str | None = None,
        system: str | None = None,
    ) -> None:
        self.entity, self.field, self.system_field = entity, field, system_field
        self.value, self.known_values, self.system = value, tuple(known_values), system
        where = f"{system} " if system else ""
        if expected:
            hint = f"expected {expected}"
        else:
            hint = (
                "known: " + ", ".join(repr(v) for v in self.known_values)
                if self.known_values
                else "no values are mapped"
            )
        super().__init__(
            f"{entity}.{field} ({where}field {system_field!r}): cannot map {value!r}; {hint}"
        )


class RefResolver(Protocol):
    """Turns system ids into canonical keys and back (the engine answers from its store)."""

    def to_key(self, entity: str, system_id: str) -> str | None: ...

    def to_id(self, entity: str, key: str) -> str | None: ...


class IdentityResolver:
    """Leaves ids and keys as they are: for previews and tests."""

    def to_key(self, entity: str, system_id: str) -> str | None:
        return system_id

    def to_id(self, entity: str, key: str) -> str | None:
        return key


class UnresolvedRef(NamedTuple):
    """An inbound reference to an object relbridge does not know yet (retry later)."""

    field: str
    system_id: str


class PendingRef(NamedTuple):
    """An outbound reference to a record that does not exist in the target system yet."""

    field: str
    entity: str
    key: str


@dataclass
class InboundResult:
    values: dict[str, Any] = field(default_factory=dict)  # canonical field -> value
    unresolved: list[UnresolvedRef] = field(default_factory=list)


@dataclass
class OutboundResult:
    payload: dict[str, Any] = field(default_factory=dict)  # system field -> value, changes only
    pending: list[PendingRef] = field(default_factory=list)
    # system field -> e-mail left out of the payload: no user there has it (bridge.engine.users)
    unmatched: dict[str, str] = field(default_factory=dict)


class SystemMapping:
    """The validated mapping of one system; converts records both ways."""

    def __init__(
        self,
        spec: FileSpec,
        owners: Mapping[tuple[str, str], str],
        timezone: str,
        transforms: Mapping[str, Transform],
    ) -> None:
        self.system = spec.system
        self.label = spec.label
        self.spec = spec
        self._owners = owners
        self._transforms = dict(transforms)
        self._codecs = {
            (entity.entity, f.field): codec_for(f.type, self.system, timezone)
            for entity in spec.entities.values()
            for f in entity.fields.values()
        }

    @property
    def entities(self) -> tuple[str, ...]:
        """The canonical entities this system syncs (those its file maps)."""
        return tuple(self.spec.entities)

    def object(self, entity: str) -> str:
        return self._entity(entity).object

    def fields(self, entity: str) -> tuple[FieldSpec, ...]:
        return tuple(self._entity(entity).fields.values())

    def fields_to_read(self, entity: str) -> list[str]:
        """System fields the adapter must request: all mapped ones (diffs need them too),
        and the comment fields that cross (read with the record: no call per record)."""
        comments = self.comments(entity)
        return list(dict.fromkeys([*(f.source for f in self.fields(entity)),
                                   *(comments.read if comments else ())]))

    def comments(self, entity: str) -> CommentSpec | None:
        """The entity's ``[<entity>.comments]`` section, if the file has one."""
        spec = self.spec.entities.get(entity)
        return spec.comments if spec is not None else None

    def owner(self, entity: str, field: str) -> str:
        return self._owners.get((entity, field), "any")

    def check_offline(self) -> list[str]:
        return check_offline(self.spec, self._owners)

    def check_against(self, metadata: Metadata) -> list[str]:
        return check_against(self.spec, metadata)

    def live_check(self, metadata: Metadata) -> LiveCheck:
        return live_check(self.spec, metadata)

    # -- inbound ---------------------------------------------------------------------------

    def to_canonical(
        self,
        entity: str,
        fields: Mapping[str, Any],
        current: Mapping[str, Any] | None,
        resolver: RefResolver,
    ) -> InboundResult:
        """Canonical values from a system record's ``fields``.

        ``current`` is the canonical record as stored (``sync_fields()``), None for a new
        one; set-valued maps keep its value when the system value still allows it. System
        fields absent from ``fields`` are left out (not read is not the same as empty).
        Raises ``UnmappableValue`` for a value with no canonical counterpart.
        """
        result = InboundResult()
        for spec in self.fields(entity):
            if spec.direction == "outbound" or self.owner(entity, spec.field) not in (
                "any",
                self.system,
            ):
                continue
            if spec.source not in fields:
                continue
            raw = unwrap(fields[spec.source])
            value = self._inbound_value(spec, raw, current, resolver, result)
            if value is None and not spec.nullable:
                continue  # keep the stored value / the model default rather than fail validation
            result.values[spec.field] = value
        return result

    def read_value(self, entity: str, field: str, raw: Any, resolver: RefResolver, current: Any = None) -> Any:
        """The canonical value that the system value ``raw`` of ``field`` stands for, whoever
        owns the field (a set-valued map gives ``current`` when its list holds it, else the
        first of the list). For telling a write in canonical terms (the safety brake, the
        dry run's plan); raises ``UnmappableValue`` like a read."""
        spec = self._entity(entity).fields[field]
        known = None if current is None else {field: current}
        return self._inbound_value(spec, unwrap(raw), known, resolver, InboundResult())

    def _inbound_value(
        self,
        spec: FieldSpec,
        raw: Any,
        current: Mapping[str, Any] | None,
        resolver: RefResolver,
        result: InboundResult,
    ) -> Any:
        if is_empty(raw) and spec.default is not MISSING:
            return spec.default
        if spec.values is not None:
            return self._lookup(spec, raw, None if current is None else current.get(spec.field))
        if spec.ref is not None:
            if is_empty(raw):
                return None
            key = resolver.to_key(spec.ref, as_text(raw))
            if key is None:
                result.unresolved.append(UnresolvedRef(spec.field, as_text(raw)))
            return key
        convert = (
            self._transforms[spec.transform].to_canonical
            if spec.transform
            else self._codec(spec).to_canonical
        )
        try:
            value = convert(raw)
        except (ValueError, TypeError):
            raise self._unmappable(spec, raw, expected=self._expected(spec)) from None
        if current is not None and spec.field in current:
            return self._keep_if_equivalent(spec, raw, value, current[spec.field])
        return value

    def _keep_if_equivalent(self, spec: FieldSpec, raw: Any, value: Any, kept: Any) -> Any:
        """The stored value when it still writes as ``raw``: lossy types must not flap.

        Jira's ``2026-01-05`` reads as midnight, but a stored ``2026-01-05T15:00Z`` writes
        as that same day, so the stored (more precise) value stays.
        """
        if kept is None or kept == value:
            return value
        to_system = (
            self._transforms[spec.transform].to_system
            if spec.transform
            else self._codec(spec).to_system
        )
        try:
            if not self._same(spec, raw, to_system(kept)):
                return value
        except (ValueError, TypeError):
            return value
        return as_datetime(kept) if isinstance(value, datetime) else kept

    def _lookup(self, spec: FieldSpec, raw: Any, current: Any) -> Any:
        rule = self._rule_for(spec, raw)
        if rule is None:
            if is_empty(raw):
                return None
            raise self._unmappable(spec, raw, known=[r.key for r in spec.values or ()])
        if current is not None and current in rule.canonical:
            return rule.canonical[rule.canonical.index(current)]  # no flapping
        return rule.canonical[0]

    def _rule_for(self, spec: FieldSpec, raw: Any) -> ValueRule | None:
        try:
            normal = self._codec(spec).to_canonical(raw)
        except (ValueError, TypeError):
            return None
        return next((rule for rule in spec.values or () if rule.normal == normal), None)

    # -- outbound --------------------------------------------------------------------------

    def to_system(
        self,
        entity: str,
        canonical: Mapping[str, Any],
        current: Mapping[str, Any] | None,
        resolver: RefResolver,
        *,
        fields: Iterable[str] | None = None,
    ) -> OutboundResult:
        """The payload that makes the system object match ``canonical``.

        ``current`` is the system object's fields as read (None to create: then every
        mapped field with a value is included). Only fields whose system value changes are
        in the payload. ``fields`` limits the canonical fields considered. A reference to a
        record not yet in this system is left out and listed in ``pending``.
        """
        wanted = None if fields is None else set(fields)
        result = OutboundResult()
        for spec in self.fields(entity):
            if spec.direction == "inbound" or spec.field not in canonical:
                continue
            if wanted is not None and spec.field not in wanted:
                continue
            value = canonical[spec.field]
            before = MISSING if current is None else current.get(spec.source, MISSING)
            out = self._outbound_value(spec, value, before, resolver, result)
            if out is MISSING:
                continue
            if current is None and is_empty(out):
                continue  # a new object starts empty anyway
            if before is not MISSING and self._same(spec, unwrap(before), out):
                continue
            result.payload[spec.source] = out
        return result

    def _outbound_value(
        self,
        spec: FieldSpec,
        value: Any,
        before: Any,
        resolver: RefResolver,
        result: OutboundResult,
    ) -> Any:
        if spec.values is not None:
            if before is not MISSING:
                rule = self._rule_for(spec, unwrap(before))
                if rule is not None and value in rule.canonical:
                    return MISSING  # the system value already stands for this canonical value
            return self._reverse(spec, value)
        if spec.ref is not None:
            if value is None or value == "":
                return self._codec(spec).to_system(None)
            system_id = resolver.to_id(spec.ref, str(value))
            if system_id is None:
                result.pending.append(PendingRef(spec.field, spec.ref, str(value)))
                return MISSING
            return system_id
        convert = (
            self._transforms[spec.transform].to_system
            if spec.transform
            else self._codec(spec).to_system
        )
        try:
            return convert(value)
        except (ValueError, TypeError):
            raise self._unmappable(
                spec, value, expected=f"a valid canonical {spec.field}"
            ) from None

    def _reverse(self, spec: FieldSpec, value: Any) -> Any:
        for rule in spec.values or ():
            if value in rule.canonical:
                return rule.system_value
        if value is None:
            return self._codec(spec).to_system(None)
        known = dict.fromkeys(c for rule in spec.values or () for c in rule.canonical)
        raise self._unmappable(spec, value, known=list(known))

    def _same(self, spec: FieldSpec, before: Any, out: Any) -> bool:
        """Whether writing ``out`` over ``before`` changes nothing, after normalising both."""
        if before == out or (is_empty(before) and is_empty(out)):
            return True
        if spec.ref is not None:
            return False
        normalise = (
            self._transforms[spec.transform].to_canonical
            if spec.transform
            else self._codec(spec).to_canonical
        )
        try:
            return bool(normalise(before) == normalise(out))
        except (ValueError, TypeError):
            return False

    # -- helpers ---------------------------------------------------------------------------

    def _entity(self, entity: str) -> EntitySpec:
        try:
            return self.spec.entities[str(entity)]
        except KeyError:
            raise MappingError(f"{self.label}: {entity} — not mapped for {self.system}") from None

    def _codec(self, spec: FieldSpec) -> Codec:
        return self._codecs[(spec.entity, spec.field)]

    def _expected(self, spec: FieldSpec) -> str:
        return (
            f"a value transform {spec.transform!r} accepts"
            if spec.transform
            else self._codec(spec).expected
        )

    def _unmappable(
        self, spec: FieldSpec, value: Any, *, known: Iterable[Any] = (), expected: str | None = None
    ) -> UnmappableValue:
        return UnmappableValue(
            spec.entity,
            spec.field,
            spec.source,
            value,
            known,
            expected=expected,
            system=self.system,
        )
