"""Release satisfaction from ServiceNow survey answers, against canned Table API answers
(responses): the queries sent, the averaging and the scale, and bad input."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from pydantic import SecretStr
from relbridge_servicenow import ServiceNowAdapter
from relbridge_servicenow.surveys import SURVEY_FIELD, ServiceNowSurveyConfig

from bridge.config import load_config
from bridge.errors import ConfigError

BASE = "https://acme.service-now.com"
API = f"{BASE}/api/now/table"
FIELDS = ["short_description", SURVEY_FIELD]


def sid(n: int) -> str:
    return f"{n:032x}"


def release(n: int, updated: str = "2025-03-01 10:00:00", mod: str = "3") -> dict[str, Any]:
    return {"sys_id": sid(n), "number": f"RLSE{1000 + n:07d}", "sys_updated_on": updated,
            "sys_mod_count": mod, "correlation_id": "", "short_description": f"Release {n}"}


def answer(n: int, release_n: int, actual: str, text: str = "") -> dict[str, Any]:
    return {"sys_id": sid(900 + n), "instance.trigger_id": sid(release_n), "actual_value": actual,
            "string_value": text}


def params(call: Any) -> dict[str, str]:
    query = parse_qs(urlsplit(call.request.url).query, keep_blank_values=True)
    return {key: values[0] for key, values in query.items()}


def table(call: Any) -> str:
    return urlsplit(call.request.url).path.rsplit("/", 1)[-1]


def adapter(**survey: Any) -> ServiceNowAdapter:
    settings = ServiceNowSurveyConfig(**{"metric": "Overall satisfaction", **survey})
    return ServiceNowAdapter(BASE, "integration", SecretStr("pw"), page_size=2, survey=settings)


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


def test_a_page_of_releases_costs_one_answer_query_and_scores_are_the_mean_on_1_to_5(mocked, caplog) -> None:
    sn = adapter(scale_min=0, scale_max=10, survey="Release feedback")
    mocked.get(f"{API}/rm_release", json={"result": [release(1), release(2)]})
    mocked.get(f"{API}/asmt_metric", json={"result": [{"sys_id": sid(50)}]})  # the question exists
    mocked.get(f"{API}/asmt_metric_result", json={"result": [
        answer(1, 1, "10"), answer(2, 1, "5"),  # 5 and 3 on 1-5
        answer(3, 1, "-1", "7.5"),  # no value of its own: the text is a number (4 on 1-5)
        answer(4, 1, "-1", "N/A"), answer(5, 1, "12"),  # not a number; outside 0-10: left out
    ]})
    mocked.get(f"{API}/rm_release", json={"result": [release(3)]})
    mocked.get(f"{API}/asmt_metric_result", json={"result": []})

    with caplog.at_level(logging.WARNING):
        records = list(sn.list_changed("release", None, FIELDS))

    assert [r.fields[SURVEY_FIELD] for r in records] == ["4.00", "", ""]  # (5+3+4)/3; nobody answered
    assert [r.version for r in records] == ["3/4.00", "3/", "3/"]  # new answers are a change to read
    check, results = params(mocked.calls[1]), params(mocked.calls[2])
    assert (table(mocked.calls[1]), check["sysparm_query"]) == (
        "asmt_metric", "name=Overall satisfaction^metric_type.name=Release feedback")
    assert table(mocked.calls[2]) == "asmt_metric_result"
    assert results["sysparm_query"] == (
        f"instance.trigger_table=rm_release^instance.trigger_idIN{sid(1)},{sid(2)}^instance.state=complete"
        "^metric.name=Overall satisfaction^metric.metric_type.name=Release feedback^ORDERBYsys_id")
    assert results["sysparm_fields"] == "sys_id,instance.trigger_id,actual_value,string_value"
    assert "short_description" in params(mocked.calls[0])["sysparm_fields"]
    assert SURVEY_FIELD not in params(mocked.calls[0])["sysparm_fields"]  # no column: never asked for
    assert sn.calls == {"GET": 5}  # two pages, one answer query each, one check of the question
    [warning] = [r.getMessage() for r in caplog.records if "survey" in r.getMessage()]
    assert "2 answer(s) to 'Overall satisfaction' left out" in warning
    assert "1 not a number" in warning and "1 outside the scale 0-10" in warning and "scale_max" in warning


def test_the_same_ignored_answers_are_reported_once(mocked, caplog) -> None:
    sn = adapter()
    mocked.get(f"{API}/asmt_metric", json={"result": [{"sys_id": sid(50)}]})
    for _ in range(2):
        mocked.get(f"{API}/rm_release/{sid(1)}", json={"result": release(1)})
        mocked.get(f"{API}/asmt_metric_result", json={"result": [answer(1, 1, "4"), answer(2, 1, "-1", "meh")]})
    with caplog.at_level(logging.WARNING):
        first = sn.read("release", sid(1), FIELDS)
        second = sn.read("release", sid(1), FIELDS)
    assert first is not None and second is not None
    assert first.fields[SURVEY_FIELD] == second.fields[SURVEY_FIELD] == "4.00"
    assert len([r for r in caplog.records if "left out" in r.getMessage()]) == 1


def test_nothing_is_asked_when_the_field_is_not_mapped_or_no_question_is_set(mocked) -> None:
    mocked.get(f"{API}/rm_release", json={"result": [release(1)]})
    [record] = adapter().list_changed("release", None, ["short_description"])
    assert SURVEY_FIELD not in record.fields and record.version == "3"
    mocked.get(f"{API}/rm_release", json={"result": [release(1)]})
    plain = ServiceNowAdapter(BASE, "integration", SecretStr("pw"), page_size=2)
    [record] = plain.list_changed("release", None, FIELDS)
    assert SURVEY_FIELD not in record.fields  # not read is not "no score": the stored one stays
    assert plain.calls == {"GET": 1}


def test_answers_that_came_in_since_the_last_poll_bring_their_release_back(mocked) -> None:
    sn = adapter()
    since = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    mocked.get(f"{API}/rm_release", json={"result": [release(1)]})  # updated since: listed anyway
    mocked.get(f"{API}/asmt_metric", json={"result": [{"sys_id": sid(50)}]})
    mocked.get(f"{API}/asmt_metric_result", json={"result": [answer(1, 1, "5")]})
    mocked.get(f"{API}/asmt_metric_result", json={"result": [  # answered since: 1 and 2 (2 not updated)
        {"instance.trigger_id": sid(1)}, {"instance.trigger_id": sid(2)}, {"instance.trigger_id": sid(2)}]})
    mocked.get(f"{API}/rm_release/{sid(2)}", json={"result": release(2, "2025-01-01 00:00:00")})
    mocked.get(f"{API}/asmt_metric_result", json={"result": [answer(2, 2, "2")]})

    records = list(sn.list_changed("release", since, FIELDS))

    assert [(r.id, r.fields[SURVEY_FIELD]) for r in records] == [(sid(1), "5.00"), (sid(2), "2.00")]
    assert params(mocked.calls[3])["sysparm_query"] == (
        "sys_updated_on>=2025-03-01 09:00:00^ORinstance.sys_updated_on>=2025-03-01 09:00:00"
        "^instance.trigger_table=rm_release^instance.state=complete^metric.name=Overall satisfaction"
        "^ORDERBYsys_id")
    assert params(mocked.calls[3])["sysparm_fields"] == "instance.trigger_id"


def test_a_question_the_instance_does_not_have_is_an_error_in_the_check_and_a_warning_in_a_sync(
        mocked, caplog) -> None:
    sn = adapter(metric="Overal satisfaction")
    mocked.get(f"{API}/asmt_metric", json={"result": []})
    mocked.get(f"{API}/asmt_metric", json={"result": [{"name": "Overall satisfaction"}, {"name": "Speed"}]})
    with pytest.raises(ConfigError) as error:
        sn.metadata()
    assert str(error.value).startswith("[servicenow_survey] metric — no survey question named "
                                       "'Overal satisfaction' on the instance (did you mean 'Overall satisfaction'?)")
    assert params(mocked.calls[1])["sysparm_query"] == "metric_type.evaluation_method=survey^ORDERBYname"

    mocked.get(f"{API}/rm_release", json={"result": [release(1)]})
    mocked.get(f"{API}/asmt_metric", json={"result": []})
    mocked.get(f"{API}/asmt_metric", json={"result": []})
    with caplog.at_level(logging.WARNING):
        [record] = sn.list_changed("release", None, FIELDS)
    assert SURVEY_FIELD not in record.fields  # scores stay as they were: never emptied by a typo
    assert any("release satisfaction is not read until it is fixed" in r.getMessage() for r in caplog.records)
    mocked.get(f"{API}/rm_release", json={"result": [release(1)]})
    [again] = sn.list_changed("release", None, FIELDS)  # looked up again only after an hour
    assert SURVEY_FIELD not in again.fields and sn.calls == {"GET": 6}


def test_no_read_access_to_the_survey_tables_says_what_to_grant(mocked) -> None:
    mocked.get(f"{API}/asmt_metric", status=403, json={"error": {"message": "User Not Authorized"},
                                                       "status": "failure"})
    with pytest.raises(ConfigError, match=r"cannot read the survey questions \(asmt_metric\).*read access"):
        adapter().metadata()


@pytest.mark.parametrize(("section", "message"), [
    ('metric = "x"\nscale_min = 5\nscale_max = 1', "scale_max (1) must be above scale_min (5)"),
    ('metric = "a^b"', "cannot name a ServiceNow record"),
    ('metrik = "x"', "unknown key (did you mean 'metric'?)"),
])
def test_bad_settings_are_config_errors_naming_the_key(tmp_path: Path, section: str, message: str) -> None:
    file = tmp_path / "relbridge.toml"
    file.write_text(f"[servicenow_survey]\n{section}\n")
    with pytest.raises(ConfigError) as error:
        load_config(file, env={})
    assert "servicenow_survey" in str(error.value) and message in str(error.value)


def test_the_section_is_read_from_the_file_and_the_environment(tmp_path: Path) -> None:
    file = tmp_path / "relbridge.toml"
    file.write_text('[servicenow_survey]\nmetric = "Overall satisfaction"\n')
    config = load_config(file, env={"RELBRIDGE_SERVICENOW_SURVEY__SCALE_MAX": "10"})
    section = config.servicenow_survey  # type: ignore[attr-defined]
    assert (section.metric, section.scale_min, section.scale_max) == ("Overall satisfaction", 1, 10)
