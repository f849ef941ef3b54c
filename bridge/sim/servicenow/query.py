"""ServiceNow encoded queries (`sysparm_query`): parsing, matching and ordering.

Grammar as the instance reads it: conditions `<column><operator><value>` joined by `^` (AND)
and `^OR` (OR with the single condition before it); `^NQ` starts a new query OR-ed with the
previous ones; `ORDERBY<column>` / `ORDERBYDESC<column>` sort. pysnow's QueryBuilder glues
`ORDERBY<column>` to its neighbours without a `^`, so order tokens are found anywhere.
Like the real instance (without `glide.invalid_query.returns_no_rows`), parts naming an unknown
column or operator are dropped and the rest of the query still applies. A condition may
dot-walk through reference columns (`instance.trigger_idIN…`, `task.assignment_group.name=…`):
every step but the last must be a reference, and the last a column of the table reached.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bridge.sim.servicenow.schema import Table
from bridge.sim.servicenow.zones import UserZone

Record = dict[str, str]

_CONDITION = re.compile(
    r"([a-z0-9_]+(?:\.[a-z0-9_]+)*)(NOT LIKE|NOT IN|ISNOTEMPTY|ISEMPTY|STARTSWITH|ENDSWITH|BETWEEN|LIKE|IN|"
    r"!=|>=|<=|=|>|<)(.*)",
    re.DOTALL,
)
_DATE_GENERATE = re.compile(r"javascript:\s*gs\.dateGenerate\((.*)\)", re.DOTALL)
_QUOTED = re.compile(r"""['"]([^'"]*)['"]""")
_ESCAPED_CARET = "\x00"


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _resolve_value(raw: str, zone: UserZone) -> str | None:
    """Turn the value literals clients send into plain strings; None if unsupported.

    `gs.dateGenerate(date, time)` is read in the session user's time zone, as the instance
    reads it, and becomes the stored UTC value.
    """
    raw = raw.replace(_ESCAPED_CARET, "^")
    if "javascript:" not in raw:
        return raw
    parts = []
    for piece in raw.split("@"):
        match = _DATE_GENERATE.fullmatch(piece.strip())
        if match is None:
            return None  # other server-side scripts are not simulated
        args = _QUOTED.findall(match.group(1))
        if not args or len(args) > 2:
            return None
        date_time = " ".join(args) if len(args) == 2 else args[0]
        local = date_time if " " in date_time else f"{date_time} 00:00:00"
        utc = zone.to_utc(local)
        if utc is None:
            return None
        parts.append(utc)
    return "@".join(parts)


class Lookup(Protocol):
    """Where dot-walked conditions find the records references point at (the store)."""

    def table(self, name: str) -> Table | None: ...

    def get(self, table: str, sys_id: str) -> Record | None: ...


@dataclass(frozen=True)
class Condition:
    """One `<column><operator><value>` test against a record's stored value (or, dot-walked,
    the value of the record its references lead to: `hops` are (reference column, target
    table) pairs, `column` is then the last step's column)."""

    column: str
    operator: str
    value: str
    numeric: bool = False
    hops: tuple[tuple[str, str], ...] = ()
    lookup: Lookup | None = field(default=None, compare=False)
    # An IN list's values, lower-cased, once: a set look-up per record instead of a scan.
    _members: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.operator in ("IN", "NOT IN") and not self.numeric:
            object.__setattr__(self, "_members", frozenset(v.lower() for v in self.value.split(",")))

    def actual(self, record: Record) -> str:
        current: Record | None = record
        for name, target in self.hops:
            sys_id = current.get(name, "") if current is not None else ""
            current = self.lookup.get(target, sys_id) if sys_id and self.lookup else None
        return current.get(self.column, "") if current is not None else ""

    def test(self, record: Record) -> bool:
        actual = self.actual(record) if self.hops else record.get(self.column, "")
        op = self.operator
        if op == "ISEMPTY":
            return actual == ""
        if op == "ISNOTEMPTY":
            return actual != ""
        if op in ("=", "!="):
            return self._equal(actual, self.value) == (op == "=")
        if op in ("IN", "NOT IN"):
            inside = (any(self._equal(actual, v) for v in self.value.split(",")) if self.numeric
                      else actual.lower() in self._members)
            return inside == (op == "IN")
        if op in ("LIKE", "NOT LIKE"):
            return (self.value.lower() in actual.lower()) == (op == "LIKE")
        if op == "STARTSWITH":
            return actual.lower().startswith(self.value.lower())
        if op == "ENDSWITH":
            return actual.lower().endswith(self.value.lower())
        if actual == "":
            return False  # like SQL NULL: never greater, smaller or between
        if op == "BETWEEN":
            low, _, high = self.value.partition("@")
            return self._compare(low, actual) <= 0 <= self._compare(high, actual)
        result = self._compare(actual, self.value)
        return {">": result > 0, ">=": result >= 0, "<": result < 0, "<=": result <= 0}[op]

    def _equal(self, actual: str, expected: str) -> bool:
        if self.numeric:
            a, b = _number(actual), _number(expected)
            if a is not None and b is not None:
                return a == b
        # String equality ignores case, as the instance's database collation does.
        return actual.lower() == expected.lower()

    def _compare(self, left: str, right: str) -> int:
        """Numbers numerically when both sides are numbers; else as strings (dates sort so)."""
        if self.numeric:
            a, b = _number(left), _number(right)
            if a is not None and b is not None:
                return (a > b) - (a < b)
        return (left > right) - (left < right)


