"""What the engine keeps per canonical record and what it reports about a pass.

The *envelope* is the stored form of one canonical record: the canonical fields, the last
raw fields seen in (or written to) each system, when each field last changed, which fields
still have to be written to which system, a create journal, and where it was deleted. That
is enough to recognise echoes of our own writes, tell which side changed a field, and resume
after a crash (see ``bridge.engine``).
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bridge.store import Store
from bridge.store.rows import RefRow

# --- reports ---------------------------------------------------------------------------------


@dataclass
class SyncReport:
    """What one sync did, per (entity, system): created, updated, unchanged, conflicts, errors."""

    counts: dict[tuple[str, str], Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, entity: str, system: str, what: str, n: int = 1) -> None:
        with self.lock:
            self.counts[(entity, system)][what] += n

    def error(self, entity: str, system: str, message: str) -> None:
        with self.lock:
            self.counts[(entity, system)]["errors"] += 1
            self.errors.append(message)

    def merge(self, other: SyncReport) -> None:
        """Add what ``other`` counted (work done around a pass, e.g. held writes applied)."""
        for (entity, system), counter in other.counts.items():
            for what, n in counter.items():
                self.add(entity, system, what, n)
        with self.lock:
            self.errors.extend(other.errors)

    def total(self, what: str) -> int:
        return sum(c[what] for c in self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "by_entity": {
                f"{entity}/{system}": dict(counter) for (entity, system), counter in sorted(self.counts.items())
            },
            "errors": list(self.errors),
        }


# --- envelope --------------------------------------------------------------------------------


@dataclass
class Envelope:
    """The stored form of one canonical record (see the module docstring)."""

    fields: dict[str, Any]
    raw: dict[str, dict[str, Any]] = field(default_factory=dict)
    times: dict[str, str] = field(default_factory=dict)
    pending: dict[str, list[str]] = field(default_factory=dict)
    creating: dict[str, Any] = field(default_factory=dict)  # system -> create journal
    gone: dict[str, str] = field(default_factory=dict)  # system -> when the object was deleted there
    # system -> what was known of its object before the pair was adopted (bridge.engine.adoption)
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)
    revision: int = 0  # store revision it was read at (0: new)

    @classmethod
    def load(cls, data: Mapping[str, Any], revision: int) -> Envelope:
        return cls(
            fields=dict(data["fields"]),
            raw={k: dict(v) for k, v in data.get("raw", {}).items()},
            times=dict(data.get("times", {})),
            pending={k: list(v) for k, v in data.get("pending", {}).items()},
            creating=dict(data.get("creating", {})),
            gone=dict(data.get("gone", {})),
            seen=dict(data.get("seen", {})),
            revision=revision,
        )

    def dump(self) -> dict[str, Any]:
        return {
            "fields": self.fields,
            "raw": self.raw,
            "times": self.times,
            "pending": {k: sorted(set(v)) for k, v in self.pending.items() if v},
            "creating": self.creating,
            "gone": self.gone,
            **({"seen": self.seen} if self.seen else {}),
        }

    def mark_pending(self, system: str, names: Iterable[str]) -> None:
        if system in self.gone:
            return
        merged = set(self.pending.get(system, ())) | set(names)
        if merged:
            self.pending[system] = sorted(merged)

    def field_time(self, name: str) -> datetime | None:
        value = self.times.get(name)
        return datetime.fromisoformat(value) if value else None


# --- one record read under its lock ----------------------------------------------------------


class HeldRecord:
    """A record and its links, read once while its record lock is held, and handed from
    ingest to propagation: one event reads them once. Whoever saves the envelope keeps it
    current (its revision moves with each save); ``forget`` makes the next use read again
    (after a lost race, or a create that may have merged what it found).

    Both are read in one round trip on first use; with ``with_refs=False`` the record alone
    is, and the links only if asked for."""

    def __init__(self, store: Store, entity: str, key: str, *, with_refs: bool = True) -> None:
        self.store = store
        self.entity = entity
        self.key = key
        self.with_refs = with_refs
        self._env: Envelope | None = None
        self._refs: dict[str, RefRow] | None = None
        self._read = False

    @property
    def env(self) -> Envelope | None:
        if not self._read:
            if self.with_refs and self._refs is None:
                row, self._refs = self.store.record_and_refs(self.entity, self.key)
            else:
                row = self.store.load_record(self.entity, self.key)
            self._env = Envelope.load(row.data, row.revision) if row else None
            self._read = True
        return self._env

    @property
    def refs(self) -> dict[str, RefRow]:
        if self._refs is None:
            if self.with_refs and not self._read:
                self.env  # noqa: B018 -- reads both in one round trip
            else:
                self._refs = self.store.refs(self.entity, self.key)
        assert self._refs is not None
        return self._refs

    def ref(self, system: str, ext_id: str) -> RefRow | None:
        """The link of object ``ext_id`` in ``system`` if it is this record's."""
        ref = self.refs.get(system)
        return ref if ref is not None and ref.ext_id == ext_id else None

    def known_ref(self, system: str) -> RefRow | None:
        """This record's link in ``system`` if the links were read already (no query)."""
        return self._refs.get(system) if self._refs is not None else None

    def saved(self, env: Envelope, ref: RefRow | None = None) -> None:
        """``env`` was just saved (and ``ref`` written with it)."""
        self._env, self._read = env, True
        if ref is not None and self._refs is not None:
            self._refs = {**self._refs, ref.system: ref}

    def forget(self) -> None:
        self._env, self._refs, self._read = None, None, False


# --- reference resolution --------------------------------------------------------------------


class StoreResolver:
    """Answers the mapping's reference questions for one system from the store.

    A link, once made, only ends by an unlink (``forget``), so answers found are kept:
    references are looked up on every record read and this saves most of those queries.
    """

    def __init__(self, store: Store, system: str) -> None:
        self.store = store
        self.system = system
        self._keys: dict[tuple[str, str], str] = {}
        self._ids: dict[tuple[str, str], str] = {}

    def to_key(self, entity: str, system_id: str) -> str | None:
        found = self._keys.get((entity, str(system_id)))
        if found is None:
            found = self.store.find_key(self.system, entity, str(system_id))
            if found is not None:
                self._keys[(entity, str(system_id))] = found
        return found

    def to_id(self, entity: str, key: str) -> str | None:
        found = self._ids.get((entity, key))
        if found is None:
            ref = self.store.refs(entity, key).get(self.system)
            if ref is not None:
                found = self._ids[(entity, key)] = ref.ext_id
        return found

    def forget(self, entity: str, key: str, system_id: str) -> None:
        self._keys.pop((entity, str(system_id)), None)
        self._ids.pop((entity, key), None)
