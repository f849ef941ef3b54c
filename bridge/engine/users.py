"""Assignees across the systems: the same person is the user with the same e-mail.

An adapter with ``bridge.adapter.UserSupport`` shows its person fields by e-mail and writes
an e-mail as its own user. Before a write, ``screen`` asks it which e-mails name a user
there; a value none matches is left out of the write (the other side keeps the person it
had: never a guess, never a cleared assignment) and recorded in ``unmatched_users``
(``relbridge status``). ``rematch`` asks again for the recorded ones, once per pass (the
daemon: once per sweep), and makes a matched one a pending write of its record: the person
crosses once the user exists.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from functools import cache

from bridge.adapter import Adapter, UserSupport
from bridge.engine.envelope import Envelope
from bridge.mapping.convert import OutboundResult
from bridge.mapping.loader import Mappings, SystemMapping
from bridge.store import Store, UnitOfWork
from bridge.store.rows import StaleRecord
from bridge.store.unmatched_users import UnmatchedUser

log = logging.getLogger(__name__)


def user_fields(adapter: Adapter, entity: str) -> frozenset[str]:
    supported = _supports_users(type(adapter)) or isinstance(adapter, UserSupport)
    return adapter.user_fields(entity) if supported else frozenset()


@cache
def _supports_users(cls: type) -> bool:
    """Whether an adapter class has ``UserSupport``'s methods, asked once per class: a
    protocol check walks the protocol's members each time, and every write asks."""
    return issubclass(cls, UserSupport)


def screen(adapter: Adapter, entity: str, out: OutboundResult) -> None:
    """Move the e-mails no user of the adapter's system has from ``out.payload`` to
    ``out.unmatched`` (one look-up per e-mail not met before, for the whole payload)."""
    wanted = {name: str(out.payload[name]) for name in user_fields(adapter, entity)
              if out.payload.get(name)}
    if not wanted:
        return
    found = adapter.match_users(set(wanted.values()))
    for name, email in wanted.items():
        if email not in found:
            out.payload.pop(name)
            out.unmatched[name] = email


def record(tx: UnitOfWork, adapter: Adapter, mapping: SystemMapping, entity: str, key: str,
           out: OutboundResult, considered: Iterable[str] | None = None) -> None:
    """Keep ``out``'s unmatched users and clear the rows of the person fields it settled
    (written, or already right), in the transaction that records the write."""
    people = user_fields(adapter, entity)
    if not people:
        return
    wanted = None if considered is None else set(considered)
    for name, email in out.unmatched.items():
        tx.put_unmatched_user(entity, key, mapping.system, name, email)
    settled = [spec.source for spec in mapping.fields(entity)
               if spec.source in people and spec.source not in out.unmatched
               and (wanted is None or spec.field in wanted)]
    tx.clear_unmatched_users(entity, key, mapping.system, settled)


def rematch(store: Store, mappings: Mappings, adapters: Mapping[str, Adapter]) -> int:
    """Make each recorded unmatched user whose e-mail now names a user a pending write of
    its record, and drop the rows whose record no longer holds that person (assigned to
    someone else since). Returns how many were matched."""
    rows = [row for row in store.unmatched_users() if _still_wanted(store, mappings, row)]
    by_system: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        by_system[row.system].add(row.email)
    found = {system: adapters[system].match_users(emails) for system, emails in by_system.items()
             if isinstance(adapters.get(system), UserSupport)}
    matched = 0
    for row in rows:
        if row.email in found.get(row.system, ()) and _mark_pending(store, row, _fields(mappings, row)):
            matched += 1
    return matched


def _fields(mappings: Mappings, row: UnmatchedUser) -> list[str]:
    """The canonical fields mapped to the row's system field."""
    return [spec.field for spec in mappings.for_system(row.system).fields(row.entity) if spec.source == row.field]


def _still_wanted(store: Store, mappings: Mappings, row: UnmatchedUser) -> bool:
    record = store.get_record(row.entity, row.key)
    fields = (record or {}).get("fields", {})
    if any(fields.get(name) == row.email for name in _fields(mappings, row)):
        return True
    store.clear_unmatched_users(row.entity, row.key, row.system, [row.field])
    return False


def _mark_pending(store: Store, row: UnmatchedUser, names: list[str]) -> bool:
    entity, key, system = row.entity, row.key, row.system
    with store.transaction() as tx:
        loaded = tx.load_record(entity, key)
        if loaded is None:  # the record is gone: nobody waits for this user any more
            tx.clear_unmatched_users(entity, key, system, [row.field])
            return False
        env = Envelope.load(loaded.data, loaded.revision)
        env.mark_pending(system, names)
        try:
            tx.put_record(entity, key, env.dump(), expected_revision=env.revision)
        except StaleRecord:  # written meanwhile: the next pass asks again
            log.debug("%s %s changed while its assignee was matched", entity, key)
            return False
    return True
