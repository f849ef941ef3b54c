"""Comments that cross between the systems (DESIGN §11).

A mapping's ``[<entity>.comments]`` names the comment fields of each system (ServiceNow
journal fields, Jira's ``comment``). The adapters read them with the records (one extra
query per page at most), so the comments arrive in the record's raw fields and are stored
with it. After a record is propagated, ``sync_comments`` copies every comment of one side
that the other lacks:

* **once**: a ``comment_links`` row per copied comment, claimed (state ``sending``) before
  the copy is written and settled (``sent``) after. A crash in between leaves ``sending``:
  the next pass asks the other system for the copy's *marker* before writing again;
* **with its origin and author**: ``[Jira] Ada Lovelace: …``, and a marker line
  ``(relbridge <system>:<comment id>)`` that names the comment it copies;
* **never echoed**: a comment holding a marker is a copy and never crosses back;
* **never dropped silently**: a body over the other system's limit is cut with a note of
  how much was left out; a comment the other system refuses (4xx) becomes a dead letter
  with the reason, and the record's other fields are not held up by it.

Edits of a copied comment are not followed: journal entries cannot be edited through the
API, so neither side's edits are (documented in docs/comments.md).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from bridge.adapter import CommentEntry, CommentSupport
from bridge.daemon.inbox import DEAD, add_dead_letter, event_state
from bridge.engine.envelope import Envelope, HeldRecord, SyncReport
from bridge.errors import PermanentError
from bridge.model import SYSTEMS
from bridge.store.comment_links import CommentLink

if TYPE_CHECKING:
    from bridge.engine.pipeline import Engine
    from bridge.store.rows import RefRow

log = logging.getLogger(__name__)

#: The last line of every copy: which comment of which system it copies.
MARKER = re.compile(r"\(relbridge ([a-z0-9_]+):([^)\s]+)\)\s*$")
CUT_NOTE = "\n… [cut by relbridge: {n} more characters on the original]"


#: The last line of a note relbridge writes itself (a deployment's verification result): it
#: stays where it was written and never crosses as a comment. Parentheses, not brackets:
#: brackets are link syntax in Jira's wiki markup.
NOTE = re.compile(r"\(relbridge verify [^)\s]+\)\s*$")


def verification_marker(release_key: str, deployment: int) -> str:
    return f"(relbridge verify {release_key}#{deployment})"


def marker(system: str, comment_id: str) -> str:
    return f"(relbridge {system}:{comment_id})"


def copied_from(body: str) -> tuple[str, str] | None:
    """(system, comment id) of the comment that ``body`` is a copy of; None for an original."""
    found = MARKER.search(body)
    return (found.group(1), found.group(2)) if found else None


def units(text: str) -> int:
    """Length as the systems count it (UTF-16 code units, as Java does): an emoji is 2."""
    return len(text.encode("utf-16-le")) // 2


def _cut(text: str, room: int) -> str:
    """The longest prefix of ``text`` of at most ``room`` UTF-16 units."""
    if units(text) <= room:
        return text
    cut = text[:room]
    while units(cut) > room:
        cut = cut[:-1]
    return cut


def copy_text(label: str, source: str, comment: CommentEntry, limit: int) -> str:
    """The copy's text: origin and author, the body (cut to fit ``limit``), the marker."""
    header = f"[{label}] {comment['author'] or 'unknown'}: "
    tail = "\n" + marker(source, comment["id"])
    body = comment["body"]
    room = limit - units(header) - units(tail)
    if units(body) > room:
        # The note says how much is missing; its own length depends on that number.
        note = CUT_NOTE.format(n=units(body))
        kept = _cut(body, max(room - units(note), 0))
        body = kept + CUT_NOTE.format(n=units(body) - units(kept))
    return header + body + tail


