"""Releases as Jira project versions.

Call costs (per operation): list = one ``GET project/{key}/versions`` per configured
project (versions have no update time to filter on, so every version comes back and the
engine tells changes by the record's ``version`` hash); read = one ``GET version/{id}``;
find = one versions call per project until found; create = one ``POST version``; write =
one ``PUT version/{id}`` carrying only the given fields (no call when there are none);
delete = one ``DELETE version/{id}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from bridge.adapter import SystemRecord
from bridge.errors import PermanentError
from relbridge_jira.connection import JiraConnection
from relbridge_jira.records import version_body, version_record


class Versions:
    def __init__(self, conn: JiraConnection, projects: Sequence[str]) -> None:
        self._conn = conn
        self._projects = list(projects)

    def list(self, fields: Iterable[str] = ()) -> Iterator[SystemRecord]:
        wanted = tuple(fields)
        for project in self._projects:
            for raw in self._conn.get(f"project/{project}/versions"):
                yield version_record(raw, wanted, self._conn.url)

    def read(self, version_id: str, fields: Iterable[str] = ()) -> SystemRecord | None:
        try:
            raw = self._conn.get(f"version/{version_id}")
        except PermanentError as exc:
            if exc.status == 404:
                return None
            raise
        return version_record(raw, tuple(fields), self._conn.url)

    def find(self, name: str) -> SystemRecord | None:
        """The version called ``name`` (Jira compares version names without case)."""
        for project in self._projects:
            versions = self._conn.get(f"project/{project}/versions")
            exact = [v for v in versions if v.get("name") == name]
            loose = [v for v in versions if str(v.get("name", "")).casefold() == name.casefold()]
            match = (exact or loose or [None])[0]
            if match is not None:
                return version_record(match, (), self._conn.url)
        return None

    def create(self, payload: Mapping[str, Any], correlation: str) -> SystemRecord:
        """``POST version`` in the first configured project, named after the release.

        Sent on the session rather than ``JIRA.create_version``, which sleeps a second after
        every create."""
        body = version_body(payload)
        body.setdefault("name", correlation)
        body["project"] = self._projects[0]
        raw = self._conn.send("POST", "version", body)
        if not raw:
            raise PermanentError(f"jira: POST version {body['name']!r} returned no version")
        return version_record(raw, (), self._conn.url)

    def write(self, version_id: str, payload: Mapping[str, Any]) -> SystemRecord | None:
        """One ``PUT version/{id}`` with the given fields; Jira answers with the version, so
        unlike ``Version.update`` no re-read follows. Nothing to write: no call, None."""
        body = version_body(payload)
        raw = self._conn.send("PUT", f"version/{version_id}", body) if body else None
        return version_record(raw, (), self._conn.url) if raw else None

    def delete(self, version_id: str) -> None:
        """``DELETE version/{id}``; a version that is already gone counts as deleted."""
        try:
            self._conn.send("DELETE", f"version/{version_id}")
        except PermanentError as exc:
            if exc.status != 404:
                raise
