"""The canonical record: what relbridge believes a release, change or incident is.

Both systems are mapped into these models and out of them (see ``mapping.py``). Field
names here are the names used in mapping files, history rows and KPI reports.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from bridge.timeutil import as_utc


class System(StrEnum):
    SERVICENOW = "servicenow"
    JIRA = "jira"


#: The systems' names, in the order relbridge visits them.
SYSTEMS: tuple[str, ...] = tuple(system.value for system in System)


class Entity(StrEnum):
    RELEASE = "release"
    CHANGE = "change"
    INCIDENT = "incident"


class ReleaseState(StrEnum):
    PLANNED = "planned"
    IN_PROGRESS = "in_progress"
    AUTHORIZED = "authorized"
    DEPLOYING = "deploying"
    DEPLOYED = "deployed"
    CLOSED = "closed"
    ROLLED_BACK = "rolled_back"
    CANCELLED = "cancelled"


class ChangeState(StrEnum):
    NEW = "new"
    ASSESS = "assess"
    AUTHORIZE = "authorize"
    SCHEDULED = "scheduled"
    IMPLEMENT = "implement"
    REVIEW = "review"
    CLOSED = "closed"
    CANCELED = "canceled"


class Approval(StrEnum):
    NOT_REQUESTED = "not_requested"
    REQUESTED = "requested"
    APPROVED = "approved"
    REJECTED = "rejected"


class ChangeType(StrEnum):
    NORMAL = "normal"
    STANDARD = "standard"
    EMERGENCY = "emergency"


class CloseCode(StrEnum):
    SUCCESSFUL = "successful"
    SUCCESSFUL_ISSUES = "successful_issues"
    UNSUCCESSFUL = "unsuccessful"


class IncidentState(StrEnum):
    NEW = "new"
    IN_PROGRESS = "in_progress"
    ON_HOLD = "on_hold"
    RESOLVED = "resolved"
    CLOSED = "closed"
    CANCELED = "canceled"


# Canonical keys are the human key of the record where it was born (RLSE0001001,
# CHG0030001, OPS-12, OPS-V10000): readable in both systems, stable, and usable in a
# Jira label (``relbridge-<KEY>``), so only letters, digits, '-', '_' and '.'.
KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


def _check_key(value: str) -> str:
    if not KEY_PATTERN.match(value):
        raise ValueError(f"{value!r} is not a valid key (letters, digits, '-', '_', '.'; at most 64)")
    return value


Key = Annotated[str, AfterValidator(_check_key)]
#: A person, by e-mail address (the same person in every system), lower-cased; "" for nobody.
Email = Annotated[str, AfterValidator(lambda value: value.strip().lower())]
UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]


def json_value(value: Any) -> Any:
    """``value`` as the canonical record stores it (``sync_fields()``): one text form per
    instant, so ``...Z`` and ``...+00:00`` of the same time compare equal."""
    if isinstance(value, datetime):
        return as_utc(value).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


class ExternalRef(BaseModel):
    """Where a canonical record lives in one system."""

    model_config = ConfigDict(extra="forbid")

    system: System
    id: str = Field(min_length=1)
    key: str | None = None  # ServiceNow number, Jira issue key or version name
    url: str | None = None
    version: str | None = None  # sys_mod_count, or Jira's `updated`
    updated_at: UtcDatetime | None = None


class CanonicalRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    entity: ClassVar[Entity]
    key: Key
    refs: dict[System, ExternalRef] = Field(default_factory=dict)

    def sync_fields(self) -> dict[str, Any]:
        """The fields mappings may read and write (everything but key and refs)."""
        return self.model_dump(mode="json", exclude={"key", "refs"})


def _check_order(start: date | datetime | None, end: date | datetime | None, what: str) -> None:
    if start is not None and end is not None and end < start:
        raise ValueError(f"{what}: end {end} is before start {start}")


class Release(CanonicalRecord):
    entity: ClassVar[Entity] = Entity.RELEASE

    name: str = Field(min_length=1, max_length=255)
    description: str = ""
    state: ReleaseState = ReleaseState.PLANNED
    planned_start: UtcDatetime | None = None
    planned_end: UtcDatetime | None = None
    actual_start: UtcDatetime | None = None
    actual_end: UtcDatetime | None = None
    owner: str | None = None
    change_requests: list[Key] = Field(default_factory=list)
    incidents: list[Key] = Field(default_factory=list)
    revision_count: int = Field(default=0, ge=0)
    baseline_planned_end: UtcDatetime | None = None
    # 1 poor … 5 excellent; mapped, KPIs only. Not always whole: a mean of survey answers.
    satisfaction: float | None = Field(default=None, ge=1, le=5)

    @model_validator(mode="after")
    def _dates_in_order(self) -> Release:
        _check_order(self.planned_start, self.planned_end, "planned dates")
        _check_order(self.actual_start, self.actual_end, "actual dates")
        return self


class ChangeRequest(CanonicalRecord):
    entity: ClassVar[Entity] = Entity.CHANGE

    summary: str = Field(min_length=1, max_length=255)
    description: str = ""  # plain text (Jira wiki markup is read as the text it shows)
    assignee: Email = ""  # matched by e-mail across the systems (bridge.engine.users)
    state: ChangeState = ChangeState.NEW
    approval: Approval = Approval.NOT_REQUESTED
    type: ChangeType = ChangeType.NORMAL
    risk: int | None = Field(default=None, ge=1, le=4)  # 1 very high … 4 low, as ServiceNow
    planned_start: UtcDatetime | None = None
    planned_end: UtcDatetime | None = None
    close_code: CloseCode | None = None
    release: Key | None = None
    opened_at: UtcDatetime | None = None  # when the change was raised: DORA's lead time starts here
    # Readiness (``[gate] require_change_fields`` / ``require_cab``): what was planned for
    # the change and when the CAB looked at it.
    implementation_plan: str = ""
    backout_plan: str = ""
    test_plan: str = ""
    cab_date: UtcDatetime | None = None

    @model_validator(mode="after")
    def _dates_in_order(self) -> ChangeRequest:
        _check_order(self.planned_start, self.planned_end, "planned dates")
        return self


class Incident(CanonicalRecord):
    entity: ClassVar[Entity] = Entity.INCIDENT

    summary: str = Field(min_length=1, max_length=255)
    description: str = ""  # plain text, as for changes
    assignee: Email = ""  # as for changes
    state: IncidentState = IncidentState.NEW
    priority: int = Field(default=4, ge=1, le=5)
    caused_by_change: Key | None = None
    caused_by_release: Key | None = None  # derived through the change when not set
    opened_at: UtcDatetime | None = None
    resolved_at: UtcDatetime | None = None

    @model_validator(mode="after")
    def _dates_in_order(self) -> Incident:
        _check_order(self.opened_at, self.resolved_at, "incident dates")
        return self


MODELS: dict[Entity, type[CanonicalRecord]] = {
    Entity.RELEASE: Release,
    Entity.CHANGE: ChangeRequest,
    Entity.INCIDENT: Incident,
}


def model_for(entity: Entity | str) -> type[CanonicalRecord]:
    return MODELS[Entity(entity)]
