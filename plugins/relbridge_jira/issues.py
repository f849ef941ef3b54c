"""Changes and incidents as Jira issues (issue types ``Change`` and ``Incident`` by default).

Call costs (per operation, "search" = one call per page of ``page_size`` issues):

* list_changed: the JQL search only (fields limited to the mapped ones); the first search
  with a ``since`` also reads ``GET myself`` once, for the time zone JQL dates are in.
* worklogs (an entity in ``worklog_entities``): the ``worklog`` field rides in the search
  and the read; an issue with more than the field's 20 costs ``GET issue/{id}/worklog``.
* read: one ``GET issue/{id}?fields=…`` (with ``issuetype``: an issue of another type or
  project than the entity's raises ``NotThisEntity``, see ``read``).
* find_by_correlation: one search call (``labels = "relbridge-<KEY>"``).
* create: ``POST issue`` (project, type, fields, correlation label, release and, for an
  incident, its ``caused_by`` link through ``update.issuelinks``, all in one go) + the status
  walk when a status other than the workflow's initial one is asked for: one ``POST
  issue/{id}/transitions`` per step once the workflow is known (see ``workflow``); on Jira
  Cloud the first step rides in the create body (``transition``, "optional when creating an
  issue") once a first create has taught the initial status, one call less. The record
  returned is built from the POST's answer (id, key) and the payload: no read-back.
  Should Jira refuse ``issuelinks`` on the create screen (400 naming it), the create is sent
  again without it, followed by ``POST issueLink``, and later creates do that directly.
* write: ``PUT issue/{id}`` with only the plain fields (none when there are none) + for
  ``caused_by`` a ``GET`` of the links, ``DELETE`` of the old link and ``POST`` of the new
  one (nothing when unchanged) + the status walk (one ``GET`` for the current status, then a
  ``POST`` per step). Returns None: Jira's answers carry no record.
* delete: one ``DELETE issue/{id}``.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from bridge.adapter import SystemRecord, WorklogEntry
from bridge.errors import BadInput, NotThisEntity, PermanentError
from relbridge_jira.comments import COMMENT_FIELD, all_comments, comment_entries
from relbridge_jira.comments import entry as comment_entry
from relbridge_jira.connection import JiraConnection
from relbridge_jira.records import (
    CORRELATION_PREFIX,
    LINK_TYPE,
    SYSTEM,
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
from relbridge_jira.users import Users
from relbridge_jira.workflow import (
    Step,
    TransitionCache,
    choose_transition,
    read_status,
    transition_target,
    walk_to_status,
    workflow_order,
)
from relbridge_jira.worklogs import WORKLOG_FIELD, all_worklogs, worklog_entries

log = logging.getLogger(__name__)

DEFAULT_FIELDS = ("summary", "description", "status", "priority", "release", "caused_by")


ISSUE_KEY = re.compile(r"^[A-Z][A-Z0-9_]+-[1-9][0-9]*$")


class Issues:
    def __init__(self, conn: JiraConnection, projects: Sequence[str],
                 issue_types: Mapping[str, str], page_size: int,
                 worklog_entities: Iterable[str] = (), users: Users | None = None) -> None:
        self._conn = conn
        self._worklog_entities = frozenset(worklog_entities)  # their records carry worklogs
        self._users = users or Users(conn)
        self._projects = list(projects)
        self._types = dict(issue_types)
        self._page_size = page_size
        # The fields the engine last asked for per entity: records returned by create,
        # write and find carry the same fields as those it reads and lists.
        self._wanted: dict[str, tuple[str, ...]] = {}
        self._orders: dict[str, list[Step]] = {}
        self._order_lock = threading.Lock()  # one statuses call per type, even when racing
        self._transitions = TransitionCache()
        self._links_at_create = True  # until Jira refuses issuelinks on the create screen

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
        for raw in self._conn.search(jql, self._request_fields(entity, wanted), self._page_size):
            yield self._record(raw, entity)

    def read(self, entity: str, issue_id: str, fields: Iterable[str] = ()) -> SystemRecord | None:
        """The issue, if it is one of ``entity``'s; None on a 404.

        An id is all a webhook hint gives, and hints can name the wrong type (a bogus
        ``issue_updated`` naming type Incident with a Change's id), so the issue's real
        type and project are checked here, where every read passes."""
        wanted = self._remember(entity, fields)
        names = ",".join(sorted({*self._request_fields(entity, wanted).split(","), "issuetype"}))
        try:
            raw = self._conn.get(f"issue/{issue_id}", {"fields": names, "expand": "changelog"})
        except PermanentError as exc:
            if exc.status == 404:
                return None
            raise
        self._check_entity(entity, issue_id, raw)
        return self._record(raw, entity)

    def find(self, entity: str, correlation: str) -> SystemRecord | None:
        label = correlation_label(correlation)
        jql = f"{self._scope(entity)} AND labels = {jql_string(label)} ORDER BY created ASC"
        fields = request_fields(entity, self._wanted.get(entity, DEFAULT_FIELDS))
        found = list(itertools.islice(self._conn.search(jql, fields, 2), 2))
        if len(found) > 1:
            log.warning("jira: more than one %s carries label %s; using %s", entity, label,
                        found[0].get("key"))
        if found:
            return self._record(found[0], entity)
        # A canonical key is the key of the record where it was born: an issue born in Jira
        # carries no label, only its own key.
        if ISSUE_KEY.match(correlation) and correlation.split("-")[0] in self._projects:
            try:
                record = self.read(entity, correlation, self._wanted.get(entity, DEFAULT_FIELDS))
            except NotThisEntity:
                return None
            if record is not None and record.key == correlation:
                return record
        return None

    # --- writing -----------------------------------------------------------------------------

    def create(self, entity: str, payload: Mapping[str, Any], correlation: str) -> SystemRecord:
        self._check_payload(entity, payload)
        fields = issue_fields_body(entity, payload)
        self._users.write_refs(fields)
        label = correlation_label(correlation)
        labels = [x for x in fields.get("labels", []) if not x.startswith(CORRELATION_PREFIX)]
        fields["labels"] = [*labels, label]
        fields["project"] = {"key": self._projects[0]}
        fields["issuetype"] = {"name": self._types[entity]}
        cause = str(payload["caused_by"]) if payload.get("caused_by") else None
        target = str(payload["status"]) if payload.get("status") else None
        first = self._first_step(entity, target) if target else None
        created, first = self._post_issue(fields, cause, correlation, first)
        issue_id = str(created["id"])
        if target:
            self._walk_new(entity, issue_id, target, first)
        key = created.get("key")
        return SystemRecord(
            system=SYSTEM, entity=entity, id=issue_id, key=key,
            updated_at=datetime.now(UTC),
            version="",  # Jira's `updated` is not in the POST's answer; the next read has it
            fields={**payload, "labels": fields["labels"]},
            url=f"{self._conn.url}/browse/{key}" if key else created.get("self"),
            correlation=correlation,
        )

    def write(self, entity: str, issue_id: str, payload: Mapping[str, Any]) -> None:
        self._check_payload(entity, payload)
        fields = issue_fields_body(entity, payload)
        self._users.write_refs(fields)
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
            walk_to_status(self._conn, issue_id, str(payload["status"]), lambda: self.workflow(entity),
                           cache=self._transitions, workflow=self._workflow_key(entity))

    def delete(self, issue_id: str) -> None:
        """``DELETE issue/{id}``; an issue that is already gone counts as deleted."""
        try:
            self._conn.send("DELETE", f"issue/{issue_id}")
        except PermanentError as exc:
            if exc.status != 404:
                raise

    def note_release(self, version_id: str, text: str, marker: str) -> int:
        """Comment ``text`` on every change issue whose fix version is ``version_id`` (a
        version has no comments of its own); an issue whose comments hold ``marker`` already
        is skipped, so a retry after a crash comments nothing twice. Returns comments added."""
        jql = f"{self._scope('change')} AND fixVersion = {jql_string(version_id)} ORDER BY key ASC"
        added = 0
        for issue in self._conn.search(jql, "summary", self._page_size):
            path = f"issue/{issue['key']}/comment"
            comments = self._conn.get(path, {"maxResults": 1000}).get("comments") or []
            if any(marker in str(c.get("body") or "") for c in comments):
                continue
            self._conn.send("POST", path, {"body": text})
            added += 1
        return added

    def workflow(self, entity: str) -> list[Step]:
        """Statuses of the entity's issue type in workflow order (one call, cached)."""
        type_name = self._types[entity]
        with self._order_lock:
            cached = self._orders.get(type_name)
            if cached is not None:
                return cached
            per_type = self._conn.get(f"project/{self._projects[0]}/statuses")
            statuses = next((t.get("statuses") or [] for t in per_type if t.get("name") == type_name), [])
            order = workflow_order(statuses)
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

    def _post_issue(self, fields: dict[str, Any], cause: str | None, correlation: str,
                    first: Mapping[str, Any] | None = None,
                    ) -> tuple[dict[str, Any], Mapping[str, Any] | None]:
        """``POST issue``, with the incident's ``caused_by`` link in the same call when Jira
        takes links on its create screen, otherwise followed by ``POST issueLink``; and with
        ``first``, the first transition of the status walk, when one is known. Returns the
        answer and the transition the create made (None: the issue is in its initial
        status)."""
        body: dict[str, Any] = {"fields": fields}
        with_link = cause is not None and self._links_at_create
        if with_link:
            body["update"] = {"issuelinks": [{"add": {"type": {"name": LINK_TYPE},
                                                      "inwardIssue": {"id": cause}}}]}
        if first is not None:
            body["transition"] = {"id": str(first["id"])}
        try:
            created = self._conn.send("POST", "issue", body)
        except PermanentError as exc:
            if exc.status != 400:
                raise
            if first is not None and "transition" in str(exc).lower():
                # the workflow changed since the transition was learned: a 400 created
                # nothing, so create in the initial status and walk from there
                log.info("jira: transition %s refused at create; walking after it", first.get("id"))
                self._transitions.forget_workflow(self._workflow_key_of(fields))
                return self._post_issue(fields, cause, correlation)
            if not (with_link and "issuelinks" in str(exc)):
                raise
            log.info("jira: issue links cannot be set at create here; linking separately")
            self._links_at_create = False  # a 400 created nothing: send it again
            return self._post_issue(fields, cause, correlation, first)
        if not created or "id" not in created:
            raise PermanentError(f"jira: POST issue for {correlation} returned no issue id")
        if cause is not None and not with_link:
            self._conn.send("POST", "issueLink", link_body(cause, str(created["id"])))
        return created, first

    def _first_step(self, entity: str, target: str) -> Mapping[str, Any] | None:
        """The transition out of the workflow's initial status toward ``target``, for the
        create body (Jira Cloud takes ``transition`` on create: one call less per walk).
        None until a first create of the type has taught the initial status and its
        transitions, when ``target`` is the initial status, and on Server/Data Center."""
        if not self._conn.is_cloud:
            return None
        key = self._workflow_key(entity)
        initial = self._transitions.initial(key)
        transitions = self._transitions.transitions(key, initial) if initial else None
        if initial is None or transitions is None or initial.casefold() == target.casefold():
            return None
        return choose_transition(transitions, initial, target, lambda: self.workflow(entity),
                                 [initial])

    def _walk_new(self, entity: str, issue_id: str, target: str,
                  first: Mapping[str, Any] | None = None) -> None:
        """Walk a just-created issue from its workflow's initial status (or, when the create
        made the transition ``first``, from where that led) to ``target``."""
        key = self._workflow_key(entity)
        if first is not None:
            walk_to_status(self._conn, issue_id, target, lambda: self.workflow(entity),
                           cache=self._transitions, workflow=key, current=transition_target(first))
            return
        initial = self._transitions.initial(key)
        if initial is None:  # the first create of this type: learn where issues start
            order = self.workflow(entity)
            if order and order[0].name.casefold() == target.casefold():
                return  # asked for the workflow's first status: nothing to do
            initial, transitions = read_status(self._conn, issue_id)
            self._transitions.learn(key, initial, transitions)
            self._transitions.learn_initial(key, initial)
        walk_to_status(self._conn, issue_id, target, lambda: self.workflow(entity),
                       cache=self._transitions, workflow=key, current=initial)

    def _record(self, raw: Mapping[str, Any], entity: str) -> SystemRecord:
        """The issue as a record, its ``comment`` (when asked for) as a list of entries: all
        of them, fetched apart only when the answer held a cut-short page."""
        fields = raw.get("fields") or {}
        if COMMENT_FIELD in fields:
            entries, complete = comment_entries(fields[COMMENT_FIELD])
            if not complete:
                entries = [comment_entry(c) for c in all_comments(self._conn, str(raw["id"]))]
            raw = {**raw, "fields": {**fields, COMMENT_FIELD: entries}}
        record = issue_record(raw, entity, self._conn.url)
        if entity not in self._worklog_entities or WORKLOG_FIELD not in fields:
            return record  # not asked for (a look-up by label): the stored entries stay
        logged, complete = worklog_entries(fields.get(WORKLOG_FIELD))
        if not complete:
            logged = all_worklogs(self._conn, str(raw["id"]))
        kept = {name: value for name, value in record.fields.items() if name != WORKLOG_FIELD}
        return dataclasses.replace(record, fields=kept, worklogs=tuple(logged))

    def worklogs(self, issue_id: str) -> list[WorklogEntry]:
        """Every worklog of one issue: one call per page."""
        return all_worklogs(self._conn, issue_id)

    def _request_fields(self, entity: str, wanted: Iterable[str]) -> str:
        """``request_fields``, with ``worklog`` when the entity's records carry worklogs."""
        names = request_fields(entity, wanted)
        if entity not in self._worklog_entities:
            return names
        return ",".join(sorted({*names.split(","), WORKLOG_FIELD}))

    def _workflow_key(self, entity: str) -> str:
        return f"{self._projects[0]}/{self._types[entity]}"

    def _workflow_key_of(self, fields: Mapping[str, Any]) -> str:
        return f"{fields['project']['key']}/{fields['issuetype']['name']}"

    def _scope(self, entity: str) -> str:
        return f"{jql_projects(self._projects)} AND issuetype = {jql_string(self._types[entity])}"

    def _remember(self, entity: str, fields: Iterable[str]) -> tuple[str, ...]:
        wanted = tuple(fields)
        if not wanted:
            return self._wanted.get(entity, DEFAULT_FIELDS)
        self._wanted[entity] = wanted
        return wanted

    def _check_entity(self, entity: str, issue_id: str, raw: Mapping[str, Any]) -> None:
        """Raise ``NotThisEntity`` unless ``raw`` is an issue of ``entity``'s type in one of
        the configured projects."""
        issuetype = (raw.get("fields") or {}).get("issuetype")
        type_name = issuetype.get("name") if isinstance(issuetype, Mapping) else None
        key = raw.get("key")
        project = key.rpartition("-")[0] if isinstance(key, str) else None
        if type_name != self._types[entity]:
            raise NotThisEntity(f"jira issue {key or issue_id} is of type {type_name!r}, "
                                f"not {self._types[entity]!r}: it is no {entity}")
        if project not in self._projects:
            raise NotThisEntity(f"jira issue {key or issue_id} is in project {project!r}, not in "
                                f"[jira] projects {self._projects}: it is no {entity} relbridge syncs")

    @staticmethod
    def _check_payload(entity: str, payload: Mapping[str, Any]) -> None:
        if "caused_by" in payload and entity != "incident":
            raise BadInput(f"jira: 'caused_by' applies to incidents, not to a {entity}")
