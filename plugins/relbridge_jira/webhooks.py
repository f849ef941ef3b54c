"""Jira webhook bodies → ``WebhookHint``s.

A body is only a hint: the worker re-reads the object, so all we need is which object
(entity + id) and whether it was deleted. Events we do not sync give no hints.

* ``jira:issue_*``: the issue's type name picks the entity (``Change`` → change, …);
  issues of other types or other projects are ignored.
* ``jira:version_*``: a release; ``jira:version_deleted`` is flagged as a deletion, the
  others (released, moved, merged, …) are re-read like any update.
* ``issuelink_*``: only ``Problem/Incident`` links matter (the incident's ``caused_by``);
  the link reads "source causes destination", so the destination is the incident.

Every id and key in the body is checked against Jira's shapes (``ids``) before a hint is
made: a malformed one is ``BadInput`` (a 400), so it never reaches a URL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from bridge.adapter import WebhookHint
from bridge.errors import BadInput
from relbridge_jira.ids import issue_key, numeric_id, project_of
from relbridge_jira.records import LINK_TYPE, SYSTEM

DELIVERY_HEADER = "x-atlassian-webhook-identifier"


def parse_webhook(
    headers: Mapping[str, str],
    body: Any,
    issue_entities: Mapping[str, str],
    projects: Iterable[str],
) -> list[WebhookHint]:
    """Hints for one delivery. ``issue_entities`` maps issue type name → entity."""
    if not isinstance(body, Mapping):
        raise BadInput("jira webhook: body must be a JSON object")
    event = body.get("webhookEvent")
    if not isinstance(event, str) or not event:
        raise BadInput("jira webhook: 'webhookEvent' is missing")
    if event.startswith("jira:issue_"):
        return _issue_hints(headers, body, event, issue_entities, set(projects))
    if event.startswith("jira:version_"):
        version = _object(body, "version")
        version_id = _id(version, "id", "version")
        return [_hint(headers, body, event, "release", version_id,
                      deleted=event == "jira:version_deleted")]
    if event.startswith("issuelink_"):
        return _link_hints(headers, body, event)
    return []


def _issue_hints(headers: Mapping[str, str], body: Mapping[str, Any], event: str,
                 issue_entities: Mapping[str, str], projects: set[str]) -> list[WebhookHint]:
    issue = _object(body, "issue")
    issue_id = _id(issue, "id", "issue")
    fields = issue.get("fields")
    issuetype = fields.get("issuetype") if isinstance(fields, Mapping) else None
    type_name = issuetype.get("name") if isinstance(issuetype, Mapping) else None
    if not isinstance(type_name, str):
        raise BadInput("jira webhook: 'issue.fields.issuetype.name' is missing")
    entity = issue_entities.get(type_name)
    key = issue.get("key")
    project = project_of(issue_key(key, "jira webhook: 'issue.key'")) if key is not None else None
    if entity is None or (project and project not in projects):
        return []
    return [_hint(headers, body, event, entity, issue_id, deleted=event == "jira:issue_deleted")]


def _link_hints(headers: Mapping[str, str], body: Mapping[str, Any], event: str) -> list[WebhookHint]:
    link = _object(body, "issueLink")
    link_type = link.get("issueLinkType")
    if not isinstance(link_type, Mapping) or not isinstance(link_type.get("name"), str):
        raise BadInput("jira webhook: 'issueLink.issueLinkType.name' is missing")
    if link_type["name"] != LINK_TYPE:
        return []
    incident_id = _id(link, "destinationIssueId", "issueLink")
    _id(link, "sourceIssueId", "issueLink")  # validate the shape
    return [_hint(headers, body, event, "incident", incident_id)]


def _hint(headers: Mapping[str, str], body: Mapping[str, Any], event: str, entity: str,
          object_id: str, *, deleted: bool = False) -> WebhookHint:
    return WebhookHint(system=SYSTEM, entity=entity, id=object_id,
                       delivery_id=delivery_id(headers, body, event, object_id), deleted=deleted)


def delivery_id(headers: Mapping[str, str], body: Mapping[str, Any], event: str, object_id: str) -> str:
    """Cloud's ``X-Atlassian-Webhook-Identifier`` (stable across its retries); otherwise a
    hash of event, timestamp and object, which is equally stable for a redelivered body."""
    for name, value in headers.items():
        if name.lower() == DELIVERY_HEADER and value:
            return str(value)
    raw = f"{event}|{body.get('timestamp')}|{object_id}"
    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()[:32]


def _object(body: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = body.get(name)
    if not isinstance(value, Mapping):
        raise BadInput(f"jira webhook: {body.get('webhookEvent')} without an {name!r} object")
    return value


def _id(obj: Mapping[str, Any], name: str, where: str) -> str:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value) == "":
        raise BadInput(f"jira webhook: '{where}.{name}' is missing or not an id")
    return numeric_id(value, f"jira webhook: '{where}.{name}'")
