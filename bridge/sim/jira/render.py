"""Jira's JSON representations of the simulator's data, per API version and flavor.

Every `self` URL is absolute and built from the base URL the client used, because the jira
library PUTs and GETs resources through their `self` links. `/rest/api/3` renders rich text
as Atlassian Document Format; `/rest/api/2` (and webhook payloads) as plain strings.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from bridge.sim.jira.catalog import (
    FIELDS,
    ISSUE_TYPES,
    LINK_TYPES,
    PRIORITIES,
    PROJECTS,
    RESOLUTIONS,
    STATUS_CATEGORIES,
    STATUSES,
    USERS,
    IssueType,
    LinkType,
    Project,
    Status,
    Transition,
    User,
    all_users,
)
from bridge.sim.jira.state import Issue, IssueLink, JiraState, Version

ISSUE_EXPAND = "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations"
ALL_FIELD_IDS: tuple[str, ...] = tuple(f.id for f in FIELDS)
FIELD_NAMES: dict[str, str] = {f.id: f.name for f in FIELDS}
FIELD_SCHEMAS: dict[str, dict[str, Any]] = {f.id: f.schema for f in FIELDS}
ACCOUNT_ID = "5b10a2844c20165700ede21g"


@dataclass(frozen=True)
class View:
    """Who is asking: the base URL for `self` links, the REST version, the flavor."""

    base: str
    api: str = "2"  # "2" or "3" ("latest" is served as 2)
    flavor: str = "cloud"

    @property
    def rest(self) -> str:
        return f"{self.base}/rest/api/{self.api}"

    @property
    def adf(self) -> bool:
        return self.api == "3"


# -- scalars ------------------------------------------------------------------------------------

def jira_timestamp(value: datetime | None) -> str | None:
    """`2019-01-30T15:51:33.199+0000`: millis and an offset without a colon, as Jira sends."""
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}" + \
        value.strftime("%z")


def user_date(value: date) -> str:
    """The locale-formatted date Jira adds next to ISO dates (`6/Jul/2010`)."""
    return f"{value.day}/{value:%b}/{value:%y}"


def text_to_adf(text: str | None) -> dict[str, Any] | None:
    """Plain text as an Atlassian Document: one paragraph per line."""
    if text is None:
        return None
    paragraphs = []
    for line in text.split("\n"):
        content = [{"type": "text", "text": line}] if line else []
        paragraphs.append({"type": "paragraph", "content": content})
    return {"type": "doc", "version": 1, "content": paragraphs}


def adf_to_text(doc: Any) -> str:
    """The text of an Atlassian Document; block nodes become lines."""
    if not isinstance(doc, dict):
        return ""
    if doc.get("type") == "text":
        return str(doc.get("text", ""))
    if doc.get("type") == "hardBreak":
        return "\n"
    parts = [adf_to_text(child) for child in doc.get("content") or []]
    separator = "\n" if doc.get("type") in ("doc", "bulletList", "orderedList") else ""
    return separator.join(parts)


# -- configuration objects ----------------------------------------------------------------------

def user_json(view: View, user: User | None = None) -> dict[str, Any]:
    """A user as Jira shows it: Cloud by account id, Server/DC by name and key."""
    user = user or USERS[0]
    avatar = f"https://avatar.example.invalid/{user.name}.png"
    body: dict[str, Any] = {
        "self": f"{view.rest}/user?accountId={user.account_id}",
        **({"emailAddress": user.email} if user.email_visible or view.flavor != "cloud" else {}),
        "avatarUrls": {size: avatar for size in ("16x16", "24x24", "32x32", "48x48")},
        "displayName": user.display_name,
        "active": True,
        "timeZone": user.time_zone,
        "locale": "en_US",
    }
    if view.flavor == "cloud":
        body.update(accountId=user.account_id, accountType="atlassian")
    else:
        body.update(self=f"{view.rest}/user?username={user.name}", name=user.name, key=user.key)
    return body


def user_details(view: View, name: str | None) -> dict[str, Any] | None:
    """The shorter user object embedded in issues and comments (UserDetails: no locale)."""
    user = next((u for u in all_users() if u.name == name), None)
    if user is None:
        return None
    return {k: v for k, v in user_json(view, user).items() if k != "locale"}


def status_category_json(view: View, key: str) -> dict[str, Any]:
    category = STATUS_CATEGORIES[key]
    return {"self": f"{view.rest}/statuscategory/{category['id']}", **category}


def status_json(view: View, status: Status) -> dict[str, Any]:
    return {
        "self": f"{view.rest}/status/{status.id}",
        "description": status.description,
        "iconUrl": f"{view.base}/images/icons/statuses/generic.png",
        "name": status.name,
        "id": status.id,
        "statusCategory": status_category_json(view, status.category),
    }


def issuetype_json(view: View, issue_type: IssueType) -> dict[str, Any]:
    return {
        "self": f"{view.rest}/issuetype/{issue_type.id}",
        "id": issue_type.id,
        "description": issue_type.description,
        "iconUrl": f"{view.base}/rest/api/2/universal_avatar/view/type/issuetype/avatar/"
                   f"{issue_type.avatar_id}?size=medium",
        "name": issue_type.name,
        "subtask": issue_type.subtask,
        "avatarId": issue_type.avatar_id,
        "hierarchyLevel": -1 if issue_type.subtask else 0,
    }


def project_json(view: View, project: Project, *, issue_types: bool = False,
                 versions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "expand": "description,lead,issueTypes,url,projectKeys,permissions,insight",
        "self": f"{view.rest}/project/{project.id}",
        "id": str(project.id),
        "key": project.key,
        "name": project.name,
        "description": project.description,
        "projectTypeKey": "software",
        "simplified": False,
        "style": "classic",
        "isPrivate": False,
        "avatarUrls": {size: f"{view.base}/secure/projectavatar?pid={project.id}"
                       for size in ("16x16", "24x24", "32x32", "48x48")},
    }
    if issue_types:
        body["issueTypes"] = [issuetype_json(view, ISSUE_TYPES[t])
                              for t in project.issue_type_ids]
    if versions is not None:
        body["versions"] = versions
    return body


def link_type_json(view: View, link_type: LinkType) -> dict[str, Any]:
    return {"id": link_type.id, "name": link_type.name, "inward": link_type.inward,
            "outward": link_type.outward, "self": f"{view.rest}/issueLinkType/{link_type.id}"}


def priority_json(view: View, priority_id: str) -> dict[str, Any]:
    return {"self": f"{view.rest}/priority/{priority_id}",
            "iconUrl": f"{view.base}/images/icons/priorities/{PRIORITIES[priority_id].lower()}.svg",
            "name": PRIORITIES[priority_id], "id": priority_id}


def resolution_json(view: View, resolution_id: str) -> dict[str, Any]:
    name, description = RESOLUTIONS[resolution_id]
    return {"self": f"{view.rest}/resolution/{resolution_id}", "id": resolution_id,
            "description": description, "name": name}


def transition_json(view: View, transition: Transition) -> dict[str, Any]:
    return {
        "id": transition.id,
        "name": transition.name,
        "to": status_json(view, STATUSES[transition.to]),
        "hasScreen": False,
        "isGlobal": transition.sources is None,
        "isInitial": False,
        "isAvailable": True,
        "isConditional": False,
        "isLooped": False,
    }


def field_json(field_id: str) -> dict[str, Any]:
    definition = next(f for f in FIELDS if f.id == field_id)
    body: dict[str, Any] = {
        "id": definition.id,
        "key": definition.id,
        "name": definition.name,
        "custom": definition.custom,
        "orderable": definition.orderable,
        "navigable": definition.navigable,
        "searchable": definition.searchable,
        "clauseNames": list(definition.clause_names),
        "schema": definition.schema,
    }
    return body


# -- versions -----------------------------------------------------------------------------------

def version_json(view: View, version: Version, *, today: date,
                 status_counts: dict[str, int] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "self": f"{view.rest}/version/{version.id}",
        "id": str(version.id),
        "name": version.name,
        "archived": version.archived,
        "released": version.released,
        "projectId": version.project_id,
    }
    if version.description is not None:
        body["description"] = version.description
    if version.start_date is not None:
        body["startDate"] = version.start_date.isoformat()
        body["userStartDate"] = user_date(version.start_date)
    if version.release_date is not None:
        body["releaseDate"] = version.release_date.isoformat()
        body["userReleaseDate"] = user_date(version.release_date)
        body["overdue"] = not version.released and version.release_date < today
    if status_counts is not None:
        body["issuesStatusForFixVersion"] = status_counts
    return body


def issue_version_json(view: View, version: Version) -> dict[str, Any]:
    """The shorter version object Jira embeds in `fixVersions` / `versions` of an issue."""
    body: dict[str, Any] = {"self": f"{view.rest}/version/{version.id}", "id": str(version.id),
                            "name": version.name, "archived": version.archived,
                            "released": version.released}
    if version.description is not None:
        body["description"] = version.description
    if version.release_date is not None:
        body["releaseDate"] = version.release_date.isoformat()
    return body


# -- issues -------------------------------------------------------------------------------------

def linked_issue_json(view: View, issue: Issue) -> dict[str, Any]:
    status = STATUSES[issue.status_id]
    return {
        "id": str(issue.id),
        "key": issue.key,
        "self": f"{view.rest}/issue/{issue.id}",
        "fields": {
            "summary": issue.summary,
            "status": status_json(view, status),
            "priority": priority_json(view, issue.priority_id),
            "issuetype": issuetype_json(view, ISSUE_TYPES[issue.issuetype_id]),
        },
    }


def issue_link_json(view: View, state: JiraState, link: IssueLink,
                    perspective: int | None = None) -> dict[str, Any]:
    """A link as `GET /issueLink/{id}` shows it, or (with `perspective`) as seen from one
    of its issues in that issue's `issuelinks` field: only the other end is included."""
    body: dict[str, Any] = {
        "id": str(link.id),
        "self": f"{view.rest}/issueLink/{link.id}",
        "type": link_type_json(view, LINK_TYPES[link.type_id]),
    }
    source, dest = state.issues[link.source_id], state.issues[link.dest_id]
    if perspective != link.source_id:
        body["inwardIssue"] = linked_issue_json(view, source)
    if perspective != link.dest_id:
        body["outwardIssue"] = linked_issue_json(view, dest)
    return body


