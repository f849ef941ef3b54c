"""Comments on Jira issues: ``/issue/{id}/comment`` (REST v2: bodies are wiki markup text).

The adapter shows an issue's comments as its ``comment`` pseudo-value, a list of
``bridge.adapter.CommentEntry``. A search or read asked for ``comment`` carries them in
the same answer (no extra call); only an issue whose comment page was cut short by the
server (``total`` above what came back) costs a ``GET issue/{id}/comment`` per page of
``COMMENT_PAGE``. A comment with a ``visibility`` restriction counts as internal.

Writing one is one ``POST issue/{id}/comment``; finding a copy by its marker (only after
a crash) reads the issue's comments, one call per page.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from bridge.adapter import CommentEntry
from relbridge_jira.connection import JiraConnection
from relbridge_jira.records import parse_datetime

COMMENT_FIELD = "comment"
#: Characters of one comment body (Jira: "It exceeds the allowed limit of 32,767 characters").
COMMENT_LIMIT = 32767
COMMENT_PAGE = 100


def comment_entries(value: Any) -> tuple[list[CommentEntry], bool]:
    """The entries of an issue's ``comment`` field, and whether they are all of them."""
    if not isinstance(value, Mapping):
        return [], True
    comments = [c for c in value.get("comments") or [] if isinstance(c, Mapping)]
    total = value.get("total")
    complete = not isinstance(total, int) or total <= len(comments)
    return [entry(c) for c in comments], complete


def entry(comment: Mapping[str, Any]) -> CommentEntry:
    author = comment.get("author") if isinstance(comment.get("author"), Mapping) else {}
    body = comment.get("body")
    created = comment.get("created")
    try:
        at = parse_datetime(created).isoformat() if isinstance(created, str) else ""
    except ValueError:
        at = ""
    return CommentEntry(
        id=str(comment.get("id")), body=body if isinstance(body, str) else "",
        author=str(author.get("displayName") or author.get("name") or ""),
        email=str(author.get("emailAddress") or ""), created=at,
        internal=bool(comment.get("visibility")),
    )


def all_comments(conn: JiraConnection, issue_id: str) -> Iterator[Mapping[str, Any]]:
    """Every comment of the issue, oldest first, one call per page."""
    start = 0
    while True:
        page = conn.get(f"issue/{issue_id}/comment",
                        {"startAt": start, "maxResults": COMMENT_PAGE, "orderBy": "created"})
        comments = page.get("comments") or []
        yield from comments
        start += len(comments)
        if not comments or start >= int(page.get("total") or 0):
            return


def add_comment(conn: JiraConnection, issue_id: str, text: str) -> str | None:
    # A leading "[" would read as a wiki link: the origin header is escaped.
    body = "\\" + text if text.startswith("[") else text
    created = conn.send("POST", f"issue/{issue_id}/comment", {"body": body})
    return str(created["id"]) if isinstance(created, Mapping) and created.get("id") else None


def find_comment(conn: JiraConnection, issue_id: str, marker: str) -> str | None:
    return next((str(c["id"]) for c in all_comments(conn, issue_id)
                 if marker in str(c.get("body") or "")), None)
