"""``ServiceNowAdapter``: releases, changes and incidents through the Table API (pysnow).

Records are returned in ServiceNow's own terms (string values, sys_ids in reference
fields); ``mapping.py`` turns them into canonical fields. Beyond the real columns a record
carries the link pseudo-fields of ``bridge.adapter``, filled only when asked for:

* a change's ``release``: the release it is linked to in ``rm_m2m_release_task``;
* an incident's ``release``: the release of its ``caused_by`` change, derived here with
  one link query per page, so mappings need not know how ServiceNow stores it. It is
  read-only: ServiceNow has no such column, it follows ``caused_by``.

With ``read_time_worked`` (``[kpi] read_time_worked``), releases and changes carry their
``task_time_worked`` entries (``SystemRecord.worklogs``): one more query per page. With
``[servicenow_survey] metric`` set, releases carry their survey score (``surveys``).

Calls are a cost (DESIGN §9): lists read only the requested columns, link lookups are
batched per page, a write is one PATCH of the given fields, and nothing is sent for an
empty write.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from pydantic import SecretStr

from bridge.adapter import (
    DEFAULT_PAGE_SIZE,
    FieldTime,
    Metadata,
    OnCall,
    PlanItem,
    PlanObject,
    SystemRecord,
    WebhookHint,
    WorklogEntry,
)
from bridge.errors import BadInput, PermanentError
from relbridge_servicenow.api import SYSTEM, TableApi, checked_sys_id
from relbridge_servicenow.journal import COMMENT_LIMIT, JOURNAL_FIELDS, Journal
from relbridge_servicenow.links import ReleaseLinks
from relbridge_servicenow.metadata import read_metadata
from relbridge_servicenow.plans import Plans
from relbridge_servicenow.surveys import SURVEY_FIELD, ServiceNowSurveyConfig, Surveys, versioned
from relbridge_servicenow.time_worked import time_worked
from relbridge_servicenow.users import USER_FIELDS, Users
from relbridge_servicenow.values import (
    format_datetime,
    parse_datetime,
    query_value,
    reference_value,
)
from relbridge_servicenow.webhook import parse_webhook

log = logging.getLogger(__name__)

DEFAULT_OBJECTS: Mapping[str, str] = {
    "release": "rm_release",
    "change": "change_request",
    "incident": "incident",
}
#: Columns every read includes: identity, version and the correlation tag.
AUDIT_ROWS = 200  # newest first: enough for the last change of a few fields
FIELD_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
SYS_FIELDS = ("sys_id", "number", "sys_created_on", "sys_updated_on", "sys_mod_count", "correlation_id")
#: Rows read by an equality look-up: the instance matches strings ignoring case, so records
#: differing only in case come back too and are told apart here.
CASE_VARIANTS = 20
#: Shown next to ``correlation_id`` in ServiceNow, so people see who tagged the record.
CORRELATION_DISPLAY = "relbridge"
LINKED_ENTITIES = frozenset({"change", "incident"})  # the ones with a ``release`` pseudo-field
DERIVED_FIELDS = frozenset({"release", SURVEY_FIELD})  # pseudo-fields: never a creation value
_STABLE_ORDER = "ORDERBYsys_updated_on^ORDERBYsys_id"


class ServiceNowAdapter:
    """The ``bridge.adapter.Adapter`` for one ServiceNow instance.

    ``calls`` counts HTTP requests by method; ``on_call(system, method, status)`` is called
    after each one (status 0 when no response came back).
    """

    name = SYSTEM

    def __init__(
        self,
        url: str,
        user: str,
        password: SecretStr,
        *,
        verify_tls: bool = True,
        timeout: float = 30,
        page_size: int = DEFAULT_PAGE_SIZE,
        objects: Mapping[str, str] = DEFAULT_OBJECTS,
        on_call: OnCall | None = None,
        read_time_worked: bool = False,
        survey: ServiceNowSurveyConfig | None = None,
    ) -> None:
        unknown = sorted(set(objects) - set(DEFAULT_OBJECTS))
        if unknown:
            raise BadInput(f"ServiceNow adapter: unknown entities {unknown}")
        if page_size < 1:
            raise BadInput("ServiceNow adapter: page_size must be at least 1")
        self.entities: tuple[str, ...] = tuple(objects)
        self.objects = dict(objects)
        self.page_size = page_size
        self._api = TableApi(url, user, password, verify_tls=verify_tls, timeout=timeout,
                             on_call=on_call)
        self._links = ReleaseLinks(self._api)
        self._journal = Journal(self._api)
        self._users = Users(self._api)
        self._plans = Plans(self._api)
        self._surveys = Surveys(self._api, survey or ServiceNowSurveyConfig(), self.objects.get("release", ""))
        self._entity_of_table = {table: entity for entity, table in self.objects.items()}
        # Releases and changes are tasks: time is logged against both (``WorklogSupport``).
        self.worklog_entities: tuple[str, ...] = (
            tuple(e for e in ("release", "change") if e in self.objects) if read_time_worked else ())

    @property
    def calls(self) -> Mapping[str, int]:
        """HTTP requests sent so far, by method (a ``collections.Counter``)."""
        return self._api.calls

    # -- reading -------------------------------------------------------------------------

    def list_changed(
        self, entity: str, since: datetime | None, fields: Iterable[str]
    ) -> Iterator[SystemRecord]:
        """Records updated at or after ``since``, oldest first, every page.

        Pages are anchored on the last timestamp seen rather than on a growing offset: a
        plain offset shifts when a record moves to the end of the order (it was updated
        while we paged) and then silently skips one. Here the offset only counts the
        records already seen at the anchor second, and a record seen twice in the same
        version is yielded once.
        """
        table = self._table(entity)
        columns, want_release = self._columns(entity, fields)
        anchor = format_datetime(since) if since is not None else None
        journal = self._journal.window(table, fields, anchor)
        skip = 0
        seen: set[tuple[str, str]] = set()
        while True:
            condition = f"sys_updated_on>={anchor}^" if anchor else ""
            page = self._api.list(table, query=condition + _STABLE_ORDER, fields=columns,
                                  limit=self.page_size, offset=skip)
            fresh = [row for row in page if _identity(row) not in seen]
            seen.update(_identity(row) for row in fresh)
            self._add_links(entity, fresh, want_release)
            if entity == "release" and SURVEY_FIELD in fields:
                self._surveys.fill(fresh)
            self._users.show(entity, fresh)
            journal.fill(fresh)
            logged = self.worklogs(entity, [str(row.get("sys_id")) for row in fresh])
            yield from (self._record(entity, table, row, logged) for row in fresh)
            if len(page) < self.page_size:
                break
            last = str(page[-1].get("sys_updated_on", ""))
            at_last = sum(1 for row in page if row.get("sys_updated_on") == last)
            skip = skip + len(page) if last == anchor else at_last
            anchor = last
        yield from self._rescored(entity, since, fields, {sys_id for sys_id, _ in seen})

    def read(self, entity: str, id: str, fields: Iterable[str]) -> SystemRecord | None:
        """One GET (plus one link query for a change's or incident's ``release``). The
        table is the entity: a sys_id of another table is simply not found (None)."""
        table = self._table(entity)
        checked_sys_id(id, f"ServiceNow {entity} id")
        columns, want_release = self._columns(entity, fields)
        row = self._api.get(table, id, fields=columns)
        if row is None:
            return None
        self._add_links(entity, [row], want_release)
        if entity == "release" and SURVEY_FIELD in fields:
            self._surveys.fill([row])
        self._users.show(entity, [row])
        self._journal.add_entries(table, row, fields)
        return self._record(entity, table, row, self.worklogs(entity, [id]))

    def worklogs(self, entity: str, ids: list[str]) -> dict[str, list[WorklogEntry]]:
        """The ``task_time_worked`` entries of these records: one query per page of them
        ({} for an entity whose time is not read)."""
        if entity not in self.worklog_entities or not ids:
            return {}
        return time_worked(self._api, ids)

    def _rescored(self, entity: str, since: datetime | None, fields: Iterable[str],
                  listed: set[str]) -> Iterator[SystemRecord]:
        """Releases not listed by update time whose survey answers came in since ``since``
        (answers leave the release unchanged): one query, and a read of each such release."""
        if entity == "release" and since is not None and SURVEY_FIELD in fields:
            ids = sorted(self._surveys.answered_since(format_datetime(since)) - listed)
            yield from filter(None, (self.read(entity, sys_id, fields) for sys_id in ids))

    def find_by_key(self, entity: str, key: str, fields: Iterable[str] = ()) -> SystemRecord | None:
        """The record a person knows by its number (``CHG0030001``): one GET (plus one link
        query for a change's or incident's ``release``); None when there is none."""
        table = self._table(entity)
        columns, want_release = self._columns(entity, fields)
        rows = self._api.list(table, query=f"number={query_value(key)}", fields=columns, limit=1)
        if not rows:
            return None
        self._add_links(entity, rows, want_release)
        self._users.show(entity, rows)
        return self._record(entity, table, rows[0])

    def field_times(self, entity: str, id: str, fields: Iterable[str]) -> dict[str, FieldTime]:
        """When each of ``fields`` was last set on the record, from its audit history
        (``sys_audit``, one GET): only asked when two systems' edits of a field meet, since
        ServiceNow records carry their update time, not their fields'. A field with no
        audit row is left out (the table is not audited, or the value never changed)."""
        table = self._table(entity)
        checked_sys_id(id, f"ServiceNow {entity} id")
        columns = sorted({f for f in fields if FIELD_NAME.match(f)} - {"release"})
        if not columns:
            return {}
        query = (f"tablename={table}^documentkey={id}^fieldnameIN{','.join(columns)}"
                 "^ORDERBYDESCsys_created_on")
        rows = self._api.list("sys_audit", query=query,
                              fields=("fieldname", "sys_created_on", "record_checkpoint"), limit=AUDIT_ROWS)
        times: dict[str, FieldTime] = {}
        for row in rows:
            at = _optional_datetime(row.get("sys_created_on"))
            name = str(row.get("fieldname") or "")
            if at is None or not name:
                continue
            # Checkpoint 0 is the insert: newer rows of the field (an update in the same
            # second included) win over it.
            creation = str(row.get("record_checkpoint", "")) == "0"
            known = times.get(name)
            if known is None or at > known.at or at == known.at and known.at_creation and not creation:
                times[name] = FieldTime(at, creation)
        return times

    def find_by_correlation(self, entity: str, correlation: str) -> SystemRecord | None:
        """The record whose ``correlation_id`` is ``correlation``, or the record born here
        whose number it is (a canonical key is the key of the record where it was born, and
        that record carries no tag): all columns and links.

        Two or more should never exist (creates look here first); if they do, the oldest
        is the one relbridge made first and is used, with a warning.
        """
        table = self._table(entity)
        value = query_value(correlation)
        query = f"correlation_id={value}^ORnumber={value}^ORDERBYsys_created_on^ORDERBYsys_id"
        # The instance compares strings ignoring case, so `OPS-1` also finds a record tagged
        # `ops-1`: only exact matches count (a few case variants are read to find them).
        rows = [r for r in self._api.list(table, query=query, fields=(), limit=CASE_VARIANTS)
                if value in (r.get("correlation_id"), r.get("number"))]
        if not rows:
            return None
        if len(rows) > 1:
            log.warning("ServiceNow %s has several records tagged %s; using the oldest, %s",
                        table, correlation, rows[0].get("number") or rows[0].get("sys_id"))
        row = rows[0]
        self._add_links(entity, [row], entity in LINKED_ENTITIES)
        self._users.show(entity, [row])
        return self._record(entity, table, row)

    def find_by_field(self, entity: str, field: str, value: str) -> SystemRecord | None:
        """The one record whose ``field`` is ``value`` (None when none or several: a name
        shared by two records proves nothing)."""
        table = self._table(entity)
        if not FIELD_NAME.match(field):
            raise BadInput(f"ServiceNow field name {field!r} is not a column name")
        query = f"{field}={query_value(value)}^ORDERBYsys_created_on^ORDERBYsys_id"
        rows = [r for r in self._api.list(table, query=query, fields=(), limit=CASE_VARIANTS)
                if _plain(r.get(field)) == value]  # the instance ignores case; we do not
        if len(rows) != 1:
            if rows:
                log.warning("ServiceNow %s has several records with %s %r; linking none of them",
                            table, field, value)
            return None
        self._add_links(entity, rows, entity in LINKED_ENTITIES)
        self._users.show(entity, rows)
        return self._record(entity, table, rows[0])

    # -- writing -------------------------------------------------------------------------

    def set_after_create(self, entity: str) -> frozenset[str]:
        """A change's ``release`` is a link row inserted after the change itself."""
        return frozenset({"release"}) if entity == "change" else frozenset()

    def create(self, entity: str, payload: Mapping[str, Any], correlation: str) -> SystemRecord:
        """One POST tagged with ``correlation``, plus one link row for a change's release.

        If the link insert fails after the POST, a retry finds the record by correlation
        and writes the link through ``write``: nothing is created twice.
        """
        table = self._table(entity)
        body, release = self._split_links(entity, self._users.body(entity, payload))
        body.update(correlation_id=query_value(correlation), correlation_display=CORRELATION_DISPLAY)
        row = self._api.create(table, body)
        self._users.show(entity, [row])
        if entity == "change":
            if release:
                self._links.link(str(row["sys_id"]), release)
            row["release"] = release or ""
        return self._record(entity, table, row)

    def write(self, entity: str, id: str, payload: Mapping[str, Any]) -> SystemRecord | None:
        """One PATCH of exactly ``payload``'s columns; link rows only if the release changed.

        Returns the record as the PATCH answered it, or None when no column was written
        (an empty payload costs no call; a change's ``release`` alone touches only link
        rows, which leave the change's own version unchanged).
        """
        table = self._table(entity)
        checked_sys_id(id, f"ServiceNow {entity} id")  # before the link query uses it, too
        body, release = self._split_links(entity, self._users.body(entity, payload))
        row = self._api.patch(table, id, body) if body else None
        if row is not None:
            self._users.show(entity, [row])
        link_given = entity == "change" and "release" in payload
        if link_given:
            self._links.set_release(id, release)
        if row is None:
            return None
        if link_given:
            row["release"] = release or ""
        return self._record(entity, table, row)

    def add_release_note(self, release_id: str, text: str, marker: str) -> None:
        """A work note on the release (a ``sys_journal_field`` row), unless one holding
        ``marker`` is there already (a retry after a crash adds nothing twice)."""
        sys_id = checked_sys_id(release_id)
        query = f"element_id={sys_id}^element=work_notes^valueLIKE{marker}"
        if self._api.list("sys_journal_field", query=query, fields=["sys_id"], limit=1):
            return
        self._api.patch(self._table("release"), sys_id, {"work_notes": text})

    def delete(self, entity: str, id: str) -> None:
        """One DELETE; a record that is already gone is not an error."""
        if not self._api.delete(self._table(entity), id):
            log.info("ServiceNow %s %s was already deleted", entity, id)

    # -- release plans (bridge.adapter.PlanSupport; see relbridge_servicenow.plans) ----------

    def plan_objects(self, tags: Iterable[str]) -> dict[str, PlanObject]:
        """Phases and tasks tagged with ``tags``: one query per table (per 150 tags)."""
        return self._plans.objects(tags)

    def create_plan_item(self, release_id: str, item: PlanItem, phase_id: str | None) -> PlanObject:
        """One POST to ``rm_release_phase`` or ``rm_task``."""
        return self._plans.create(release_id, item, phase_id)

    def set_plan_state(self, kind: str, id: str, state: str) -> None:
        """One PATCH of the phase's or task's ``state``."""
        self._plans.set_state(kind, id, state)

    # -- comments (bridge.adapter.CommentSupport) -------------------------------------------

    label = "ServiceNow"
    comment_limit = COMMENT_LIMIT

    def add_comment(self, entity: str, id: str, field: str, text: str, internal: bool) -> str | None:
        """One PATCH setting the journal ``field``; the entry's id is learnt on the next read."""
        self._journal.add(self._table(entity), checked_sys_id(id, f"ServiceNow {entity} id"),
                          _journal_field(field), text)
        return None

    def find_comment(self, entity: str, id: str, field: str, marker: str) -> str | None:
        """One ``sys_journal_field`` query for the record's entry holding ``marker``."""
        return self._journal.find(self._table(entity), checked_sys_id(id, f"ServiceNow {entity} id"),
                                  _journal_field(field), marker)

    # -- people (bridge.adapter.UserSupport) -----------------------------------------------

    def user_fields(self, entity: str) -> frozenset[str]:
        """``assigned_to`` of changes and incidents, shown by e-mail (``users``)."""
        return USER_FIELDS.get(entity, frozenset())

    def match_users(self, emails: Iterable[str]) -> set[str]:
        """One ``sys_user`` query for the e-mails not met before (``users``)."""
        return self._users.match(emails)

    # -- the rest of the contract ----------------------------------------------------------

    def parse_webhook(self, headers: Mapping[str, str], body: Any) -> list[WebhookHint]:
        """Hints from our documented webhook body (see ``relbridge_servicenow.webhook``)."""
        return parse_webhook(body, self._entity_of_table)

    def metadata(self) -> Metadata:
        """Columns and choices of the synced tables, keyed by table name; a survey question
        in ``[servicenow_survey]`` that the instance does not have raises ``ConfigError``."""
        self._surveys.check()
        return read_metadata(self._api, self.objects.values(), self.page_size)

    def check_auth(self) -> None:
        """One cheap GET; a 401/403 raises ``PermanentError`` naming the settings to check."""
        table = self.objects.get("release") or next(iter(self.objects.values()))
        self._api.list(table, query="", fields=("sys_id",), limit=1)

    def close(self) -> None:
        self._api.close()

    # -- helpers -------------------------------------------------------------------------

    def _table(self, entity: str) -> str:
        try:
            return self.objects[entity]
        except KeyError:
            raise BadInput(f"ServiceNow adapter does not sync {entity!r}") from None

    @staticmethod
    def _columns(entity: str, fields: Iterable[str]) -> tuple[list[str], bool]:
        """Columns to request, and whether the ``release`` pseudo-field was asked for."""
        wanted = [f for f in dict.fromkeys(fields) if f not in JOURNAL_FIELDS and f != SURVEY_FIELD]
        want_release = entity in LINKED_ENTITIES and "release" in wanted
        columns = [*SYS_FIELDS, *(f for f in wanted if f not in SYS_FIELDS)]
        if want_release:
            columns.remove("release")
            if entity == "incident" and "caused_by" not in columns:
                columns.append("caused_by")
        return columns, want_release

    @staticmethod
    def _split_links(entity: str, payload: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
        """The payload's real columns, and the ``release`` pseudo-field if it had one."""
        body = dict(payload)
        if entity not in LINKED_ENTITIES or "release" not in body:
            return body, None
        release = reference_value(body.pop("release")) or None
        if entity == "incident":
            log.debug("an incident's release follows its caused_by change; not written")
            return body, None
        return body, release

    def _add_links(self, entity: str, rows: list[dict[str, Any]], want_release: bool) -> None:
        """Fill ``release`` for a page of changes or incidents: one batched link query."""
        if not want_release or not rows:
            return
        if entity == "change":
            releases = self._links.releases_of(str(row["sys_id"]) for row in rows)
            for row in rows:
                row["release"] = releases.get(str(row["sys_id"]), "")
        elif entity == "incident":
            causes = [reference_value(row.get("caused_by")) for row in rows]
            releases = self._links.releases_of(causes)
            for row, cause in zip(rows, causes, strict=True):
                row["release"] = releases.get(cause, "")

    def _record(self, entity: str, table: str, row: dict[str, Any],
                logged: Mapping[str, list[WorklogEntry]] | None = None) -> SystemRecord:
        sys_id = str(row.get("sys_id") or "")
        try:
            updated_at = parse_datetime(str(row.get("sys_updated_on")))
        except ValueError:
            raise PermanentError(
                f"ServiceNow {table} {sys_id or '?'}: sys_updated_on missing or not a UTC datetime"
            ) from None
        created_at = _optional_datetime(row.get("sys_created_on"))
        # Never updated since its creation: every column still holds its creation value (the
        # pseudo-fields excepted: links and survey answers are rows of their own, made any time).
        untouched = (frozenset(n for n in row if n not in SYS_FIELDS and n not in DERIVED_FIELDS)
                     if created_at is not None and str(row.get("sys_mod_count")) == "0" else frozenset())
        field_times = dict.fromkeys(untouched, created_at) if created_at is not None else {}
        return SystemRecord(
            system=SYSTEM,
            entity=entity,
            id=sys_id,
            key=row.get("number") or None,
            updated_at=updated_at,
            version=versioned(str(row.get("sys_mod_count", "")), row),
            fields=row,
            url=self._api.record_url(table, sys_id),
            correlation=row.get("correlation_id") or None,
            created_at=created_at,
            field_times=field_times,
            untouched=untouched,
            worklogs=tuple(logged[sys_id]) if logged and sys_id in logged else None,
        )


def _journal_field(field: str) -> str:
    if field not in JOURNAL_FIELDS:
        raise BadInput(f"ServiceNow comments go to a journal field ({', '.join(sorted(JOURNAL_FIELDS))}), "
                       f"not {field!r}")
    return field


def _plain(value: Any) -> str:
    """A column's value as a string (a reference arrives as ``{"link", "value"}``)."""
    return reference_value(value) if isinstance(value, dict) else str(value or "")


def _optional_datetime(value: Any) -> datetime | None:
    try:
        return parse_datetime(str(value)) if value else None
    except ValueError:
        return None


def _identity(row: Mapping[str, Any]) -> tuple[str, str]:
    return str(row.get("sys_id")), str(row.get("sys_mod_count"))
