"""The simulated Jira's rules in one object: versions, issues, links, search, webhooks.

`JiraStore` is what the HTTP layer (`jira.py`) calls; it never sees a request, only parsed
bodies and a `View` (base URL, API version, flavor) for rendering `self` links.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from bridge.sim.jira.base import ApiError, bad_request, json_object
from bridge.sim.jira.catalog import ISSUE_TYPES, LINK_TYPES, PRIORITIES, STATUSES
from bridge.sim.jira.comments import CommentOps
from bridge.sim.jira.issues import IssueOps
from bridge.sim.jira.jql import (
    DATE_FIELDS,
    TEXT_FIELDS,
    Clause,
    JqlError,
    Node,
    Query,
    parse_date,
    text_matches,
)
from bridge.sim.jira.render import View, issue_link_json
from bridge.sim.jira.state import Issue, IssueLink, Webhook
from bridge.sim.jira.versions import VersionOps

WEBHOOK_EVENTS = frozenset({
    "jira:issue_created", "jira:issue_updated", "jira:issue_deleted",
    "issuelink_created", "issuelink_deleted",
    "jira:version_created", "jira:version_updated", "jira:version_released",
    "jira:version_unreleased", "jira:version_deleted", "jira:version_moved",
})
WEBHOOK_PATH = "/rest/webhooks/1.0/webhook"
Predicate = Callable[[Issue], bool]


class JiraStore(VersionOps, IssueOps, CommentOps):
    # -- issue links --------------------------------------------------------------------------

    def create_link(self, view: View, body: Any) -> IssueLink:
        body = json_object(body)
        type_ref = body.get("type")
        if not isinstance(type_ref, dict) or not (type_ref.get("name") or type_ref.get("id")):
            raise bad_request({"issueLinkType": "Issue link type must be specified."})
        link_type = self.catalog.link_type(type_ref)
        if link_type is None:
            raise ApiError(404, f"No issue link type with name '{type_ref.get('name') or type_ref.get('id')}' found.")
        # The POST's inwardIssue does the outward verb: {inward: CHG, outward: INC,
        # type: Problem/Incident} reads "CHG causes INC", "INC is caused by CHG".
        source = self.issue_ref(body.get("inwardIssue"), "inwardIssue")
        dest = self.issue_ref(body.get("outwardIssue"), "outwardIssue")
        for link in self.state.links.values():
            if (link.type_id, link.source_id, link.dest_id) == (link_type.id, source.id,
                                                                 dest.id):
                return link  # Jira does not duplicate an existing link
        link = IssueLink(self.state.new_id("link"), link_type.id, source.id, dest.id)
        self.state.links[link.id] = link
        self._record_link(link, created=True)
        self.emit(view, "issuelink_created", lambda: {"issueLink": self._link_event(link)},
                  user=False)
        return link

    def link_or_404(self, ref: str) -> IssueLink:
        link = self.state.links.get(int(ref)) if ref.isdigit() else None
        if link is None:
            raise ApiError(404, f"No issue link with id '{ref}' exists.")
        return link

    def delete_link(self, view: View, ref: str) -> None:
        link = self.link_or_404(ref)
        self._record_link(link, created=False)
        payload = {"issueLink": self._link_event(link)}
        del self.state.links[link.id]
        self.emit(view, "issuelink_deleted", lambda: payload, user=False)

    def render_link(self, view: View, link: IssueLink) -> dict[str, Any]:
        return issue_link_json(view, self.state, link)

    def _record_link(self, link: IssueLink, *, created: bool) -> None:
        link_type = LINK_TYPES[link.type_id]
        source, dest = self.state.issues[link.source_id], self.state.issues[link.dest_id]
        for issue, other, verb in ((source, dest, link_type.outward),
                                   (dest, source, link_type.inward)):
            text = f"This issue {verb} {other.key}"
            item = {"field": "Link", "fieldtype": "jira", "from": None, "fromString": None,
                    "to": None, "toString": None}
            item.update({"to": other.key, "toString": text} if created
                        else {"from": other.key, "fromString": text})
            self.record_link_change(issue, item)

    @staticmethod
    def _link_event(link: IssueLink) -> dict[str, Any]:
        """The webhook's `issueLink` object: numeric ids, unlike the REST representation."""
        link_type = LINK_TYPES[link.type_id]
        return {"id": link.id, "sourceIssueId": link.source_id,
                "destinationIssueId": link.dest_id,
                "issueLinkType": {"id": int(link_type.id), "name": link_type.name,
                                  "outwardName": link_type.outward,
                                  "inwardName": link_type.inward,
                                  "isSubTaskLinkType": False, "isSystemLinkType": False},
                "systemLink": False}

    # -- search -------------------------------------------------------------------------------

    def search(self, query: Query) -> list[Issue]:
        """Issues matching `query`, ordered as asked (then by id, so paging is stable)."""
        now = self.clock.now()
        matches = self._matcher(query.where, now) if query.where is not None else None
        found = [i for i in self.state.issues.values() if matches is None or matches(i)]
        if not query.order:
            found.sort(key=lambda i: i.id, reverse=True)
            return found
        found.sort(key=lambda i: i.id)
        for key in reversed(query.order):
            found.sort(key=_SORT_KEYS[key.field], reverse=key.descending)
        return found

    def _matcher(self, node: Node, now: datetime) -> Predicate:
        """A predicate for the whole tree; every clause is resolved up front, so an unknown
        value is a 400 even in a branch that would not be evaluated."""
        if isinstance(node, Clause):
            return self._predicate(node, now)
        parts = [self._matcher(child, now) for child in node.children]
        if node.op == "and":
            return lambda issue: all(p(issue) for p in parts)
        return lambda issue: any(p(issue) for p in parts)

    def _predicate(self, clause: Clause, now: datetime) -> Predicate:
        if clause.field in DATE_FIELDS:
            return self._date_predicate(clause, now)
        if clause.field in TEXT_FIELDS:
            return _text_predicate(clause)
        if clause.op in ("is", "is not"):
            empty = _EMPTY_TESTS.get(clause.field)
            if empty is None:
                raise JqlError(f"The field '{clause.written_field}' does not support searching "
                               f"for EMPTY values.")
            return empty if clause.op == "is" else (lambda issue: not empty(issue))
        wanted = self._resolve(clause)
        getter = _MULTI_VALUE.get(clause.field)
        if getter is not None:
            if clause.op in ("=", "in"):
                return lambda issue: any(v in wanted for v in getter(issue))
            return lambda issue: bool(getter(issue)) and not any(v in wanted
                                                                 for v in getter(issue))
        single = _SINGLE_VALUE[clause.field]
        if clause.op in ("=", "in"):
            return lambda issue: single(issue) in wanted
        return lambda issue: single(issue) is not None and single(issue) not in wanted

    def _resolve(self, clause: Clause) -> set[Any]:
        """The ids a clause's values stand for; an unknown value is a 400, as in Jira."""
        resolved: set[Any] = set()
        for value in clause.values:
            assert value is not None
            ids = self._resolve_value(clause.field, value)
            if not ids:
                if clause.field == "key":
                    raise JqlError(f"An issue with key '{value}' does not exist for field "
                                   f"'{clause.written_field}'.")
                raise JqlError(f"The value '{value}' does not exist for the field "
                               f"'{clause.written_field}'.")
            resolved |= ids
        return resolved

    def _resolve_value(self, field: str, value: str) -> set[Any]:
        lowered = value.lower()
        if field == "project":
            project = self.catalog.project(value)
            return {project.id} if project else set()
        if field == "issuetype":
            return {t.id for t in ISSUE_TYPES.values() if lowered in (t.id, t.name.lower())}
        if field == "status":
            return {s.id for s in self.catalog.statuses_named(value)}
        if field == "priority":
            return {pid for pid, name in PRIORITIES.items() if lowered in (pid, name.lower())}
        if field in ("fixVersion", "affectedVersion"):
            return {v.id for v in self.state.versions.values()
                    if lowered in (str(v.id), v.name.lower())}
        if field == "labels":
            return {value}
        if field == "key":
            issue = self.find_issue(value)
            return {issue.id} if issue else set()
        if field == "resolution":
            if lowered == "unresolved":
                return {None}
            resolution = self.catalog.resolution({"id": value} if value.isdigit()
                                                 else {"name": value})
            return {resolution} if resolution else set()
        raise JqlError(f"Field '{field}' is not supported.")  # parse_jql prevents this

    @staticmethod
    def _date_predicate(clause: Clause, now: datetime) -> Predicate:
        if clause.op in ("is", "is not", "in", "not in"):
            raise JqlError(f"The operator '{clause.op.upper()}' is not supported by the "
                           f"'{clause.written_field}' field.")
        assert clause.values[0] is not None
        moment = parse_date(clause.values[0], clause.written_field, now)
        attr = clause.field
        compare: dict[str, Callable[[datetime], bool]] = {
            "=": lambda v: v == moment, "!=": lambda v: v != moment,
            ">": lambda v: v > moment, ">=": lambda v: v >= moment,
            "<": lambda v: v < moment, "<=": lambda v: v <= moment}
        test = compare[clause.op]
        return lambda issue: test(getattr(issue, attr))

    # -- webhooks -----------------------------------------------------------------------------

    def register_webhook(self, body: Any) -> Webhook:
        body = json_object(body)
        errors: dict[str, str] = {}
        name, url, events = body.get("name"), body.get("url"), body.get("events")
        secret = body.get("secret")
        if not isinstance(name, str) or not name.strip():
            errors["name"] = "The webhook name is required."
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            errors["url"] = "The webhook URL must be an absolute http(s) URL."
        if (not isinstance(events, list) or not events
                or not all(isinstance(e, str) for e in events)):
            errors["events"] = "Specify at least one event."
        else:
            unknown = sorted(set(events) - WEBHOOK_EVENTS)
            if unknown:
                errors["events"] = (f"Unsupported events: {', '.join(unknown)}. Supported: "
                                    f"{', '.join(sorted(WEBHOOK_EVENTS))}.")
        if secret is not None and not isinstance(secret, str):
            errors["secret"] = "The secret must be a string."
        if not isinstance(body.get("enabled", True), bool):
            errors["enabled"] = "'enabled' must be true or false."
        if errors:
            raise bad_request(errors)
        hook = Webhook(self.state.new_id("webhook"), name.strip(), url, list(events),
                       secret or None, body.get("enabled", True))
        self.state.webhooks[hook.id] = hook
        return hook

    def webhook_or_404(self, ref: str) -> Webhook:
        hook = self.state.webhooks.get(int(ref)) if ref.isdigit() else None
        if hook is None:
            raise ApiError(404, f"Webhook with id '{ref}' does not exist.")
        return hook

    @staticmethod
    def render_webhook(base: str, hook: Webhook) -> dict[str, Any]:
        """Jira's webhook JSON; the secret is write-only and never echoed."""
        return {"self": f"{base}{WEBHOOK_PATH}/{hook.id}", "name": hook.name, "url": hook.url,
                "events": list(hook.events), "filters": {"issue-related-events-section": ""},
                "excludeBody": False, "enabled": hook.enabled}