def issue_field_values(view: View, state: JiraState, issue: Issue,
                       wanted: Iterable[str]) -> dict[str, Any]:
    """The `fields` object, restricted to `wanted` field ids (in Jira's order)."""
    out: dict[str, Any] = {}
    for field_id in wanted:
        out[field_id] = _field_value(view, state, issue, field_id)
    return out


def _field_value(view: View, state: JiraState, issue: Issue, field_id: str) -> Any:
    if field_id == "summary":
        return issue.summary
    if field_id == "description":
        return text_to_adf(issue.description) if view.adf else issue.description
    if field_id == "issuetype":
        return issuetype_json(view, ISSUE_TYPES[issue.issuetype_id])
    if field_id == "project":
        return project_json(view, PROJECTS[issue.project_id])
    if field_id == "status":
        return status_json(view, STATUSES[issue.status_id])
    if field_id == "priority":
        return priority_json(view, issue.priority_id)
    if field_id == "labels":
        return list(issue.labels)
    if field_id in ("fixVersions", "versions"):
        ids = issue.fix_versions if field_id == "fixVersions" else issue.versions
        return [issue_version_json(view, state.versions[v]) for v in ids]
    if field_id == "issuelinks":
        return [issue_link_json(view, state, link, perspective=issue.id)
                for link in state.links.values() if issue.id in (link.source_id, link.dest_id)]
    if field_id in ("created", "updated", "resolutiondate"):
        value = {"created": issue.created, "updated": issue.updated,
                 "resolutiondate": issue.resolution_date}[field_id]
        return jira_timestamp(value)
    if field_id == "resolution":
        return resolution_json(view, issue.resolution_id) if issue.resolution_id else None
    if field_id == "duedate":
        return issue.due_date.isoformat() if issue.due_date else None
    if field_id in ("reporter", "assignee", "creator"):
        return user_details(view, getattr(issue, field_id))
    if field_id == "comment":
        comments = [comment_json(view, issue, c) for c in issue.comments]
        return {"self": f"{view.rest}/issue/{issue.id}/comment", "comments": comments,
                "maxResults": len(comments), "total": len(comments), "startAt": 0}
    if field_id == "worklog":
        # As Jira: an issue's fields carry its first WORKLOG_FIELD_PAGE worklogs; `total`
        # says when there are more (read them from /issue/{id}/worklog).
        shown = [worklog_json(view, issue, w) for w in issue.worklogs[:WORKLOG_FIELD_PAGE]]
        return {"startAt": 0, "maxResults": WORKLOG_FIELD_PAGE, "total": len(issue.worklogs), "worklogs": shown}
    if field_id == "parent":
        parent = state.issues.get(issue.parent_id) if issue.parent_id else None
        return linked_issue_json(view, parent) if parent else None
    return issue.custom.get(field_id)


