"""The adapter contract: what the core needs from a system (ServiceNow, Jira, …).

Adapters are contributed by plugins through ``relbridge_adapters()``. They speak in the
system's own field names and values (``SystemRecord.fields``); ``mapping.py`` turns those
into canonical fields. Adapters own their API's paging, auth and link bookkeeping; the
core owns watermarks, merging, retries and checkpoints.

Links are exposed as *pseudo-fields* so that mappings can treat them like any other
reference field:

* a change carries ``release`` (the system id of its release), whatever the system stores
  underneath (ServiceNow ``rm_m2m_release_task`` rows, Jira ``fixVersions``);
* an incident carries ``caused_by`` (system id of the change) and ``release``;
* a release may carry ``state`` built from flags of the system's own (what those flags
  mean is the plugin's knowledge: ``relbridge_jira.records`` for Jira versions).

``Metadata.pseudo_fields`` lists an adapter's pseudo-fields, so the mapping check does not
take them for missing columns.

Optional: ``find_by_key(entity, key, fields) -> SystemRecord | None`` finds an object by
the name people use for it (a ServiceNow number, a Jira issue key or version name), for
``relbridge mappings preview --number``; an adapter without it cannot preview live records.

Optional: comments (``CommentSupport``). A mapping's ``[<entity>.comments] read`` fields
are asked for like any field; the adapter fills each with the object's comments as a list
of ``CommentEntry`` dicts, read with the page of records that holds them (one extra query
per page at most, never one per record).

Optional: time worked (``WorklogSupport``). An adapter whose ``worklog_entities`` names an
entity fills ``SystemRecord.worklogs`` on every record of it that it lists or reads: all
the time logged against the object, read with the page of records (one extra query per
page at most; an entry list the API cut short is completed for that object alone). The
engine stores them with the record, in the same transaction (the ``worklogs`` table);
the KPIs attribute them to the release's state when the work was done.

Optional: people (``UserSupport``). A field holding a person (ServiceNow's ``assigned_to``,
Jira's ``assignee``) is shown by the person's e-mail, lower-cased, so the same person reads
the same in both systems; an e-mail given in a write is written as that system's user.

Optional: release plans (``PlanSupport``): phases and tasks made from a deployment model,
found again by their tag, their states read and set (``bridge.release.plan``).

Errors: adapters raise ``bridge.errors.TransientError`` for 429/5xx/connection problems
(with ``retry_after`` when the server said so) and ``PermanentError`` for other 4xx.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol, TypedDict, runtime_checkable
from urllib.parse import urlsplit

import requests

#: The adapters' call observer, ``on_call(system, HTTP method, status)`` after every request
#: (status 0: no response); the daemon counts API calls with it.
OnCall = Callable[[str, str, int], None]

#: Records per page when an adapter lists or searches (``[sync] page_size``).
DEFAULT_PAGE_SIZE = 500


@dataclass(frozen=True)
class SystemRecord:
    """One object as read from a system."""

    system: str
    entity: str
    id: str  # sys_id, Jira issue id, Jira version id
    key: str | None  # number (CHG0030001), issue key (OPS-12), version name
    updated_at: datetime  # aware, UTC
    version: str  # sys_mod_count, or Jira's `updated`: changes on every write
    fields: Mapping[str, Any]
    url: str | None = None
    correlation: str | None = None  # the canonical key this object was tagged with, if any
    created_at: datetime | None = None  # aware, UTC, when the system reports it
    # source field -> when its value was last set, where the system records it (Jira's
    # changelog, a ServiceNow record never updated since its creation); for adoption and
    # per-field last-writer-wins
    field_times: Mapping[str, datetime] = field(default_factory=dict)
    # source fields still holding the value they were created with (with ``correlation``:
    # relbridge's copy, never a person's edit)
    untouched: frozenset[str] = frozenset()
    # every time entry logged against the object, when the adapter reads them for its
    # entity (``WorklogSupport``); None when it does not (the stored entries stay as they are)
    worklogs: tuple[WorklogEntry, ...] | None = None


class WorklogEntry(NamedTuple):
    """Time logged against an object (a Jira worklog, a ServiceNow ``task_time_worked`` row)."""

    id: str  # the entry's own id in its system
    started: datetime  # aware, UTC: when the work was done
    seconds: int
    author: str  # the login or display name of who logged it ("" when unknown)
    group: str | None = None  # the team it is charged to, when the system records one


class FieldTime(NamedTuple):
    """When a system last set one field, and whether that was the object's creation."""

    at: datetime
    at_creation: bool


