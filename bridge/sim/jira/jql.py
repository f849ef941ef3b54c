"""The JQL subset relbridge and admins use, parsed strictly into an expression tree.

Supported: clauses over project, issuetype, status, priority, fixVersion, affectedVersion,
labels, key/id, resolution, created and updated with `=`, `!=`, `IN`, `NOT IN`,
`IS [NOT] EMPTY`, and `> >= < <=` on dates (absolute `"yyyy/MM/dd HH:mm"`, `"yyyy-MM-dd"`
or relative `-5m`, `-2h`, `-1d`, `-1w`); text search `~` / `!~` on summary, description,
comment and `text`; clauses combined with `AND`, `OR`, `NOT` and parentheses, with Jira's
precedence NOT > AND > OR; then `ORDER BY` created, updated, key, priority, status, summary
or duedate, each ASC or DESC. Anything else (functions, WAS/CHANGED, other fields) is
refused with a Jira-style error instead of being answered wrongly.

`NOT` is pushed down to the clauses as Jira does (De Morgan, then the clause's operator
negated), so `NOT status = Open` is `status != Open` and, like it, does not match issues
where the field is empty (Atlassian: "field != value is the same as NOT field = value").

`parse_jql` only checks syntax; `JiraStore.search` resolves names to ids and evaluates.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

#: Canonical field name for each accepted JQL name (lower case).
FIELD_ALIASES: dict[str, str] = {
    "project": "project",
    "issuetype": "issuetype", "type": "issuetype",
    "status": "status",
    "fixversion": "fixVersion",
    "affectedversion": "affectedVersion",
    "labels": "labels", "label": "labels",
    "key": "key", "issuekey": "key", "id": "key",
    "resolution": "resolution",
    "created": "created", "createddate": "created",
    "updated": "updated", "updateddate": "updated",
    "priority": "priority",
    "summary": "summary", "description": "description", "comment": "comment",
    "text": "text",
}
DATE_FIELDS = frozenset({"created", "updated"})
#: Free-text fields: searched with `~`/`!~` (Lucene-style word match), never with `=`.
TEXT_FIELDS = frozenset({"summary", "description", "comment", "text"})
TEXT_OPS = frozenset({"~", "!~"})
#: Text fields that can be EMPTY (a summary never is, `text` is not a stored field).
EMPTY_TEXT_FIELDS = frozenset({"description", "comment"})
SORT_FIELDS: dict[str, str] = {"updated": "updated", "updateddate": "updated",
                               "created": "created", "createddate": "created",
                               "key": "key", "issuekey": "key", "id": "key",
                               "priority": "priority", "status": "status",
                               "summary": "summary", "duedate": "duedate", "due": "duedate"}
#: Real Jira fields outside the subset: refused as unsupported rather than as unknown.
OTHER_JIRA_FIELDS = frozenset({
    "environment", "assignee", "reporter",
    "creator", "watcher", "voter", "component", "sprint", "parent", "epic link",
    "due", "duedate", "resolved", "resolutiondate", "lastviewed", "filter", "level",
    "originalestimate", "remainingestimate", "timespent", "votes", "watchers", "category",
    "issuelinktype", "attachments", "statuscategory"})
RESERVED = frozenset("+;?|*%^$#@[]{}")
EQUALITY_OPS = frozenset({"=", "!=", "in", "not in"})
RANGE_OPS = frozenset({"<", "<=", ">", ">="})
EMPTY_OPS = frozenset({"is", "is not"})
#: What `NOT` turns each operator into when it is pushed down to a clause.
NEGATED_OPS = {"=": "!=", "!=": "=", "in": "not in", "not in": "in", "is": "is not",
               "is not": "is", ">": "<=", ">=": "<", "<": ">=", "<=": ">", "~": "!~",
               "!~": "~"}
KEYWORDS = frozenset({"and", "or", "not", "in", "is", "empty", "null", "order", "by", "asc",
                      "desc", "was", "changed"})

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<op>!=|>=|<=|!~|=|>|<|~)
    | (?P<punct>[(),])
    | (?P<word>[^\s"'=!<>~(),+;?|*%^$\#@\[\]{}]+)
    )""", re.VERBOSE)
