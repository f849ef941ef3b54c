"""How the Table API shows a stored record: value / display value shapes and reference links.

Stored values are always strings. `sysparm_display_value` picks actual values (`false`),
display values (`true`: choice labels, the referenced record's display column) or both
(`all`: `{"display_value", "value"}` per field); references carry a `link` to the Table API
URL of their target unless `sysparm_exclude_reference_link` is set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.sim.servicenow.schema import (
    CLASS_NAME,
    DATETIME,
    JOURNAL,
    REFERENCE,
    TABLES,
    Column,
    Table,
)
from bridge.sim.servicenow.store import Record, ServiceNowStore
from bridge.sim.servicenow.zones import UserZone

DISPLAY_MODES = ("false", "true", "all")


@dataclass(frozen=True)
class View:
    """What one request asked to see; built once per request, applied to every record."""

    table: Table
    columns: tuple[tuple[str, Column | None, str], ...]  # (output name, column, dot-walk)
    display: str  # "false" | "true" | "all"
    exclude_links: bool
    base_url: str
    zone: UserZone = UserZone()

    @classmethod
    def build(cls, store: ServiceNowStore, table: Table, fields: str, display: str,
              exclude_links: bool, base_url: str, zone: UserZone | None = None) -> View:
        wanted = [f.strip() for f in fields.split(",") if f.strip()]
        columns: list[tuple[str, Column | None, str]] = []
        for name in wanted:
            if name in table.columns:
                columns.append((name, table.columns[name], ""))
                continue
            head, _, tail = name.partition(".")
            column = table.columns.get(head)
            if column is not None and _walkable(store, column, tail):
                columns.append((name, column, tail))  # dot-walked: caused_by.number, task.assignment_group.name
        if not columns:  # none asked for, or all invalid: the instance ignores them
            columns = [(n, c, "") for n, c in table.columns.items()]
        mode = display.lower() if display.lower() in DISPLAY_MODES else "false"
        return cls(table, tuple(columns), mode, exclude_links, base_url, zone or UserZone())


class Renderer:
    """Turns stored records into Table API JSON for one view."""

    def __init__(self, store: ServiceNowStore, view: View) -> None:
        self.store = store
        self.view = view
        # The common case (actual values, no dot-walking) takes a fast path: copy the
        # columns, then dress up the references.
        self._fast = view.display == "false" and not any(walk for _, _, walk in view.columns)
        self._names = [name for name, _, _ in view.columns]
        self._references = [(name, column.reference) for name, column, _ in view.columns
                            if column is not None and column.type == REFERENCE
                            and column.reference]

    def render(self, record: Record) -> dict[str, Any]:
        if self._fast:
            out: dict[str, Any] = {name: record.get(name, "") for name in self._names}
            if not self.view.exclude_links:
                for name, target in self._references:
                    if out[name]:
                        out[name] = {"link": self.link(target, out[name]), "value": out[name]}
            return out
        out = {}
        display = self.view.display
        for name, column, walk in self.view.columns:
            value = record.get(name if not walk else column.name, "")  # type: ignore[union-attr]
            if walk:
                out[name] = self._walked(column, value, walk)  # type: ignore[arg-type]
            elif column is not None and column.type == REFERENCE and column.reference:
                out[name] = self._reference(column.reference, value)
            elif display == "false":
                out[name] = value
            else:
                if column is not None and column.type == JOURNAL:
                    shown = self._journal(record, column)
                else:
                    shown = _display(column, value, self.view.zone)
                out[name] = shown if display == "true" else {"display_value": shown,
                                                               "value": value}
        return out

    def _reference(self, target: str, sys_id: str) -> Any:
        view = self.view
        if view.display == "false":
            if not sys_id or view.exclude_links:
                return sys_id
            return {"link": self.link(target, sys_id), "value": sys_id}
        shown = self.store.display_value(target, sys_id) if sys_id else ""
        if view.display == "true":
            if not sys_id or view.exclude_links:
                return shown
            return {"display_value": shown, "link": self.link(target, sys_id)}
        both: dict[str, str] = {"display_value": shown, "value": sys_id}
        if sys_id and not view.exclude_links:
            both["link"] = self.link(target, sys_id)
        return both

    def _walked(self, column: Column, sys_id: str, tail: str) -> Any:
        *steps, last = tail.split(".")
        target_name = column.reference
        record = self.store.get(target_name, sys_id) if sys_id else None
        for step in steps:  # through further references: task.assignment_group.name
            target = self.store.table(target_name)
            target_name = target.columns[step].reference if target else ""
            next_id = record.get(step, "") if record else ""
            record = self.store.get(target_name, next_id) if next_id else None
        target = self.store.table(target_name)
        value = record.get(last, "") if record else ""
        target_column = target.columns.get(last) if target else None
        if self.view.display == "false":
            return value
        shown = _display(target_column, value, self.view.zone)
        return shown if self.view.display == "true" else {"display_value": shown, "value": value}

    def _journal(self, record: Record, column: Column) -> str:
        """A journal field's display value: its entries, newest first, each headed by when
        (user's zone and format), who and which field, as the instance's activity text is."""
        entries = self.store.journal(record["sys_class_name"], record["sys_id"], column.name)
        lines = []
        for entry in entries:
            who = self.store.find("sys_user", "user_name", entry["sys_created_by"])
            name = who["name"] if who else entry["sys_created_by"]
            when = self.view.zone.display(entry["sys_created_on"])
            lines.append(f"{when} - {name} ({column.label})\n{entry['value']}\n\n")
        return "".join(lines)

    def link(self, table: str, sys_id: str) -> str:
        return f"{self.view.base_url}/api/now/table/{table}/{sys_id}"


def _walkable(store: ServiceNowStore, column: Column, tail: str) -> bool:
    """Whether ``tail`` (``number``, ``assignment_group.name``) leads from the reference
    ``column`` through references only to a column of the table it reaches."""
    *steps, last = tail.split(".")
    target = store.table(column.reference) if column.reference else None
    for step in steps:
        through = target.columns.get(step) if target else None
        target = store.table(through.reference) if through is not None and through.reference else None
    return target is not None and last in target.columns


def _display(column: Column | None, value: str, zone: UserZone) -> str:
    if column is None or not value:
        return value
    if column.type == DATETIME:
        return zone.display(value)
    if column.choices:
        return column.label_of(value)
    if column.type == CLASS_NAME:
        table = TABLES.get(value)
        return table.label if table else value
    return value
