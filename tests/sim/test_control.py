"""The `/_sim` control API, the webhook sender and the thread server, over real HTTP."""

from __future__ import annotations

import hashlib
import hmac
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from bridge.sim import Simulators
from bridge.sim.control import BYPASS_FAULTS_HEADER, ControlError, FaultRule
from bridge.sim.server import start_in_thread
from bridge.sim.webhooks import WebhookSender, sign_hub, sign_relbridge

from .conftest import SimsFactory, WebhookReceiver

AUTH = ("admin", "admin")
TABLE = "/api/now/table/change_request"


def fault(url: str, **rule: object) -> requests.Response:
    response = requests.post(f"{url}/_sim/faults", json=rule, timeout=5)
    assert response.status_code == 201, response.text
    return response


# -- faults ------------------------------------------------------------------------------


def test_429_carries_retry_after_and_the_servicenow_envelope_for_times_requests(
        servicenow_url: str) -> None:
    fault(servicenow_url, method="GET", path="change_request", status=429, retry_after=7, times=2)
    for _ in range(2):
        hit = requests.get(servicenow_url + TABLE, auth=AUTH, timeout=5)
        assert hit.status_code == 429
        assert hit.headers["Retry-After"] == "7"
        assert hit.json()["status"] == "failure"
        assert hit.json()["error"]["message"]
    assert requests.get(servicenow_url + TABLE, auth=AUTH, timeout=5).status_code == 200
    assert requests.get(f"{servicenow_url}/_sim/faults", timeout=5).json() == {"faults": []}


def test_503_gets_a_default_retry_after(servicenow_url: str) -> None:
    fault(servicenow_url, status=503)
    hit = requests.get(servicenow_url + TABLE, auth=AUTH, timeout=5)
    assert (hit.status_code, hit.headers["Retry-After"]) == (503, "1")


def test_fault_only_hits_its_method_and_path(servicenow_url: str) -> None:
    fault(servicenow_url, method="POST", path=r"/incident$", status=500)
    assert requests.get(servicenow_url + "/api/now/table/incident", auth=AUTH,
                        timeout=5).status_code == 200
    assert requests.post(servicenow_url + TABLE, json={}, auth=AUTH, timeout=5).status_code == 201
    failed = requests.post(servicenow_url + "/api/now/table/incident", json={}, auth=AUTH,
                           timeout=5)
    assert failed.status_code == 500
    assert "Retry-After" not in failed.headers
    assert failed.json()["error"]["message"] == "Internal Server Error"


def test_delay_only_rule_slows_the_request_and_lets_it_through(servicenow_url: str) -> None:
    fault(servicenow_url, delay_ms=300)
    started = time.monotonic()
    slow = requests.get(servicenow_url + TABLE, auth=AUTH, timeout=5)
    assert slow.status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    requests.get(servicenow_url + TABLE, auth=AUTH, timeout=5)
    assert time.monotonic() - started < 0.3  # times defaults to 1


def test_dropped_connection_gives_the_client_no_response(servicenow_url: str) -> None:
    fault(servicenow_url, status=0, reset=True)
    with pytest.raises(requests.ConnectionError):
        requests.get(servicenow_url + TABLE, auth=AUTH, timeout=5)
    assert requests.get(servicenow_url + TABLE, auth=AUTH, timeout=5).status_code == 200
    log = requests.get(f"{servicenow_url}/_sim/requests", timeout=5).json()
    assert [r["status"] for r in log["requests"]] == [0, 200]


def test_fault_after_carries_the_write_out_then_drops_the_reply(servicenow_url: str) -> None:
    """A lost reply: the record is created, but the client only sees the connection drop."""
    fault(servicenow_url, method="POST", path="change_request$", status=0, reset=True, after=True)
    with pytest.raises(requests.ConnectionError):
        requests.post(servicenow_url + TABLE, json={"short_description": "Made, reply lost"}, auth=AUTH,
                      timeout=5)
    made = requests.get(servicenow_url + TABLE, params={"sysparm_query": "short_description=Made, reply lost"},
                        auth=AUTH, timeout=5).json()["result"]
    assert len(made) == 1
    log = requests.get(f"{servicenow_url}/_sim/requests", timeout=5).json()
    assert [(r["method"], r["status"]) for r in log["requests"]] == [("POST", 0), ("GET", 200)]


def test_fault_after_with_a_status_answers_it_for_a_request_carried_out(sims: Simulators) -> None:
    """As a gateway timing out after the backend finished: Jira made the issue, said 504."""
    url = sims.jira_url
    assert url is not None
    fault(url, method="POST", path="/issue$", status=504, after=True)
    body = {"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Change"}, "summary": "Made, 504"}}
    answered = requests.post(f"{url}/rest/api/2/issue", json=body, auth=AUTH, timeout=5)
    assert answered.status_code == 504 and "errorMessages" in answered.json()
    found = requests.get(f"{url}/rest/api/2/search/jql", params={"jql": "project = OPS", "fields": "summary"},
                         auth=AUTH, timeout=5).json()["issues"]
    assert [i["fields"]["summary"] for i in found] == ["Made, 504"]
    assert requests.get(f"{url}/_sim/faults", timeout=5).json() == {"faults": []}  # times=1 used up