@dataclass(frozen=True)
class OrderBy:
    column: str
    descending: bool = False
    numeric: bool = False

    def key(self, record: Record) -> tuple[int, float, str]:
        value = record.get(self.column, "")
        if value == "":
            return (0, 0.0, "")  # empty sorts first, as NULL does
        if self.numeric:
            number = _number(value)
            if number is not None:
                return (1, number, "")
        return (2, 0.0, value.lower())


@dataclass
class Query:
    """A parsed query: OR-ed groups of AND-ed clauses (each clause an OR of conditions)."""

    groups: list[list[list[Condition]]] = field(default_factory=list)
    order: list[OrderBy] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def matches(self, record: Record) -> bool:
        if not self.groups:
            return True
        return any(
            all(any(c.test(record) for c in clause) for clause in group) for group in self.groups
        )

    def filter(self, records: Iterable[Record]) -> list[Record]:
        if not self.groups:
            return list(records)
        return [r for r in records if self.matches(r)]

    def sort(self, records: list[Record]) -> list[Record]:
        for order in reversed(self.order):
            records.sort(key=order.key, reverse=order.descending)
        return records

    def and_all(self, conditions: Sequence[Condition]) -> None:
        """AND extra conditions (plain `name=value` parameters) into every group."""
        if not conditions:
            return
        clauses = [[c] for c in conditions]
        if not self.groups:
            self.groups.append(clauses)
        else:
            for group in self.groups:
                group.extend(clauses)


def parse_query(text: str, table: Table, zone: UserZone | None = None,
                lookup: Lookup | None = None) -> Query:
    """Parse `sysparm_query` for `table`; unknown columns/operators land in `ignored`, and
    so do dot-walked conditions when no ``lookup`` is given."""
    zone = zone or UserZone()
    query = Query()
    text = text.replace("^^", _ESCAPED_CARET)
    for group_text in text.split("^NQ"):
        group: list[list[Condition]] = []
        for segment in group_text.split("^"):
            is_or = segment.startswith("OR") and not segment.startswith("ORDERBY")
            pieces = _split_order_tokens(segment[2:] if is_or else segment, table, query)
            for index, piece in enumerate(pieces):
                if piece in ("", "EQ"):
                    continue
                condition = _parse_condition(piece, table, zone, lookup)
                if condition is None:
                    query.ignored.append(piece)
                elif is_or and index == 0 and group:
                    group[-1].append(condition)
                else:
                    group.append([condition])
        if group:
            query.groups.append(group)
    return query


def _split_order_tokens(segment: str, table: Table, query: Query) -> list[str]:
    """Pull `ORDERBY[DESC]<column>` tokens out of a segment; return the condition texts left."""
    pieces: list[str] = []
    while True:
        start = segment.find("ORDERBY")
        if start < 0:
            pieces.append(segment)
            return pieces
        pieces.append(segment[:start])
        rest = segment[start + len("ORDERBY"):]
        descending = rest.startswith("DESC")
        if descending:
            rest = rest[len("DESC"):]
        column = _longest_column_prefix(rest, table.columns)
        if column is None:
            bad = re.match(r"[a-z0-9_.]*", rest)
            consumed = bad.group(0) if bad else ""
            query.ignored.append(f"ORDERBY{'DESC' if descending else ''}{consumed}")
            segment = rest[len(consumed):]
            continue
        numeric = table.columns[column].is_numeric
        query.order.append(OrderBy(column, descending, numeric))
        segment = rest[len(column):]


def _longest_column_prefix(text: str, columns: Iterable[str]) -> str | None:
    best: str | None = None
    for name in columns:
        if text.startswith(name) and (best is None or len(name) > len(best)):
            best = name
    return best


def _parse_condition(text: str, table: Table, zone: UserZone, lookup: Lookup | None) -> Condition | None:
    match = _CONDITION.fullmatch(text)
    if match is None:
        return None
    path, operator, raw = match.groups()
    *walk, column_name = path.split(".")
    hops: list[tuple[str, str]] = []
    current: Table | None = table
    for step in walk:
        reference = current.columns.get(step) if current is not None else None
        if reference is None or not reference.reference or lookup is None:
            return None
        hops.append((step, reference.reference))
        current = lookup.table(reference.reference)
    column = current.columns.get(column_name) if current is not None else None
    if column is None:
        return None
    value = _resolve_value(raw, zone)
    if value is None or (operator == "BETWEEN" and "@" not in value):
        return None
    return Condition(column_name, operator, value, column.is_numeric, tuple(hops), lookup)


def plain_conditions(
    params: Iterable[tuple[str, str]], table: Table, to_value: Callable[[str, str], str]
) -> list[Condition]:
    """`name=value` request parameters as equality conditions (display values allowed)."""
    conditions = []
    for name, raw in params:
        column = table.columns.get(name)
        if column is None or name.startswith("sysparm_"):
            continue
        conditions.append(Condition(name, "=", to_value(name, raw), column.is_numeric))
    return conditions
