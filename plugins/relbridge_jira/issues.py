"""Changes and incidents as Jira issues (issue types ``Change`` and ``Incident`` by default).

Call costs (per operation, "search" = one call per page of ``page_size`` issues):

* list_changed: the JQL search only (fields limited to the mapped ones); the first search
  with a ``since`` also reads ``GET myself`` once, for the time zone JQL dates are in.
* read: one ``GET issue/{id}?fields=…``.
* find_by_correlation: one search call (``labels = "relbridge-<KEY>"``).
* create: ``POST issue`` (project, type, fields, correlation label, release in one go)
  + ``POST issueLink`` when ``caused_by`` is set + the status walk when a status other than
  the workflow's first is asked for + one ``GET issue`` to return the record.
* write: ``PUT issue/{id}`` with only the plain fields (none when there are none) + for
  ``caused_by`` a ``GET`` of the links, ``DELETE`` of the old link and ``POST`` of the new
  one (nothing when unchanged) + the status walk (see ``workflow``) + one ``GET issue``.
* delete: one ``DELETE issue/{id}``.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from bridge.adapter import SystemRecord
from bridge.errors import BadInput, PermanentError
from relbridge_jira.connection import JiraConnection
from relbridge_jira.records import (
    CORRELATION_PREFIX,
    caused_by_link,
    correlation_label,
    issue_fields_body,
    issue_record,
    jql_datetime,
    jql_projects,
    jql_string,
    link_body,
    request_fields,
)
from relbridge_jira.workflow import Step, walk_to_status, workflow_order

log = logging.getLogger(__name__)

DEFAULT_FIELDS = ("summary", "description", "status", "priority", "release", "caused_by")


class Issues:
    def __init__(self, conn: JiraConnection, projects: Sequence[str],
                 issue_types: Mapping[str, str], page_size: int) -> None:
        self._conn = conn
        self._projects = list(projects)
        self._types = dict(issue_types)
        self._page_size = page_size
        # The fields the engine last asked for per entity: records returned by create,
        # write and find carry the same fields as those it reads and lists.
        self._wanted: dict[str, tuple[str, ...]] = {}
        self._orders: dict[str, list[Step]] = {}
        self._lock = threading.Lock()

    # --- reading -----------------------------------------------------------------------------

    def list_changed(self, entity: str, since: datetime | None,
                     fields: Iterable[str]) -> Iterator[SystemRecord]:
        """Issues of the entity's type updated at or after ``since`` (floored to the minute,
        in the API user's time zone), oldest first, every page."""
        wanted = self._remember(entity, fields)
        jql = self._scope(entity)
        if since is not None:
            jql += f' AND updated >= "{jql_datetime(since, self._conn.user_timezone())}"'
        jql += " ORDER BY updated ASC, key ASC"
        for raw in self._conn.search(jql, request_fields(entity, wanted), self._page_size):
            yield issue_record(raw, entity, self._conn.url)

    def read(self, entity: str, issue_id: str, fields: Iterable[str] = ()) -> SystemRecord | None:
        wanted = self._remember(entity, fields)
        try:
            raw = self._conn.get(f"issue/{issue_id}", {"fields": request_fields(entity, wanted)})
        except PermanentError as exc:
            if exc.status == 404:
                return None
            raise
        return issue_record(raw, entity, self._conn.url)

    def find(self, entity: str, correlation: str) -> SystemRecord | None:
        label = correlation_label(correlation)
        jql = f"{self._scope(entity)} AND labels = {jql_string(label)} ORDER BY created ASC"
        fields = request_fields(entity, self._wanted.get(entity, DEFAULT_FIELDS))
        found = list(itertools.islice(self._conn.search(jql, fields, 2), 2))
        if len(found) > 1:
            log.warning("jira: more than one %s carries label %s; using %s", entity, label,
                        found[0].get("key"))
        return issue_record(found[0], entity, self._conn.url) if found else None

    # --- writing -----------------------------------------------------------------------------

    def create(self, entity: str, payload: Mapping[str, Any], correlation: str) -> SystemRecord:
        self._check_payload(entity, payload)
        fields = issue_fields_body(entity, payload)
        label = correlation_label(correlation)
        labels = [x for x in fields.get("labels", []) if not x.startswith(CORRELATION_PREFIX)]
        fields["labels"] = [*labels, label]
        fields["project"] = {"key": self._projects[0]}
        fields["issuetype"] = {"name": self._types[entity]}
        created = self._conn.send("POST", "issue", {"fields": fields})
        if not created or "id" not in created:
            raise PermanentError(f"jira: POST issue for {correlation} returned no issue id")
        issue_id = str(created["id"])
        if payload.get("caused_by"):
            self._conn.send("POST", "issueLink", link_body(str(payload["caused_by"]), issue_id))
        target = payload.get("status")
        if target:
            order = self.workflow(entity)
            if not order or order[0].name.casefold() != str(target).casefold():
                walk_to_status(self._conn, issue_id, str(target), lambda: order)
        return self._read_back(entity, issue_id)

    def write(self, entity: str, issue_id: str, payload: Mapping[str, Any]) -> SystemRecord:
        self._check_payload(entity, payload)
        fields = issue_fields_body(entity, payload)
        keep_label = "labels" in fields and not any(
            x.startswith(CORRELATION_PREFIX) for x in fields["labels"])
        current: Mapping[str, Any] = {}
        if keep_label or "caused_by" in payload:
            raw = self._conn.get(f"issue/{issue_id}", {"fields": "labels,issuelinks"})
            current = raw.get("fields") or {}
        if keep_label:  # never drop the correlation tag with a labels write
            tags = [x for x in current.get("labels") or [] if x.startswith(CORRELATION_PREFIX)]
            fields["labels"] = [*fields["labels"], *tags]
        if fields:
            self._conn.send("PUT", f"issue/{issue_id}", {"fields": fields})
        if "caused_by" in payload:
            self._relink(issue_id, current.get("issuelinks") or [], payload["caused_by"])
        if payload.get("status"):
            walk_to_status(self._conn, issue_id, str(payload["status"]),
                           lambda: self.workflow(entity))
        return self._read_back(entity, issue_id)

    def delete(self, issue_id: str) -> None:
        """``DELETE issue/{id}``; an issue that is already gone counts as deleted."""
        try:
            self._conn.send("DELETE", f"issue/{issue_id}")
        except PermanentError as exc:
            if exc.status != 404:
                raise

    def workflow(self, entity: str) -> list[Step]:
        """Statuses of the entity's issue type in workflow order (one call, cached)."""
        type_name = self._types[entity]
        with self._lock:
            cached = self._orders.get(type_name)
        if cached is not None:
            return cached
        per_type = self._conn.get(f"project/{self._projects[0]}/statuses")
        statuses = next((t.get("statuses") or [] for t in per_type if t.get("name") == type_name), [])
        order = workflow_order(statuses)
        with self._lock:
            self._orders[type_name] = order
        return order

    # --- helpers -----------------------------------------------------------------------------

    def _relink(self, incident_id: str, links: Sequence[Mapping[str, Any]], change_id: Any) -> None:
        """Point the incident's Problem/Incident link at ``change_id`` (None: remove it)."""
        old = caused_by_link(links)
        old_change = str(old["inwardIssue"]["id"]) if old else None
        new_change = str(change_id) if change_id else None
        if old_change == new_change:
            return
        if old is not None:
            self._conn.send("DELETE", f"issueLink/{old['id']}")
        if new_change is not None:
            self._conn.send("POST", "issueLink", link_body(new_change, incident_id))

    def _read_back(self, entity: str, issue_id: str) -> SystemRecord:
        record = self.read(entity, issue_id, self._wanted.get(entity, DEFAULT_FIELDS))
        if record is None:
            raise PermanentError(f"jira: issue {issue_id} vanished while being written", status=404)
        return record

    def _scope(self, entity: str) -> str:
        return f"{jql_projects(self._projects)} AND issuetype = {jql_string(self._types[entity])}"

    def _remember(self, entity: str, fields: Iterable[str]) -> tuple[str, ...]:
        wanted = tuple(fields)
        if not wanted:
            return self._wanted.get(entity, DEFAULT_FIELDS)
        self._wanted[entity] = wanted
        return wanted

    @staticmethod
    def _check_payload(entity: str, payload: Mapping[str, Any]) -> None:
        if "caused_by" in payload and entity != "incident":
            raise BadInput(f"jira: 'caused_by' applies to incidents, not to a {entity}")