def test_a_request_with_the_bypass_header_is_never_faulted(servicenow_url: str) -> None:
    """Tests acting as people keep editing while relbridge's calls meet the faults."""
    fault(servicenow_url, status=503, times=None)
    person = requests.get(servicenow_url + TABLE, auth=AUTH, headers={BYPASS_FAULTS_HEADER: "1"}, timeout=5)
    assert person.status_code == 200
    assert requests.get(servicenow_url + TABLE, auth=AUTH, timeout=5).status_code == 503
    assert [r["times"] for r in requests.get(f"{servicenow_url}/_sim/faults", timeout=5).json()["faults"]] == [None]
    log = requests.get(f"{servicenow_url}/_sim/requests", timeout=5).json()
    assert [r["status"] for r in log["requests"]] == [200, 503]


def test_unlimited_rule_lasts_until_faults_are_cleared(servicenow_url: str) -> None:
    fault(servicenow_url, status=502, times=None)
    for _ in range(3):
        assert requests.get(servicenow_url + TABLE, auth=AUTH, timeout=5).status_code == 502
    assert requests.delete(f"{servicenow_url}/_sim/faults", timeout=5).status_code == 200
    assert requests.get(servicenow_url + TABLE, auth=AUTH, timeout=5).status_code == 200


@pytest.mark.parametrize("body, reason", [
    ({}, "needs a status or a delay_ms"),
    ({"status": 429, "path": "(unclosed"}, "regular expression"),
    ({"status": 0}, "reset=true"),
    ({"status": 42}, "HTTP status"),
    ({"status": 500, "times": 0}, "times"),
    ({"status": 500, "delay_ms": -1}, "delay_ms"),
    ({"status": "500"}, "status"),
    ({"status": 500, "colour": "red"}, "unknown fault keys"),
    ({"delay_ms": 10, "after": True}, "after=true needs a status"),
    ({"status": 503, "after": "yes"}, "after must be true or false"),
    ([1, 2], "JSON object"),
])
def test_bad_fault_bodies_are_400_with_a_reason(servicenow_url: str, body: object,
                                                reason: str) -> None:
    response = requests.post(f"{servicenow_url}/_sim/faults", json=body, timeout=5)
    assert response.status_code == 400
    assert reason in response.json()["error"]["message"]


def test_fault_body_that_is_not_json_is_400(servicenow_url: str) -> None:
    response = requests.post(f"{servicenow_url}/_sim/faults", data=b"{nope", timeout=5)
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]["message"]


def test_control_api_works_the_same_on_the_jira_server(sims: Simulators) -> None:
    if sims.jira_url is None:
        pytest.skip("the Jira simulator is not available")
    url = sims.jira_url
    fault(url, method="GET", path="serverInfo", status=429, retry_after=2)
    limited = requests.get(f"{url}/rest/api/2/serverInfo", auth=AUTH, timeout=5)
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "2")
    assert "errorMessages" in limited.json()  # Jira's envelope, not ServiceNow's
    assert requests.get(f"{url}/rest/api/2/serverInfo", auth=AUTH, timeout=5).status_code == 200
    log = requests.get(f"{url}/_sim/requests", timeout=5).json()
    assert [(r["path"], r["status"]) for r in log["requests"]] == [
        ("/rest/api/2/serverInfo", 429), ("/rest/api/2/serverInfo", 200)]
    assert requests.post(f"{url}/_sim/reset", timeout=5).status_code == 200
    assert requests.get(f"{url}/_sim/requests", timeout=5).json()["count"] == 0
    # each server keeps its own log
    assert requests.get(f"{sims.servicenow_url}/_sim/requests", timeout=5).json()["count"] == 0


def test_fault_rule_parse_defaults() -> None:
    rule = FaultRule.parse({"status": 429})
    assert (rule.method, rule.times, rule.delay_ms, rule.retry_after, rule.after) == ("*", 1, 0, None, False)
    assert rule.matches("DELETE", "/anything")
    with pytest.raises(ControlError):
        FaultRule.parse({"status": 429, "reset": "yes"})


# -- request log and reset ---------------------------------------------------------------


def test_request_log_counts_api_calls_not_control_calls(servicenow_url: str) -> None:
    requests.get(servicenow_url + TABLE + "?sysparm_limit=1", auth=AUTH, timeout=5)
    requests.post(servicenow_url + TABLE, json={"short_description": "x"}, auth=AUTH, timeout=5)
    requests.get(servicenow_url + TABLE, auth=("admin", "wrong"), timeout=5)
    requests.get(f"{servicenow_url}/_sim/faults", timeout=5)
    log = requests.get(f"{servicenow_url}/_sim/requests", timeout=5).json()
    assert log["count"] == 3
    assert log["by_method"] == {"GET": 2, "POST": 1}
    assert log["requests"][0] == {"method": "GET", "path": TABLE, "query": "sysparm_limit=1",
                                  "status": 200}
    assert [r["status"] for r in log["requests"]] == [200, 201, 401]
    assert requests.delete(f"{servicenow_url}/_sim/requests", timeout=5).status_code == 200
    cleared = requests.get(f"{servicenow_url}/_sim/requests", timeout=5).json()
    assert cleared == {"count": 0, "by_method": {}, "requests": []}