_RELATIVE = re.compile(r"^([+-]?)(\d+)([wdhm])$", re.IGNORECASE)
_DATE_FORMATS = ("%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M", "%Y/%m/%d", "%Y-%m-%d")
_UNITS = {"w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1),
          "m": timedelta(minutes=1)}


class JqlError(ValueError):
    """A query Jira would answer with 400; the message is what goes in `errorMessages`."""


@dataclass(frozen=True)
class Token:
    kind: str  # string | op | punct | word | end
    text: str
    position: int

    @property
    def lower(self) -> str:
        return self.text.lower()


@dataclass(frozen=True)
class Clause:
    """`field op values`; values are raw strings, `None` stands for EMPTY/NULL."""

    field: str
    op: str
    values: tuple[str | None, ...]
    written_field: str


@dataclass(frozen=True)
class Junction:
    """`AND` or `OR` over two or more sub-expressions."""

    op: str  # "and" | "or"
    children: tuple[Node, ...]


Node = Clause | Junction


@dataclass(frozen=True)
class SortKey:
    field: str
    descending: bool


@dataclass
class Query:
    where: Node | None = None
    order: list[SortKey] = field(default_factory=list)

    @property
    def bounded(self) -> bool:
        return self.where is not None

    @property
    def clauses(self) -> list[Clause]:
        """The leaf clauses, left to right."""
        return list(_leaves(self.where)) if self.where is not None else []


def _leaves(node: Node) -> Iterator[Clause]:
    if isinstance(node, Clause):
        yield node
    else:
        for child in node.children:
            yield from _leaves(child)


def negate(node: Node) -> Node:
    """`NOT node`, pushed down to the clauses (De Morgan), as Jira rewrites it."""
    if isinstance(node, Clause):
        return Clause(node.field, NEGATED_OPS[node.op], node.values, node.written_field)
    return Junction("or" if node.op == "and" else "and",
                    tuple(negate(child) for child in node.children))


def _join(op: str, nodes: list[Node]) -> Node:
    return nodes[0] if len(nodes) == 1 else Junction(op, tuple(nodes))


