"""`sync` and `run` fail closed at start (DESIGN §10), against the real simulators: a mapping
that names a field or choice the live system lacks, or a system that does not answer, stops
them with one clear line before anything is written; a passed check is remembered so a
restart costs no metadata read. Also: connection errors in /readyz, and `mappings preview
--number` reading a live record."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from starlette.testclient import TestClient

from bridge.cli import main
from bridge.config import WebhooksConfig
from bridge.daemon.inbox import Inbox
from bridge.daemon.metrics import Metrics
from bridge.daemon.receiver import create_app
from bridge.daemon.service import ReadinessChecks
from tests.integration.conftest import Bridge
from tests.integration.helpers import clear_log, requests_log, writes

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_JIRA_MAPPING = (ROOT / "mappings" / "jira.toml").read_text()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_config(tmp_path: Path, bridge: Bridge, *, jira_url: str | None = None,
                 jira_mapping: str | None = None) -> Path:
    lines = [
        f'[servicenow]\nurl = "{bridge.sims.servicenow_url}"',
        f'[jira]\nurl = "{jira_url or bridge.sims.jira_url}"',
        f'[store]\nurl = "{bridge.store_url}"',
    ]
    if jira_mapping is not None:
        (tmp_path / "jira.toml").write_text(jira_mapping)
        lines.append('[mappings]\njira = "jira.toml"')
    config = tmp_path / "relbridge.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def sync(config: Path) -> Result:
    return CliRunner().invoke(main, ["sync", "--once", "--config", str(config)])


def error_lines(result: Result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("error:")]


def metadata_reads(bridge: Bridge) -> int:
    """Requests that read field definitions (ServiceNow dictionary/choices, Jira fields)."""
    sn = [r for r in requests_log(bridge.sims.servicenow_url)["requests"]
          if any(t in r["path"] for t in ("sys_dictionary", "sys_choice", "sys_db_object"))]
    assert bridge.sims.jira_url is not None
    jira = [r for r in requests_log(bridge.sims.jira_url)["requests"]
            if r["path"].endswith(("/field", "/statuses", "/priority"))]
    return len(sn) + len(jira)


@pytest.fixture
def demo(bridge_factory: Callable[..., Bridge]) -> Bridge:
    """Simulators with demo data: without the start check, a sync would write plenty."""
    return bridge_factory(seed="demo")


@pytest.mark.parametrize("edit, expected", [
    (('source = "summary"', 'source = "sumary"'),
     "change.fields.summary.source — Change has no field 'sumary' (did you mean 'summary'?)"),
    (("Resolved = \"resolved\"", "Resolvd = \"resolved\""),
     "incident.fields.state.values — Incident.status has no choice 'Resolvd' (did you mean 'Resolved'?)"),
])
def test_sync_refuses_a_mapping_the_live_system_contradicts_and_writes_nothing(
    demo: Bridge, tmp_path: Path, edit: tuple[str, str], expected: str
) -> None:
    old, new = edit
    assert old in DEFAULT_JIRA_MAPPING
    config = write_config(tmp_path, demo, jira_mapping=DEFAULT_JIRA_MAPPING.replace(old, new))
    result = sync(config)
    assert result.exit_code == 2, result.output
    assert error_lines(result) == [
        "error: jira: the mapping names what the live system does not have (nothing was written; "
        "fix the mapping or the system, then start again):"]
    assert f"{tmp_path / 'jira.toml'}: {expected}" in result.output
    assert "Traceback" not in result.output
    assert writes(demo.sims.servicenow_url) == []
    assert demo.sims.jira_url is not None and writes(demo.sims.jira_url) == []


def test_a_passed_check_is_remembered_until_the_mapping_changes(bridge: Bridge, tmp_path: Path) -> None:
    config = write_config(tmp_path, bridge, jira_mapping=DEFAULT_JIRA_MAPPING)
    assert sync(config).exit_code == 0
    assert metadata_reads(bridge) > 0
    assert bridge.sims.jira_url is not None
    clear_log(bridge.sims.servicenow_url, bridge.sims.jira_url)
    assert sync(config).exit_code == 0
    assert metadata_reads(bridge) == 0  # a restart: the remembered pass, one check_auth per system
    (tmp_path / "jira.toml").write_text(DEFAULT_JIRA_MAPPING + "\n# edited\n")
    clear_log(bridge.sims.servicenow_url, bridge.sims.jira_url)
    assert sync(config).exit_code == 0
    jira_reads = [r for r in requests_log(bridge.sims.jira_url)["requests"] if r["path"].endswith("/field")]
    assert len(jira_reads) == 1  # the changed mapping is checked again


def test_an_unreachable_system_at_start_is_one_line_and_nothing_is_written(demo: Bridge, tmp_path: Path) -> None:
    port = closed_port()
    config = write_config(tmp_path, demo, jira_url=f"http://127.0.0.1:{port}")
    result = sync(config)
    assert result.exit_code == 1, result.output
    assert error_lines(result) == [
        f"error: start refused, nothing was written: jira: GET serverInfo: cannot connect to "
        f"127.0.0.1:{port} (Connection refused) — check [jira] url"]
    assert writes(demo.sims.servicenow_url) == []


def test_run_refuses_to_start_on_a_mapping_the_live_system_contradicts(demo: Bridge, tmp_path: Path) -> None:
    mapping = DEFAULT_JIRA_MAPPING.replace('source = "summary"', 'source = "sumary"')
    config = write_config(tmp_path, demo, jira_mapping=mapping)
    with (tmp_path / "relbridge.toml").open("a") as file:
        file.write(f'[webhooks]\nbind = "127.0.0.1:{closed_port()}"\n')
    result = subprocess.run([sys.executable, "-m", "bridge", "run", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Change has no field 'sumary' (did you mean 'summary'?)" in result.stderr
    assert "Traceback" not in result.stderr
    assert writes(demo.sims.servicenow_url) == []


def test_readyz_shows_the_jira_connection_error_like_servicenow(bridge: Bridge) -> None:
    port = closed_port()
    rt = bridge.runtime(jira={"url": f"http://127.0.0.1:{port}"})
    app = create_app(inbox=Inbox(rt.store), adapters=rt.adapters, config=WebhooksConfig(),
                     schemes=rt.hooks.webhook_schemes(rt.config),
                     metrics=Metrics(), ready=ReadinessChecks(rt, lambda: None))
    response = TestClient(app).get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {
        "store": "ok",
        "servicenow": "ok",
        "jira": f"jira: GET serverInfo: cannot connect to 127.0.0.1:{port} (Connection refused) — check [jira] url",
    }


@pytest.mark.parametrize("system, entity, number, expected", [
    ("servicenow", "change", "CHG0030001", {"number": "CHG0030001"}),
    ("jira", "change", "OPS-1", {"number": "OPS-1"}),
    ("jira", "release", "Release 1.1", {"number": "Release 1.1"}),
])
def test_preview_reads_a_live_record_by_number(
    demo: Bridge, tmp_path: Path, system: str, entity: str, number: str, expected: dict[str, str]
) -> None:
    config = write_config(tmp_path, demo)
    result = CliRunner().invoke(main, ["mappings", "preview", "--system", system, "--entity", entity,
                                       "--number", number, "--config", str(config)])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["number"] == expected["number"] and shown["direction"] == "to_canonical"
    assert shown["values"].get("summary") or shown["values"].get("name")
    assert writes(demo.sims.servicenow_url) == []


def test_preview_of_a_number_that_does_not_exist_is_bad_input(demo: Bridge, tmp_path: Path) -> None:
    config = write_config(tmp_path, demo)
    result = CliRunner().invoke(main, ["mappings", "preview", "--system", "servicenow", "--entity", "change",
                                       "--number", "CHG0999999", "--config", str(config)])
    assert result.exit_code == 2
    assert error_lines(result) == ["error: servicenow has no change 'CHG0999999'"]


def test_a_dry_run_checks_the_mapping_too_but_remembers_nothing(demo: Bridge, tmp_path: Path) -> None:
    bad = write_config(tmp_path, demo, jira_mapping=DEFAULT_JIRA_MAPPING.replace('source = "summary"',
                                                                                  'source = "sumary"'))
    refused = CliRunner().invoke(main, ["sync", "--once", "--dry-run", "--config", str(bad)])
    assert refused.exit_code == 2, refused.output
    assert "Change has no field 'sumary' (did you mean 'summary'?)" in refused.output
    good = write_config(tmp_path, demo, jira_mapping=DEFAULT_JIRA_MAPPING)
    for _ in range(2):  # nothing remembered: each dry run reads the metadata again
        assert demo.sims.jira_url is not None
        clear_log(demo.sims.servicenow_url, demo.sims.jira_url)
        planned = CliRunner().invoke(main, ["sync", "--once", "--dry-run", "--json", "--config", str(good)])
        assert planned.exit_code in (0, 1), planned.output
        assert metadata_reads(demo) > 0
