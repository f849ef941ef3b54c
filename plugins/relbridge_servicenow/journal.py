"""Comments on ServiceNow records: the journal fields (``work_notes``, ``comments``).

A journal field keeps nothing on its record: every entry is a ``sys_journal_field`` row
(``name`` = table, ``element_id`` = record sys_id, ``element`` = field, ``value``,
``sys_created_on`` in UTC, ``sys_created_by`` = the author's user name). The adapter shows
them as the record's ``work_notes`` / ``comments`` pseudo-values, a list of
``bridge.adapter.CommentEntry`` (see there).

Costs: a listing reads each entry once, one query per page of records (more only when a
page's time span holds more than ``JOURNAL_PAGE`` entries; see ``JournalWindow``), plus one
``sys_user`` query for authors not met before (names are cached); reading one record is
one query. Writing an entry is setting the field on the
record (one PATCH): the instance adds the row. Looking a copy up by its marker (only after
a crash) is one query.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from bridge.adapter import CommentEntry
from relbridge_servicenow.api import TableApi
from relbridge_servicenow.values import (
    format_datetime,
    in_list,
    in_lists,
    parse_datetime,
    query_value,
)

JOURNAL_TABLE = "sys_journal_field"
JOURNAL_FIELDS = frozenset({"work_notes", "comments"})
#: Entries per journal query: a page of records with a few entries each fits in one.
JOURNAL_PAGE = 5000
#: Characters of one journal entry (the journal fields' dictionary max length).
COMMENT_LIMIT = 4000
ENTRY_SLACK = timedelta(seconds=5)
_ENTRY_COLUMNS = ("sys_id", "element_id", "element", "value", "sys_created_on", "sys_created_by")


class JournalWindow:
    """The journal entries of one listing, read a page of records at a time.

    Records come oldest first; every entry of a listed record was created at or before the
    record's ``sys_updated_on``, and at or after ``since`` (older ones were read by an
    earlier pass). So for each page, the entries created after the previous page's newest
    update up to this page's newest are read, one query, and kept for later pages: each
    entry is read once per listing, and a page costs one query (none when its newest
    update is no newer than the last page's).
    """

    def __init__(self, journal: Journal, table: str, fields: Iterable[str], since: str | None) -> None:
        self._journal = journal
        self._table = table
        self._fields = sorted(set(fields) & JOURNAL_FIELDS)
        self._lower = f">={since}" if since else None
        self._found: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)

    def fill(self, rows: list[dict[str, Any]]) -> None:
        if not self._fields or not rows:
            return
        # An entry is stamped when its record is saved; a little slack covers a save that
        # crossed a second boundary (entries read early are kept for their page).
        newest = max(str(row.get("sys_updated_on") or "") for row in rows)
        try:
            newest = format_datetime(parse_datetime(newest) + ENTRY_SLACK)
        except ValueError:
            return
        if self._lower is None or self._lower != f">{newest}":
            bound = f"^sys_created_on{self._lower}" if self._lower else ""
            query = (f"name={query_value(self._table)}^elementIN{in_list(self._fields)}{bound}"
                     f"^sys_created_on<={newest}^ORDERBYsys_created_on^ORDERBYsys_id")
            for entry in self._journal.entries(query):
                self._found[(str(entry.get("element_id")), str(entry.get("element")))].append(entry)
            self._lower = f">{newest}"
        self._journal.attach(rows, self._fields, self._found)


class Journal:
    """Reads journal entries (see ``JournalWindow``) and writes them one by one."""

    def __init__(self, api: TableApi) -> None:
        self._api = api
        self._users: dict[str, tuple[str, str]] = {}  # user_name -> (name, email)
        self._lock = threading.Lock()

    def window(self, table: str, fields: Iterable[str], since: str | None) -> JournalWindow:
        return JournalWindow(self, table, fields, since)

    def add_entries(self, table: str, row: dict[str, Any], fields: Iterable[str]) -> None:
        """Fill one record's journal ``fields`` with all its entries: one query."""
        wanted = sorted(set(fields) & JOURNAL_FIELDS)
        if not wanted:
            return
        query = (f"name={query_value(table)}^element_id={query_value(str(row['sys_id']))}"
                 f"^elementIN{in_list(wanted)}^ORDERBYsys_created_on^ORDERBYsys_id")
        found: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for entry in self.entries(query):
            found[(str(entry.get("element_id")), str(entry.get("element")))].append(entry)
        self.attach([row], wanted, found)

    def entries(self, query: str) -> list[dict[str, Any]]:
        return [entry for page in self._api.paged(JOURNAL_TABLE, query=query, fields=_ENTRY_COLUMNS,
                                                  page_size=JOURNAL_PAGE) for entry in page]

    def attach(self, rows: list[dict[str, Any]], fields: list[str],
               found: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
        self._learn_users({str(e.get("sys_created_by") or "") for row in rows for f in fields
                           for e in found.get((str(row["sys_id"]), f), [])})
        for row in rows:
            for field in fields:
                row[field] = [self._entry(e) for e in found.get((str(row["sys_id"]), field), [])]

    def add(self, table: str, sys_id: str, field: str, text: str) -> None:
        """One PATCH setting the journal field: the instance appends the entry."""
        self._api.patch(table, sys_id, {field: text})

    def find(self, table: str, sys_id: str, field: str, marker: str) -> str | None:
        """The sys_id of the record's entry in ``field`` whose text holds ``marker``."""
        query = (f"name={query_value(table)}^element_id={query_value(sys_id)}"
                 f"^element={query_value(field)}^valueLIKE{query_value(marker)}")
        rows = self._api.list(JOURNAL_TABLE, query=query, fields=("sys_id", "value"), limit=10)
        return next((str(r["sys_id"]) for r in rows if marker in str(r.get("value") or "")), None)

    def _entry(self, row: dict[str, Any]) -> CommentEntry:
        login = str(row.get("sys_created_by") or "")
        name, email = self._users.get(login, (login, ""))
        try:
            created = parse_datetime(str(row.get("sys_created_on"))).isoformat()
        except ValueError:
            created = ""
        return CommentEntry(id=str(row.get("sys_id")), body=str(row.get("value") or ""),
                            author=name or login, email=email, created=created,
                            internal=row.get("element") == "work_notes")

    def _learn_users(self, logins: set[str]) -> None:
        """Names and e-mails of authors not met yet: one ``sys_user`` query for them all."""
        with self._lock:
            unknown = sorted(login for login in logins if login and login not in self._users)
        if not unknown:
            return
        known: dict[str, tuple[str, str]] = {}
        for operand in in_lists(unknown):
            for row in self._api.list("sys_user", query=f"user_nameIN{operand}",
                                      fields=("user_name", "name", "email"), limit=len(unknown)):
                known[str(row.get("user_name"))] = (str(row.get("name") or ""), str(row.get("email") or ""))
        with self._lock:
            for login in unknown:  # one not found (a system account) is remembered too
                self._users[login] = known.get(login, (login, ""))
