"""``relbridge dlq list | retry ID | drop ID``: the dead-letter list.

A dead letter is an event that failed permanently (or ran out of attempts); it keeps its
reason. ``retry`` puts it back in the queue with fresh attempts: when a worker takes it,
it re-reads the object's *current* state, so fixing the cause (a field value, a
permission, a fault in the other system) is all a replay needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bridge.daemon.inbox import Event, Inbox
from bridge.errors import BadInput
from bridge.timeutil import as_utc

if TYPE_CHECKING:
    from bridge.runtime import Runtime


@dataclass(frozen=True)
class DeadLetter:
    id: int
    system: str
    entity: str
    ext_id: str
    attempts: int
    last_error: str
    received_at: datetime
    dead_at: datetime | None

    @classmethod
    def from_event(cls, event: Event) -> DeadLetter:
        return cls(id=event.id, system=event.system, entity=event.entity, ext_id=event.ext_id,
                   attempts=event.attempts, last_error=event.last_error or "",
                   received_at=as_utc(event.received_at),
                   dead_at=as_utc(event.dead_at) if event.dead_at else None)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "system": self.system, "entity": self.entity, "ext_id": self.ext_id,
                "attempts": self.attempts, "last_error": self.last_error,
                "received_at": self.received_at.isoformat(),
                "dead_at": self.dead_at.isoformat() if self.dead_at else None}


def inbox_of(runtime: Runtime) -> Inbox:
    return Inbox.from_config(runtime.store, runtime.config.sync)


def list_dead_letters(runtime: Runtime) -> list[DeadLetter]:
    """Dead letters, most recent first."""
    return [DeadLetter.from_event(event) for event in inbox_of(runtime).dead_letters()]


def retry_dead_letter(runtime: Runtime, event_id: int) -> None:
    """Back to the queue with fresh attempts; ``BadInput`` when there is no such dead letter."""
    if not inbox_of(runtime).retry_dead(event_id):
        raise BadInput(f"no dead letter with id {event_id} (see `relbridge dlq list`)")


def drop_dead_letter(runtime: Runtime, event_id: int) -> None:
    """Forget a dead letter; ``BadInput`` when there is no such dead letter."""
    if not inbox_of(runtime).drop_dead(event_id):
        raise BadInput(f"no dead letter with id {event_id} (see `relbridge dlq list`)")


def render_dead_letters(letters: list[DeadLetter], *, as_json: bool = False) -> str:
    """The ``dlq list`` output: a table, or a JSON array of ``DeadLetter.as_dict()``."""
    if as_json:
        return json.dumps([letter.as_dict() for letter in letters], indent=2)
    if not letters:
        return "no dead letters"
    header = f"{'ID':>6}  {'SYSTEM':<10} {'ENTITY':<8} {'EXT_ID':<34} {'TRIES':>5}  {'RECEIVED':<20} LAST ERROR"
    lines = [header]
    for d in letters:
        lines.append(f"{d.id:>6}  {d.system:<10} {d.entity:<8} {d.ext_id:<34} {d.attempts:>5}  "
                     f"{d.received_at:%Y-%m-%d %H:%M:%S}  {d.last_error}")
    return "\n".join(lines)
