"""The JQL subset relbridge needs, parsed strictly.

Supported: `AND`-joined clauses (parentheses allowed) over project, issuetype, status,
fixVersion, affectedVersion, labels, key/id, resolution, created and updated, with `=`,
`!=`, `IN`, `NOT IN`, `IS [NOT] EMPTY`, and `> >= < <=` on dates (absolute
`"yyyy/MM/dd HH:mm"`, `"yyyy-MM-dd"` or relative `-5m`, `-2h`, `-1d`, `-1w`); then
`ORDER BY` updated, created, key or id. Anything else (OR, NOT, functions, `~`, other
fields) is refused with a Jira-style error instead of being answered wrongly.

`parse_jql` only checks syntax; `jira_store` resolves names to ids and evaluates.
"""

from __future__ import annotations

import re
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
}
DATE_FIELDS = frozenset({"created", "updated"})
SORT_FIELDS: dict[str, str] = {"updated": "updated", "updateddate": "updated",
                               "created": "created", "createddate": "created",
                               "key": "key", "issuekey": "key", "id": "key"}
#: Real Jira fields outside the subset: refused as unsupported rather than as unknown.
OTHER_JIRA_FIELDS = frozenset({
    "summary", "description", "text", "comment", "environment", "assignee", "reporter",
    "creator", "watcher", "voter", "priority", "component", "sprint", "parent", "epic link",
    "due", "duedate", "resolved", "resolutiondate", "lastviewed", "filter", "level",
    "originalestimate", "remainingestimate", "timespent", "votes", "watchers", "category",
    "issuelinktype", "attachments", "statuscategory"})
RESERVED = frozenset("+;?|*%^$#@[]{}")
EQUALITY_OPS = frozenset({"=", "!=", "in", "not in"})
RANGE_OPS = frozenset({"<", "<=", ">", ">="})
EMPTY_OPS = frozenset({"is", "is not"})
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
class SortKey:
    field: str
    descending: bool


@dataclass
class Query:
    clauses: list[Clause] = field(default_factory=list)
    order: list[SortKey] = field(default_factory=list)

    @property
    def bounded(self) -> bool:
        return bool(self.clauses)


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
            self.parse_and(query, depth=0)
        if self.is_word("order"):
            self.take()
            self.expect_word("by")
            query.order = self.parse_order()
        token = self.peek()
        if token.kind != "end":
            if token.kind == "word" and token.lower == "or":
                raise unsupported("the OR operator")
            raise syntax_error(f"Expecting either 'OR' or 'AND' but got '{token.text}'. "
                               f"(line 1, character {token.position})")
        return query

    def parse_and(self, query: Query, depth: int) -> None:
        self.parse_term(query, depth)
        while True:
            if self.is_word("and"):
                self.take()
                self.parse_term(query, depth)
            elif self.is_word("or"):
                raise unsupported("the OR operator")
            else:
                return

    def parse_term(self, query: Query, depth: int) -> None:
        token = self.peek()
        if token.kind == "punct" and token.text == "(":
            self.take()
            self.parse_and(query, depth + 1)
            closing = self.take()
            if closing.text != ")" or closing.kind != "punct":
                raise syntax_error(f"Expecting ')' but got '{closing.text}'. "
                                   f"(line 1, character {closing.position})")
            return
        if token.kind == "word" and token.lower == "not":
            raise unsupported("the NOT operator")
        query.clauses.append(self.parse_clause())

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
            if token.text in ("~", "!~"):
                raise unsupported(f"the '{token.text}' operator")
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
            return
        if None in values:
            raise syntax_error(f"The operator '{op}' cannot be used with EMPTY for field "
                               f"'{written}'.")
        if op in RANGE_OPS and name not in DATE_FIELDS:
            raise JqlError(f"The operator '{op}' is not supported by the '{written}' field.")

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