def _key_order(issue: Issue) -> tuple[str, int]:
    project, _, number = issue.key.rpartition("-")
    return project, int(number)


def _text_values(field: str, issue: Issue) -> list[str]:
    """The texts a `~` clause looks in; `text` is Jira's all-text-fields pseudo field."""
    comments = [str(c.get("body") or "") for c in issue.comments]
    if field == "summary":
        return [issue.summary]
    if field == "description":
        return [issue.description] if issue.description else []
    if field == "comment":
        return comments
    return [issue.summary, *([issue.description] if issue.description else []), *comments]


def _text_predicate(clause: Clause) -> Predicate:
    """`~` matches when any of the field's texts matches; `!~`, like `!=`, only issues
    that have a value and do not match; `IS [NOT] EMPTY` on the texts' presence."""
    field, query = clause.field, clause.values[0]
    if clause.op in ("is", "is not"):
        empty = clause.op == "is"
        return lambda issue: (not _text_values(field, issue)) == empty
    assert query is not None
    if clause.op == "~":
        return lambda issue: any(text_matches(query, t) for t in _text_values(field, issue))
    return lambda issue: bool(_text_values(field, issue)) and not any(
        text_matches(query, t) for t in _text_values(field, issue))


_PRIORITY_RANK = {pid: -n for n, pid in enumerate(PRIORITIES)}  # Highest sorts last ASC
_STATUS_RANK = {sid: n for n, sid in enumerate(STATUSES)}


