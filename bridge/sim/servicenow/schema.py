"""Table definitions of the simulated ServiceNow instance.

Describes the columns a real instance has for the tables relbridge uses (release management,
change, incident) closely enough that clients see the same field names, types, choice values
and reference targets. The same definitions produce the `sys_dictionary` and `sys_choice`
rows a client reads to discover that schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

#: `internal_type` values as the real `sys_dictionary` names them.
STRING, INTEGER, DATETIME, REFERENCE, GUID, BOOLEAN, JOURNAL, DURATION, DECIMAL, DOCUMENT_ID = (
    "string", "integer", "glide_date_time", "reference", "GUID", "boolean", "journal_input",
    "glide_duration", "decimal", "document_id",
)
CLASS_NAME = "sys_class_name"

#: Written by the instance itself; a client's values for them are ignored.
SYS_FIELDS = (
    "sys_id", "sys_created_on", "sys_created_by", "sys_updated_on", "sys_updated_by",
    "sys_mod_count", "sys_class_name",
)


@dataclass(frozen=True)
class Column:
    """One column: what `sys_dictionary` says about it."""

    name: str
    label: str
    type: str = STRING
    reference: str = ""  # target table of a reference column
    choices: tuple[tuple[str, str], ...] = ()  # (value, label) in display order
    max_length: int = 40
    default: str = ""

    @property
    def is_numeric(self) -> bool:
        return self.type in (INTEGER, DECIMAL)

    def label_of(self, value: str) -> str:
        for choice_value, choice_label in self.choices:
            if choice_value == value:
                return choice_label
        return value

    def value_of_label(self, text: str) -> str | None:
        """The stored value for a choice label (case-insensitive), None if there is none."""
        lowered = text.lower()
        for choice_value, choice_label in self.choices:
            if choice_label.lower() == lowered:
                return choice_value
        return None


@dataclass(frozen=True)
class Table:
    """A table: its columns (sys columns included), record numbering and display column."""

    name: str
    label: str
    columns: dict[str, Column]
    number_prefix: str = ""
    number_start: int = 0
    display_column: str = ""
    extends: str = ""

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(self.columns)

    def format_number(self, n: int) -> str:
        return f"{self.number_prefix}{n:07d}"


def _sys_columns(table: str) -> list[Column]:
    return [
        Column("sys_id", "Sys ID", GUID, max_length=32),
        Column("sys_created_on", "Created", DATETIME),
        Column("sys_created_by", "Created by"),
        Column("sys_updated_on", "Updated", DATETIME),
        Column("sys_updated_by", "Updated by"),
        Column("sys_mod_count", "Updates", INTEGER, default="0"),
        Column("sys_class_name", "Class", CLASS_NAME, max_length=80, default=table),
    ]


def _task_columns() -> list[Column]:
    """Columns every `task` extension has (change_request, incident, planned_task...)."""
    return [
        Column("number", "Number"),
        Column("short_description", "Short description", max_length=160),
        Column("description", "Description", max_length=4000),
        Column("assigned_to", "Assigned to", REFERENCE, reference="sys_user", max_length=32),
        Column("assignment_group", "Assignment group", REFERENCE, reference="sys_user_group",
               max_length=32),
        Column("active", "Active", BOOLEAN, default="true"),
        Column("correlation_id", "Correlation ID", max_length=100),
        Column("correlation_display", "Correlation display", max_length=100),
        Column("work_start", "Actual start", DATETIME),
        Column("work_end", "Actual end", DATETIME),
        # Journal fields keep nothing on the record: each write adds a sys_journal_field row.
        Column("work_notes", "Work notes", JOURNAL, max_length=4000),
        Column("comments", "Additional comments", JOURNAL, max_length=4000),
    ]


def _table(name: str, label: str, columns: list[Column], **kw: object) -> Table:
    all_columns = {c.name: c for c in [*columns, *_sys_columns(name)]}
    return Table(name=name, label=label, columns=all_columns, **kw)  # type: ignore[arg-type]


RELEASE_STATES = (
    ("-5", "Pending"), ("1", "Open"), ("2", "Work in Progress"), ("3", "Closed Complete"),
    ("4", "Closed Incomplete"), ("7", "Closed Skipped"),
)
CHANGE_STATES = (
    ("-5", "New"), ("-4", "Assess"), ("-3", "Authorize"), ("-2", "Scheduled"),
    ("-1", "Implement"), ("0", "Review"), ("3", "Closed"), ("4", "Canceled"),
)
APPROVALS = (
    ("not requested", "Not Yet Requested"), ("requested", "Requested"),
    ("approved", "Approved"), ("rejected", "Rejected"),
)
CHANGE_TYPES = (("standard", "Standard"), ("normal", "Normal"), ("emergency", "Emergency"))
RISKS = (("1", "Very High"), ("2", "High"), ("3", "Moderate"), ("4", "Low"))
CLOSE_CODES = (
    ("successful", "Successful"), ("successful_issues", "Successful with issues"),
    ("unsuccessful", "Unsuccessful"),
)
PRIORITIES = (
    ("1", "1 - Critical"), ("2", "2 - High"), ("3", "3 - Moderate"), ("4", "4 - Low"),
    ("5", "5 - Planning"),
)
INCIDENT_STATES = (
    ("1", "New"), ("2", "In Progress"), ("3", "On Hold"), ("6", "Resolved"), ("7", "Closed"),
    ("8", "Canceled"),
)

TASK = _table(
    "task", "Task", [
        *_task_columns(),
        Column("state", "State", INTEGER, default="1"),
        Column("priority", "Priority", INTEGER, choices=PRIORITIES, default="4"),
    ],
    number_prefix="TASK", number_start=10001, display_column="number",
)
PLANNED_TASK = _table(
    "planned_task", "Planned task", [
        *_task_columns(),
        Column("state", "State", INTEGER, default="-5"),
        Column("priority", "Priority", INTEGER, choices=PRIORITIES, default="4"),
        Column("start_date", "Planned start date", DATETIME),
        Column("end_date", "Planned end date", DATETIME),
    ],
    number_prefix="PTASK", number_start=10001, display_column="number", extends="task",
)
RM_RELEASE = _table(
    "rm_release", "Release", [
        *_task_columns(),
        Column("state", "State", INTEGER, choices=RELEASE_STATES, default="-5"),
        Column("priority", "Priority", INTEGER, choices=PRIORITIES, default="4"),
        Column("start_date", "Planned start date", DATETIME),
        Column("end_date", "Planned end date", DATETIME),
    ],
    number_prefix="RLSE", number_start=1001, display_column="number", extends="planned_task",
)
CHANGE_REQUEST = _table(
    "change_request", "Change Request", [
        *_task_columns(),
        Column("state", "State", INTEGER, choices=CHANGE_STATES, default="-5"),
        Column("approval", "Approval", choices=APPROVALS, default="not requested"),
        Column("type", "Type", choices=CHANGE_TYPES, default="normal"),
        Column("risk", "Risk", INTEGER, choices=RISKS, default="3"),
        Column("priority", "Priority", INTEGER, choices=PRIORITIES, default="4"),
        Column("start_date", "Planned start date", DATETIME),
        Column("end_date", "Planned end date", DATETIME),
        Column("close_code", "Close code", choices=CLOSE_CODES),
        Column("close_notes", "Close notes", max_length=4000),
        Column("opened_at", "Opened", DATETIME),  # task.opened_at, inherited as on incident
        Column("implementation_plan", "Implementation plan", max_length=4000),
        Column("backout_plan", "Backout plan", max_length=4000),
        Column("test_plan", "Test plan", max_length=4000),
        Column("cab_required", "CAB required", BOOLEAN, default="false"),
        Column("cab_date_time", "CAB date", DATETIME),
    ],
    number_prefix="CHG", number_start=30001, display_column="number", extends="task",
)
INCIDENT = _table(
    "incident", "Incident", [
        *_task_columns(),
        Column("state", "State", INTEGER, choices=INCIDENT_STATES, default="1"),
        Column("priority", "Priority", INTEGER, choices=PRIORITIES, default="5"),
        Column("caused_by", "Caused by Change", REFERENCE, reference="change_request",
               max_length=32),
        Column("rfc", "Change Request", REFERENCE, reference="change_request", max_length=32),
        Column("opened_at", "Opened", DATETIME),
        Column("resolved_at", "Resolved", DATETIME),
    ],
    number_prefix="INC", number_start=10001, display_column="number", extends="task",
)
RM_RELEASE_PHASE = _table(
    "rm_release_phase", "Release Phase", [
        *_task_columns(),
        Column("state", "State", INTEGER, choices=RELEASE_STATES, default="-5"),
        Column("priority", "Priority", INTEGER, choices=PRIORITIES, default="4"),
        Column("release", "Release", REFERENCE, reference="rm_release", max_length=32),
        Column("start_date", "Planned start date", DATETIME),
        Column("end_date", "Planned end date", DATETIME),
    ],
    number_prefix="RPHS", number_start=1001, display_column="number", extends="planned_task",
)
RM_TASK = _table(
    "rm_task", "Release Task", [
        *_task_columns(),
        Column("state", "State", INTEGER, choices=RELEASE_STATES, default="-5"),
        Column("priority", "Priority", INTEGER, choices=PRIORITIES, default="4"),
        Column("release", "Release", REFERENCE, reference="rm_release", max_length=32),
        Column("phase", "Phase", REFERENCE, reference="rm_release_phase", max_length=32),
        Column("start_date", "Planned start date", DATETIME),
        Column("end_date", "Planned end date", DATETIME),
    ],
    number_prefix="RTSK", number_start=1001, display_column="number", extends="planned_task",
)
TASK_TIME_WORKED = _table(
    "task_time_worked", "Time Worked", [
        Column("task", "Task", REFERENCE, reference="task", max_length=32),
        Column("user", "User", REFERENCE, reference="sys_user", max_length=32),
        Column("time_worked", "Time worked", DURATION),
        Column("time_in_seconds", "Time in seconds", INTEGER, default="0"),
        Column("comments", "Comments", max_length=4000),
    ],
)
RM_M2M_RELEASE_TASK = _table(
    "rm_m2m_release_task", "Release Item", [
        Column("release", "Release", REFERENCE, reference="rm_release", max_length=32),
        Column("task", "Task", REFERENCE, reference="change_request", max_length=32),
    ],
)
SYS_USER = _table(
    "sys_user", "User", [
        Column("user_name", "User ID"),
        Column("name", "Name", max_length=151),
        Column("first_name", "First name", max_length=50),
        Column("last_name", "Last name", max_length=50),
        Column("email", "Email", max_length=100),
        Column("active", "Active", BOOLEAN, default="true"),
        # Empty means the instance's default (glide.sys.default.tz, UTC here); display values
        # and gs.dateGenerate() literals are read in this zone and date format.
        Column("time_zone", "Time zone", max_length=40),
        Column("date_format", "Date format", max_length=40),
    ],
    display_column="name",
)
SYS_USER_GROUP = _table(
    "sys_user_group", "Group", [
        Column("name", "Name", max_length=80),
        Column("description", "Description", max_length=1000),
        Column("active", "Active", BOOLEAN, default="true"),
    ],
    display_column="name",
)
SYS_DB_OBJECT = _table(
    "sys_db_object", "Table", [
        Column("name", "Name", max_length=80),
        Column("label", "Label", max_length=80),
        Column("super_class", "Extends table", REFERENCE, reference="sys_db_object",
               max_length=32),
        Column("number_ref", "Auto number", max_length=32),
    ],
    display_column="label",
)
SYS_JOURNAL_FIELD = _table(
    "sys_journal_field", "Journal Entry", [
        Column("name", "Table", max_length=80),
        Column("element_id", "Element ID", GUID, max_length=32),
        Column("element", "Element", max_length=80),
        Column("value", "Value", max_length=4000),
    ],
)
SYS_DICTIONARY = _table(
    "sys_dictionary", "Dictionary Entry", [
        Column("name", "Table", max_length=80),
        Column("element", "Column name", max_length=80),
        Column("column_label", "Column label", max_length=80),
        Column("internal_type", "Type", max_length=32),
        Column("reference", "Reference", max_length=80),
        Column("max_length", "Max length", INTEGER),
        Column("default_value", "Default value", max_length=512),
        Column("mandatory", "Mandatory", BOOLEAN, default="false"),
        Column("active", "Active", BOOLEAN, default="true"),
    ],
    display_column="element",
)
SYS_CHOICE = _table(
    "sys_choice", "Choices", [
        Column("name", "Table", max_length=80),
        Column("element", "Element", max_length=80),
        Column("value", "Value", max_length=40),
        Column("label", "Label", max_length=100),
        Column("sequence", "Sequence", INTEGER),
        Column("language", "Language", default="en"),
        Column("inactive", "Inactive", BOOLEAN, default="false"),
    ],
    display_column="label",
)

SYS_AUDIT = _table(
    "sys_audit", "Sys Audit", [
        Column("tablename", "Table name", max_length=80),
        Column("fieldname", "Field name", max_length=80),
        Column("documentkey", "Document key", GUID, max_length=32),
        Column("user", "User", max_length=255),
        Column("oldvalue", "Old value", max_length=8000),
        Column("newvalue", "New value", max_length=8000),
        Column("reason", "Reason", max_length=255),
        Column("record_checkpoint", "Record checkpoint", INTEGER),
    ],
)
# Surveys (Survey Management, on the Assessment tables): a survey definition
# (`asmt_metric_type`), its questions (`asmt_metric`), one instance per person asked
# (`asmt_assessment_instance`, `trigger_table`/`trigger_id` naming the record it is about) and
# one result row per answer (`asmt_metric_result`, `actual_value` the answer's value, -1 for
# none, `string_value` as the person saw it).
ASMT_METRIC_TYPE = _table(
    "asmt_metric_type", "Metric Type", [
        Column("name", "Name", max_length=100),
        Column("evaluation_method", "Evaluation method", choices=(
            ("assessment", "Assessment"), ("survey", "Survey"), ("quiz", "Quiz"),
            ("attestation", "Attestation")), default="survey"),
        Column("active", "Active", BOOLEAN, default="true"),
    ],
    display_column="name",
)
ASMT_METRIC = _table(
    "asmt_metric", "Metric", [
        Column("name", "Name", max_length=100),
        Column("question", "Question", max_length=1000),
        Column("metric_type", "Metric type", REFERENCE, reference="asmt_metric_type", max_length=32),
        Column("datatype", "Data type", choices=(
            ("scale", "Scale"), ("numericscale", "Numeric Scale"), ("choice", "Choice"),
            ("string", "String"), ("boolean", "Yes / No")), default="scale"),
        Column("min", "Min", INTEGER, default="0"),
        Column("max", "Max", INTEGER, default="0"),
        Column("active", "Active", BOOLEAN, default="true"),
    ],
    display_column="name",
)
ASMT_ASSESSMENT_INSTANCE = _table(
    "asmt_assessment_instance", "Assessment Instance", [
        Column("number", "Number"),
        Column("metric_type", "Metric type", REFERENCE, reference="asmt_metric_type", max_length=32),
        Column("user", "Assigned to", REFERENCE, reference="sys_user", max_length=32),
        Column("state", "State", choices=(
            ("ready", "Ready to take"), ("wip", "In progress"), ("complete", "Complete"),
            ("canceled", "Canceled")), default="ready"),
        Column("trigger_table", "Trigger table", max_length=80),
        Column("trigger_id", "Trigger id", DOCUMENT_ID, max_length=32),
        Column("taken_on", "Taken on", DATETIME),
    ],
    number_prefix="AINST", number_start=10001, display_column="number",
)
ASMT_METRIC_RESULT = _table(
    "asmt_metric_result", "Metric Result", [
        Column("instance", "Instance", REFERENCE, reference="asmt_assessment_instance", max_length=32),
        Column("metric", "Metric", REFERENCE, reference="asmt_metric", max_length=32),
        Column("user", "Assigned to", REFERENCE, reference="sys_user", max_length=32),
        Column("actual_value", "Actual value", DECIMAL),
        Column("string_value", "String value", max_length=4000),
        Column("source_table", "Source table", max_length=80),
        Column("source_id", "Source", DOCUMENT_ID, max_length=32),
    ],
)
SURVEY_TABLES = (ASMT_METRIC_TYPE, ASMT_METRIC, ASMT_ASSESSMENT_INSTANCE, ASMT_METRIC_RESULT)

#: Tables whose inserts and updates the instance records in `sys_audit`, one row per field
#: (audited tables, as the "Audit" flag of their dictionary entries makes them).
AUDITED_TABLES = frozenset({"rm_release", "change_request", "incident"})

#: The tables a fresh instance has, by name.
TABLES: dict[str, Table] = {
    t.name: t for t in (TASK, PLANNED_TASK, RM_RELEASE, RM_RELEASE_PHASE, RM_TASK,
                        RM_M2M_RELEASE_TASK, CHANGE_REQUEST, INCIDENT, TASK_TIME_WORKED,
                        SYS_USER, SYS_USER_GROUP, SYS_DB_OBJECT, SYS_DICTIONARY, SYS_CHOICE,
                        SYS_AUDIT, SYS_JOURNAL_FIELD, *SURVEY_TABLES)
}
#: The tables whose schema `sys_dictionary` / `sys_choice` describe: every table relbridge
#: reads or writes (DESIGN §7), so a client can discover each one's columns and choices.
DESCRIBED_TABLES = (RM_RELEASE, RM_RELEASE_PHASE, RM_TASK, RM_M2M_RELEASE_TASK, CHANGE_REQUEST,
                    INCIDENT, TASK_TIME_WORKED, SYS_JOURNAL_FIELD, *SURVEY_TABLES)


def descendants(name: str) -> tuple[str, ...]:
    """`name` and every table extending it, nearest first (`task` -> change_request, ...)."""
    found = [name]
    for current in found:
        found.extend(t.name for t in TABLES.values() if t.extends == current)
    return tuple(found)


def table_rows() -> Iterator[dict[str, str]]:
    """`sys_db_object` rows, parents before children (`super_class` is filled in by the seed)."""
    for table in sorted(TABLES.values(), key=lambda t: len(ancestors(t.name))):
        yield {"name": table.name, "label": table.label, "super_class": table.extends}


def ancestors(name: str) -> tuple[str, ...]:
    chain: list[str] = []
    table = TABLES.get(name)
    while table is not None and table.extends and table.extends not in chain:
        chain.append(table.extends)
        table = TABLES.get(table.extends)
    return tuple(chain)


def dictionary_rows() -> Iterator[dict[str, str]]:
    """`sys_dictionary` rows for the described tables: one collection row plus one per column."""
    for table in DESCRIBED_TABLES:
        yield {"name": table.name, "element": "", "column_label": table.label,
               "internal_type": "collection", "reference": "", "max_length": "40",
               "default_value": ""}
        for column in table.columns.values():
            yield {
                "name": table.name,
                "element": column.name,
                "column_label": column.label,
                "internal_type": column.type,
                "reference": column.reference,
                "max_length": str(column.max_length),
                "default_value": column.default if column.name != "sys_class_name" else "",
            }


def choice_rows() -> Iterator[dict[str, str]]:
    """`sys_choice` rows (value, label, sequence) for every choice column described."""
    for table in DESCRIBED_TABLES:
        for column in table.columns.values():
            for sequence, (value, label) in enumerate(column.choices):
                yield {"name": table.name, "element": column.name, "value": value,
                       "label": label, "sequence": str(sequence * 100)}
