"""Release satisfaction from ServiceNow survey answers (Survey Management, which keeps its
data in the Assessment tables), as the release pseudo-field ``survey_satisfaction``.

The tables: a survey instance (``asmt_assessment_instance``) is one questionnaire sent to
one person; ``trigger_table``/``trigger_id`` name the record it was sent about (a survey
trigger condition on ``rm_release``) and ``state`` becomes ``complete`` once answered.
Each answer is an ``asmt_metric_result`` row: its ``instance``, the question (``metric``, an
``asmt_metric`` with a ``name``, of the survey ``metric.metric_type``), the answer's value
``actual_value`` (-1 where the question's type gives none: not applicable, text, dates) and
``string_value`` (the answer as the person saw it).

A release's score is the mean of the completed answers to the one question named by
``[servicenow_survey] metric`` (and ``survey``, when several surveys ask a question of
that name), each converted from ``scale_min``..``scale_max`` to relbridge's 1-5, two
decimals; "" (no score) for a release nobody answered for. An answer that is no number
(``actual_value`` -1 and a ``string_value`` that is not one either) or lies outside the
scale is left out, counted and reported once in a warning.

Costs: one query per page of releases (``instance.trigger_idIN`` their sys_ids, the
instance's ``trigger_id`` dot-walked into the same answer); more only when a page's
answers exceed ``RESULT_PAGE``. The question's existence is checked by ``check_metric``
(``relbridge mappings check`` and the start-up check: a name the instance does not have
is an error there) and again before reading, at most once an ``RECHECK_SECONDS``: a
question renamed on the instance while relbridge runs then stops the reading with a
warning rather than emptying every release's score. Read only: nothing is written back.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from pydantic import Field, field_validator, model_validator

from bridge.config import Section
from bridge.errors import ConfigError, PermanentError, did_you_mean
from relbridge_servicenow.api import TableApi
from relbridge_servicenow.values import in_lists

log = logging.getLogger(__name__)

SECTION = "servicenow_survey"
#: The release pseudo-field a mapping reads the score from.
SURVEY_FIELD = "survey_satisfaction"
RESULT_TABLE = "asmt_metric_result"
METRIC_TABLE = "asmt_metric"
#: Answers per query: a page of releases with a few answers each fits in one.
RESULT_PAGE = 5000
#: How long a question found on the instance is trusted before it is looked up again.
RECHECK_SECONDS = 3600.0
#: What ServiceNow stores in ``actual_value`` when an answer has no value of its own.
NO_VALUE = -1.0
#: Survey questions read to suggest a name when the configured one does not exist.
SUGGESTIONS = 500
_COLUMNS = ("sys_id", "instance.trigger_id", "actual_value", "string_value")


class ServiceNowSurveyConfig(Section):
    """``[servicenow_survey]``: which survey question scores a release (satisfaction)."""

    # asmt_metric.name of the question ("Overall satisfaction"); unset: no survey is read
    metric: str | None = Field(default=None, min_length=1, max_length=100)
    # asmt_metric_type.name of the survey, when several surveys ask a question of that name
    survey: str | None = Field(default=None, min_length=1, max_length=100)
    scale_min: float = 1  # the question's lowest answer: becomes 1
    scale_max: float = 5  # its highest: becomes 5

    @field_validator("metric", "survey")
    @classmethod
    def _query_safe(cls, value: str | None) -> str | None:
        if value is not None and ("^" in value or "\n" in value or value != value.strip()):
            raise ValueError(f"{value!r} cannot name a ServiceNow record (no '^', line breaks "
                             "or spaces at the ends)")
        return value

    @model_validator(mode="after")
    def _scale_in_order(self) -> Self:
        if not (math.isfinite(self.scale_min) and math.isfinite(self.scale_max)) or self.scale_max <= self.scale_min:
            raise ValueError(f"scale_max ({self.scale_max:g}) must be above scale_min ({self.scale_min:g})")
        return self


class Surveys:
    """Reads the scores of pages of releases for one configured question."""

    def __init__(self, api: TableApi, settings: ServiceNowSurveyConfig, release_table: str = "rm_release") -> None:
        self.api = api
        self.settings = settings
        self.release_table = release_table
        self._checked_at: float | None = None
        self._missing: str | None = None  # why the question cannot be read, once found missing
        self._reported: set[str] = set()  # ignored answers already warned about

    @property
    def enabled(self) -> bool:
        return self.settings.metric is not None

    def fill(self, rows: list[dict[str, Any]]) -> None:
        """Set ``survey_satisfaction`` on a page of release rows (one query); left unset when
        the question cannot be read now (the stored scores stay as they are)."""
        scores = self.scores(str(row["sys_id"]) for row in rows) if rows else None
        if scores is None:
            return
        for row in rows:
            row[SURVEY_FIELD] = scores.get(str(row["sys_id"]), "")

    def answered_since(self, since: str) -> set[str]:
        """The sys_ids of releases with a completed answer to the question changed at or
        after ``since`` (UTC text), or whose survey was completed since: one query."""
        if not self._usable():
            return set()
        query = f"sys_updated_on>={since}^ORinstance.sys_updated_on>={since}^{self._query('')}"
        return {str(row.get("instance.trigger_id") or "")
                for page in self.api.paged(RESULT_TABLE, query=query, fields=("instance.trigger_id",),
                                           page_size=RESULT_PAGE) for row in page} - {""}

    def scores(self, sys_ids: Iterable[str]) -> dict[str, str] | None:
        """The score of each release ("" for none), by sys_id; None when the question
        cannot be read now (the releases' scores are then left as they are)."""
        if not self._usable():
            return None
        ids = sorted({str(i) for i in sys_ids if i})
        answers: dict[str, list[float]] = defaultdict(list)
        ignored: Ignored = Ignored()
        for operand in in_lists(ids):
            query = self._query(f"^instance.trigger_idIN{operand}")
            for page in self.api.paged(RESULT_TABLE, query=query, fields=_COLUMNS, page_size=RESULT_PAGE):
                for row in page:
                    score = self._score(row, ignored)
                    if score is not None:
                        answers[str(row.get("instance.trigger_id") or "")].append(score)
        self._report(ignored)
        return {i: _mean(answers[i]) if answers.get(i) else "" for i in ids}

    def check(self) -> None:
        """``check_metric`` for the configured question (``ConfigError`` when missing); a
        pass counts as the look-up before the next reads."""
        if self.enabled:
            check_metric(self.api, self.settings)
            self._checked_at, self._missing = time.monotonic(), None

    def _usable(self) -> bool:
        now = time.monotonic()
        if not self.enabled:
            return False
        if self._checked_at is not None and now - self._checked_at < RECHECK_SECONDS:
            return self._missing is None
        try:
            check_metric(self.api, self.settings)
            self._missing = None
        except ConfigError as exc:
            self._missing = str(exc)
            log.warning("%s; release satisfaction is not read until it is fixed", exc)
        self._checked_at = now
        return self._missing is None

    def _query(self, releases: str) -> str:
        """Completed answers to the question about releases (``releases``: a further condition)."""
        settings = self.settings
        survey = f"^metric.metric_type.name={settings.survey}" if settings.survey else ""
        return (f"instance.trigger_table={self.release_table}{releases}^instance.state=complete"
                f"^metric.name={settings.metric}{survey}^ORDERBYsys_id")

    def _score(self, row: Mapping[str, Any], ignored: Ignored) -> float | None:
        """One answer on relbridge's 1-5, or None (counted in ``ignored``)."""
        value = _number(row.get("actual_value"))
        if value is None or value == NO_VALUE:
            value = _number(row.get("string_value"))
        low, high = self.settings.scale_min, self.settings.scale_max
        sys_id = str(row.get("sys_id") or "")
        if value is None:
            ignored.not_numbers.add(sys_id)
            return None
        if not low <= value <= high:
            ignored.outside.add(sys_id)
            return None
        return 1 + (value - low) * 4 / (high - low)

    def _report(self, ignored: Ignored) -> None:
        not_numbers, outside = ignored.not_numbers - self._reported, ignored.outside - self._reported
        if not (not_numbers or outside):
            return
        self._reported |= not_numbers | outside
        s = self.settings
        log.warning(
            "ServiceNow survey: %d answer(s) to %r left out of release satisfaction: %d not a "
            "number (not applicable or text), %d outside the scale %g-%g (set [%s] scale_min and "
            "scale_max to the question's range, or metric to a question answered with a number)",
            len(not_numbers) + len(outside), s.metric, len(not_numbers), len(outside),
            s.scale_min, s.scale_max, SECTION)


@dataclass
class Ignored:
    """Answers left out of one read, by result sys_id."""

    not_numbers: set[str] = field(default_factory=set)
    outside: set[str] = field(default_factory=set)


def check_metric(api: TableApi, settings: ServiceNowSurveyConfig) -> None:
    """The configured question exists on the instance (one query; a second, only when it
    does not, for a did-you-mean). ``ConfigError`` naming the setting otherwise."""
    survey = f"^metric_type.name={settings.survey}" if settings.survey else ""
    try:
        if api.list(METRIC_TABLE, query=f"name={settings.metric}{survey}", fields=("sys_id",), limit=1):
            return
        known = api.list(METRIC_TABLE, query="metric_type.evaluation_method=survey^ORDERBYname",
                         fields=("name",), limit=SUGGESTIONS)
    except PermanentError as exc:
        raise ConfigError(f"[{SECTION}] metric — cannot read the survey questions ({METRIC_TABLE}): "
                          f"{exc}; give the integration user read access to the Assessment tables "
                          "or unset the metric") from None
    where = f" in survey {settings.survey!r}" if settings.survey else ""
    hint = did_you_mean(str(settings.metric), {str(r.get("name") or "") for r in known})
    raise ConfigError(f"[{SECTION}] metric — no survey question named {settings.metric!r}{where} on the "
                      f"instance{hint}; set it to the question's name as ServiceNow shows it "
                      f"({METRIC_TABLE}.name)")


def versioned(count: str, row: Mapping[str, Any]) -> str:
    """A release's version: ``sys_mod_count``, and its score when read (new answers leave
    the release's own count as it was, yet they are a change to read)."""
    return f"{count}/{row[SURVEY_FIELD]}" if SURVEY_FIELD in row else count


def _number(value: Any) -> float | None:
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _mean(scores: list[float]) -> str:
    return f"{sum(scores) / len(scores):.2f}"
