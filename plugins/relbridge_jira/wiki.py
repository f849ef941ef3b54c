"""Jira wiki markup (REST API v2 text fields) <-> plain text, for descriptions.

relbridge keeps descriptions as plain text (ServiceNow's ``description`` is plain text).
Two rules make a round trip stable:

* ``from_plain(text)`` escapes exactly what Jira would read as markup, so
  ``to_plain(from_plain(text)) == text`` for every text (property-tested);
* ``to_plain(wiki)`` reads the markup people write in Jira — ``*bold*``, ``_italic_``,
  ``+underline+``, ``-strike-``, ``^sup^``, ``~sub~``, ``{{monospace}}``, ``[text|url]``,
  ``[url]``, ``h1.``–``h6.`` headings, ``bq.`` quotes, ``{color}``/``{quote}``/``{panel}``
  tags, ``{code}``/``{noformat}`` blocks (kept verbatim), ``\\x`` escapes — into plain
  text, deterministically. The mapping compares values in this plain form, so a
  description a person formatted in Jira is not rewritten by relbridge unless its text
  changes (no flapping). Lists and tables are kept as typed.

REST API v3 carries rich text as Atlassian Document Format (JSON) instead; the adapter uses
v2, so ADF never reaches relbridge (see docs/descriptions.md).
"""

from __future__ import annotations

import re
from typing import Any

_EMPHASIS = "*_+-^~"
_ALWAYS = "\\{["  # openers of blocks, monospace and links: escaped wherever they are
_TAGS = ("color", "quote", "panel")
_VERBATIM = ("code", "noformat")
_LINE_MARK = re.compile(r"(h[1-6]|bq)\. ")

Token = tuple[str, bool]  # (character, escaped: a literal that is never markup)