def syntax_error(message: str) -> JqlError:
    return JqlError(f"Error in the JQL Query: {message}")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            rest = text[position:].lstrip()
            at = len(text) - len(rest) + 1
            raise syntax_error(f"The character '{rest[:1]}' is a reserved JQL character. You "
                               f"must enclose it in a string. (line 1, character {at})")
        kind = match.lastgroup or "word"
        raw = match.group(kind)
        if kind == "string":
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        tokens.append(Token(kind, raw, match.start(kind) + 1))
        position = match.end()
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.index = 0

    def peek(self) -> Token:
        return self.tokens[self.index]

    def take(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def is_word(self, *words: str) -> bool:
        token = self.peek()
        return token.kind == "word" and token.lower in words

    def expect_word(self, word: str) -> None:
        token = self.take()
        if token.kind != "word" or token.lower != word:
            raise syntax_error(f"Expecting '{word.upper()}' but got '{token.text}'. "
                               f"(line 1, character {token.position})")

    def parse(self) -> Query:
        query = Query()
        if self.peek().kind != "end" and not self.is_word("order"):
            query.where = self.parse_or()
        if self.is_word("order"):
            self.take()
            self.expect_word("by")
            query.order = self.parse_order()
        token = self.peek()
        if token.kind != "end":
            raise syntax_error(f"Expecting either 'OR' or 'AND' but got '{token.text}'. "
                               f"(line 1, character {token.position})")
        return query

    def parse_or(self) -> Node:
        """OR binds loosest: `a OR b AND c` is `a OR (b AND c)`."""
        nodes = [self.parse_and()]
        while self.is_word("or"):
            self.take()
            nodes.append(self.parse_and())
        return _join("or", nodes)

    def parse_and(self) -> Node:
        nodes = [self.parse_not()]
        while self.is_word("and"):
            self.take()
            nodes.append(self.parse_not())
        return _join("and", nodes)

    def parse_not(self) -> Node:
        """NOT binds tightest: `NOT a AND b` is `(NOT a) AND b`."""
        if self.is_word("not"):
            self.take()
            return negate(self.parse_not())
        token = self.peek()
        if token.kind == "punct" and token.text == "(":
            self.take()
            node = self.parse_or()
            closing = self.take()
            if closing.text != ")" or closing.kind != "punct":
                raise syntax_error(f"Expecting ')' but got '{closing.text or 'the end'}'. "
                                   f"(line 1, character {closing.position})")
            return node
        return self.parse_clause()

    def parse_clause(self) -> Clause:
        token = self.take()
        if token.kind not in ("word", "string") or (token.kind == "word"
                                                    and token.lower in KEYWORDS):
            raise syntax_error(f"Expecting a field name but got '{token.text or 'the end'}'. "
                               f"(line 1, character {token.position})")
        if self.peek().kind == "punct" and self.peek().text == "(":
            raise unsupported(f"the function '{token.text}()'")
        name = FIELD_ALIASES.get(token.lower)
        if name is None and (token.lower in OTHER_JIRA_FIELDS or token.lower.startswith("cf[")):
            raise unsupported(f"searching by '{token.text}'")
        if name is None:
            raise JqlError(f"Field '{token.text}' does not exist or you do not have permission "
                           f"to view it.")
        op = self.parse_operator()
        values = self.parse_operand(op)
        self.check_operator(name, token.text, op, values)
        return Clause(name, op, values, token.text)

    def parse_operator(self) -> str:
        token = self.take()
        if token.kind == "op":
            return token.text
        if token.kind == "word":
            if token.lower == "in":
                return "in"
            if token.lower == "not" and self.is_word("in"):
                self.take()
                return "not in"
            if token.lower == "is":
                if self.is_word("not"):
                    self.take()
                    return "is not"
                return "is"
            if token.lower in ("was", "changed"):
                raise unsupported(f"the '{token.text.upper()}' operator")
        raise syntax_error(f"Expecting operator but got '{token.text or 'the end'}'. "
                           f"(line 1, character {token.position})")

    def parse_operand(self, op: str) -> tuple[str | None, ...]:
        if op in ("in", "not in"):
            if self.peek().kind == "word" and self.tokens[self.index + 1].text == "(":
                raise unsupported(f"the function '{self.peek().text}()'")
            opening = self.take()
            if opening.text != "(":
                raise syntax_error(f"Expecting '(' but got '{opening.text}'. "
                                   f"(line 1, character {opening.position})")
            values = [self.parse_value()]
            while self.peek().text == "," and self.peek().kind == "punct":
                self.take()
                values.append(self.parse_value())
            closing = self.take()
            if closing.text != ")":
                raise syntax_error(f"Expecting ')' but got '{closing.text}'. "
                                   f"(line 1, character {closing.position})")
            return tuple(values)
        return (self.parse_value(),)

    def parse_value(self) -> str | None:
        token = self.take()
        if token.kind == "string":
            return token.text
        if token.kind == "word":
            if self.peek().kind == "punct" and self.peek().text == "(":
                raise unsupported(f"the function '{token.text}()'")
            if token.lower in ("empty", "null"):
                return None
            if token.lower in KEYWORDS:
                raise syntax_error(f"Expecting a value but got '{token.text}'. "
                                   f"(line 1, character {token.position})")
            return token.text
        raise syntax_error(f"Expecting either a value, list or function but got "
                           f"'{token.text or 'the end'}'. (line 1, character {token.position})")

    @staticmethod
    def check_operator(name: str, written: str, op: str, values: tuple[str | None, ...]) -> None:
        if op in EMPTY_OPS:
            if values != (None,):
                raise syntax_error(f"The operator '{op.upper()}' can only be used with EMPTY "
                                   f"or NULL (field '{written}').")
            if name in TEXT_FIELDS and name not in EMPTY_TEXT_FIELDS:
                raise JqlError(f"The operator '{op.upper()}' is not supported by the "
                               f"'{written}' field.")
            return
        if None in values:
            raise syntax_error(f"The operator '{op}' cannot be used with EMPTY for field "
                               f"'{written}'.")
        if op in RANGE_OPS and name not in DATE_FIELDS:
            raise JqlError(f"The operator '{op}' is not supported by the '{written}' field.")
        if (op in TEXT_OPS) != (name in TEXT_FIELDS) or (name == "text" and op != "~"):
            raise JqlError(f"The operator '{op}' is not supported by the '{written}' field.")
        if op in TEXT_OPS:
            check_text_query(values[0] or "", written)

    def parse_order(self) -> list[SortKey]:
        keys = [self.parse_sort_key()]
        while self.peek().kind == "punct" and self.peek().text == ",":
            self.take()
            keys.append(self.parse_sort_key())
        return keys

    def parse_sort_key(self) -> SortKey:
        token = self.take()
        if token.kind not in ("word", "string"):
            raise syntax_error(f"Expecting a field name but got '{token.text or 'the end'}'. "
                               f"(line 1, character {token.position})")
        name = SORT_FIELDS.get(token.lower)
        if name is None:
            if token.lower in FIELD_ALIASES or token.lower in OTHER_JIRA_FIELDS:
                raise unsupported(f"ordering by '{token.text}'")
            raise JqlError(f"Not able to sort using field '{token.text}'.")
        descending = False
        if self.is_word("asc", "desc"):
            descending = self.take().lower == "desc"
        return SortKey(name, descending)


def unsupported(what: str) -> JqlError:
    return syntax_error(f"{what[0].upper()}{what[1:]} is not supported by the relbridge Jira "
                        f"simulator.")


def parse_jql(text: str | None) -> Query:
    """Parse `text`; raise JqlError with Jira's wording for anything outside the subset."""
    return _Parser(text or "").parse()


def parse_date(value: str, written_field: str, now: datetime) -> datetime:
    """A JQL date literal in UTC (the simulated users' time zone)."""
    text = value.strip()
    relative = _RELATIVE.match(text)
    if relative:
        sign, amount, unit = relative.groups()
        delta = _UNITS[unit.lower()] * int(amount)
        return now - delta if sign == "-" else now + delta
    for pattern in _DATE_FORMATS:
        try:
            return datetime.strptime(text, pattern).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise JqlError(f"Date value '{value}' for field '{written_field}' is invalid. Valid formats "
                   f"include: 'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', "
                   f"'yyyy-MM-dd', or a period format e.g. '-5d', '4w 2d'.")


# -- text search (`~`) --------------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+")


def check_text_query(text: str, written_field: str) -> None:
    """Refuse what Jira's text search refuses: nothing to search for, a leading wildcard."""
    terms = text.strip().strip('"')
    if not _WORD.search(terms):
        raise JqlError(f"The field '{written_field}' does not support searching for an empty "
                       f"string.")
    for term in terms.split():
        if term[0] in "*?":
            raise JqlError(f"The text query '{text}' for field '{written_field}' is not allowed "
                           f"to start with '{term[0]}'.")


def text_matches(query: str, text: str | None) -> bool:
    """Jira's `~`: case-insensitive whole-word match. Unquoted words must all occur (any
    order; a trailing `*`/`?` is a wildcard); `"a phrase"` inside the value must occur as
    consecutive words. No stemming or stop words: a simulator match is always a Jira match.
    """
    if not text:
        return False
    words = [w.lower() for w in _WORD.findall(text)]
    stripped = query.strip()
    if len(stripped) > 1 and stripped[0] == stripped[-1] == '"':
        phrase = [w.lower() for w in _WORD.findall(stripped)]
        return any(words[i:i + len(phrase)] == phrase
                   for i in range(len(words) - len(phrase) + 1))
    return all(any(_term_pattern(term).fullmatch(w) for w in words)
               for term in stripped.split() if _WORD.search(term))


def _term_pattern(term: str) -> re.Pattern[str]:
    wildcards = {"*": r"\w*", "?": r"\w"}
    parts = [wildcards.get(ch, re.escape(ch)) for ch in term.lower() if ch in wildcards
             or _WORD.fullmatch(ch)]
    return re.compile("".join(parts))
