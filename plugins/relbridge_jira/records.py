"""Jira JSON ↔ ``SystemRecord``: versions and issues, with the link pseudo-fields.

Pseudo-fields (see ``bridge.adapter``): a version carries ``state`` built from its
``released``/``archived`` flags; an issue carries ``status`` and ``priority`` as names,
``release`` (the id of its first fix version for a change, its first affects version for an
incident) and, for an incident, ``caused_by`` (the id of the change it "is caused by"
through a ``Problem/Incident`` link).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from bridge.adapter import SystemRecord
from bridge.errors import BadInput
from relbridge_jira.users import USER_FIELDS, shown_email

SYSTEM = "jira"
CORRELATION_PREFIX = "relbridge-"
LINK_TYPE = "Problem/Incident"  # outward "causes" (the change), inward "is caused by" (the incident)
RELEASE_FIELD = {"change": "fixVersions", "incident": "versions"}
VERSION_STATES = ("unreleased", "released", "archived")
VERSION_FIELDS = ("name", "description", "startDate", "releaseDate", "projectId", "state")
ISSUE_PSEUDO_FIELDS = ("status", "priority", "release", "caused_by", "labels")

# --- versions --------------------------------------------------------------------------------


def version_state(raw: Mapping[str, Any]) -> str:
    if raw.get("archived"):
        return "archived"
    return "released" if raw.get("released") else "unreleased"


def version_record(raw: Mapping[str, Any], extra_fields: Iterable[str] = (), server_url: str = "") -> SystemRecord:
    """A version as a record. Versions have no update timestamp, so ``version`` is a hash of
    the mapped fields (the engine tells changes by it) and ``updated_at`` is the read time."""
    fields: dict[str, Any] = {name: raw.get(name) for name in VERSION_FIELDS if name != "state"}
    fields["state"] = version_state(raw)
    fingerprint = hashlib.sha256(
        json.dumps(fields, sort_keys=True, default=str).encode()
    ).hexdigest()[:16]
    for name in extra_fields:
        if name not in fields and name in raw:
            fields[name] = raw[name]
    return SystemRecord(
        system=SYSTEM,
        entity="release",
        id=str(raw["id"]),
        key=raw.get("name"),
        updated_at=datetime.now(UTC),
        version=fingerprint,
        fields=fields,
        url=version_page(server_url, raw) if server_url else raw.get("self"),
    )


def version_page(server_url: str, raw: Mapping[str, Any]) -> str:
    """What a person opens for a version: the issue navigator on its fix version (works on
    Cloud and Data Center and needs only the version's id, unlike the project's release page)."""
    return f"{server_url}/issues/?jql=fixVersion%3D{raw['id']}"


def version_body(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The version JSON for a create/update: ``state`` becomes the released/archived flags."""
    body: dict[str, Any] = {}
    for name, value in payload.items():
        if name == "state":
            body.update(_state_flags(value))
        elif name in ("id", "self", "projectId"):
            continue  # not writable
        else:
            body[name] = value.isoformat() if isinstance(value, date) else value
    return body


def _state_flags(state: Any) -> dict[str, bool]:
    if state == "unreleased":
        return {"released": False, "archived": False}
    if state == "released":
        return {"released": True, "archived": False}
    if state == "archived":
        return {"archived": True}  # archiving keeps the released flag as it is
    raise BadInput(f"jira version state must be one of {', '.join(VERSION_STATES)}, not {state!r}")


# --- issues ----------------------------------------------------------------------------------


def issue_record(raw: Mapping[str, Any], entity: str, server_url: str) -> SystemRecord:
    """An issue as a record: the Jira fields plus the pseudo-fields, ``updated`` as version."""
    jira_fields: Mapping[str, Any] = raw.get("fields") or {}
    updated = jira_fields.get("updated")
    if not isinstance(updated, str):
        raise ValueError(f"issue {raw.get('key')} has no 'updated' field")
    fields = dict(jira_fields)
    fields["status"] = _name(jira_fields.get("status"))
    fields["priority"] = _name(jira_fields.get("priority"))
    fields["labels"] = list(jira_fields.get("labels") or [])
    for name in USER_FIELDS & fields.keys():  # people by e-mail; one Jira hides is not read
        email = shown_email(fields[name])
        if email is None:
            del fields[name]
        else:
            fields[name] = email
    fields["release"] = _first_id(jira_fields.get(RELEASE_FIELD[entity]))
    if entity == "incident":
        fields["caused_by"] = caused_by(jira_fields.get("issuelinks") or [])
    key = raw.get("key")
    created = jira_fields.get("created")
    created_at = parse_datetime(created) if isinstance(created, str) else None
    changed = set(_item_times(raw.get("changelog"), entity))
    times = field_times(raw.get("changelog"), entity, fields, created_at)
    return SystemRecord(
        system=SYSTEM,
        entity=entity,
        id=str(raw["id"]),
        key=key,
        updated_at=parse_datetime(updated),
        version=updated,
        fields=fields,
        url=f"{server_url}/browse/{key}" if key else raw.get("self"),
        correlation=correlation_of(fields["labels"]),
        created_at=created_at,
        field_times=times,
        untouched=frozenset(name for name, at in times.items() if name not in changed),
    )


#: Changelog item -> the record field it changed (items name fields by display name on
#: Server, and carry `fieldId` on Cloud).
_CHANGELOG_FIELDS = {"Fix Version": "fixVersions", "Version": "versions", "Link": "issuelinks",
                     "resolution": "resolutiondate"}