def test_reset_clears_faults_log_and_data(sims: Simulators) -> None:
    url = sims.servicenow_url
    created = requests.post(url + TABLE, json={"short_description": "temporary"}, auth=AUTH,
                            timeout=5).json()["result"]
    fault(url, status=500, times=5)
    assert requests.post(f"{url}/_sim/reset", timeout=5).status_code == 200
    assert requests.get(f"{url}/_sim/faults", timeout=5).json() == {"faults": []}
    assert requests.get(f"{url}/_sim/requests", timeout=5).json()["count"] == 0
    gone = requests.get(f"{url}{TABLE}/{created['sys_id']}", auth=AUTH, timeout=5)
    assert gone.status_code == 404
    again = requests.post(url + TABLE, json={}, auth=AUTH, timeout=5).json()["result"]
    assert again["number"] == "CHG0030001"  # numbering restarts with the seed


def test_latency_option_delays_every_api_request(sims_factory: SimsFactory) -> None:
    sims = sims_factory(latency_ms=150)
    started = time.monotonic()
    requests.get(sims.servicenow_url + TABLE, auth=AUTH, timeout=5)
    assert time.monotonic() - started >= 0.15
    started = time.monotonic()
    requests.get(f"{sims.servicenow_url}/_sim/requests", timeout=5)
    assert time.monotonic() - started < 0.15  # the control API is never slowed down


# -- webhook sender ----------------------------------------------------------------------


def test_signatures_match_an_independent_hmac() -> None:
    body = b'{"a": 1}'
    expected_hub = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert sign_hub("s3cret", body) == f"sha256={expected_hub}"
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign_relbridge("s3cret", 1700000000, body) == f"sha256={expected}"
    assert sign_relbridge("other", 1700000000, body) != f"sha256={expected}"


def test_sender_delivers_in_order_and_retries_server_errors(
        webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.statuses = [500, 503]  # the first delivery fails twice, then succeeds
    sender = WebhookSender(retry_delays=(0, 0.01, 0.01, 0.01))
    try:
        for n in range(3):
            sender.send(webhook_receiver.url, f'{{"n": {n}}}'.encode(), {"X-N": str(n)})
        assert sender.flush(5)
    finally:
        sender.close()
    bodies = [r.body for r in webhook_receiver.received]
    assert bodies == [b'{"n": 0}'] * 3 + [b'{"n": 1}', b'{"n": 2}']
    assert [d.attempts for d in sender.delivered] == [3, 1, 1]
    assert webhook_receiver.received[-1].headers["x-n"] == "2"
    assert sender.failed == []


def test_sender_gives_up_on_client_errors_and_dead_receivers(
        webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.statuses = [400]
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/hook"
    sender = WebhookSender(retry_delays=(0, 0.01, 0.01))
    try:
        sender.send(webhook_receiver.url, b"{}", {})
        sender.send(dead, b"{}", {})
        assert sender.flush(10)
    finally:
        sender.close()
    assert [(d.attempts, d.status) for d in sender.failed] == [(1, 400), (3, None)]
    assert sender.delivered == []


def test_send_returns_at_once_while_delivery_retries_in_the_background() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/hook"
    sender = WebhookSender(retry_delays=(0, 0.2))
    try:
        started = time.monotonic()
        for _ in range(5):
            sender.send(dead, b"{}", {})
        assert time.monotonic() - started < 0.05
        assert sender.flush(10)
        assert time.monotonic() - started >= 1.0  # 5 deliveries x 0.2 s backoff
    finally:
        sender.close()
    assert len(sender.failed) == 5


# -- server ------------------------------------------------------------------------------


def test_server_reports_its_port_and_stops_quickly(sims: Simulators) -> None:
    server = sims.servicenow_server
    assert server.url == f"http://127.0.0.1:{server.port}"
    session = requests.Session()  # a keep-alive connection must not hold the stop up
    assert session.get(server.url + TABLE, auth=AUTH, timeout=5).status_code == 200
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2.5
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + TABLE, auth=AUTH, timeout=2)


def test_starting_on_a_taken_port_fails_loudly(sims: Simulators) -> None:
    with pytest.raises(OSError, match="cannot listen on 127.0.0.1"):
        start_in_thread(sims.servicenow.app, port=sims.servicenow_server.port)


@pytest.mark.slow
def test_run_simulators_serves_until_sigterm() -> None:
    code = "from bridge.sim import run_simulators; run_simulators(seed='empty')"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=os.getcwd())
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("ServiceNow simulator: http://127.0.0.1:")
        url = first.split(": ", 1)[1].strip()
        assert requests.get(url + TABLE, auth=AUTH, timeout=5).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