def html_text(text: str | None) -> str | None:
    """Wiki text as the HTML Jira renders (`renderedBody`, `renderedFields`): escaped
    lines, one paragraph per blank-line separated block."""
    if text is None:
        return None
    escaped = html.escape(text).split("\n\n")
    return "".join(f"<p>{block.replace(chr(10), '<br/>')}</p>" for block in escaped)


def comment_json(view: View, issue: Issue, comment: dict[str, Any],
                 rendered: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "self": f"{view.rest}/issue/{issue.id}/comment/{comment['id']}",
        "id": str(comment["id"]),
        "author": user_details(view, comment["author"]),
        "body": text_to_adf(comment["body"]) if view.adf else comment["body"],
        "updateAuthor": user_details(view, comment.get("update_author") or comment["author"]),
        "created": jira_timestamp(comment["created"]),
        "updated": jira_timestamp(comment["updated"]),
    }
    if view.flavor == "cloud":
        body["jsdPublic"] = True
    if rendered:
        body["renderedBody"] = html_text(comment["body"])
    return body


#: Worklogs an issue's `worklog` field holds (Jira Cloud and Server: 20).
WORKLOG_FIELD_PAGE = 20


def worklog_json(view: View, issue: Issue, worklog: dict[str, Any]) -> dict[str, Any]:
    seconds = int(worklog["seconds"])
    body: dict[str, Any] = {
        "self": f"{view.rest}/issue/{issue.id}/worklog/{worklog['id']}",
        "id": str(worklog["id"]),
        "issueId": str(issue.id),
        "author": user_details(view, worklog["author"]),
        "updateAuthor": user_details(view, worklog["author"]),
        "created": jira_timestamp(worklog["created"]),
        "updated": jira_timestamp(worklog["updated"]),
        "started": jira_timestamp(worklog["started"]),
        "timeSpent": duration_text(seconds),
        "timeSpentSeconds": seconds,
    }
    if worklog.get("comment") is not None:
        body["comment"] = text_to_adf(worklog["comment"]) if view.adf else worklog["comment"]
    return body