@dataclass(frozen=True)
class WebhookHint:
    """What a webhook says changed. A hint only: the worker re-reads the object."""

    system: str
    entity: str
    id: str
    delivery_id: str | None = None  # for deduplicating repeated deliveries
    deleted: bool = False


@dataclass(frozen=True)
class FieldInfo:
    name: str
    type: str = "string"
    choices: tuple[str, ...] = ()


@dataclass
class Metadata:
    """What exists in a live system, for ``relbridge mappings check``."""

    objects: dict[str, dict[str, FieldInfo]] = field(default_factory=dict)  # object -> field -> info
    # (entity, field) pairs the adapter builds from links or flags: mappable, though the
    # live system lists no such column.
    pseudo_fields: frozenset[tuple[str, str]] = frozenset()


class CommentEntry(TypedDict):
    """One comment as an adapter reports it inside a record's comment field (JSON-ready:
    it is kept with the record's raw fields)."""

    id: str  # the comment's own id in its system (a journal entry's sys_id, a Jira comment id)
    body: str  # plain text, as a person reads it
    author: str  # display name, or the login when the system gives no name
    email: str  # the author's e-mail, "" when unknown
    created: str  # ISO 8601, UTC
    internal: bool  # a work note, or a comment restricted by visibility


@runtime_checkable
class CommentSupport(Protocol):
    """What an adapter offers so comments cross (optional; ``bridge.engine.comments``)."""

    label: str  # the system as people name it in a comment's origin ("[Label] Author: ...")
    comment_limit: int  # the most characters one comment body may hold there

    def add_comment(self, entity: str, id: str, field: str, text: str, internal: bool) -> str | None:
        """Add one comment to ``field`` of the object; its id when the API answers with it.
        A 4xx raises ``PermanentError`` (the comment is dead-lettered, nothing else)."""

    def find_comment(self, entity: str, id: str, field: str, marker: str) -> str | None:
        """The id of the object's comment in ``field`` whose text holds ``marker``, if any:
        asked only for a copy that may have been written before a crash."""


#: A plan item's state as both systems are compared on it (set-valued on a system whose own
#: states are finer: a pending and an open ServiceNow task are both "to_do").
PLAN_STATES = ("to_do", "in_progress", "done")


@dataclass(frozen=True)
class PlanItem:
    """One phase or task of a release plan (``bridge.release.plan``), as a system creates it."""

    tag: str  # correlation: the same on both systems, derived from release key, phase and task
    kind: str  # "phase" or "task"
    name: str
    phase: str  # the phase's name (a phase: its own)
    start: datetime  # aware, UTC
    end: datetime
    position: int  # order in the plan


@dataclass(frozen=True)
class PlanObject:
    """A plan item as a system holds it."""

    id: str
    key: str  # a number (RTSK0001001), an issue key
    tag: str
    state: str  # one of PLAN_STATES
    updated_at: datetime
    url: str | None = None


@runtime_checkable
class PlanSupport(Protocol):
    """What an adapter offers so release plans are made in its system (optional)."""

    def plan_objects(self, tags: Iterable[str]) -> dict[str, PlanObject]:
        """The plan objects tagged with any of ``tags``, by tag (a few calls, never one per tag)."""

    def create_plan_item(self, release_id: str, item: PlanItem, phase_id: str | None) -> PlanObject:
        """Create ``item`` tagged with ``item.tag``, linked to the release (and, for a task,
        to its phase ``phase_id`` when the system has phases of its own)."""

    def set_plan_state(self, kind: str, id: str, state: str) -> None:
        """Move a plan object to ``state`` (one of PLAN_STATES)."""


@runtime_checkable
class WorklogSupport(Protocol):
    """An adapter that reads the time logged against objects (optional; see the module doc)."""

    worklog_entities: tuple[str, ...]  # the entities whose records carry ``worklogs``

    def worklogs(self, entity: str, ids: list[str]) -> dict[str, list[WorklogEntry]]:
        """Every entry logged against each of these objects, by object id, in as few
        calls as the API allows (the adapter's listing and reads use it per page)."""


