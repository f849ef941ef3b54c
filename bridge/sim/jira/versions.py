"""Project versions (relbridge's releases on the Jira side): create, edit, move, delete.

Rules follow Jira: names are unique within a project (case-insensitively), dates are
`yyyy-MM-dd`, unknown properties are refused, and every change fires the matching
`jira:version_*` webhook.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bridge.sim.jira.base import StoreBase, bad_request, json_object, parse_iso_date
from bridge.sim.jira.catalog import STATUSES
from bridge.sim.jira.render import View, version_json
from bridge.sim.jira.state import Version

DUPLICATE_NAME = "A version with this name already exists in this project."
#: Properties of Jira's Version bean; others get Jira's "Unrecognized field" 400.
VERSION_PROPERTIES = frozenset({
    "approvers", "archived", "description", "driver", "expand", "id",
    "issuesStatusForFixVersion", "moveUnfixedIssuesTo", "name", "operations", "overdue",
    "project", "projectId", "releaseDate", "released", "self", "startDate", "userReleaseDate",
    "userStartDate"})
POSITIONS = ("First", "Last", "Earlier", "Later")


def today() -> Any:
    return datetime.now(UTC).date()


class VersionOps(StoreBase):
    def render_version(self, view: View, version: Version, expand: str = "") -> dict[str, Any]:
        counts = self.status_counts(version) if "issuesstatus" in expand else None
        return version_json(view, version, today=today(), status_counts=counts)

    def create_version(self, view: View, body: Any) -> Version:
        body = json_object(body)
        self._check_properties(body)
        errors: dict[str, str] = {}
        project = self._version_project(body, errors)
        name = self._valid_name(body.get("name"), errors)
        version = Version(id=0, project_id=project.id if project else 0, name=name or "",
                          sequence=0)
        self._apply(version, body, errors)
        if project and name and self._name_taken(project.id, name, None):
            errors["name"] = DUPLICATE_NAME
        if errors:
            raise bad_request(errors)
        assert project is not None
        version.id = self.state.new_id("version")
        version.sequence = max((v.sequence for v in self.project_versions(project)),
                               default=0) + 1
        self.state.versions[version.id] = version
        self.emit(view, "jira:version_created",
                  lambda: {"version": self.render_version(view, version)}, user=False)
        return version

    def update_version(self, view: View, ref: Any, body: Any) -> Version:
        version = self.version_or_404(ref)
        body = json_object(body)
        self._check_properties(body)
        errors: dict[str, str] = {}
        draft = Version(**vars(version))
        if "name" in body:
            name = self._valid_name(body.get("name"), errors)
            if name and self._name_taken(version.project_id, name, version.id):
                errors["name"] = DUPLICATE_NAME
            draft.name = name or draft.name
        self._apply(draft, body, errors)
        target = self._move_target(body.get("moveUnfixedIssuesTo"), version, errors)
        if errors:
            raise bad_request(errors)
        before = Version(**vars(version))
        vars(version).update(vars(draft))
        if target is not None and version.released and not before.released:
            self._move_unfixed(version, target)
        self._emit_update(view, before, version)
        return version

    def delete_version(self, view: View, ref: Any, move_fix: str | None,
                       move_affected: str | None) -> None:
        version = self.version_or_404(ref)
        swaps = {}
        for param, value in (("moveFixIssuesTo", move_fix), ("moveAffectedIssuesTo",
                                                             move_affected)):
            if value in (None, ""):
                continue
            other = self.version_or_404(value)
            if other.project_id != version.project_id or other.id == version.id:
                raise bad_request({param: "The version to move issues to must be another "
                                          "version of the same project."})
            swaps[param] = other.id
        now = self.clock.now()
        for issue in self.state.issues.values():
            changed = False
            for attr, param in (("fix_versions", "moveFixIssuesTo"),
                                ("versions", "moveAffectedIssuesTo")):
                ids: list[int] = getattr(issue, attr)
                if version.id in ids:
                    ids.remove(version.id)
                    if param in swaps and swaps[param] not in ids:
                        ids.append(swaps[param])
                    changed = True
            if changed:
                issue.updated = now
        rendered = self.render_version(view, version)
        del self.state.versions[version.id]
        self.emit(view, "jira:version_deleted", lambda: {"version": rendered}, user=False)

    def move_version(self, view: View, ref: Any, body: Any) -> Version:
        version = self.version_or_404(ref)
        body = json_object(body)
        ordered = [v for v in self.state.versions.values() if v.project_id == version.project_id]
        ordered.sort(key=lambda v: v.sequence)
        index = ordered.index(version)
        ordered.remove(version)
        if body.get("after"):
            after = self.version_or_404(str(body["after"]).rstrip("/").rsplit("/", 1)[-1])
            if after.project_id != version.project_id or after.id == version.id:
                raise bad_request({"after": "The version to move after must be another "
                                            "version of the same project."})
            ordered.insert(ordered.index(after) + 1, version)
        elif body.get("position") in POSITIONS:
            position = {"First": 0, "Last": len(ordered), "Earlier": max(index - 1, 0),
                        "Later": min(index + 1, len(ordered))}[body["position"]]
            ordered.insert(position, version)
        else:
            raise bad_request({"position": "Specify 'after' (a version URL) or 'position' "
                                           "(First, Last, Earlier or Later)."})
        for sequence, item in enumerate(ordered, start=1):
            item.sequence = sequence
        self.emit(view, "jira:version_moved",
                  lambda: {"version": self.render_version(view, version)}, user=False)
        return version

    def related_counts(self, version: Version) -> tuple[int, int]:
        fixed = sum(1 for i in self.state.issues.values() if version.id in i.fix_versions)
        affected = sum(1 for i in self.state.issues.values() if version.id in i.versions)
        return fixed, affected

    def unresolved_count(self, version: Version) -> tuple[int, int]:
        issues = [i for i in self.state.issues.values() if version.id in i.fix_versions]
        return sum(1 for i in issues if i.resolution_id is None), len(issues)

    def status_counts(self, version: Version) -> dict[str, int]:
        counts = {"unmapped": 0, "toDo": 0, "inProgress": 0, "done": 0}
        names = {"new": "toDo", "indeterminate": "inProgress", "done": "done"}
        for issue in self.state.issues.values():
            if version.id in issue.fix_versions:
                counts[names.get(STATUSES[issue.status_id].category, "unmapped")] += 1
        return counts

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _check_properties(body: dict[str, Any]) -> None:
        unknown = sorted(set(body) - VERSION_PROPERTIES)
        if unknown:
            raise bad_request(None, f'Unrecognized field "{unknown[0]}" (Class '
                                    f'com.atlassian.jira.rest.v2.issue.version.VersionBean), '
                                    f'not marked as ignorable')

    def _version_project(self, body: dict[str, Any], errors: dict[str, str]) -> Any:
        ref = body.get("projectId", body.get("project"))
        if ref in (None, ""):
            errors["project"] = "Project must be specified to create a version."
            return None
        project = self.catalog.project(ref)
        if project is None:
            errors["project"] = f"Project with key or id '{ref}' does not exist."
        return project

    @staticmethod
    def _valid_name(value: Any, errors: dict[str, str]) -> str | None:
        if not isinstance(value, str) or not value.strip():
            errors["name"] = "You must specify a valid version name"
            return None
        if len(value) > 255:
            errors["name"] = "The version name must not exceed 255 characters."
            return None
        return value.strip()

    def _name_taken(self, project_id: int, name: str, own_id: int | None) -> bool:
        return any(v.project_id == project_id and v.name.lower() == name.lower()
                   and v.id != own_id for v in self.state.versions.values())

    @staticmethod
    def _apply(version: Version, body: dict[str, Any], errors: dict[str, str]) -> None:
        for key in ("archived", "released"):
            if key in body:
                if not isinstance(body[key], bool):
                    errors[key] = f"'{key}' must be true or false."
                else:
                    setattr(version, key, body[key])
        if "description" in body:
            description = body["description"]
            if description is not None and not isinstance(description, str):
                errors["description"] = "The description must be a string."
            else:
                version.description = description
        for key, attr in (("startDate", "start_date"), ("releaseDate", "release_date")):
            if key in body:
                setattr(version, attr, parse_iso_date(body[key], key, errors))
        if (version.start_date and version.release_date
                and version.start_date > version.release_date and "startDate" not in errors):
            errors["startDate"] = "The start date must be before the release date."

    def _move_target(self, ref: Any, version: Version, errors: dict[str, str]) -> Version | None:
        if not ref:
            return None
        target_id = str(ref).rstrip("/").rsplit("/", 1)[-1]
        target = self.state.versions.get(int(target_id)) if target_id.isdigit() else None
        if target is None or target.project_id != version.project_id or target is version:
            errors["moveUnfixedIssuesTo"] = "The version to move unfixed issues to is invalid."
            return None
        return target

    def _move_unfixed(self, version: Version, target: Version) -> None:
        now = self.clock.now()
        for issue in self.state.issues.values():
            if version.id in issue.fix_versions and issue.resolution_id is None:
                issue.fix_versions.remove(version.id)
                if target.id not in issue.fix_versions:
                    issue.fix_versions.append(target.id)
                issue.updated = now

    def _emit_update(self, view: View, before: Version, after: Version) -> None:
        build = lambda: {"version": self.render_version(view, after)}  # noqa: E731
        others = {k: v for k, v in vars(before).items() if k != "released"}
        if others != {k: v for k, v in vars(after).items() if k != "released"}:
            self.emit(view, "jira:version_updated", build, user=False)
        if after.released and not before.released:
            self.emit(view, "jira:version_released", build, user=False)
        elif before.released and not after.released:
            self.emit(view, "jira:version_unreleased", build, user=False)