def duration_text(seconds: int) -> str:
    """Jira's short duration (`1d 2h 30m`, 8-hour days, 5-day weeks)."""
    parts = []
    for unit, size in (("w", 5 * 8 * 3600), ("d", 8 * 3600), ("h", 3600), ("m", 60)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts) or "0m"


def history_json(view: View, entry: dict[str, Any]) -> dict[str, Any]:
    """One changelog history; null `from`/`to` values are left out, as the spec types them
    as plain strings (webhook payloads keep the nulls real deliveries carry)."""
    items = [{k: v for k, v in item.items() if v is not None} for item in entry["items"]]
    author = {k: v for k, v in user_json(view).items() if k != "locale"}  # UserDetails
    return {"id": str(entry["id"]), "author": author,
            "created": jira_timestamp(entry["created"]), "items": items}


def issue_json(view: View, state: JiraState, issue: Issue, wanted: Iterable[str] | None = None,
               expand: frozenset[str] = frozenset()) -> dict[str, Any]:
    """`wanted` None means every field; an empty collection gives the bare reference."""
    fields = ALL_FIELD_IDS if wanted is None else tuple(wanted)
    body: dict[str, Any] = {
        "expand": ISSUE_EXPAND,
        "id": str(issue.id),
        "self": f"{view.rest}/issue/{issue.id}",
        "key": issue.key,
        "fields": issue_field_values(view, state, issue, fields),
    }
    if "names" in expand:
        body["names"] = {f: FIELD_NAMES[f] for f in fields if f in FIELD_NAMES}
    if "schema" in expand:
        body["schema"] = {f: FIELD_SCHEMAS[f] for f in fields if f in FIELD_SCHEMAS}
    if "renderedFields" in expand:
        body["renderedFields"] = rendered_fields(issue, fields, body["fields"])
    if "editmeta" in expand:
        body["editmeta"] = {"fields": edit_meta(view, issue)}
    if "changelog" in expand:
        histories = [history_json(view, h) for h in reversed(issue.history)]
        body["changelog"] = {"startAt": 0, "maxResults": len(histories),
                             "total": len(histories), "histories": histories}
    return body