@runtime_checkable
class UserSupport(Protocol):
    """What an adapter offers so assignees cross, matched by e-mail (optional;
    ``bridge.engine.users``)."""

    def user_fields(self, entity: str) -> frozenset[str]:
        """The system fields of ``entity`` that hold a person. Reading, each shows the
        person's e-mail, lower-cased ("" for nobody); a person whose e-mail the system does
        not show is left out of the record (not read, never guessed). Writing, an e-mail
        ``match_users`` found is written as that user, "" as nobody."""

    def match_users(self, emails: Iterable[str]) -> set[str]:
        """The e-mails (lower-cased) that name exactly one user here who shows that e-mail.
        Answers are cached: at most one look-up per e-mail not met before (one that matched
        nobody is asked again only after a while)."""


@runtime_checkable
class Adapter(Protocol):
    name: str  # the system it talks to; mapping files, refs and events use this name
    entities: tuple[str, ...]

    def list_changed(
        self, entity: str, since: datetime | None, fields: Iterable[str]
    ) -> Iterator[SystemRecord]:
        """Records changed at or after ``since`` (all when None), oldest first, all pages."""

    def read(self, entity: str, id: str, fields: Iterable[str]) -> SystemRecord | None:
        """The current state of one object; None only when the system says it does not
        exist (404): the engine takes that, and nothing else, as a deletion. An object that
        exists but is not of ``entity`` (another Jira issue type or project) raises
        ``bridge.errors.NotThisEntity``. A malformed ``id`` raises ``BadInput`` before any
        request (ids come from webhook bodies)."""

    def find_by_correlation(self, entity: str, correlation: str) -> SystemRecord | None:
        """The object tagged with this canonical key, if one exists (idempotent creates)."""

    def find_by_field(self, entity: str, field: str, value: str) -> SystemRecord | None:
        """The object whose ``field`` (a system field name) equals ``value``, if exactly one
        does: releases correlate by name too (one born here carries no tag)."""

    # Optional: ``field_times(entity, id, fields) -> dict[field, FieldTime]``, when each
    # system field of one object was last set, for systems whose records do not carry it
    # (ServiceNow's audit history); asked only when edits of a field on both sides meet.

    # Optional: ``set_after_create(entity) -> frozenset[str]``, the system fields a create
    # writes in a later step than its first call (a workflow walk, a link row): a create cut
    # short can leave them unset, so finding the object again they are finished, never read
    # as a person's edit. Without it, every field is taken as written by the first call.

    def create(self, entity: str, payload: Mapping[str, Any], correlation: str) -> SystemRecord:
        """Create an object tagged with ``correlation``; returns it as read back."""

    def write(self, entity: str, id: str, payload: Mapping[str, Any]) -> SystemRecord | None:
        """Write only the given fields, in as few calls as the API allows; the record as the
        write answered it, or None when the API does not answer with it (or nothing was sent)."""

    def delete(self, entity: str, id: str) -> None:
        """Delete an object (only used when ``[sync] propagate_deletes = true``)."""

    def parse_webhook(self, headers: Mapping[str, str], body: Any) -> list[WebhookHint]:
        """Turn a verified webhook body (parsed JSON) into hints; [] for ignored events."""

    def metadata(self) -> Metadata:
        """Field names and choice values as the live system defines them."""

    def check_auth(self) -> None:
        """Raise if the system is unreachable or rejects our credentials (for /readyz)."""


def read_environment_once(session: requests.Session, url: str) -> None:
    """Resolve the proxy and CA-bundle environment variables for ``url`` now and stop
    requests from scanning the whole environment again on every call (a measurable part of
    each call's CPU time). Same outcome as requests' per-call lookup, since an adapter's
    session only ever talks to its one host. For adapters built on ``requests``."""
    settings = session.merge_environment_settings(url, {}, None, None, None)
    session.proxies.update(settings["proxies"])
    if session.verify is True and isinstance(settings["verify"], str):
        session.verify = settings["verify"]
    session.trust_env = False


def cannot_connect(exc: requests.RequestException, section: str) -> str:
    """``cannot connect to HOST:PORT (reason) — check [section] url``: one line that says
    which address failed and which setting to look at, the same for every adapter."""
    request = getattr(exc, "request", None)
    parts = urlsplit(str(getattr(request, "url", None) or ""))
    address = f" to {parts.hostname}" if parts.hostname else ""
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    if address and port:
        address += f":{port}"
    return f"cannot connect{address} ({_connection_reason(exc)}) — check [{section}] url"


def _connection_reason(exc: BaseException) -> str:
    """"Connection refused", "Name or service not known", … rather than urllib3's wrapper text."""
    text = str(exc)
    found = re.findall(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if found:
        return found[-1].strip()
    if isinstance(exc, requests.Timeout):
        return "timed out"
    return text.strip().splitlines()[0][:200] if text.strip() else type(exc).__name__
