"""The shapes of Jira ids, checked before any of them becomes part of a URL.

Issue and version ids are numbers; issue keys are ``PROJECT-123``. Ids reach the adapter
from webhook bodies (signed, but written by whoever can configure a webhook or post an
issue), so an id like ``../../myself`` or ``10000?expand=x&`` would otherwise change
which endpoint is called or add query parameters. A malformed id is ``BadInput`` (the
receiver answers 400), never a request.
"""

from __future__ import annotations

import re
from typing import Any

from bridge.errors import BadInput

INVALID_ID = "invalid_id"
_NUMERIC_ID = re.compile(r"[0-9]{1,18}")
_ISSUE_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,254}-[0-9]{1,18}")


def numeric_id(value: Any, what: str = "jira id") -> str:
    """``value`` as an issue or version id (digits only); ``BadInput`` otherwise."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not _NUMERIC_ID.fullmatch(text):
        raise BadInput(f"{what} {_shown(value)} is not a Jira id (digits only)", code=INVALID_ID)
    return text


def issue_key(value: Any, what: str = "jira issue key") -> str:
    """``value`` as an issue key (``PROJECT-123``); ``BadInput`` otherwise."""
    if not isinstance(value, str) or not _ISSUE_KEY.fullmatch(value):
        raise BadInput(f"{what} {_shown(value)} is not a Jira issue key (PROJECT-123)",
                       code=INVALID_ID)
    return value


def project_of(key: str) -> str:
    """The project part of an issue key that ``issue_key`` accepted."""
    return key.rpartition("-")[0]


def _shown(value: Any) -> str:
    """The offending value for a message, cut short: it came from a stranger."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