def rendered_fields(issue: Issue, fields: Iterable[str], values: dict[str, Any]) -> dict[str, Any]:
    """`expand=renderedFields`: rich text as HTML, dates as the user sees them, the rest
    null (Jira renders only fields with a renderer)."""
    out: dict[str, Any] = {}
    for field_id in fields:
        if field_id == "description":
            out[field_id] = html_text(issue.description)
        elif field_id == "comment":
            page = values.get("comment") or {}
            comments = [{**c, "body": html_text(raw["body"])}
                        for c, raw in zip(page.get("comments", []), issue.comments, strict=False)]
            out[field_id] = {**page, "comments": comments}
        elif field_id in ("created", "updated", "resolutiondate"):
            moment = getattr(issue, "resolution_date" if field_id == "resolutiondate" else field_id)
            out[field_id] = moment.strftime("%d/%b/%y %I:%M %p") if moment else None
        else:
            out[field_id] = None
    return out


#: Fields an issue's edit screen has (`editmeta`) and the operations each takes.
EDIT_OPERATIONS: dict[str, tuple[str, ...]] = {
    "summary": ("set",), "description": ("set",), "priority": ("set",),
    "labels": ("add", "set", "remove"), "fixVersions": ("set", "add", "remove"),
    "versions": ("set", "add", "remove"), "duedate": ("set",), "assignee": ("set",),
    "reporter": ("set",), "comment": ("add", "edit", "remove"), "issuelinks": ("add",),
    "customfield_10010": ("set",), "customfield_10011": ("set",),
    "customfield_10012": ("set",),
}


def field_meta(view: View, field_id: str, required: bool,
               operations: tuple[str, ...] | None = None, issue: Issue | None = None,
               project: Project | None = None) -> dict[str, Any]:
    """FieldMetadata: what the create and edit screens say about one field."""
    meta: dict[str, Any] = {"required": required, "schema": FIELD_SCHEMAS[field_id],
                            "name": FIELD_NAMES[field_id], "key": field_id,
                            "operations": list(operations or EDIT_OPERATIONS.get(field_id, ("set",))),
                            "hasDefaultValue": field_id == "priority"}
    if field_id == "priority":
        meta["allowedValues"] = [priority_json(view, p) for p in PRIORITIES]
    elif field_id in ("fixVersions", "versions") and project is not None:
        meta["allowedValues"] = []  # filled by the caller, who knows the versions
    elif field_id == "issuetype" and project is not None:
        meta["allowedValues"] = [issuetype_json(view, ISSUE_TYPES[t])
                                 for t in project.issue_type_ids]
    elif field_id == "project" and project is not None:
        meta["allowedValues"] = [project_json(view, project)]
    return meta


def edit_meta(view: View, issue: Issue) -> dict[str, Any]:
    return {f: field_meta(view, f, f == "summary", issue=issue) for f in EDIT_OPERATIONS
            if f != "reporter" or view.flavor == "server"}
