"""The simulated instance serves survey answers (the Assessment tables) and groups as the
Table API does: dot-walked conditions and fields through several references, reference
fields as ``{link, value}``, display values, numeric comparison of decimals.

Tables and columns as ServiceNow documents them: survey instances are
``asmt_assessment_instance`` rows (state Ready to take / In progress / Complete / Canceled;
https://docs.servicenow.com/bundle/vancouver-servicenow-platform/page/administer/survey-administration/task/t_ViewSurveyInstance.html),
answers are ``asmt_metric_result`` rows with ``instance``, ``metric``, ``actual_value`` and
``string_value``
(https://docs.servicenow.com/bundle/madrid-servicenow-platform/page/administer/survey-administration/reference/r_MetricResultFieldNames.html).
"""

from __future__ import annotations

from typing import Any

import pysnow
import requests

AUTH = ("admin", "admin")


def post(url: str, table: str, **values: object) -> dict[str, Any]:
    response = requests.post(f"{url}/api/now/table/{table}", json=values, auth=AUTH, timeout=5)
    assert response.status_code == 201, response.text
    return response.json()["result"]


def rows(url: str, table: str, **params: str) -> list[dict[str, Any]]:
    response = requests.get(f"{url}/api/now/table/{table}", params=params, auth=AUTH, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()["result"]


def survey(url: str) -> dict[str, Any]:
    """A survey with one question, two releases, and answers in three instances."""
    kind = post(url, "asmt_metric_type", name="Release feedback", evaluation_method="survey")
    metric = post(url, "asmt_metric", name="Overall satisfaction", metric_type=kind["sys_id"],
                  datatype="numericscale", min=1, max=5)
    other = post(url, "asmt_metric", name="Comments", metric_type=kind["sys_id"], datatype="string")
    one, two = (post(url, "rm_release", short_description=f"R{n}") for n in (1, 2))
    made: dict[str, Any] = {"metric": metric, "releases": (one, two)}
    for release, state, value in ((one, "complete", "4"), (one, "wip", "1"), (two, "complete", "2.5")):
        instance = post(url, "asmt_assessment_instance", metric_type=kind["sys_id"], state=state,
                        trigger_table="rm_release", trigger_id=release["sys_id"])
        post(url, "asmt_metric_result", instance=instance["sys_id"], metric=metric["sys_id"], actual_value=value)
        post(url, "asmt_metric_result", instance=instance["sys_id"], metric=other["sys_id"],
             actual_value="-1", string_value="fine")
    return made


def test_answers_are_found_through_their_instance_and_question(servicenow_url: str) -> None:
    made = survey(servicenow_url)
    one, two = made["releases"]
    found = rows(servicenow_url, "asmt_metric_result", sysparm_fields="instance.trigger_id,actual_value",
                 sysparm_query=(f"instance.trigger_table=rm_release^instance.trigger_idIN{one['sys_id']},"
                                f"{two['sys_id']}^instance.state=complete^metric.name=overall satisfaction"
                                "^ORDERBYactual_value"))
    assert found == [{"instance.trigger_id": two["sys_id"], "actual_value": "2.5"},
                     {"instance.trigger_id": one["sys_id"], "actual_value": "4"}]
    deeper = rows(servicenow_url, "asmt_metric_result", sysparm_fields="actual_value",
                  sysparm_query="metric.metric_type.name=Release feedback^actual_value>3")
    assert deeper == [{"actual_value": "4"}]  # decimals compare as numbers, two levels deep


def test_reference_fields_and_display_values_of_answers(servicenow_url: str) -> None:
    made = survey(servicenow_url)
    [answer] = rows(servicenow_url, "asmt_metric_result", sysparm_query="actual_value=2.5")
    metric_id = made["metric"]["sys_id"]
    assert answer["metric"] == {"link": f"{servicenow_url}/api/now/table/asmt_metric/{metric_id}",
                                "value": metric_id}
    [shown] = rows(servicenow_url, "asmt_metric_result", sysparm_query="actual_value=2.5",
                   sysparm_display_value="true", sysparm_fields="metric,instance.state,instance.trigger_id")
    assert shown["metric"]["display_value"] == "Overall satisfaction"
    assert (shown["instance.state"], shown["instance.trigger_id"]) == ("Complete", made["releases"][1]["sys_id"])
    [instance] = rows(servicenow_url, "asmt_assessment_instance", sysparm_query="state=wip")
    assert instance["number"].startswith("AINST") and isinstance(instance["trigger_id"], str)  # not a reference


def test_a_wrong_step_in_a_walk_is_dropped_as_the_instance_does(servicenow_url: str) -> None:
    survey(servicenow_url)
    every = rows(servicenow_url, "asmt_metric_result", sysparm_fields="sys_id")
    assert len(rows(servicenow_url, "asmt_metric_result", sysparm_query="metric.no_such.name=x")) == len(every)
    assert len(rows(servicenow_url, "asmt_metric_result", sysparm_query="actual_value.name=x")) == len(every)
    [first] = rows(servicenow_url, "asmt_metric_result", sysparm_fields="metric.metric_type.nope,actual_value",
                   sysparm_limit="1")
    assert list(first) == ["actual_value"]  # an unknown field is left out of the answer


def test_time_worked_shows_its_tasks_group_two_references_away(servicenow_url: str) -> None:
    group = post(servicenow_url, "sys_user_group", name="Network")
    assigned = post(servicenow_url, "change_request", short_description="a", assignment_group="Network")
    assert assigned["assignment_group"]["value"] == group["sys_id"]  # a display value, resolved
    loose = post(servicenow_url, "change_request", short_description="b")
    for task in (assigned, loose):
        post(servicenow_url, "task_time_worked", task=task["sys_id"], time_in_seconds=60)
    client = pysnow.Client(host=servicenow_url.split("//", 1)[1], user="admin", password="admin", use_ssl=False)
    found = client.resource(api_path="/table/task_time_worked").get(
        query=f"taskIN{assigned['sys_id']},{loose['sys_id']}^ORDERBYsys_created_on",
        fields=["task", "task.assignment_group.name"]).all()
    assert [r["task.assignment_group.name"] for r in found] == ["Network", ""]
    only = rows(servicenow_url, "task_time_worked", sysparm_query="task.assignment_group.name=network",
                sysparm_fields="task")
    assert [r["task"]["value"] for r in only] == [assigned["sys_id"]]
