"""Release satisfaction from ServiceNow survey answers, end to end through the CLI, the real
adapter and the simulator (issue #16): ``relbridge sync --once`` reads the answers with the
releases and ``relbridge kpi`` reports the mean."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from bridge.cli import main
from tests.integration.helpers import clear_log, requests_log

QUESTION = "Overall satisfaction"


def write_config(bridge, folder: Path, metric: str = QUESTION, extra: str = "") -> Path:
    file = folder / "relbridge.toml"
    file.write_text(
        f'[servicenow]\nurl = "{bridge.sims.servicenow_url}"\n[jira]\nurl = "{bridge.sims.jira_url}"\n'
        f'[store]\nurl = "{bridge.store_url}"\n'
        f'[servicenow_survey]\nmetric = "{metric}"\nscale_min = 0\nscale_max = 10\n{extra}')
    return file


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


class Surveys:
    """A survey about releases on the simulated instance, answered through the Table API."""

    def __init__(self, bridge) -> None:
        self.sn = bridge.sn
        kind = self.sn.create("asmt_metric_type", name="Release feedback", evaluation_method="survey")
        self.metric = self.sn.create("asmt_metric", name=QUESTION, metric_type=kind["sys_id"],
                                     datatype="numericscale", min=0, max=10)
        self.kind = kind

    def answer(self, release: dict[str, Any], value: str, state: str = "complete", text: str = "") -> None:
        instance = self.sn.create("asmt_assessment_instance", metric_type=self.kind["sys_id"], state=state,
                                  trigger_table="rm_release", trigger_id=release["sys_id"])
        self.sn.create("asmt_metric_result", instance=instance["sys_id"], metric=self.metric["sys_id"],
                       actual_value=value, string_value=text)


def release(bridge, name: str) -> dict[str, Any]:
    return bridge.sn.create("rm_release", short_description=name, state="3",
                            start_date="2026-05-01 08:00:00", end_date="2026-05-20 17:00:00")


def kpis(config: Path) -> dict[str, Any]:
    out = run("kpi", "--format", "json", "--config", str(config))
    assert out.exit_code == 0, out.output
    return json.loads(out.output)


def test_kpi_reports_satisfaction_from_survey_answers(bridge, tmp_path: Path) -> None:
    surveys = Surveys(bridge)
    alpha, beta, gamma = (release(bridge, name) for name in ("Alpha 1.0", "Beta 2.0", "Gamma 3.0"))
    surveys.answer(alpha, "10")  # 5 on 1-5
    surveys.answer(alpha, "5")  # 3
    surveys.answer(alpha, "0", state="wip")  # not completed: not counted
    surveys.answer(beta, "-1", text="not applicable")  # no number: left out, counted in a warning
    surveys.answer(beta, "2.5")  # 2
    config = write_config(bridge, tmp_path)
    clear_log(bridge.sims.servicenow_url)

    synced = run("sync", "--once", "--json", "--config", str(config))
    assert synced.exit_code == 0, synced.output

    figures = kpis(config)
    assert (figures["satisfaction_avg"], figures["satisfaction_responses"]) == (3.0, 2)  # (4 + 2) / 2; gamma none
    assert "satisfaction_avg" not in figures["no_data"]
    reads = [r for r in requests_log(bridge.sims.servicenow_url)["requests"]
             if r["method"] == "GET" and r["path"].endswith("/asmt_metric_result")]
    assert len(reads) == 1  # one page of releases, one query: never one per release
    checks = [r for r in requests_log(bridge.sims.servicenow_url)["requests"] if r["path"].endswith("/asmt_metric")]
    assert len(checks) == 1  # the start-up check found the question: the reading trusts it
    shown = run("release", "show", alpha["number"], "--json", "--config", str(config))
    assert json.loads(shown.output)["fields"]["satisfaction"] == 4.0
    assert bridge.sn.get("rm_release", gamma["sys_id"])["sys_mod_count"] == gamma["sys_mod_count"]  # read only

    surveys.answer(gamma, "7.5")  # an answer that came later: gamma itself is not updated
    assert run("sync", "--once", "--json", "--config", str(config)).exit_code == 0
    figures = kpis(config)
    assert (figures["satisfaction_avg"], figures["satisfaction_responses"]) == (3.33, 3)  # (4 + 2 + 4) / 3


def test_without_answers_the_kpi_says_why_there_is_no_figure(bridge, tmp_path: Path) -> None:
    Surveys(bridge)
    release(bridge, "Alpha 1.0")
    config = write_config(bridge, tmp_path)
    assert run("sync", "--once", "--config", str(config)).exit_code == 0
    figures = kpis(config)
    assert (figures["satisfaction_avg"], figures["satisfaction_responses"]) == (None, 0)
    assert figures["no_data"]["satisfaction_avg"].startswith("no release in the period has a satisfaction score")


def test_a_question_the_instance_does_not_have_stops_the_check_and_the_sync(bridge, tmp_path: Path) -> None:
    Surveys(bridge)
    release(bridge, "Alpha 1.0")
    config = write_config(bridge, tmp_path, metric="Overal satisfaction")
    for command in (["mappings", "check"], ["sync", "--once"]):
        out = run(*command, "--config", str(config))
        assert out.exit_code == 2, out.output
        assert "[servicenow_survey] metric — no survey question named 'Overal satisfaction'" in out.output
        assert "did you mean 'Overall satisfaction'?" in out.output and "Traceback" not in out.output
    fixed = write_config(bridge, tmp_path)
    assert run("sync", "--once", "--config", str(fixed)).exit_code == 0  # a changed setting is checked again


def test_bad_survey_settings_exit_2_with_a_clear_line(bridge, tmp_path: Path, monkeypatch) -> None:
    out = run("kpi", "--config", str(write_config(bridge, tmp_path, extra="scale = 5\n")))
    assert out.exit_code == 2 and "servicenow_survey.scale — unknown key" in out.output
    monkeypatch.setenv("RELBRIDGE_SERVICENOW_SURVEY__SCALE_MAX", "-1")
    out = run("kpi", "--config", str(write_config(bridge, tmp_path)))
    assert out.exit_code == 2 and "scale_max (-1) must be above scale_min (0)" in out.output
    assert "Traceback" not in out.output
