"""Random deliveries at both webhook endpoints: whatever arrives, the receiver answers
without a 5xx, refusals are JSON errors, and a refused delivery leaves the inbox untouched.

Signatures are sometimes valid over the random body, so the generated input also reaches
the JSON parser and the real adapters' ``parse_webhook``, not only the signature check.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bridge.daemon.inbox import Inbox
from bridge.sim import Simulators, start_simulators
from bridge.store import Store
from tests.integration.test_webhooks import (
    JIRA_SECRET,
    MAX_BODY,
    NOW,
    SN_SECRET,
    Harness,
    hub_signature,
    real_adapters,
    relbridge_signature,
)

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.fixture(scope="module")
def sims() -> Iterator[Simulators]:
    with start_simulators(seed="empty") as started:
        yield started


@pytest.fixture
def hx(store_url: str, sims: Simulators) -> Iterator[Harness]:
    with Store(store_url) as store:
        yield Harness(Inbox(store), real_adapters(sims))


# -- strategies --------------------------------------------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
def usually(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field that is right nine times in ten, and anything at all otherwise."""
    return st.sampled_from([True] * 9 + [False]).flatmap(lambda ok: value if ok else json_values)


jira_ids = st.one_of(st.integers(1, 10**6), st.integers(1, 10**6).map(str))
sys_ids = st.text("0123456789abcdef", min_size=32, max_size=32)
jira_issue = st.fixed_dictionaries({
    "webhookEvent": usually(st.sampled_from(
        ["jira:issue_created", "jira:issue_updated", "jira:issue_deleted"])),
    "timestamp": usually(st.integers(0, 2**41)),
    "issue": usually(st.fixed_dictionaries({
        "id": usually(jira_ids),
        "key": usually(st.sampled_from(["OPS-1", "OPS-2", "OTHER-2"])),
        "fields": usually(st.fixed_dictionaries({"issuetype": usually(st.fixed_dictionaries({
            "name": usually(st.sampled_from(["Change", "Incident", "Bug"]))}))})),
    })),
})
jira_version = st.fixed_dictionaries({
    "webhookEvent": usually(st.sampled_from(
        ["jira:version_created", "jira:version_released", "jira:version_deleted"])),
    "version": usually(st.fixed_dictionaries({"id": usually(jira_ids)})),
})
jira_link = st.fixed_dictionaries({
    "webhookEvent": usually(st.sampled_from(["issuelink_created", "issuelink_deleted"])),
    "issueLink": usually(st.fixed_dictionaries({
        "issueLinkType": usually(st.fixed_dictionaries({
            "name": usually(st.sampled_from(["Problem/Incident", "Blocks"]))})),
        "sourceIssueId": usually(jira_ids), "destinationIssueId": usually(jira_ids)})),
})
jira_other = st.fixed_dictionaries({"webhookEvent": st.sampled_from(
    ["comment_created", "worklog_updated", "project_created"])})
servicenow_bodies = st.fixed_dictionaries({
    "table": usually(st.sampled_from(["change_request", "incident", "rm_release",
                                      "rm_m2m_release_task", "sys_user", "bad table!"])),
    "sys_id": usually(sys_ids),
    "operation": usually(st.sampled_from(["insert", "update", "delete", "merge"])),
    "sys_mod_count": usually(st.one_of(st.integers(0, 99), st.integers(0, 99).map(str))),
}, optional={"task": usually(sys_ids), "record": json_values})
plausible = {"jira": st.one_of(jira_issue, jira_version, jira_link, jira_other),
             "servicenow": servicenow_bodies}

bodies = st.one_of(
    st.binary(max_size=256),
    st.binary(min_size=MAX_BODY - 8, max_size=MAX_BODY + 64),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.text(max_size=200).map(str.encode),
)
content_types = st.one_of(
    st.sampled_from(["application/json", "application/json; charset=utf-8",
                     "application/json;charset=UTF-16", "text/plain", "", "application/json;;",
                     "application/json; charset", "; charset=utf-8"]),
    st.text(max_size=30),
)
header_values = st.binary(max_size=80).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
junk_headers = st.dictionaries(
    st.sampled_from(["x-hub-signature", "x-relbridge-signature", "x-relbridge-timestamp",
                     "x-atlassian-webhook-identifier", "content-type", "x-other"]),
    header_values, max_size=3)
timestamps = st.one_of(st.just(str(int(NOW))), st.integers(-10**12, 10**13).map(str),
                       st.text(max_size=15))


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[str, bytes, dict[str, Any]]:
    system = draw(st.sampled_from(["jira", "servicenow"]))
    body = draw(st.one_of(bodies, plausible[system].map(lambda v: json.dumps(v).encode())))
    headers: dict[str, Any] = {}
    content_type = draw(content_types)
    if content_type:
        headers["content-type"] = content_type.encode("utf-8", "replace")
    signing = draw(st.sampled_from(["valid", "valid", "none", "junk"]))
    if system == "servicenow":
        stamp = draw(timestamps)
        headers["x-relbridge-timestamp"] = stamp.encode("utf-8", "replace")
        if signing == "valid":
            headers["x-relbridge-signature"] = relbridge_signature(SN_SECRET, stamp, body)
    elif signing == "valid":
        headers["x-hub-signature"] = hub_signature(JIRA_SECRET, body)
    if signing == "junk":
        headers.update(draw(junk_headers))
    return system, body, headers


# -- properties --------------------------------------------------------------------------------


def deliver(hx: Harness, system: str, body: bytes, headers: dict[str, Any]) -> Any:
    before = hx.queued()
    response = hx.client.post(f"/webhooks/{system}", content=body, headers=headers)
    assert response.status_code < 500, response.text
    answer = response.json()
    event(f"{response.status_code} {answer.get('error') or sorted(answer)}")  # coverage stats
    if response.status_code == 202:
        assert answer["accepted"] >= 0
    else:
        assert set(answer) == {"error", "message"} and answer["error"] and answer["message"]
        assert hx.queued() == before, f"refused with {answer} but something was queued"
    return response


@FUZZ
@given(delivery=deliveries())
def test_random_deliveries_never_get_a_5xx_and_refusals_queue_nothing(
    hx: Harness, delivery: tuple[str, bytes, dict[str, Any]]
) -> None:
    deliver(hx, *delivery)


@FUZZ
@given(data=st.data())
def test_correctly_signed_plausible_bodies_are_queued_or_refused_as_bad_input(
    hx: Harness, data: st.DataObject
) -> None:
    system = data.draw(st.sampled_from(["jira", "servicenow"]))
    body = data.draw(plausible[system])
    raw = json.dumps(body).encode()
    if system == "jira":
        headers = {"content-type": "application/json", "x-hub-signature": hub_signature(JIRA_SECRET, raw)}
    else:
        stamp = str(int(NOW))
        headers = {"content-type": "application/json", "x-relbridge-timestamp": stamp,
                   "x-relbridge-signature": relbridge_signature(SN_SECRET, stamp, raw)}
    response = deliver(hx, system, raw, headers)
    # Past size, signature, content type and JSON, only the adapter can refuse.
    assert response.status_code in (202, 400, 413)
    if response.status_code == 400:
        assert response.json()["error"] in ("bad_input", "invalid_id", "unreadable_payload")
