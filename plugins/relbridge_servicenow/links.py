"""Release ↔ change links, kept by ServiceNow in ``rm_m2m_release_task`` rows.

The adapter shows a link as the change's ``release`` pseudo-field (see ``bridge.adapter``).
Reading is batched — one query per page of changes, never one per change — and writing
touches the link table only when the link really changes.

ServiceNow lets a change sit in several releases; relbridge's model has one release per
change, so the newest link row wins when reading, and writing leaves exactly one row.
"""

from __future__ import annotations

from collections.abc import Iterable

from relbridge_servicenow.api import TableApi
from relbridge_servicenow.values import in_lists, query_value, reference_value

M2M_TABLE = "rm_m2m_release_task"
#: Link rows per page of a link query: several per change fit, so one page is the rule.
LINK_PAGE_SIZE = 1000
_LINK_FIELDS = ("sys_id", "release", "task")
_OLDEST_FIRST = "ORDERBYsys_created_on^ORDERBYsys_id"


class ReleaseLinks:
    """Reads and writes the release of changes through the link table."""

    def __init__(self, api: TableApi) -> None:
        self._api = api

    def releases_of(self, change_ids: Iterable[str]) -> dict[str, str]:
        """change sys_id -> release sys_id for the changes that have one."""
        ids = sorted({i for i in change_ids if i})
        found: dict[str, str] = {}
        for operand in in_lists(ids):
            query = f"taskIN{operand}^{_OLDEST_FIRST}"
            for page in self._api.paged(
                M2M_TABLE, query=query, fields=_LINK_FIELDS, page_size=LINK_PAGE_SIZE
            ):
                for row in page:
                    release = reference_value(row.get("release"))
                    if release:  # oldest first, so the newest link is written last
                        found[reference_value(row.get("task"))] = release
        return found

    def set_release(self, change_id: str, release_id: str | None) -> bool:
        """Make ``release_id`` (None or "" for none) the change's only release.

        Costs one query, plus one insert and/or deletes only when something differs. The
        new row is inserted before old ones are deleted, so a failure in between leaves
        the newest (right) link readable rather than no link at all. Returns whether
        anything was written.
        """
        query = f"task={query_value(change_id)}^{_OLDEST_FIRST}"
        rows = self._api.list(M2M_TABLE, query=query, fields=_LINK_FIELDS, limit=LINK_PAGE_SIZE)
        keep = None
        if release_id:
            keep = next((r for r in rows if reference_value(r.get("release")) == release_id), None)
        inserted = bool(release_id) and keep is None
        if inserted:
            self.link(change_id, str(release_id))
        stale = [r for r in rows if r is not keep]
        for row in stale:
            self._api.delete(M2M_TABLE, str(row["sys_id"]))
        return inserted or bool(stale)

    def link(self, change_id: str, release_id: str) -> None:
        """Insert one link row for a change that has none yet (a change just created)."""
        self._api.create(M2M_TABLE, {"release": release_id, "task": change_id})

