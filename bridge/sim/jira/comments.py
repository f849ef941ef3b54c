"""Comments and worklogs of an issue: the `/issue/{key}/comment` and `/worklog` resources.

Both belong to the issue: a change moves its `updated` (no changelog item, as in Jira) and
both are paged `startAt`/`maxResults` like Jira pages them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bridge.sim.jira.base import ApiError, StoreBase, bad_request, json_object
from bridge.sim.jira.issues import comment_text
from bridge.sim.jira.state import Issue

EMPTY_COMMENT = "Comment body can not be empty!"
#: Jira refuses longer bodies (counted in UTF-16 units, as Java counts a String).
MAX_COMMENT = 32767
TOO_LONG = "The entered text is too long. It exceeds the allowed limit of 32,767 characters."


def checked_text(body: Any) -> str:
    """A comment body as stored, or the 400 Jira answers for an empty or over-long one."""
    text = comment_text(json_object(body).get("body"))
    if text is None:
        raise bad_request({"comment": EMPTY_COMMENT})
    if len(text.encode("utf-16-le")) // 2 > MAX_COMMENT:
        raise bad_request({"comment": TOO_LONG})
    return text
_DURATION_UNITS = {"w": 5 * 8 * 3600, "d": 8 * 3600, "h": 3600, "m": 60}


class CommentOps(StoreBase):
    def comment_or_404(self, issue: Issue, comment_id: Any) -> dict[str, Any]:
        found = next((c for c in issue.comments if str(c["id"]) == str(comment_id)), None)
        if found is None:
            raise ApiError(404, f"Can not find a comment for the id: {comment_id}.")
        return found

    def sorted_comments(self, issue: Issue, order_by: str) -> list[dict[str, Any]]:
        key = order_by.lstrip("+-")
        if key not in ("", "created"):
            raise bad_request(None, "orderBy must be created, -created or +created.")
        return sorted(issue.comments, key=lambda c: (c["created"], c["id"]),
                      reverse=order_by.startswith("-"))

    def add_comment(self, issue: Issue, body: Any) -> dict[str, Any]:
        text = checked_text(body)
        now = self.clock.now()
        comment = {"id": self.state.new_id("comment"), "body": text, "author": "admin",
                   "created": now, "updated": now}
        issue.comments.append(comment)
        issue.updated = now
        return comment

    def update_comment(self, issue: Issue, comment_id: Any, body: Any) -> dict[str, Any]:
        comment = self.comment_or_404(issue, comment_id)
        text = checked_text(body)
        comment.update(body=text, updated=self.clock.now(), update_author="admin")
        issue.updated = comment["updated"]
        return comment

    def delete_comment(self, issue: Issue, comment_id: Any) -> None:
        issue.comments.remove(self.comment_or_404(issue, comment_id))
        issue.updated = self.clock.now()

    # -- worklogs -----------------------------------------------------------------------------

    def worklog_or_404(self, issue: Issue, worklog_id: Any) -> dict[str, Any]:
        found = next((w for w in issue.worklogs if str(w["id"]) == str(worklog_id)), None)
        if found is None:
            raise ApiError(404, f"Cannot find worklog with id: {worklog_id}")
        return found

    def save_worklog(self, issue: Issue, body: Any, worklog_id: Any = None) -> dict[str, Any]:
        """Add (or, with an id, update) a worklog: `timeSpent` ("1h 30m") or
        `timeSpentSeconds`, optional `started` and `comment`."""
        body = json_object(body)
        existing = self.worklog_or_404(issue, worklog_id) if worklog_id is not None else None
        errors: dict[str, str] = {}
        seconds = worklog_seconds(body, errors)
        if seconds is None and existing is None and not errors:
            errors["timeLogged"] = "You must indicate the time spent working."
        started = existing["started"] if existing else self.clock.now()
        if body.get("started") is not None:
            try:
                started = datetime.strptime(str(body["started"]), "%Y-%m-%dT%H:%M:%S.%f%z")
            except ValueError:
                errors["started"] = "Invalid date format. Please enter the date in the format " \
                                    "\"yyyy-MM-dd'T'HH:mm:ss.SSSZ\"."
        comment = body.get("comment")
        if comment is not None and not isinstance(comment, str):
            comment = comment_text(comment)
        if errors:
            raise bad_request(errors)
        now = self.clock.now()
        if existing is None:
            existing = {"id": self.state.new_id("worklog"), "author": "admin", "created": now}
            issue.worklogs.append(existing)
        existing.update(started=started, updated=now,
                        seconds=seconds if seconds is not None else existing["seconds"],
                        comment=comment if "comment" in body else existing.get("comment"))
        issue.updated = now
        return existing

    def delete_worklog(self, issue: Issue, worklog_id: Any) -> None:
        issue.worklogs.remove(self.worklog_or_404(issue, worklog_id))
        issue.updated = self.clock.now()


def worklog_seconds(body: dict[str, Any], errors: dict[str, str]) -> int | None:
    if body.get("timeSpentSeconds") is not None:
        value = body["timeSpentSeconds"]
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        errors["timeLogged"] = "Time Spent must be a positive number of seconds."
        return None
    text = body.get("timeSpent")
    if text is None:
        return None
    total = 0
    for part in str(text).split():
        unit = part[-1:].lower()
        if unit not in _DURATION_UNITS or not part[:-1].isdigit():
            errors["timeLogged"] = "Invalid time duration entered."
            return None
        total += int(part[:-1]) * _DURATION_UNITS[unit]
    if total <= 0:
        errors["timeLogged"] = "Invalid time duration entered."
        return None
    return total
