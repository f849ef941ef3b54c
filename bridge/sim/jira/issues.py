"""Issues: create, edit (`fields` and `update` operations), delete, workflow transitions.

Writes are validated completely before anything changes (a 400 never leaves a half-edited
issue), every effective change is recorded in the issue's changelog, moves `updated`, and
fires `jira:issue_*` webhooks carrying the changelog items.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from bridge.sim.jira.base import StoreBase, bad_request, json_object, parse_iso_date
from bridge.sim.jira.catalog import (
    CANCELED_RESOLUTION,
    CANCELED_STATUSES,
    CUSTOM_FIELD_TYPES,
    DEFAULT_PRIORITY,
    DONE_RESOLUTION,
    FIELDS,
    ISSUE_TYPES,
    PRIORITIES,
    RESOLUTIONS,
    STATUSES,
    Project,
    Transition,
    all_users,
)
from bridge.sim.jira.render import View, adf_to_text, issue_json, jira_timestamp
from bridge.sim.jira.state import Issue

EDITABLE = frozenset({"summary", "description", "priority", "labels", "fixVersions", "versions",
                      "duedate", "resolution", "assignee", "reporter", *CUSTOM_FIELD_TYPES})
#: The `field` name Jira writes in changelog items.
CHANGELOG_NAMES = {"fixVersions": "Fix Version", "versions": "Version",
                   **{f.id: f.name for f in FIELDS if f.custom}}
SUMMARY_REQUIRED = "You must specify a summary of the issue."


def cannot_set(field_id: str) -> str:
    return f"Field '{field_id}' cannot be set. It is not on the appropriate screen, or unknown."


class IssueOps(StoreBase):
    def render_issue(self, view: View, issue: Issue, wanted: Any = None,
                     expand: frozenset[str] = frozenset()) -> dict[str, Any]:
        return issue_json(view, self.state, issue, wanted, expand)

    # -- create / edit / delete ---------------------------------------------------------------

    def create_issue(self, view: View, body: Any) -> Issue:
        body = json_object(body)
        fields = json_object(body.get("fields", {}), "fields object")
        errors: dict[str, str] = {}
        project = self._create_project(fields.get("project"), errors)
        issue_type = None
        if project is not None:
            issue_type = self._create_issue_type(fields.get("issuetype"), project, errors)
        if not isinstance(fields.get("summary"), str) or not fields["summary"].strip():
            errors["summary"] = SUMMARY_REQUIRED
        draft = Issue(id=0, key="", project_id=project.id if project else 0,
                      issuetype_id=issue_type.id if issue_type else "", summary="",
                      status_id="", created=self.clock.now(), updated=self.clock.now(),
                      priority_id=DEFAULT_PRIORITY)
        if issue_type is not None:
            draft.parent_id = self._create_parent(issue_type, fields.get("parent"), errors)
        settable = {k: v for k, v in fields.items() if k not in ("project", "issuetype", "parent")}
        self._apply_fields(view, draft, settable, errors)
        update = body.get("update") or {}
        links: list[dict[str, Any]] = []
        if isinstance(update, dict) and "issuelinks" in update:
            update = {k: v for k, v in update.items() if k != "issuelinks"}
            links = self._link_adds(body["update"]["issuelinks"], errors)
        self._apply_updates(view, draft, update, errors)
        transition = None
        if issue_type is not None and "transition" in body:
            transition = self._create_transition(issue_type.workflow, body["transition"])
        if errors:
            raise bad_request(errors)
        assert project is not None and issue_type is not None
        number = self.state.issue_numbers.get(project.id, 1)
        self.state.issue_numbers[project.id] = number + 1
        draft.id = self.state.new_id("issue")
        draft.key = f"{project.key}-{number}"
        draft.status_id = issue_type.workflow.initial
        draft.created = draft.updated = self.clock.now()
        self.state.add_issue(draft)
        self.emit(view, "jira:issue_created", lambda: {
            "issue_event_type_name": "issue_created",
            "issue": self.render_issue(View(view.base, "2", view.flavor), draft)})
        for link in links:  # the other side is named; this new issue is the missing one
            side = "outwardIssue" if "inwardIssue" in link else "inwardIssue"
            self.create_link(view, {**link, side: {"id": str(draft.id)}})  # type: ignore[attr-defined]
        if transition is not None:  # Cloud runs it right after the create, as its own step
            self._apply_transition(view, draft, transition, {}, {})
        return draft

    def _create_parent(self, issue_type: Any, ref: Any, errors: dict[str, str]) -> int | None:
        """A sub-task needs a `parent` (by key or id) that is no sub-task; others take none."""
        if not issue_type.subtask:
            if ref is not None:
                errors["parent"] = cannot_set("parent")
            return None
        parent = None
        if isinstance(ref, dict) and (ref.get("key") or ref.get("id")):
            parent = self.find_issue(ref.get("key") or ref.get("id"))
        if parent is None:
            errors["parent"] = "Could not find issue by id or key." if ref else \
                "Parent is required for a sub-task."
            return None
        if ISSUE_TYPES[parent.issuetype_id].subtask:
            errors["parent"] = "A sub-task cannot be the parent of another sub-task."
            return None
        return parent.id

    def _create_transition(self, workflow: Any, ref: Any) -> Transition:
        """The `transition` of a create body (Cloud: "optional when creating an issue"): it
        must be one the workflow offers from its initial status; checked before anything is
        created, so a refused transition creates nothing."""
        transition_id = str(ref.get("id", "")) if isinstance(ref, dict) else ""
        if not transition_id:
            raise bad_request(None, "Missing 'transition' identifier")
        transition = next((t for t in workflow.available(workflow.initial)
                           if t.id == transition_id), None)
        if transition is None:
            raise bad_request(None, f"Transition id '{transition_id}' is not valid for this "
                                    f"issue.")
        return transition

    def _link_adds(self, operations: Any, errors: dict[str, str]) -> list[dict[str, Any]]:
        """Validate `update.issuelinks` of a create: `[{"add": {"type": {...}, "inwardIssue"
        or "outwardIssue": {...}}}]`, naming the other issue; links are only added this way."""
        if not isinstance(operations, list):
            errors["issuelinks"] = "Operations must be given as a list."
            return []
        links = []
        for operation in operations:
            add = operation.get("add") if isinstance(operation, dict) and len(operation) == 1 else None
            if not isinstance(add, dict):
                errors["issuelinks"] = "Field 'issuelinks' supports only the operation 'add'"
                return []
            type_ref = add.get("type")
            sides = [s for s in ("inwardIssue", "outwardIssue") if s in add]
            if not isinstance(type_ref, dict) or self.catalog.link_type(type_ref) is None:
                errors["issuelinks"] = "Issue link type must be a valid link type name or id."
            elif len(sides) != 1:
                errors["issuelinks"] = "Specify exactly one of inwardIssue or outwardIssue."
            elif not isinstance(add[sides[0]], dict) or self.find_issue(
                    add[sides[0]].get("id") or add[sides[0]].get("key") or "") is None:
                errors["issuelinks"] = f"The {sides[0]} of a link does not exist."
            else:
                links.append({"type": type_ref, sides[0]: add[sides[0]]})
        return links

    def edit_issue(self, view: View, ref: Any, body: Any) -> Issue:
        issue = self.issue_or_404(ref)
        body = json_object(body)
        errors: dict[str, str] = {}
        draft = copy.deepcopy(issue)
        fields = json_object(body.get("fields") or {}, "fields object")
        self._apply_fields(view, draft, fields, errors)
        self._apply_updates(view, draft, body.get("update") or {}, errors)
        if errors:
            raise bad_request(errors)
        self._commit(view, issue, draft)
        return issue

    def delete_issue(self, view: View, ref: Any) -> None:
        issue = self.issue_or_404(ref)
        rendered = None
        if self.wants("jira:issue_deleted"):
            rendered = self.render_issue(View(view.base, "2", view.flavor), issue)
        for link_id in [lid for lid, link in self.state.links.items()
                        if issue.id in (link.source_id, link.dest_id)]:
            del self.state.links[link_id]
        self.state.remove_issue(issue)
        self.emit(view, "jira:issue_deleted", lambda: {
            "issue_event_type_name": "issue_deleted", "issue": rendered})

    # -- workflow -----------------------------------------------------------------------------

    def available_transitions(self, issue: Issue) -> list[Transition]:
        return ISSUE_TYPES[issue.issuetype_id].workflow.available(issue.status_id)

    def transition_issue(self, view: View, ref: Any, body: Any) -> None:
        issue = self.issue_or_404(ref)
        body = json_object(body)
        wanted = body.get("transition")
        transition_id = str(wanted.get("id", "")) if isinstance(wanted, dict) else ""
        if not transition_id:
            raise bad_request(None, "Missing 'transition' identifier")
        transition = next((t for t in self.available_transitions(issue)
                           if t.id == transition_id), None)
        if transition is None:
            raise bad_request(None, f"Transition id '{transition_id}' is not valid for this "
                                    f"issue.")
        fields = json_object(body.get("fields") or {}, "fields object")
        self._apply_transition(view, issue, transition, fields, body.get("update") or {})

    def _apply_transition(self, view: View, issue: Issue, transition: Transition,
                          fields: dict[str, Any], update: Any) -> None:
        errors: dict[str, str] = {}
        draft = copy.deepcopy(issue)
        draft.status_id = transition.to
        self._apply_fields(view, draft, fields, errors)
        self._apply_updates(view, draft, update, errors)
        if errors:
            raise bad_request(errors)
        if STATUSES[transition.to].category == "done":
            if "resolution" not in fields:
                draft.resolution_id = (CANCELED_RESOLUTION if transition.to in CANCELED_STATUSES
                                       else DONE_RESOLUTION)
            draft.resolution_date = self.clock.now()
        else:
            draft.resolution_id, draft.resolution_date = None, None
        self._commit(view, issue, draft)

    # -- shared write path --------------------------------------------------------------------

    def _commit(self, view: View, issue: Issue, draft: Issue) -> None:
        """Apply a validated draft; record the changelog, bump `updated`, fire the webhook.
        Comments move `updated` but leave no changelog item, as in Jira."""
        items = changelog_items(self, issue, draft)
        if not items and issue.comments == draft.comments:
            return
        draft.updated = self.clock.now()
        entry = {"id": self.state.new_id("history"), "created": draft.updated, "items": items}
        if items:
            draft.history.append(entry)
        vars(issue).update(vars(draft))
        self.emit(view, "jira:issue_updated", lambda: {
            "issue_event_type_name": "issue_generic",
            "issue": self.render_issue(View(view.base, "2", view.flavor), issue),
            "changelog": {"id": str(entry["id"]), "items": items}})

    def record_link_change(self, issue: Issue, item: dict[str, Any]) -> None:
        """Links show up in both issues' history and move their `updated` (as in Jira)."""
        issue.updated = self.clock.now()
        issue.history.append({"id": self.state.new_id("history"), "created": issue.updated,
                              "items": [item]})

    def _create_project(self, ref: Any, errors: dict[str, str]) -> Project | None:
        key = ref.get("key") or ref.get("id") if isinstance(ref, dict) else None
        project = self.catalog.project(key) if key else None
        if project is None:
            errors["project"] = "Specify a valid project ID or key"
        return project

    def _create_issue_type(self, ref: Any, project: Project, errors: dict[str, str]) -> Any:
        if not isinstance(ref, dict) or not (ref.get("id") or ref.get("name")):
            errors["issuetype"] = "Specify an issue type"
            return None
        issue_type = self.catalog.issue_type(ref.get("id") or ref.get("name"), project)
        if issue_type is None:
            errors["issuetype"] = "Specify a valid issue type"
        return issue_type

    def _apply_fields(self, view: View, draft: Issue, fields: dict[str, Any],
                      errors: dict[str, str]) -> None:
        for field_id, value in fields.items():
            if field_id not in EDITABLE:
                errors[field_id] = cannot_set(field_id)
                continue
            self._set_field(view, draft, field_id, value, errors)

    def _apply_updates(self, view: View, draft: Issue, update: Any,
                       errors: dict[str, str]) -> None:
        if not isinstance(update, dict):
            errors["update"] = "The update object must map field ids to operation lists."
            return
        for field_id, operations in update.items():
            if field_id == "comment":
                self._comment_operations(draft, operations, errors)
                continue
            if field_id not in EDITABLE:
                errors[field_id] = cannot_set(field_id)
                continue
            if not isinstance(operations, list):
                errors[field_id] = "Operations must be given as a list."
                continue
            for operation in operations:
                if not isinstance(operation, dict) or len(operation) != 1:
                    errors[field_id] = "Each operation must be an object with one verb."
                    break
                verb, value = next(iter(operation.items()))
                self._operate(view, draft, field_id, verb, value, errors)

    def _comment_operations(self, draft: Issue, operations: Any, errors: dict[str, str]) -> None:
        """`update.comment`: `[{"add": {"body": ...}}, {"edit": {"id", "body"}},
        {"remove": {"id"}}]`, applied to the draft (kept only when the whole write is valid)."""
        if not isinstance(operations, list):
            errors["comment"] = "Operations must be given as a list."
            return
        for operation in operations:
            if not isinstance(operation, dict) or len(operation) != 1:
                errors["comment"] = "Each operation must be an object with one verb."
                return
            verb, value = next(iter(operation.items()))
            if verb not in ("add", "edit", "remove") or not isinstance(value, dict):
                errors["comment"] = f"Field 'comment' does not support operation '{verb}'"
                return
            found = None
            if verb != "add":
                found = next((c for c in draft.comments if str(c["id"]) == str(value.get("id"))), None)
                if found is None:
                    errors["comment"] = f"Can not find a comment for the id: {value.get('id')}."
                    return
            if verb == "remove":
                draft.comments.remove(found)
                continue
            text = comment_text(value.get("body"))
            if text is None:
                errors["comment"] = "Comment body can not be empty!"
                return
            now = self.clock.now()
            if found is not None:
                found.update(body=text, updated=now, update_author="admin")
            else:
                draft.comments.append({"id": self.state.new_id("comment"), "body": text,
                                       "author": "admin", "created": now, "updated": now})

    def _operate(self, view: View, draft: Issue, field_id: str, verb: str, value: Any,
                 errors: dict[str, str]) -> None:
        if verb == "set":
            self._set_field(view, draft, field_id, value, errors)
            return
        if verb not in ("add", "remove") or field_id not in ("labels", "fixVersions",
                                                             "versions"):
            errors[field_id] = f"Field '{field_id}' does not support operation '{verb}'"
            return
        if field_id == "labels":
            labels = self._labels([value], errors)
            for label in labels:
                if verb == "add" and label not in draft.labels:
                    draft.labels.append(label)
                elif verb == "remove" and label in draft.labels:
                    draft.labels.remove(label)
            return
        ids = self._version_ids(draft, field_id, [value], errors)
        current: list[int] = getattr(draft, _VERSION_ATTR[field_id])
        for version_id in ids:
            if verb == "add" and version_id not in current:
                current.append(version_id)
            elif verb == "remove" and version_id in current:
                current.remove(version_id)

    def _set_field(self, view: View, draft: Issue, field_id: str, value: Any,
                   errors: dict[str, str]) -> None:
        if field_id == "summary":
            if not isinstance(value, str) or not value.strip():
                errors["summary"] = SUMMARY_REQUIRED
            elif len(value) > 255:
                errors["summary"] = "Summary must be less than 255 characters."
            elif "\n" in value or "\r" in value:
                errors["summary"] = "The summary is invalid because it contains newline " \
                                    "characters."
            else:
                draft.summary = value
        elif field_id == "description":
            draft.description = self._description(view, value, errors)
        elif field_id == "priority":
            priority = self.catalog.priority(value) if isinstance(value, dict) else None
            if priority is None:
                errors["priority"] = f"Specify a valid priority ({', '.join(PRIORITIES.values())})."
            else:
                draft.priority_id = priority
        elif field_id == "labels":
            if not isinstance(value, list):
                errors["labels"] = "Labels must be given as a list of strings."
            else:
                draft.labels = list(dict.fromkeys(self._labels(value, errors)))
        elif field_id in _VERSION_ATTR:
            if not isinstance(value, list):
                errors[field_id] = f"'{field_id}' must be a list of versions."
            else:
                ids = self._version_ids(draft, field_id, value, errors)
                setattr(draft, _VERSION_ATTR[field_id], list(dict.fromkeys(ids)))
        elif field_id == "duedate":
            draft.due_date = parse_iso_date(value, "duedate", errors)
        elif field_id == "resolution":
            self._set_resolution(draft, value, errors)
        elif field_id in ("assignee", "reporter"):
            self._set_user(view, draft, field_id, value, errors)
        else:
            self._set_custom(draft, field_id, value, errors)

    @staticmethod
    def _set_user(view: View, draft: Issue, field_id: str, value: Any,
                  errors: dict[str, str]) -> None:
        """A user field: null, or `{"accountId"}` on Cloud / `{"name"}` on Server/DC."""
        if value is None:
            if field_id == "reporter":
                errors[field_id] = "Reporter is required."
            else:
                draft.assignee = None
            return
        ref_key = "accountId" if view.flavor == "cloud" else "name"
        ref = value.get(ref_key) if isinstance(value, dict) else None
        user = next((u for u in all_users() if ref in (u.account_id if view.flavor == "cloud" else u.name,)),
                    None)
        if user is None:
            errors[field_id] = (f"Specify a valid '{ref_key}' for {field_id.title()}"
                                if ref is None else f"User '{ref}' does not exist.")
            return
        setattr(draft, field_id, user.name)

    @staticmethod
    def _description(view: View, value: Any, errors: dict[str, str]) -> str | None:
        if value is None or isinstance(value, str):
            return value
        if view.adf and isinstance(value, dict) and value.get("type") == "doc":
            return adf_to_text(value)
        errors["description"] = ("Operation value must be an Atlassian Document (see the "
                                 "Atlassian Document Format) or a string." if view.adf else
                                 "Operation value must be a string")
        return None

    @staticmethod
    def _labels(values: list[Any], errors: dict[str, str]) -> list[str]:
        labels = []
        for label in values:
            if not isinstance(label, str) or not label:
                errors["labels"] = "Labels must be non-empty strings."
            elif any(ch.isspace() for ch in label):
                errors["labels"] = f"The label '{label}' contains spaces which is invalid."
            elif len(label) > 255:
                errors["labels"] = "The label must not exceed 255 characters."
            else:
                labels.append(label)
        return labels

    def _version_ids(self, draft: Issue, field_id: str, refs: list[Any],
                     errors: dict[str, str]) -> list[int]:
        ids = []
        for ref in refs:
            version = None
            if isinstance(ref, dict) and ref.get("id") is not None:
                text = str(ref["id"])
                version = self.state.versions.get(int(text)) if text.isdigit() else None
                problem = f"Version id '{text}' is not valid"
            elif isinstance(ref, dict) and isinstance(ref.get("name"), str):
                version = next((v for v in self.state.versions.values()
                                if v.project_id == draft.project_id
                                and v.name.lower() == ref["name"].lower()), None)
                problem = f"Version name '{ref['name']}' is not valid"
            else:
                problem = "Versions must be given as {\"id\": ...} or {\"name\": ...}"
            if version is None or version.project_id != draft.project_id:
                errors[field_id] = problem
            else:
                ids.append(version.id)
        return ids

    def _set_resolution(self, draft: Issue, value: Any, errors: dict[str, str]) -> None:
        if value is None:
            draft.resolution_id, draft.resolution_date = None, None
            return
        resolution = self.catalog.resolution(value) if isinstance(value, dict) else None
        if resolution is None:
            errors["resolution"] = "Specify a valid resolution."
            return
        draft.resolution_id = resolution
        draft.resolution_date = draft.resolution_date or self.clock.now()

    @staticmethod
    def _set_custom(draft: Issue, field_id: str, value: Any, errors: dict[str, str]) -> None:
        if value is None:
            draft.custom.pop(field_id, None)
            return
        kind = CUSTOM_FIELD_TYPES[field_id]
        if not isinstance(value, str):
            errors[field_id] = "Operation value must be a string"
        elif kind == "datetime":
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                errors[field_id] = f"Error parsing date string: {value}"
                return
            if moment.tzinfo is None:
                errors[field_id] = f"Error parsing date string: {value} (no time zone)"
                return
            draft.custom[field_id] = jira_timestamp(moment)
        elif len(value) > 255:
            errors[field_id] = "The value must not exceed 255 characters."
        else:
            draft.custom[field_id] = value


