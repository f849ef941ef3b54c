"""People on ServiceNow records: ``assigned_to`` (a ``sys_user`` reference) shown by e-mail.

relbridge matches a person across the systems by e-mail (``bridge.adapter.UserSupport``).
Reading, the sys_ids of a page of records become the users' ``email`` (lower-cased): one
``sys_user`` query (``sys_idIN…``) for the ids not met before, none for a page of known
people. A user without an e-mail is left out of the record (not read, never guessed).
Writing, an e-mail becomes the sys_id of the one active user with that e-mail: one
``emailIN…`` query for the e-mails not met before. Answers are cached for the adapter's life,
except "no such user", asked again after ``RETRY_UNMATCHED_SECONDS``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bridge.errors import BadInput
from relbridge_servicenow.values import in_lists, query_value, reference_value

USER_TABLE = "sys_user"
#: The person fields of each entity's table.
USER_FIELDS: Mapping[str, frozenset[str]] = {"change": frozenset({"assigned_to"}),
                                             "incident": frozenset({"assigned_to"})}
RETRY_UNMATCHED_SECONDS = 300.0


class Users:
    """The adapter's sys_user cache (see the module docstring)."""

    def __init__(self, api: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self._api = api
        self._clock = clock
        self._emails: dict[str, str] = {}  # sys_id -> e-mail ("" when the user shows none)
        self._ids: dict[str, str] = {}  # e-mail -> sys_id of the one active user with it
        self._missing: dict[str, float] = {}  # e-mail -> when no (single) user had it
        self._lock = threading.Lock()
        self._asking = threading.Lock()  # one look-up of an e-mail, however many workers want it

    def show(self, entity: str, rows: list[dict[str, Any]]) -> None:
        """Replace the sys_ids in ``rows``' person fields by e-mails (one query at most)."""
        fields = [f for f in USER_FIELDS.get(entity, ()) if any(f in row for row in rows)]
        if not fields:
            return
        ids = {reference_value(row[f]) for row in rows for f in fields if f in row}
        self._learn_ids(sorted(i for i in ids if i and i not in self._emails))
        for row in rows:
            for field in fields:
                if field not in row:
                    continue
                sys_id = reference_value(row[field])
                email = self._emails.get(sys_id, "") if sys_id else ""
                if sys_id and not email:
                    del row[field]  # a person we cannot name by e-mail: not read
                else:
                    row[field] = email

    def match(self, emails: Iterable[str]) -> set[str]:
        """The e-mails that name exactly one active user (one query for the unknown ones)."""
        wanted = {e.strip().lower() for e in emails if e and e.strip()}
        now = self._clock()
        with self._asking:  # asked again under the lock: another worker may have just asked
            with self._lock:
                unknown = sorted(e for e in wanted if e not in self._ids and
                                 now - self._missing.get(e, -RETRY_UNMATCHED_SECONDS) >= RETRY_UNMATCHED_SECONDS)
            if unknown:
                self._learn_emails(unknown, now)
        with self._lock:
            return {e for e in wanted if e in self._ids}

    def body(self, entity: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """``payload`` with the e-mails of person fields written as sys_ids ("" stays "")."""
        body = dict(payload)
        for field in USER_FIELDS.get(entity, ()):
            if field in body and body[field]:
                email = str(body[field]).strip().lower()
                if email not in self.match([email]):
                    raise BadInput(f"no ServiceNow user has the e-mail {email!r}")
                body[field] = self._ids[email]
        return body

    def _learn_ids(self, ids: list[str]) -> None:
        found: dict[str, str] = {}
        for operand in in_lists(ids):
            for row in self._api.list(USER_TABLE, query=f"sys_idIN{operand}", fields=("sys_id", "email"),
                                      limit=len(ids)):
                found[str(row.get("sys_id"))] = str(row.get("email") or "").strip().lower()
        with self._lock:
            for sys_id in ids:  # a reference to a deleted user is remembered too
                self._emails[sys_id] = found.get(sys_id, "")

    def _learn_emails(self, emails: list[str], now: float) -> None:
        usable = [e for e in emails if _queryable(e)]
        holders: dict[str, list[str]] = {}
        for operand in in_lists(usable):
            # The instance compares strings ignoring case; a user whose e-mail differs only
            # in case is the same address.
            for row in self._api.list(USER_TABLE, query=f"active=true^emailIN{operand}",
                                      fields=("sys_id", "email"), limit=2 * len(usable) + 10):
                email = str(row.get("email") or "").strip().lower()
                holders.setdefault(email, []).append(str(row.get("sys_id")))
        with self._lock:
            for email in emails:
                ids = holders.get(email, [])
                if len(ids) == 1:  # two users with one e-mail: which one is a guess
                    self._ids[email] = ids[0]
                    self._emails[ids[0]] = email
                    self._missing.pop(email, None)
                else:
                    self._missing[email] = now


def _queryable(email: str) -> bool:
    try:
        query_value(email)
    except BadInput:
        return False
    return True