def _due_order(issue: Issue) -> tuple[bool, Any]:
    """Issues without a due date sort after all dates ascending (first descending)."""
    return (issue.due_date is None, issue.due_date or 0)


#: Sort keys: priority and status by their configured order (as Jira's admin screens list
#: them), not by name; summary case-insensitively.
_SORT_KEYS: dict[str, Callable[[Issue], Any]] = {
    "updated": lambda i: i.updated, "created": lambda i: i.created, "key": _key_order,
    "priority": lambda i: _PRIORITY_RANK.get(i.priority_id, 0),
    "status": lambda i: _STATUS_RANK.get(i.status_id, len(_STATUS_RANK)),
    "summary": lambda i: i.summary.lower(), "duedate": _due_order}
_SINGLE_VALUE: dict[str, Callable[[Issue], Any]] = {
    "project": lambda i: i.project_id, "issuetype": lambda i: i.issuetype_id,
    "status": lambda i: i.status_id, "key": lambda i: i.id,
    "priority": lambda i: i.priority_id,
    "resolution": lambda i: i.resolution_id}
_MULTI_VALUE: dict[str, Callable[[Issue], list[Any]]] = {
    "fixVersion": lambda i: i.fix_versions, "affectedVersion": lambda i: i.versions,
    "labels": lambda i: i.labels}
_EMPTY_TESTS: dict[str, Predicate] = {
    "fixVersion": lambda i: not i.fix_versions, "affectedVersion": lambda i: not i.versions,
    "labels": lambda i: not i.labels, "resolution": lambda i: i.resolution_id is None}
