"""``JiraAdapter``: releases (project versions), changes and incidents (issues) in Jira.

Implements ``bridge.adapter.Adapter`` on the ``jira`` client library. Creating an adapter
does no I/O; the client is built on first use (``GET serverInfo`` once). Every request is
counted in ``adapter.calls`` (a ``Counter`` by HTTP method) and reported to ``on_call``,
because API calls are what users pay for; each operation documents its cost (see
``versions`` and ``issues``). Failures surface as ``TransientError`` / ``PermanentError``
and are never retried here: the library's own sleeping retries are switched off so the
core's retry policy (with ``Retry-After``) is the only one.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any

from pydantic import SecretStr

from bridge.adapter import (
    DEFAULT_PAGE_SIZE,
    Metadata,
    OnCall,
    PlanItem,
    PlanObject,
    SystemRecord,
    WebhookHint,
    WorklogEntry,
)
from bridge.errors import BadInput, ConfigError
from relbridge_jira.comments import COMMENT_FIELD, COMMENT_LIMIT, add_comment, find_comment
from relbridge_jira.connection import JiraConnection
from relbridge_jira.ids import numeric_id
from relbridge_jira.issues import Issues
from relbridge_jira.metadata import build_metadata
from relbridge_jira.plans import Plans
from relbridge_jira.records import SYSTEM
from relbridge_jira.users import USER_FIELDS, Users
from relbridge_jira.versions import Versions
from relbridge_jira.webhooks import parse_webhook

DEFAULT_ISSUE_TYPES: Mapping[str, str] = MappingProxyType({"change": "Change", "incident": "Incident"})



class JiraAdapter:
    """The Jira side of relbridge. See the module docstring for costs and error handling."""

    name = SYSTEM
    entities: tuple[str, ...] = ("release", "change", "incident")

    def __init__(
        self,
        url: str,
        user: str,
        token: SecretStr,
        projects: Sequence[str],
        *,
        verify_tls: bool = True,
        timeout: float = 30,
        page_size: int = DEFAULT_PAGE_SIZE,
        issue_types: Mapping[str, str] = DEFAULT_ISSUE_TYPES,
        on_call: OnCall | None = None,
        read_time_worked: bool = False,
    ) -> None:
        if not projects:
            raise ConfigError("[jira] projects must name at least one project key")
        missing = {"change", "incident"} - set(issue_types)
        if missing:
            raise ConfigError(f"jira issue_types needs a type name for {', '.join(sorted(missing))}")
        if page_size < 1:
            raise ConfigError("jira page_size must be at least 1")
        self.projects = list(projects)
        self.issue_types = dict(issue_types)
        self.calls: Counter[str] = Counter()
        self._on_call = on_call
        self._calls_lock = threading.Lock()
        self._conn = JiraConnection(url, user, token, verify_tls=verify_tls, timeout=timeout,
                                    observer=self._count)
        self._versions = Versions(self._conn, self.projects)
        # Changes are issues, which hold worklogs; versions hold none (``WorklogSupport``).
        self.worklog_entities: tuple[str, ...] = ("change",) if read_time_worked else ()
        self._users = Users(self._conn)
        self._issues = Issues(self._conn, self.projects, self.issue_types, page_size, self.worklog_entities,
                              self._users)
        self._plans = Plans(self._conn, self.projects, page_size)

    def __repr__(self) -> str:  # never shows the token
        return f"JiraAdapter(url={self._conn.url!r}, projects={self.projects!r})"

    @property
    def is_cloud(self) -> bool:
        """True for Jira Cloud (``deploymentType``); builds the client if needed."""
        return self._conn.is_cloud

    # --- Adapter protocol ----------------------------------------------------------------------

    def list_changed(self, entity: str, since: datetime | None,
                     fields: Iterable[str]) -> Iterator[SystemRecord]:
        """Releases: every version of every project (no update time to filter on).
        Issues: JQL on ``updated``, paged. See ``versions`` / ``issues`` for costs."""
        if self._entity(entity) == "release":
            return self._versions.list(fields)
        return self._issues.list_changed(entity, since, fields)

    def read(self, entity: str, id: str, fields: Iterable[str] = ()) -> SystemRecord | None:
        """One GET; None when the object no longer exists (404). An issue of another type
        or project than ``entity``'s raises ``NotThisEntity``: it exists, so it is no
        deletion, and it is not the object asked for (ids come from webhook hints)."""
        if self._entity(entity) == "release":
            return self._versions.read(self._id(entity, id), fields)
        return self._issues.read(entity, self._id(entity, id), fields)

    def find_by_key(self, entity: str, key: str, fields: Iterable[str] = ()) -> SystemRecord | None:
        """What a person calls it: a release by its version name (one versions call per
        project until found), an issue by its key, ``OPS-12`` (one GET); None when absent."""
        if self._entity(entity) == "release":
            return self._versions.find(key)
        return self._issues.read(entity, key, fields)

    def find_by_correlation(self, entity: str, correlation: str) -> SystemRecord | None:
        """Release: the version with that *name*; issue: the one labelled ``relbridge-<KEY>``."""
        if self._entity(entity) == "release":
            return self._versions.find(correlation)
        return self._issues.find(entity, correlation)

    def find_by_field(self, entity: str, field: str, value: str) -> SystemRecord | None:
        """Only a version by ``name`` (names are unique in a project); issues correlate by label."""
        if self._entity(entity) == "release" and field == "name":
            return self._versions.find(value)
        return None

    def set_after_create(self, entity: str) -> frozenset[str]:
        """An issue's status is reached by transitions after the POST, and an incident's
        ``caused_by`` link may follow it in its own call; a version is one POST."""
        return frozenset() if self._entity(entity) == "release" else frozenset({"status", "caused_by"})

    def create(self, entity: str, payload: Mapping[str, Any], correlation: str) -> SystemRecord:
        """One POST (plus status transitions for an issue); the record is built from the
        POST's answer and the payload, without a read-back (see ``issues``)."""
        if self._entity(entity) == "release":
            return self._versions.create(payload, correlation)
        return self._issues.create(entity, payload, correlation)

    def write(self, entity: str, id: str, payload: Mapping[str, Any]) -> SystemRecord | None:
        """Only the given fields. A version comes back as the PUT answered it; an issue
        write returns None (Jira answers 204, and a read-back would cost a call)."""
        if self._entity(entity) == "release":
            return self._versions.write(self._id(entity, id), payload)
        self._issues.write(entity, self._id(entity, id), payload)
        return None

    def add_release_note(self, release_id: str, text: str, marker: str) -> None:
        """A note about a release where Jira people read it: a comment on each change issue
        of the version (versions take no comments); skipped where ``marker`` is present."""
        self._issues.note_release(self._id("release", release_id), text, marker)

    def delete(self, entity: str, id: str) -> None:
        if self._entity(entity) == "release":
            self._versions.delete(self._id(entity, id))
        else:
            self._issues.delete(self._id(entity, id))

    # --- release plans (bridge.adapter.PlanSupport; see relbridge_jira.plans) --------------------

    def plan_objects(self, tags: Iterable[str]) -> dict[str, PlanObject]:
        """The plan's Task issues by tag: one search per 50 tags."""
        return self._plans.objects(tags)

    def create_plan_item(self, release_id: str, item: PlanItem, phase_id: str | None) -> PlanObject:
        """One ``POST issue`` (a Task, fix version = the release); Jira has no phases."""
        return self._plans.create(self._id("release", release_id), item)

    def set_plan_state(self, kind: str, id: str, state: str) -> None:
        """Transitions to the status standing for ``state`` (To Do, In Progress, Done)."""
        self._plans.set_state(self._id("task", id), state)

    # --- comments (bridge.adapter.CommentSupport) ----------------------------------------------

    label = "Jira"
    comment_limit = COMMENT_LIMIT

    def add_comment(self, entity: str, id: str, field: str, text: str, internal: bool) -> str | None:
        """One ``POST issue/{id}/comment``; returns the new comment's id."""
        self._comment_field(entity, field)
        return add_comment(self._conn, self._id(entity, id), text)

    def find_comment(self, entity: str, id: str, field: str, marker: str) -> str | None:
        """The issue's comment holding ``marker``: its comments, one call per page."""
        self._comment_field(entity, field)
        return find_comment(self._conn, self._id(entity, id), marker)

    def _comment_field(self, entity: str, field: str) -> None:
        if self._entity(entity) == "release" or field != COMMENT_FIELD:
            raise BadInput(f"jira comments are the {COMMENT_FIELD!r} of an issue, not {entity}.{field}")

    # --- time worked (bridge.adapter.WorklogSupport) -------------------------------------------

    def worklogs(self, entity: str, ids: list[str]) -> dict[str, list[WorklogEntry]]:
        """Every worklog of these issues: one ``GET issue/{id}/worklog`` per issue (and page).
        Listings and reads need none of these calls: their answers carry the worklogs."""
        if self._entity(entity) not in self.worklog_entities:
            return {}
        return {id: self._issues.worklogs(self._id(entity, id)) for id in ids}

    # --- people (bridge.adapter.UserSupport) ---------------------------------------------------

    def user_fields(self, entity: str) -> frozenset[str]:
        """An issue's ``assignee``, shown by e-mail (``users``); versions have no people."""
        return frozenset() if self._entity(entity) == "release" else USER_FIELDS

    def match_users(self, emails: Iterable[str]) -> set[str]:
        """One ``GET user/search`` per e-mail not met before (``users``)."""
        return self._users.match(emails)

    def parse_webhook(self, headers: Mapping[str, str], body: Any) -> list[WebhookHint]:
        """No I/O: the body only says which object to re-read."""
        by_type = {name: entity for entity, name in self.issue_types.items()}
        return parse_webhook(headers, body, by_type, self.projects)

    def metadata(self) -> Metadata:
        """``GET field`` + per project ``GET project/{key}?expand=issueTypes`` and
        ``GET project/{key}/statuses`` + ``GET priority``."""
        fields = self._conn.get("field")
        projects = [self._conn.get(f"project/{key}", {"expand": "issueTypes"}) for key in self.projects]
        statuses: dict[str, list[str]] = {}
        for key in self.projects:
            for per_type in self._conn.get(f"project/{key}/statuses"):
                names = statuses.setdefault(per_type.get("name", ""), [])
                names.extend(s["name"] for s in per_type.get("statuses") or [] if s["name"] not in names)
        priorities = [p["name"] for p in self._conn.get("priority")]
        return build_metadata(fields, projects, statuses, priorities, self.issue_types)

    def check_auth(self) -> None:
        """``GET myself`` (after ``serverInfo`` on first use); a 401/403 raises
        ``PermanentError`` telling to check ``[jira] user/token``."""
        self._conn.myself()

    # --- helpers -------------------------------------------------------------------------------

    def _entity(self, entity: str) -> str:
        if entity not in self.entities:
            raise BadInput(f"the jira adapter has no entity {entity!r} (known: {', '.join(self.entities)})")
        return entity

    @staticmethod
    def _id(entity: str, id: str) -> str:
        """``id`` when it has the shape of a Jira id: checked before it is put in a URL."""
        return numeric_id(id, f"jira {entity} id")

    def _count(self, method: str, status: int) -> None:
        with self._calls_lock:
            self.calls[method] += 1
        if self._on_call is not None:
            self._on_call(SYSTEM, method, status)