_VERSION_ATTR = {"fixVersions": "fix_versions", "versions": "versions"}


def comment_text(body: Any) -> str | None:
    """A comment body as stored: a non-blank string or an Atlassian Document (v3); None when
    missing or empty."""
    if isinstance(body, dict) and body.get("type") == "doc":
        body = adf_to_text(body)
    return body if isinstance(body, str) and body.strip() else None


def _item(field_id: str, old: Any, new: Any, old_text: Any, new_text: Any) -> dict[str, Any]:
    return {"field": CHANGELOG_NAMES.get(field_id, field_id),
            "fieldtype": "custom" if field_id.startswith("customfield_") else "jira",
            "fieldId": field_id, "from": old, "fromString": old_text, "to": new,
            "toString": new_text}


def changelog_items(store: StoreBase, before: Issue, after: Issue) -> list[dict[str, Any]]:
    """Jira-style changelog items for every field that differs between two issue states."""
    items: list[dict[str, Any]] = []
    for field_id, attr in (("summary", "summary"), ("description", "description")):
        old, new = getattr(before, attr), getattr(after, attr)
        if old != new:
            items.append(_item(field_id, None, None, old, new))
    if before.status_id != after.status_id:
        items.append(_item("status", before.status_id, after.status_id,
                           STATUSES[before.status_id].name, STATUSES[after.status_id].name))
    if before.resolution_id != after.resolution_id:
        items.append(_item("resolution", before.resolution_id, after.resolution_id,
                           _resolution_name(before.resolution_id),
                           _resolution_name(after.resolution_id)))
    if before.priority_id != after.priority_id:
        items.append(_item("priority", before.priority_id, after.priority_id,
                           PRIORITIES[before.priority_id], PRIORITIES[after.priority_id]))
    if before.labels != after.labels:
        items.append(_item("labels", None, None, " ".join(before.labels),
                           " ".join(after.labels)))
    for field_id, attr in _VERSION_ATTR.items():
        old_ids, new_ids = getattr(before, attr), getattr(after, attr)
        for removed in [v for v in old_ids if v not in new_ids]:
            name = store.state.versions[removed].name if removed in store.state.versions else None
            items.append(_item(field_id, str(removed), None, name, None))
        for added in [v for v in new_ids if v not in old_ids]:
            items.append(_item(field_id, None, str(added), None, store.state.versions[added].name))
    for field_id in ("assignee", "reporter"):
        old, new = getattr(before, field_id), getattr(after, field_id)
        if old != new:
            items.append(_item(field_id, old, new, _display(old), _display(new)))
    if before.due_date != after.due_date:
        old_text = before.due_date.isoformat() if before.due_date else None
        new_text = after.due_date.isoformat() if after.due_date else None
        items.append(_item("duedate", old_text, new_text, old_text, new_text))
    for field_id in sorted(set(before.custom) | set(after.custom)):
        old, new = before.custom.get(field_id), after.custom.get(field_id)
        if old != new:
            items.append(_item(field_id, None, None, old, new))
    return items


def _resolution_name(resolution_id: str | None) -> str | None:
    return RESOLUTIONS[resolution_id][0] if resolution_id else None



def _display(name: str | None) -> str | None:
    return next((u.display_name for u in all_users() if u.name == name), None)
