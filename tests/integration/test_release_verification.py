"""Verification and early-life support end to end against the simulators: checks run once
per deployment off the sync worker, results land on the release and in both systems, a
failure rolls the release back in both systems (through the normal rollback path), a
hanging target times out, and incidents caused soon after the go-live are flagged."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from bridge import hookimpl
from bridge.cli import main
from bridge.release.checks import Check
from tests.integration.test_release_management import jira_version, seed_release


class Target:
    """A service under verification: answers ``status`` with ``body``, or never (``hang``)."""

    def __init__(self) -> None:
        self.status, self.body, self.hang, self.hits = 200, "ok: billing 9.0", False, 0
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                target.hits += 1
                if target.hang:
                    time.sleep(5)
                    return
                body = target.body.encode()
                self.send_response(target.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/health"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def target() -> Iterator[Target]:
    t = Target()
    yield t
    t.server.shutdown()


def go_live(bridge) -> tuple[dict, dict]:
    release, change = seed_release(bridge, approved=True)
    assert not bridge.sync().errors
    version = jira_version(bridge, "Billing 9.0")
    bridge.jira.update_version(version["id"], released=True)
    assert not bridge.sync().errors
    return release, change


def notes(bridge, release: dict) -> list[str]:
    return [row["value"] for row in bridge.sn.list("sys_journal_field", f"element_id={release['sys_id']}")]


def jira_comments(bridge) -> list[str]:
    [issue] = bridge.jira.search('issuetype = Change AND fixVersion = "Billing 9.0"')
    r = bridge.jira.session.get(f"{bridge.jira.api}/issue/{issue['key']}/comment")
    return [c["body"] for c in r.json()["comments"]]


def test_passing_checks_are_recorded_and_noted_in_both_systems(bridge, target: Target) -> None:
    bridge.sections["verify"] = {"checks": [{"name": "health", "url": target.url, "body_contains": "9.0"}]}
    release, _ = go_live(bridge)
    [verification] = bridge.runtime().store.verifications(release["number"])
    assert verification["state"] == "passed" and verification["action"] is None
    assert verification["checks"][0]["name"] == "health" and verification["checks"][0]["ok"] is True
    assert sorted(verification["noted"]) == ["jira", "servicenow"]
    [note] = notes(bridge, release)
    assert "passed" in note and f"(relbridge verify {release['number']}#1)" in note
    [comment] = jira_comments(bridge)
    assert "health: ok" in comment

    assert not bridge.sync().errors  # nothing new: no second run, no second note
    assert target.hits == 1 and len(notes(bridge, release)) == 1 and len(jira_comments(bridge)) == 1


def test_failing_check_rolls_the_release_back_in_both_systems(bridge, target: Target, tmp_path: Path) -> None:
    target.status = 503
    bridge.sections["verify"] = {"on_failure": "rollback",
                                 "checks": [{"name": "health", "url": target.url, "retries": 1}]}
    release, change = go_live(bridge)
    store = bridge.runtime().store
    [verification] = store.verifications(release["number"])
    assert verification["state"] == "failed" and verification["action"] == "rolled_back"
    assert "expected HTTP 200, got 503 (after 2 attempts)" in verification["checks"][0]["detail"]
    assert target.hits == 2
    assert store.get_record("release", release["number"])["fields"]["state"] == "rolled_back"
    assert bridge.sn.get("rm_release", release["sys_id"])["state"] == "4"
    assert jira_version(bridge, "Billing 9.0")["released"] is False
    assert bridge.sn.get("change_request", change["sys_id"])["close_code"] == "unsuccessful"
    assert "FAILED" in notes(bridge, release)[0]

    config_file = tmp_path / "config.toml"
    config_file.write_text(
        f'[servicenow]\nurl = "{bridge.sims.servicenow_url}"\n[jira]\nurl = "{bridge.sims.jira_url}"\n'
        f'[store]\nurl = "{bridge.store_url}"\n')
    shown = CliRunner().invoke(main, ["release", "show", release["number"], "--json", "--config", str(config_file)])
    document = json.loads(shown.output)
    assert document["needs_revision"] is True
    assert document["verifications"][0]["action"] == "rolled_back"
    text = CliRunner().invoke(main, ["release", "show", release["number"], "--config", str(config_file)]).output
    assert "verification of deployment 1" in text and "health" in text and "FAILED" in text


def test_rollback_on_failure_respects_the_safety_brake(bridge, target: Target) -> None:
    target.status = 500
    bridge.sections["verify"] = {"on_failure": "rollback", "checks": [{"name": "health", "url": target.url}]}
    bridge.sections["safety"] = {"max_destructive_writes": 0}
    release, _ = go_live(bridge)
    rt = bridge.runtime()
    assert rt.store.get_record("release", release["number"])["fields"]["state"] == "rolled_back"
    assert rt.store.held_count() >= 1  # the backward writes wait for a person
    assert jira_version(bridge, "Billing 9.0")["released"] is True


def test_hanging_target_times_out_marks_needs_revision_and_frees_the_worker(bridge, target: Target) -> None:
    target.hang = True
    bridge.sections["verify"] = {"checks": [{"name": "health", "url": target.url, "timeout_seconds": 0.5}]}
    release, _ = seed_release(bridge, approved=True)
    assert not bridge.sync().errors
    bridge.jira.update_version(jira_version(bridge, "Billing 9.0")["id"], released=True)
    rt = bridge.runtime()
    started = time.monotonic()
    rt.engine.sync_once()
    assert time.monotonic() - started < 3  # the pass does not wait for the check
    rt.close()  # waits for it: bounded by the timeout
    assert time.monotonic() - started < 6
    [verification] = bridge.runtime().store.verifications(release["number"])
    assert verification["state"] == "failed" and verification["action"] == "needs_revision"
    assert "timed out after 0.5s" in verification["checks"][0]["detail"]
    fields = bridge.runtime().store.get_record("release", release["number"])["fields"]
    assert fields["state"] == "deployed" and fields["revision_count"] == 1


def test_a_deployment_is_verified_once_by_several_processes(bridge, target: Target) -> None:
    bridge.sections["verify"] = {"checks": [{"name": "health", "url": target.url}]}
    release, _ = go_live(bridge)
    key = release["number"]
    engines = [bridge.runtime().engine for _ in range(3)]
    store = engines[0].store
    assert store.open_verification(key, 1, store.clock()) is False  # the row exists: nobody opens it again
    results = [engine.verifier.run(key, 1) for engine in engines]
    assert results == [None, None, None] and target.hits == 1  # passed already: no claim


def test_plugin_verifier_checks_count_and_a_raising_one_fails(bridge) -> None:
    class Verifier:
        @hookimpl
        def relbridge_verify_release(self, release):
            return [Check("smoke", True, f"{release.name} answers")]

    class Broken:
        @hookimpl
        def relbridge_verify_release(self, release):
            raise RuntimeError("probe down")

    bridge.extra_plugins.extend([("smoke", Verifier()), ("broken", Broken())])
    release, _ = go_live(bridge)
    [verification] = bridge.runtime().store.verifications(release["number"])
    assert verification["state"] == "failed"
    names = {c["name"]: c for c in verification["checks"]}
    assert "probe down" in names["plugins"]["detail"]


def test_incident_caused_soon_after_the_deployment_is_flagged_once(bridge) -> None:
    seen = []

    class Support:
        @hookimpl
        def relbridge_early_life_incident(self, release, incident, deployed_at):
            seen.append((release.key, incident.key))

    bridge.extra_plugins.append(("support", Support()))
    release, change = go_live(bridge)
    incident = bridge.sn.create("incident", short_description="Invoices missing", state="1", priority="2",
                                caused_by=change["sys_id"])
    assert not bridge.sync().errors
    assert not bridge.sync().errors
    [flag] = bridge.runtime().store.early_life_incidents(release["number"])
    assert flag["incident_key"] == incident["number"]
    assert seen == [(release["number"], incident["number"])]


def test_incident_opened_after_early_life_is_not_flagged(bridge) -> None:
    bridge.sections["verify"] = {"early_life_days": 1}
    release, change = go_live(bridge)
    bridge.sn.create("incident", short_description="Slow reports", state="1", priority="4",
                     caused_by=change["sys_id"], opened_at="2099-01-01 00:00:00")
    assert not bridge.sync().errors
    assert bridge.runtime().store.early_life_incidents(release["number"]) == []


@pytest.mark.parametrize("checks, message", [
    ('[[verify.checks]]\nname = "x"\nurl = "ftp://host"\n', "verify.checks.0.url"),
    ('[[verify.checks]]\nname = "x"\nurl = "http://host/a"\ntimeout_seconds = -1\n', "verify.checks.0.timeout_seconds"),
    ('[[verify.checks]]\nname = "x"\nurl = "http://host/a"\nexpect = 200\n', "unknown key (did you mean 'expect_status'?)"),
    ('[verify]\non_failure = "explode"\n', "verify.on_failure"),
])
def test_bad_checks_are_one_line_exit_2(tmp_path: Path, checks: str, message: str) -> None:
    config_file = tmp_path / "config.toml"
    config_file.write_text(checks)
    result = CliRunner().invoke(main, ["release", "show", "X", "--config", str(config_file)])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_nothing_to_verify_records_and_writes_nothing(bridge) -> None:
    release, _ = go_live(bridge)
    assert bridge.runtime().store.verifications(release["number"]) == []
    assert notes(bridge, release) == []


def test_a_run_cut_short_is_resumed_and_a_failed_note_is_retried(bridge, target: Target) -> None:
    """A crash after the deployment was recorded leaves a pending row: the next start runs
    it. A note that meets a 503 is retried and written once."""
    bridge.sections["verify"] = {"checks": [{"name": "health", "url": target.url}]}
    release, _ = go_live(bridge)
    key = release["number"]
    rt = bridge.runtime(verify={"checks": [{"name": "health", "url": target.url}]})
    rt.store.open_verification(key, 2, rt.store.clock())  # as if deployment 2 was recorded, then a crash
    requests = __import__("requests")
    requests.post(f"{bridge.sims.servicenow_url}/_sim/faults",
                  json={"method": "PATCH", "path": "rm_release", "status": 503, "times": 1}).raise_for_status()
    assert rt.engine.verifier.resume() == 1
    rt.close()
    [first, second] = bridge.runtime().store.verifications(key)
    assert (first["state"], second["state"]) == ("passed", "passed") and target.hits == 2
    assert sorted(second["noted"]) == ["jira", "servicenow"]
    assert sum(f"{key}#2)" in value for value in notes(bridge, release)) == 1
