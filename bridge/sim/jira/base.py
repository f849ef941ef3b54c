"""Shared ground of the simulated Jira's rules: errors, lookups and webhook emission.

`JiraStore` (in `jira_store`) is assembled from the version and issue rules built on
`StoreBase`; all of them raise `ApiError`, which the HTTP layer turns into Jira's
`{"errorMessages": [...], "errors": {...}}` envelope.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import date
from typing import Any

from bridge.sim.jira.catalog import Catalog, Project
from bridge.sim.jira.render import View, user_json
from bridge.sim.jira.state import Clock, Issue, JiraState, Version
from bridge.sim.webhooks import WebhookSender, sign_hub

ISSUE_NOT_FOUND = "Issue does not exist or you do not have permission to see it."


class ApiError(Exception):
    """A Jira error response: HTTP status plus Jira's error collection."""

    def __init__(self, status: int, messages: list[str] | str | None = None,
                 errors: dict[str, str] | None = None) -> None:
        if isinstance(messages, str):
            messages = [messages]
        self.status = status
        self.messages = list(messages or [])
        self.errors = dict(errors or {})
        super().__init__(f"{status}: {self.messages} {self.errors}")

    def body(self) -> dict[str, Any]:
        return {"errorMessages": self.messages, "errors": self.errors}


def bad_request(errors: dict[str, str] | None = None, *messages: str) -> ApiError:
    return ApiError(400, list(messages), errors)


def json_object(body: Any, what: str = "request body") -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request(None, f"The {what} must be a JSON object.")
    return body


def parse_iso_date(value: Any, field: str, errors: dict[str, str]) -> date | None:
    """`yyyy-MM-dd` (or null); a bad value is recorded in `errors` under `field`."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    errors[field] = f"Please enter the date in the following format: yyyy-MM-dd ({value!r})."
    return None


class StoreBase:
    """State, lookups and event emission shared by the version and issue rules."""

    def __init__(self, state: JiraState, sender: WebhookSender | None,
                 clock: Clock | None = None) -> None:
        self.state = state
        self.catalog = Catalog()
        self.clock = clock or Clock()
        self.sender = sender
        #: Serialises API calls with in-process reset/save from other threads.
        self.lock = threading.RLock()

    # -- lookups ------------------------------------------------------------------------------

    def project_or_404(self, ref: Any) -> Project:
        project = self.catalog.project(ref)
        if project is None:
            raise ApiError(404, f"No project could be found with key '{ref}'.")
        return project

    def version_or_404(self, ref: Any) -> Version:
        text = str(ref)
        version = self.state.versions.get(int(text)) if text.isdigit() else None
        if version is None:
            raise ApiError(404, f"Could not find version for id '{ref}'")
        return version

    def issue_or_404(self, ref: Any) -> Issue:
        issue = self.find_issue(ref)
        if issue is None:
            raise ApiError(404, ISSUE_NOT_FOUND)
        return issue

    def find_issue(self, ref: Any) -> Issue | None:
        text = str(ref).strip()
        if text.isdigit():
            return self.state.issues.get(int(text))
        issue_id = self.state.keys.get(text.upper())
        return self.state.issues.get(issue_id) if issue_id is not None else None

    def issue_ref(self, ref: Any, field: str) -> Issue:
        """An issue named by `{"key": ...}` or `{"id": ...}` in a request body."""
        if not isinstance(ref, dict) or not (ref.get("key") or ref.get("id")):
            raise bad_request({field: f"Specify the {field} by key or id."})
        issue = self.find_issue(ref.get("key") or ref.get("id"))
        if issue is None:
            raise ApiError(404, "Issue Does Not Exist")
        return issue

    def project_versions(self, project: Project) -> list[Version]:
        return sorted((v for v in self.state.versions.values() if v.project_id == project.id),
                      key=lambda v: v.sequence)

    # -- webhooks -----------------------------------------------------------------------------

    def wants(self, event: str) -> bool:
        return any(hook.enabled and event in hook.events
                   for hook in self.state.webhooks.values())

    def emit(self, view: View, event: str, build: Callable[[], dict[str, Any]],
             user: bool = True) -> None:
        """Queue `event` to every webhook subscribed to it; the payload is only built then."""
        hooks = [h for h in self.state.webhooks.values() if h.enabled and event in h.events]
        if not hooks or self.sender is None:
            return
        payload: dict[str, Any] = {"timestamp": int(time.time() * 1000), "webhookEvent": event}
        if user:
            payload["user"] = user_json(View(view.base, "2", view.flavor))
        payload.update(build())
        body = json.dumps(payload, separators=(",", ":")).encode()
        for hook in hooks:
            headers = {"Content-Type": "application/json; charset=utf-8",
                       "User-Agent": "Atlassian Webhook HTTP Client",
                       "X-Atlassian-Webhook-Identifier": str(uuid.uuid4())}
            if hook.secret:
                headers["X-Hub-Signature"] = sign_hub(hook.secret, body)
            self.sender.send(hook.url, body, headers)