def read(value: Any) -> str:
    """The ``jira_wiki`` transform, Jira -> canonical: an empty field is an empty text."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{type(value).__name__} is not wiki markup text")  # e.g. ADF from /rest/api/3
    return to_plain(value)


def write(value: Any) -> str | None:
    """The ``jira_wiki`` transform, canonical -> Jira: an empty text clears the field."""
    return from_plain(str(value)) if value not in (None, "") else None


def from_plain(text: str) -> str:
    """Wiki markup that Jira shows, and ``to_plain`` reads, as exactly ``text``."""
    out = []
    for i, ch in enumerate(text):
        at_line_start = i == 0 or text[i - 1] == "\n"
        if ch == "." and _line_mark_ends_at(text, i):
            out.append("\\.")  # "h1\\. ": a literal dot, so no heading
        elif ch in _ALWAYS or (ch in _EMPHASIS and (at_line_start or not text[i - 1].isalnum())):
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _line_mark_ends_at(text: str, i: int) -> bool:
    """Whether the dot at ``i`` ends ``h1.``…``h6.`` or ``bq.`` at a line start, before a space."""
    for size in (2,):
        start = i - size
        if start >= 0 and (start == 0 or text[start - 1] == "\n") and _LINE_MARK.match(text, start):
            return True
    return False


def to_plain(wiki: str) -> str:
    """The plain text a person reads in ``wiki`` (see the module docstring)."""
    tokens = _blocks(_tokens(wiki))
    tokens = _line_marks(tokens)
    tokens = _links_and_monospace(tokens)
    return "".join(ch for ch, _ in _emphasis(tokens))


def _tokens(wiki: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(wiki):
        if wiki[i] == "\\" and i + 1 < len(wiki) and not wiki[i + 1].isalnum() and wiki[i + 1] != "\n":
            tokens.append((wiki[i + 1], True))
            i += 2
        else:
            tokens.append((wiki[i], False))
            i += 1
    return tokens


def _raw(tokens: list[Token]) -> str:
    return "".join("\\" + ch if escaped else ch for ch, escaped in tokens)


def _tag_at(tokens: list[Token], i: int) -> tuple[str, int] | None:
    """An unescaped ``{name}`` or ``{name:params}`` at ``i``: (name, index after it)."""
    if tokens[i] != ("{", False):
        return None
    j = i + 1
    while j < len(tokens) and tokens[j][0].isalpha() and not tokens[j][1]:
        j += 1
    name = "".join(ch for ch, _ in tokens[i + 1:j])
    if name not in (*_TAGS, *_VERBATIM):
        return None
    while j < len(tokens) and tokens[j] != ("}", False) and tokens[j][0] != "\n":
        if tokens[j] == ("{", False) or (j == i + 1 + len(name) and tokens[j] != (":", False)):
            return None
        j += 1
    return (name, j + 1) if j < len(tokens) and tokens[j] == ("}", False) else None


def _blocks(tokens: list[Token]) -> list[Token]:
    """``{code}``/``{noformat}`` content kept as typed (escapes too); other tags dropped."""
    out: list[Token] = []
    i = 0
    while i < len(tokens):
        tag = _tag_at(tokens, i)
        if tag is None:
            out.append(tokens[i])
            i += 1
            continue
        name, after = tag
        if name in _TAGS:
            i = after
            continue
        end = next((j for j in range(after, len(tokens)) if (t := _tag_at(tokens, j)) and t[0] == name), None)
        if end is None:
            out.append(tokens[i])
            i += 1
            continue
        out += [(ch, True) for ch in _raw(tokens[after:end])]
        i = _tag_at(tokens, end)[1]  # type: ignore[index]
    return out


def _line_marks(tokens: list[Token]) -> list[Token]:
    """``h1. `` … ``h6. `` and ``bq. `` at a line start are dropped."""
    out: list[Token] = []
    i = 0
    while i < len(tokens):
        if i == 0 or tokens[i - 1][0] == "\n":
            head = tokens[i:i + 4]
            if len(head) == 4 and not any(e for _, e in head) and _LINE_MARK.fullmatch("".join(c for c, _ in head)):
                i += 4
                continue
        out.append(tokens[i])
        i += 1
    return out


def _links_and_monospace(tokens: list[Token]) -> list[Token]:
    """``{{text}}`` -> text; ``[text|url]`` -> ``text (url)``; ``[url]`` -> url."""
    out: list[Token] = []
    i = 0
    while i < len(tokens):
        if tokens[i:i + 2] == [("{", False)] * 2:
            end = _find(tokens, i + 2, [("}", False), ("}", False)])
            if end is not None:
                out += tokens[i + 2:end]
                i = end + 2
                continue
        if tokens[i] == ("[", False):
            end = _find(tokens, i + 1, [("]", False)])
            if end is not None:
                out += _link(tokens[i + 1:end])
                i = end + 1
                continue
        out.append(tokens[i])
        i += 1
    return out


def _find(tokens: list[Token], start: int, pattern: list[Token]) -> int | None:
    for j in range(start, len(tokens) - len(pattern) + 1):
        if tokens[j][0] == "\n":
            return None
        if tokens[j:j + len(pattern)] == pattern:
            return j
    return None


def _link(inner: list[Token]) -> list[Token]:
    bar = next((k for k, t in enumerate(inner) if t == ("|", False)), None)
    if bar is None:
        return inner
    text, target = inner[:bar], inner[bar + 1:]
    tip = next((k for k, t in enumerate(target) if t == ("|", False)), None)
    target = target[:tip] if tip is not None else target
    if not text:
        return target
    return [*text, (" ", True), ("(", True), *target, (")", True)]


def _emphasis(tokens: list[Token]) -> list[Token]:
    """``*x*``, ``_x_``, ``+x+``, ``-x-``, ``^x^``, ``~x~``: an opener after a non-word
    character (or a line start) before a non-space, a closer after a non-space before a
    non-word character, on one line. The delimiters are dropped."""
    drop: set[int] = set()
    for i, (ch, escaped) in enumerate(tokens):
        if escaped or ch not in _EMPHASIS or i in drop:
            continue
        if i > 0 and tokens[i - 1][0].isalnum() and tokens[i - 1][0] != "\n":
            continue
        if i + 1 >= len(tokens) or tokens[i + 1][0].isspace():
            continue
        for j in range(i + 2, len(tokens)):
            if tokens[j][0] == "\n":
                break
            if tokens[j] == (ch, False) and not tokens[j - 1][0].isspace() and \
                    (j + 1 == len(tokens) or not tokens[j + 1][0].isalnum()):
                drop.update((i, j))
                break
    return [t for k, t in enumerate(tokens) if k not in drop]
