"""People on Jira issues: ``assignee`` shown by e-mail, written as the user with it.

relbridge matches a person across the systems by e-mail (``bridge.adapter.UserSupport``).
Reading costs nothing: an issue's ``assignee`` carries ``emailAddress``, unless the user
hides it (Jira Cloud profile visibility), and then the assignee is left out of the record
(not read, never guessed). Writing, an e-mail becomes the one active user whose
``emailAddress`` is that e-mail, found with ``GET user/search`` (Cloud: ``query=``, which
matches e-mail and display-name prefixes; Server/Data Center: ``username=``): one call per
e-mail not met before. A user found without a visible e-mail, or two users with it, match
nobody. Cloud names users by ``accountId``, Server/Data Center by ``name``. Answers are cached
for the adapter's life, except "no such user", asked again after ``RETRY_UNMATCHED_SECONDS``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bridge.errors import BadInput
from relbridge_jira.connection import JiraConnection

#: The person fields of issues.
USER_FIELDS = frozenset({"assignee"})
RETRY_UNMATCHED_SECONDS = 300.0
SEARCH_LIMIT = 10  # users per look-up: an e-mail is a prefix of few others


def shown_email(user: Any) -> str | None:
    """The e-mail an issue's user field stands for: "" for nobody, None when hidden."""
    if not isinstance(user, Mapping):
        return ""
    email = user.get("emailAddress")
    return email.strip().lower() if isinstance(email, str) and email.strip() else None


class Users:
    """The adapter's user cache (see the module docstring)."""

    def __init__(self, conn: JiraConnection, clock: Callable[[], float] = time.monotonic) -> None:
        self._conn = conn
        self._clock = clock
        self._refs: dict[str, dict[str, str]] = {}  # e-mail -> {"accountId"} / {"name"}
        self._missing: dict[str, float] = {}  # e-mail -> when no (single) user had it
        self._lock = threading.Lock()
        self._asking = threading.Lock()  # one look-up of an e-mail, however many workers want it

    def match(self, emails: Iterable[str]) -> set[str]:
        wanted = {e.strip().lower() for e in emails if e and e.strip()}
        now = self._clock()
        for email in sorted(wanted):
            if self._known(email, now):
                continue
            with self._asking:
                if not self._known(email, now):  # another worker may have just asked
                    self._look_up(email, now)
        with self._lock:
            return {e for e in wanted if e in self._refs}

    def _known(self, email: str, now: float) -> bool:
        with self._lock:
            return email in self._refs or now - self._missing.get(
                email, -RETRY_UNMATCHED_SECONDS) < RETRY_UNMATCHED_SECONDS

    def write_refs(self, fields: dict[str, Any]) -> None:
        """The e-mails in issue ``fields``' person fields as user references (None: nobody)."""
        for name in USER_FIELDS & fields.keys():
            email = str(fields[name] or "").strip().lower()
            if not email:
                fields[name] = None
            elif email in self.match([email]):
                fields[name] = dict(self._refs[email])
            else:
                raise BadInput(f"no Jira user has the e-mail {email!r}")

    def _look_up(self, email: str, now: float) -> None:
        cloud = self._conn.is_cloud
        params = {"query" if cloud else "username": email, "maxResults": SEARCH_LIMIT}
        found = [u for u in self._conn.get("user/search", params) or []
                 if isinstance(u, Mapping) and u.get("active", True) and shown_email(u) == email]
        with self._lock:
            if len(found) == 1:  # two users with one e-mail: which one is a guess
                user = found[0]
                self._refs[email] = ({"accountId": str(user["accountId"])} if cloud
                                     else {"name": str(user["name"])})
                self._missing.pop(email, None)
            else:
                self._missing[email] = now