_PSEUDO_SOURCES = {"fixVersions": ("release",), "versions": ("release",), "issuelinks": ("caused_by",)}


def field_times(changelog: Any, entity: str, fields: Mapping[str, Any],
                created_at: datetime | None) -> dict[str, datetime]:
    """When each field was last set, from the issue's changelog: the newest item naming it,
    or the creation for a field no item names -- only when the changelog is complete (Jira
    pages long histories; a partial one proves nothing about the fields it leaves out)."""
    if not isinstance(changelog, Mapping):
        return {}
    histories = [h for h in changelog.get("histories") or [] if isinstance(h, Mapping)]
    times = _item_times(changelog, entity)
    complete = int(changelog.get("total") or len(histories)) <= len(histories)
    if complete and created_at is not None:
        for name in fields:
            times.setdefault(name, created_at)
    return times


def _item_times(changelog: Any, entity: str) -> dict[str, datetime]:
    """The newest changelog item's time per field it names."""
    if not isinstance(changelog, Mapping):
        return {}
    histories = [h for h in changelog.get("histories") or [] if isinstance(h, Mapping)]
    times: dict[str, datetime] = {}
    for history in histories:
        try:
            at = parse_datetime(str(history.get("created")))
        except ValueError:
            continue
        for item in history.get("items") or []:
            name = item.get("fieldId") or item.get("field")
            name = _CHANGELOG_FIELDS.get(name, _CHANGELOG_FIELDS.get(item.get("field"), name))
            if entity != "change" and name == "fixVersions" or entity != "incident" and name == "versions":
                continue
            for source in (name, *_PSEUDO_SOURCES.get(name, ())):
                if source not in times or at > times[source]:
                    times[source] = at
    return times


def caused_by(links: Iterable[Mapping[str, Any]]) -> str | None:
    """The change an incident "is caused by": in the incident's own ``issuelinks`` the
    link of type Problem/Incident that carries ``inwardIssue`` (the inward phrase reads from
    this issue: incident "is caused by" change)."""
    link = caused_by_link(links)
    return str(link["inwardIssue"]["id"]) if link else None


def caused_by_link(links: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    for link in links:
        if (link.get("type") or {}).get("name") == LINK_TYPE and link.get("inwardIssue"):
            return link
    return None


def link_body(change_id: str, incident_id: str) -> dict[str, Any]:
    """``POST issueLink`` body making the incident "is caused by" the change.

    Jira's create call reads the link from ``inwardIssue`` to ``outwardIssue`` with the
    *outward* phrase: {inward: change, outward: incident} is "change causes incident",
    which the incident shows as "is caused by change".
    """
    return {"type": {"name": LINK_TYPE}, "inwardIssue": {"id": str(change_id)},
            "outwardIssue": {"id": str(incident_id)}}


def issue_fields_body(entity: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Jira ``fields`` for the plain part of a payload; ``status`` and ``caused_by`` are not
    fields (transitions and links) and are left to the caller."""
    body: dict[str, Any] = {}
    for name, value in payload.items():
        if name in ("status", "caused_by"):
            continue
        if name == "release":
            body[RELEASE_FIELD[entity]] = [{"id": str(value)}] if value else []
        elif name == "priority":
            body["priority"] = {"name": value} if value else None
        elif name == "labels":
            body["labels"] = list(value or [])
        else:
            body[name] = value.isoformat() if isinstance(value, date) else value
    return body


def request_fields(entity: str, wanted: Iterable[str]) -> str:
    """The ``fields=`` list for a search/read: the Jira fields behind the wanted names,
    plus ``updated`` (record version), ``created`` (when fields untouched since were set)
    and ``labels`` (correlation)."""
    names = {"created", "updated", "labels"}
    for name in wanted:
        if name == "release":
            names.add(RELEASE_FIELD[entity])
        elif name == "caused_by":
            names.add("issuelinks")
        else:
            names.add(name)
    return ",".join(sorted(names))


def correlation_label(correlation: str) -> str:
    if not correlation or any(ch.isspace() for ch in correlation):
        raise BadInput(f"{correlation!r} cannot be a Jira label (empty or has spaces)")
    return CORRELATION_PREFIX + correlation


def correlation_of(labels: Iterable[str]) -> str | None:
    for label in labels:
        if label.startswith(CORRELATION_PREFIX) and len(label) > len(CORRELATION_PREFIX):
            return label[len(CORRELATION_PREFIX):]
    return None


def _name(value: Any) -> str | None:
    return value.get("name") if isinstance(value, Mapping) else None


def _first_id(values: Any) -> str | None:
    if isinstance(values, list) and values and isinstance(values[0], Mapping):
        return str(values[0]["id"])
    return None


# --- dates and JQL ---------------------------------------------------------------------------


def parse_datetime(value: str) -> datetime:
    """Jira's ``2018-12-05T14:32:11.571+0300`` as an aware UTC datetime."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def jql_datetime(since: datetime, zone: ZoneInfo) -> str:
    """A JQL date literal for ``since``: Jira reads ``"yyyy/MM/dd HH:mm"`` in the API user's
    time zone and has no seconds, so the instant is converted and floored to the minute (the
    search may return a little more than asked, never less)."""
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return since.astimezone(zone).strftime("%Y/%m/%d %H:%M")


def jql_string(value: str) -> str:
    """A double-quoted JQL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def jql_projects(projects: Iterable[str]) -> str:
    return "project in (" + ", ".join(jql_string(p) for p in projects) + ")"