def entries(raw: Mapping[str, Any], fields: Iterable[str]) -> list[CommentEntry]:
    """The comments an adapter put in a record's comment fields, oldest first."""
    found: list[CommentEntry] = []
    for name in fields:
        value = raw.get(name)
        if isinstance(value, list):
            found += [c for c in value if isinstance(c, dict) and c.get("id") and isinstance(c.get("body"), str)]
    return sorted(found, key=lambda c: (str(c.get("created") or ""), str(c["id"])))


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def sync_comments(engine: Engine, held: HeldRecord, report: SyncReport) -> None:
    """Copy the record's comments that one system has and the other lacks (see the module
    docstring). Called with the record lock held, after the record's fields were written;
    ``held`` is the record as propagation left it (read again only if it was forgotten)."""
    env, entity, key = held.env, held.entity, held.key
    if env is None or not any(_comments_in(engine, entity, env, system) for system in SYSTEMS):
        return  # no comment on either side (a backfill's rule): nothing to look up
    refs = held.refs
    links = {(link.source_system, link.source_id, link.target_system): link
             for link in engine.store.comment_links(entity, key)}
    for source, target in itertools.permutations(SYSTEMS, 2):
        _cross(engine, entity, key, env, refs, (source, target), links, report)


def _comments_in(engine: Engine, entity: str, env: Envelope, system: str) -> bool:
    """Whether the raw fields held for ``system`` carry comments ``entity`` syncs."""
    spec = engine.mappings.for_system(system).comments(entity)
    return spec is not None and system in env.raw and bool(entries(env.raw[system], spec.read))


def _cross(engine: Engine, entity: str, key: str, env: Envelope, refs: Mapping[str, RefRow],
           route: tuple[str, str], links: Mapping[tuple[str, str, str], CommentLink],
           report: SyncReport) -> None:
    source, target = route
    source_spec = engine.mappings.for_system(source).comments(entity)
    target_spec = engine.mappings.for_system(target).comments(entity)
    writer, reader = engine.adapters[target], engine.adapters[source]
    if (source_spec is None or target_spec is None or target not in refs or source not in env.raw
            or env.creating.get(target) or not isinstance(writer, CommentSupport)
            or not isinstance(reader, CommentSupport)):
        return
    for comment in entries(env.raw[source], source_spec.read):
        if NOTE.search(comment["body"]):  # relbridge's own note: not a person's comment
            continue
        origin = copied_from(comment["body"])
        if origin is not None:  # our copy of a comment of the other side: it never goes back
            link = links.get((origin[0], origin[1], source))
            if link is not None and link.target_id is None:
                engine.store.set_comment_target(link.id, comment["id"])
            continue
        link = links.get((source, comment["id"], target))
        if link is not None and not _resend(engine, link):
            continue
        field = target_spec.target(bool(comment.get("internal")))
        text = copy_text(reader.label, source, comment, writer.comment_limit)
        _send(engine, entity, key, route, comment, link, (writer, refs[target].ext_id, field, text),
              refs[source].ext_id if source in refs else "", report)


def _resend(engine: Engine, link: CommentLink) -> bool:
    """Whether a linked comment is to be written (again): a copy cut short by a crash, or
    one refused before whose dead letter a person has put back in the queue."""
    if link.state == "sending":
        return True
    if link.state == "failed" and link.event_id is not None:
        return event_state(engine.store, link.event_id) not in (DEAD, None)
    return False


def _send(engine: Engine, entity: str, key: str, route: tuple[str, str], comment: CommentEntry,
          link: CommentLink | None, write: tuple[CommentSupport, str, str, str], source_id: str,
          report: SyncReport) -> None:
    source, target = route
    writer, ext_id, field, text = write
    ident = (entity, key, source, comment["id"], target)
    body_hash = digest(comment["body"])
    if link is None:
        if not engine.store.claim_comment_link(*ident, body_hash=body_hash):
            return  # another worker has it
    elif link.state == "sending":
        # Written before a crash? The marker finds it; then only the link is settled.
        found = writer.find_comment(entity, ext_id, field, marker(source, comment["id"]))
        if found is not None:
            engine.store.put_comment_link(*ident, state="sent", body_hash=body_hash, target_id=found)
            return
    try:
        new_id = writer.add_comment(entity, ext_id, field, text, bool(comment.get("internal")))
    except PermanentError as exc:
        reason = f"comment {comment['id']} of {source} {entity} {key} -> {target}: {exc}"
        log.warning("%s; dead-lettered, the record's other fields are synced", reason)
        event_id = add_dead_letter(engine.store, source, entity, source_id, reason)
        engine.store.put_comment_link(*ident, state="failed", body_hash=body_hash, reason=str(exc),
                                      event_id=event_id)
        report.error(entity, target, reason)
        return
    engine.store.put_comment_link(*ident, state="sent", body_hash=body_hash, target_id=new_id)
    report.add(entity, target, "comments")
