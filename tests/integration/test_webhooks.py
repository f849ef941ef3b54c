"""The webhook receiver against a real inbox (SQLite, and PostgreSQL when
RELBRIDGE_TEST_PG_URL is set) and the real adapters from the plugins; the last tests have
the simulators deliver real webhooks to the receiver served over HTTP."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from openapi_spec_validator import validate
from pydantic import SecretStr
from relbridge_jira.adapter import JiraAdapter
from relbridge_servicenow.adapter import ServiceNowAdapter
from relbridge_servicenow.signature import TIMESTAMP_TOLERANCE
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from starlette.routing import Route
from starlette.testclient import TestClient

from bridge import hookimpl, signatures
from bridge.adapter import Adapter, WebhookHint
from bridge.config import Config, WebhooksConfig
from bridge.daemon.inbox import Event, Inbox
from bridge.daemon.metrics import Metrics
from bridge.daemon.receiver import READY_CACHE_SECONDS, create_app
from bridge.errors import ConfigError
from bridge.plugins import Hooks, make_plugin_manager
from bridge.signatures import SignedHeader, WebhookScheme, check_sha256_header, hmac_sha256_hex
from bridge.sim import Simulators, start_simulators
from bridge.sim.server import start_in_thread
from bridge.store import Store, schema
from tests.integration.helpers import AUTH, Jira, ServiceNow, requests_log

JIRA_SECRET = "jira-webhook-secret"
SN_SECRET = "servicenow-webhook-secret"
NOW = 1_714_564_800.0  # 2024-05-01 12:00:00 UTC
MAX_BODY = 2048
SYS_ID = "0123456789abcdef0123456789abcdef"


# -- harness -----------------------------------------------------------------------------------


class FakeTime:
    """A settable ``time.time`` for timestamp windows and the readiness cache."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def real_adapters(sims: Simulators) -> dict[str, Adapter]:
    assert sims.jira_url is not None
    return {
        "servicenow": ServiceNowAdapter(sims.servicenow_url, "admin", SecretStr("admin")),
        "jira": JiraAdapter(sims.jira_url, "admin", SecretStr("admin"), ["OPS"]),
    }


def webhooks_config(**overrides: Any) -> WebhooksConfig:
    values: dict[str, Any] = {"jira_secret": JIRA_SECRET, "servicenow_secret": SN_SECRET,
                              "max_body_bytes": MAX_BODY}
    return WebhooksConfig.model_validate({**values, **overrides})


@dataclass
class Harness:
    """One receiver app on a real inbox, driven in-process by starlette's TestClient."""

    inbox: Inbox
    adapters: dict[str, Adapter]
    config: WebhooksConfig = field(default_factory=webhooks_config)
    clock: Any = field(default_factory=FakeTime)  # FakeTime, or time.time over real HTTP
    metrics: Metrics = field(default_factory=Metrics)
    ready: Any = None
    extra_plugins: list[tuple[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        hooks = Hooks(make_plugin_manager(extra=self.extra_plugins))
        schemes = hooks.webhook_schemes(Config(webhooks=self.config))
        self.app = create_app(inbox=self.inbox, adapters=self.adapters, config=self.config, schemes=schemes,
                              metrics=self.metrics, ready=self.ready, clock=self.clock)
        self.client = TestClient(self.app, raise_server_exceptions=True)

    def jira(self, body: Any, *, secret: str | None = JIRA_SECRET,
             headers: dict[str, str] | None = None) -> Any:
        raw = encode(body)
        sent = {"Content-Type": "application/json; charset=utf-8"}
        if secret is not None:
            sent["X-Hub-Signature"] = hub_signature(secret, raw)
        return self.client.post("/webhooks/jira", content=raw, headers={**sent, **(headers or {})})

    def servicenow(self, body: Any, *, secret: str | None = SN_SECRET,
                   timestamp: float | None = None, headers: dict[str, str] | None = None) -> Any:
        raw = encode(body)
        stamp = str(int(self.clock() if timestamp is None else timestamp))
        sent = {"Content-Type": "application/json", "X-Relbridge-Timestamp": stamp}
        if secret is not None:
            sent["X-Relbridge-Signature"] = relbridge_signature(secret, stamp, raw)
        return self.client.post("/webhooks/servicenow", content=raw,
                                headers={**sent, **(headers or {})})

    def deliveries(self) -> int:
        with self.inbox.store.begin(write=False) as conn:
            return conn.execute(select(func.count()).select_from(schema.deliveries)).scalar_one()

    def queued(self) -> tuple[int, int]:
        """(inbox depth, delivery ids remembered): both unchanged when nothing was enqueued."""
        return self.inbox.depth(), self.deliveries()

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


def encode(body: Any) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def hub_signature(secret: str, raw: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def relbridge_signature(secret: str, timestamp: str, raw: bytes) -> str:
    message = timestamp.encode() + b"." + raw
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sn_body(**overrides: Any) -> dict[str, Any]:
    return {"table": "change_request", "sys_id": SYS_ID, "number": "CHG0030001",
            "operation": "update", "sys_updated_on": "2024-05-01 11:59:00",
            "sys_mod_count": "3", **overrides}


def jira_issue_body(event: str = "jira:issue_updated", **issue: Any) -> dict[str, Any]:
    return {"timestamp": 1714564800000, "webhookEvent": event, "issue": {
        "id": "10042", "key": "OPS-42", "fields": {"issuetype": {"name": "Change"}}, **issue}}


def jira_version_body(event: str = "jira:version_updated", version_id: str = "10007") -> dict[str, Any]:
    return {"timestamp": 1714564800000, "webhookEvent": event,
            "version": {"id": version_id, "name": "R-7", "projectId": 10000}}


def claim_all(inbox: Inbox) -> list[Event]:
    return inbox.claim("test", limit=100)


@pytest.fixture(scope="module")
def sims() -> Iterator[Simulators]:
    with start_simulators(seed="empty") as started:
        yield started


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store(store_url) as opened:
        yield opened


@pytest.fixture
def inbox(store: Store) -> Inbox:
    return Inbox(store)


@pytest.fixture
def hx(inbox: Inbox, sims: Simulators) -> Harness:
    return Harness(inbox, real_adapters(sims))


# -- accepted deliveries -----------------------------------------------------------------------


def test_a_signed_servicenow_delivery_is_queued(hx: Harness, sims: Simulators) -> None:
    before = requests_log(sims.servicenow_url)["count"]
    response = hx.servicenow(sn_body())
    assert (response.status_code, response.json()) == (202, {"accepted": 1, "duplicates": 0})
    [event] = claim_all(hx.inbox)
    assert (event.system, event.entity, event.ext_id, event.source, event.deleted) == (
        "servicenow", "change", SYS_ID, "webhook", False)
    assert hx.sample("relbridge_events_received_total", system="servicenow", entity="change",
                     source="webhook") == 1
    assert hx.sample("relbridge_webhook_requests_total", endpoint="/webhooks/servicenow",
                     status="202") == 1
    # parse_webhook reads the body only: the simulator saw no request from the adapter.
    assert requests_log(sims.servicenow_url)["count"] == before
    assert not hx.adapters["servicenow"].calls  # type: ignore[attr-defined]


def test_a_signed_jira_delivery_is_queued_with_its_deletion_flag(hx: Harness, sims: Simulators) -> None:
    assert sims.jira_url is not None
    before = requests_log(sims.jira_url)["count"]
    assert hx.jira(jira_issue_body()).json() == {"accepted": 1, "duplicates": 0}
    assert hx.jira(jira_version_body("jira:version_deleted")).status_code == 202
    events = {(e.system, e.entity, e.ext_id, e.deleted) for e in claim_all(hx.inbox)}
    assert events == {("jira", "change", "10042", False), ("jira", "release", "10007", True)}
    assert requests_log(sims.jira_url)["count"] == before
    assert not hx.adapters["jira"].calls  # type: ignore[attr-defined]


def test_a_servicenow_delete_is_queued_as_a_deletion(hx: Harness) -> None:
    assert hx.servicenow(sn_body(table="rm_release", operation="delete")).status_code == 202
    [event] = claim_all(hx.inbox)
    assert (event.entity, event.deleted) == ("release", True)


def test_a_repeated_delivery_is_recognised_even_after_its_event_was_processed(hx: Harness) -> None:
    first = hx.jira(jira_issue_body(), headers={"X-Atlassian-Webhook-Identifier": "d-1"})
    assert first.json() == {"accepted": 1, "duplicates": 0}
    [event] = claim_all(hx.inbox)
    assert hx.inbox.complete(event)
    again = hx.jira(jira_issue_body(), headers={"X-Atlassian-Webhook-Identifier": "d-1"})
    assert (again.status_code, again.json()) == (202, {"accepted": 0, "duplicates": 1})
    assert hx.inbox.depth() == 0
    assert hx.sample("relbridge_events_ignored_total", system="jira", reason="duplicate") == 1
    # The same body under another delivery id is a new notice.
    other = hx.jira(jira_issue_body(), headers={"X-Atlassian-Webhook-Identifier": "d-2"})
    assert other.json() == {"accepted": 1, "duplicates": 0}
    # ServiceNow deliveries are identified by record, mod count and operation.
    assert hx.servicenow(sn_body()).json()["accepted"] == 1
    assert hx.servicenow(sn_body()).json() == {"accepted": 0, "duplicates": 1}
    assert hx.servicenow(sn_body(sys_mod_count="4")).json()["accepted"] == 1


@pytest.mark.parametrize("system, body", [
    ("jira", {"webhookEvent": "comment_created", "comment": {"id": "1"}}),
    ("jira", jira_issue_body(fields={"issuetype": {"name": "Bug"}})),
    ("jira", jira_issue_body(key="OTHER-1")),
    ("servicenow", sn_body(table="sys_user")),
])
def test_events_relbridge_does_not_sync_are_acknowledged_and_counted(
    hx: Harness, system: str, body: dict[str, Any]
) -> None:
    response = hx.jira(body) if system == "jira" else hx.servicenow(body)
    assert (response.status_code, response.json()) == (202, {"accepted": 0, "ignored": True})
    assert hx.queued() == (0, 0)
    assert hx.sample("relbridge_events_ignored_total", system=system, reason="not_synced") == 1


class SeveralHints:
    """An adapter whose deliveries name several objects under one delivery id."""

    name = "jira"
    entities = ("change", "incident")

    def parse_webhook(self, headers: Any, body: Any) -> list[WebhookHint]:
        return [WebhookHint("jira", "change", "1", delivery_id=body["id"]),
                WebhookHint("jira", "incident", "2", delivery_id=body["id"], deleted=True)]


def test_every_hint_of_a_delivery_is_queued_and_recognised_when_repeated(inbox: Inbox) -> None:
    hx = Harness(inbox, {"jira": SeveralHints()})  # type: ignore[dict-item]
    assert hx.jira({"id": "d-1"}).json() == {"accepted": 2, "duplicates": 0}
    assert hx.jira({"id": "d-1"}).json() == {"accepted": 0, "duplicates": 2}
    events = {(e.entity, e.ext_id, e.deleted) for e in claim_all(inbox)}
    assert events == {("change", "1", False), ("incident", "2", True)}


class WatchingInbox:
    """An inbox wrapper like the daemon's, which acts (wakes workers) on each accepted event."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox, self.seen_by_others = inbox, []

    def enqueue(self, *args: Any, **kwargs: Any) -> bool:
        accepted = self.inbox.enqueue(*args, **kwargs)
        self.seen_by_others.append(self.inbox.depth())  # from another connection
        return accepted

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inbox, name)


def test_an_accepted_event_is_committed_before_the_inbox_reports_it(inbox: Inbox) -> None:
    watching = WatchingInbox(inbox)
    hx = Harness(watching, {"jira": SeveralHints()})  # type: ignore[arg-type, dict-item]
    assert hx.jira({"id": "d-1"}).status_code == 202
    assert watching.seen_by_others == [1, 2]


def test_a_timestamp_at_the_edge_of_the_window_is_accepted(hx: Harness) -> None:
    early = hx.servicenow(sn_body(), timestamp=NOW - TIMESTAMP_TOLERANCE)
    late = hx.servicenow(sn_body(sys_mod_count="9"), timestamp=NOW + TIMESTAMP_TOLERANCE)
    assert (early.status_code, late.status_code) == (202, 202)


def test_signature_headers_are_read_case_insensitively(hx: Harness) -> None:
    raw = encode(jira_issue_body())
    signature = hub_signature(JIRA_SECRET, raw).replace("sha256=", "SHA256=").upper()
    response = hx.client.post("/webhooks/jira", content=raw, headers={
        "x-hub-signature": signature, "content-type": "Application/JSON"})
    assert response.status_code == 202


# -- refusals: right code, JSON error, nothing queued ------------------------------------------


def assert_refused(hx: Harness, response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == code and isinstance(body["message"], str) and body["message"]
    assert "Traceback" not in response.text
    assert hx.queued() == (0, 0)


def sign_jira(raw: bytes, secret: str = JIRA_SECRET) -> dict[str, str]:
    return {"X-Hub-Signature": hub_signature(secret, raw), "Content-Type": "application/json"}


def sign_sn(raw: bytes, stamp: str = str(int(NOW)), secret: str = SN_SECRET) -> dict[str, str]:
    return {"X-Relbridge-Timestamp": stamp, "Content-Type": "application/json",
            "X-Relbridge-Signature": relbridge_signature(secret, stamp, raw)}


JIRA_RAW = encode(jira_issue_body())
SN_RAW = encode(sn_body())
FORGED = "sha256=" + "0" * 64

SIGNATURE_CASES = [
    pytest.param("jira", JIRA_RAW, {"Content-Type": "application/json"}, "missing_signature", id="jira-unsigned"),
    pytest.param("jira", JIRA_RAW, {**sign_jira(JIRA_RAW), "X-Hub-Signature": FORGED}, "invalid_signature", id="jira-forged"),
    pytest.param("jira", JIRA_RAW, sign_jira(JIRA_RAW, "other-secret"), "invalid_signature", id="jira-wrong-secret"),
    pytest.param("jira", JIRA_RAW + b" ", sign_jira(JIRA_RAW), "invalid_signature", id="jira-body-changed"),
    pytest.param("jira", JIRA_RAW, {**sign_jira(JIRA_RAW), "X-Hub-Signature": "sha1=abc"}, "malformed_signature", id="jira-sha1"),
    pytest.param("jira", JIRA_RAW, {**sign_jira(JIRA_RAW), "X-Hub-Signature": hub_signature(JIRA_SECRET, JIRA_RAW)[7:]}, "malformed_signature", id="jira-no-scheme"),
    pytest.param("jira", JIRA_RAW, {**sign_jira(JIRA_RAW), "X-Hub-Signature": "sha256=" + "g" * 64}, "malformed_signature", id="jira-not-hex"),
    pytest.param("servicenow", SN_RAW, {"Content-Type": "application/json"}, "missing_timestamp", id="sn-unsigned"),
    pytest.param("servicenow", SN_RAW, {**sign_sn(SN_RAW), "X-Relbridge-Signature": FORGED}, "invalid_signature", id="sn-forged"),
    pytest.param("servicenow", SN_RAW, {k: v for k, v in sign_sn(SN_RAW).items() if k != "X-Relbridge-Signature"}, "missing_signature", id="sn-no-signature"),
    pytest.param("servicenow", SN_RAW, sign_sn(SN_RAW, secret="other-secret"), "invalid_signature", id="sn-wrong-secret"),
    pytest.param("servicenow", SN_RAW, {**sign_sn(SN_RAW), "X-Relbridge-Timestamp": str(int(NOW) + 1)}, "invalid_signature", id="sn-timestamp-changed"),
    pytest.param("servicenow", SN_RAW, sign_sn(SN_RAW, str(int(NOW - TIMESTAMP_TOLERANCE) - 1)), "stale_timestamp", id="sn-stale"),
    pytest.param("servicenow", SN_RAW, sign_sn(SN_RAW, str(int(NOW + TIMESTAMP_TOLERANCE) + 1)), "stale_timestamp", id="sn-future"),
    pytest.param("servicenow", SN_RAW, sign_sn(SN_RAW, "0"), "stale_timestamp", id="sn-epoch"),
    pytest.param("servicenow", SN_RAW, sign_sn(SN_RAW, "2024-05-01T12:00:00Z"), "malformed_timestamp", id="sn-iso-timestamp"),
    pytest.param("servicenow", SN_RAW, sign_sn(SN_RAW, "1714564800.5"), "malformed_timestamp", id="sn-fractional"),
]


@pytest.mark.parametrize("system, raw, headers, code", SIGNATURE_CASES)
def test_unsigned_forged_and_stale_deliveries_are_refused(
    hx: Harness, system: str, raw: bytes, headers: dict[str, str], code: str
) -> None:
    response = hx.client.post(f"/webhooks/{system}", content=raw, headers=headers)
    assert_refused(hx, response, 401, code)
    assert hx.sample("relbridge_webhook_requests_total", endpoint=f"/webhooks/{system}",
                     status="401") == 1


@pytest.mark.parametrize("system", ["jira", "servicenow"])
def test_a_system_without_a_secret_accepts_nothing(inbox: Inbox, sims: Simulators, system: str) -> None:
    hx = Harness(inbox, real_adapters(sims), config=webhooks_config(**{f"{system}_secret": None}))
    for secret in (None, "", JIRA_SECRET, SN_SECRET):
        response = hx.jira(jira_issue_body(), secret=secret) if system == "jira" else \
            hx.servicenow(sn_body(), secret=secret)
        assert_refused(hx, response, 401, "secret_not_configured")
        assert f"{system}_secret" in response.json()["message"]
    other = hx.servicenow(sn_body()) if system == "jira" else hx.jira(jira_issue_body())
    assert other.status_code == 202  # the other system's endpoint still works


def chunks(data: bytes, size: int = 100) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


@pytest.mark.parametrize("system", ["jira", "servicenow"])
def test_oversized_bodies_are_refused_before_anything_else(hx: Harness, system: str) -> None:
    big = encode({"webhookEvent": "jira:issue_updated", "padding": "x" * MAX_BODY})
    headers = sign_jira(big) if system == "jira" else sign_sn(big)
    path = f"/webhooks/{system}"
    assert_refused(hx, hx.client.post(path, content=big, headers=headers), 413, "payload_too_large")
    # Chunked, without Content-Length: cut off while streaming.
    response = hx.client.post(path, content=chunks(big), headers=headers)
    assert "content-length" not in response.request.headers
    assert_refused(hx, response, 413, "payload_too_large")
    # Size comes before the signature: an unsigned giant is a 413, not a 401.
    assert_refused(hx, hx.client.post(path, content=big), 413, "payload_too_large")
    # Exactly at the limit is fine as far as size goes (then the signature decides).
    at_limit = b" " * MAX_BODY
    assert hx.client.post(path, content=at_limit).status_code == 401


def test_a_declared_length_over_the_limit_is_refused_without_reading_the_body(hx: Harness) -> None:
    read: list[int] = []

    def body() -> Iterator[bytes]:
        read.append(1)
        yield b"{}"

    response = hx.client.post("/webhooks/jira", content=body(), headers={
        "Content-Length": str(MAX_BODY + 1), **sign_jira(b"{}")})
    assert_refused(hx, response, 413, "payload_too_large")
    invalid = hx.client.post("/webhooks/jira", content=b"{}",
                             headers={"Content-Length": "2x", **sign_jira(b"{}")})
    assert_refused(hx, invalid, 400, "invalid_content_length")


BODY_CASES = [
    pytest.param(b"{}", "text/plain", 415, "unsupported_media_type", id="text-plain"),
    pytest.param(b"{}", None, 415, "unsupported_media_type", id="no-content-type"),
    pytest.param(b"{}", "application/x-www-form-urlencoded", 415, "unsupported_media_type", id="form"),
    pytest.param(b"{}", "application/json; charset=iso-8859-1", 415, "unsupported_media_type", id="latin-1"),
    pytest.param(b"{}", "application/jsonx", 415, "unsupported_media_type", id="jsonx"),
    pytest.param(b'{"webhookEvent": ', "application/json", 400, "malformed_json", id="truncated"),
    pytest.param(b"", "application/json", 400, "malformed_json", id="empty"),
    pytest.param(b"\xff\xfe{}", "application/json", 400, "malformed_json", id="not-utf8"),
    pytest.param(b'{"a": NaN}', "application/json", 400, "malformed_json", id="nan"),
    pytest.param(b'{"a": Infinity}', "application/json", 400, "malformed_json", id="infinity"),
    pytest.param(b"[" * 1000 + b"]" * 1000, "application/json", 400, "malformed_json", id="too-deep"),
    pytest.param(b"[]", "application/json", 400, "not_an_object", id="array"),
    pytest.param(b'"text"', "application/json", 400, "not_an_object", id="string"),
    pytest.param(b"42", "application/json", 400, "not_an_object", id="number"),
    pytest.param(b"null", "application/json", 400, "not_an_object", id="null"),
    pytest.param(b"{}", "application/json", 400, "bad_input", id="empty-object"),
]


@pytest.mark.parametrize("system", ["jira", "servicenow"])
@pytest.mark.parametrize("raw, content_type, status, code", BODY_CASES)
def test_bodies_that_are_not_json_objects_are_refused(
    hx: Harness, system: str, raw: bytes, content_type: str | None, status: int, code: str
) -> None:
    headers = sign_jira(raw) if system == "jira" else sign_sn(raw)
    headers.pop("Content-Type")
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = hx.client.post(f"/webhooks/{system}", content=raw, headers=headers)
    assert_refused(hx, response, status, code)


def test_a_deeply_nested_body_within_the_limit_is_refused_cleanly(
    inbox: Inbox, sims: Simulators
) -> None:
    hx = Harness(inbox, real_adapters(sims), config=webhooks_config(max_body_bytes=1_000_000))
    raw = b"[" * 400_000 + b"]" * 400_000
    assert_refused(hx, hx.client.post("/webhooks/jira", content=raw, headers=sign_jira(raw)),
                   400, "malformed_json")


@pytest.mark.parametrize("system, body, fragment", [
    ("jira", {"webhookEvent": 7}, "webhookEvent"),
    ("jira", {"webhookEvent": "jira:issue_updated"}, "issue"),
    ("jira", jira_issue_body(id=None), "issue.id"),
    ("jira", {"webhookEvent": "jira:version_released", "version": {"name": "R"}}, "version.id"),
    ("jira", {"webhookEvent": "issuelink_created", "issueLink": {}}, "issueLinkType"),
    ("servicenow", sn_body(operation="merge"), "operation"),
    ("servicenow", sn_body(sys_mod_count=None), "sys_mod_count"),
    ("servicenow", {"sys_id": SYS_ID}, "table"),
])
def test_json_objects_that_are_not_the_systems_webhook_are_refused(
    hx: Harness, system: str, body: dict[str, Any], fragment: str
) -> None:
    response = hx.jira(body) if system == "jira" else hx.servicenow(body)
    assert_refused(hx, response, 400, "bad_input")
    assert fragment in response.json()["message"]


def test_checks_run_in_order_size_signature_content_type_json(hx: Harness) -> None:
    garbage = b"not json"
    # Unsigned with a wrong content type: the signature is checked first.
    assert_refused(hx, hx.client.post("/webhooks/jira", content=garbage,
                                      headers={"Content-Type": "text/plain"}),
                   401, "missing_signature")
    # Signed, wrong content type, not JSON: the content type is checked before parsing.
    headers = {**sign_jira(garbage), "Content-Type": "text/plain"}
    assert_refused(hx, hx.client.post("/webhooks/jira", content=garbage, headers=headers),
                   415, "unsupported_media_type")


class BrokenAdapter:
    """An adapter whose parser has a bug: it must not turn into a 500 the sender retries."""

    name = "jira"
    entities = ("release",)

    def parse_webhook(self, headers: Any, body: Any) -> list[Any]:
        return body["issue"]["fields"]["issuetype"].get("name")


def test_an_adapter_that_crashes_on_a_body_gives_a_400(inbox: Inbox, caplog: Any) -> None:
    hx = Harness(inbox, {"jira": BrokenAdapter()})  # type: ignore[dict-item]
    response = hx.jira(jira_issue_body(fields={"issuetype": "Change"}))
    assert_refused(hx, response, 400, "unreadable_payload")
    assert "could not read a webhook body" in caplog.text


def test_the_jira_adapter_refuses_a_non_object_issuetype_as_bad_input(hx: Harness) -> None:
    response = hx.jira(jira_issue_body(fields={"issuetype": "Change"}))
    assert (response.status_code, response.json()["error"]) == (400, "bad_input")


def test_a_system_without_an_adapter_is_not_found(inbox: Inbox, sims: Simulators) -> None:
    hx = Harness(inbox, {"servicenow": real_adapters(sims)["servicenow"]})
    assert_refused(hx, hx.jira(jira_issue_body()), 404, "system_not_enabled")


def test_an_unreachable_store_gives_a_503_the_sender_retries(
    hx: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(write: bool = True) -> Any:
        raise OperationalError("BEGIN", {}, Exception("connection refused"))

    monkeypatch.setattr(hx.inbox.store, "begin", down)
    response = hx.servicenow(sn_body())
    assert (response.status_code, response.json()["error"]) == (503, "store_unavailable")
    assert response.headers["retry-after"] == "5"
    monkeypatch.undo()
    assert hx.servicenow(sn_body()).json() == {"accepted": 1, "duplicates": 0}  # redelivery


# -- health, metrics, documentation, routing ---------------------------------------------------


def test_healthz_is_always_ok(hx: Harness) -> None:
    response = hx.client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


class ReadyProbe:
    def __init__(self, answer: dict[str, str | None]) -> None:
        self.answer, self.calls = answer, 0

    def __call__(self) -> dict[str, str | None]:
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_readyz_reports_every_check_and_caches_the_answer(inbox: Inbox, sims: Simulators) -> None:
    probe = ReadyProbe({"store": None, "servicenow": None, "jira": "401 check [jira] user/token"})
    hx = Harness(inbox, real_adapters(sims), ready=probe)
    response = hx.client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "checks": {
        "store": "ok", "servicenow": "ok", "jira": "401 check [jira] user/token"}}
    probe.answer = {"store": None, "servicenow": None, "jira": None}
    hx.clock.now += READY_CACHE_SECONDS - 1
    assert hx.client.get("/readyz").status_code == 503  # cached
    assert probe.calls == 1
    hx.clock.now += 1
    response = hx.client.get("/readyz")
    assert (response.status_code, response.json()["status"], probe.calls) == (200, "ok", 2)


def test_readyz_is_unavailable_when_the_check_itself_fails(inbox: Inbox, sims: Simulators) -> None:
    probe = ReadyProbe(RuntimeError("boom"))  # type: ignore[arg-type]
    hx = Harness(inbox, real_adapters(sims), ready=probe)
    response = hx.client.get("/readyz")
    assert response.status_code == 503 and "RuntimeError" in response.json()["checks"]["ready"]


def test_readyz_without_a_check_asks_the_store(hx: Harness) -> None:
    response = hx.client.get("/readyz")
    assert (response.status_code, response.json()["checks"]) == (200, {"store": "ok"})


def test_metrics_refresh_the_queue_gauges(hx: Harness) -> None:
    hx.servicenow(sn_body())
    hx.jira(b"{", headers={})
    response = hx.client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    lines = set(response.text.splitlines())
    assert "relbridge_queue_depth 1.0" in lines
    assert 'relbridge_webhook_requests_total{endpoint="/webhooks/jira",status="400"} 1.0' in lines
    assert ('relbridge_events_received_total{entity="change",source="webhook",'
            'system="servicenow"} 1.0') in lines


def test_metrics_report_writes_held_by_the_safety_brake(hx: Harness) -> None:
    assert "relbridge_held_writes 0.0" in hx.client.get("/metrics").text.splitlines()
    hx.inbox.store.hold_write("release", "RLSE1", "jira", "state", kind="rollback", old="deployed",
                              new="rolled_back", reason="safety brake: rollback")
    assert "relbridge_held_writes 1.0" in hx.client.get("/metrics").text.splitlines()


def test_openapi_document_is_valid_and_covers_every_route(hx: Harness) -> None:
    response = hx.client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    validate(document)
    routes = {route.path for route in hx.app.routes if isinstance(route, Route)}
    assert set(document["paths"]) == routes
    for system in ("jira", "servicenow"):
        codes = set(document["paths"][f"/webhooks/{system}"]["post"]["responses"])
        assert codes == {"202", "400", "401", "404", "413", "415", "503"}


def test_an_unexpected_failure_is_a_json_500_without_a_traceback(
    hx: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> bytes:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(hx.metrics, "render", broken)
    response = TestClient(hx.app, raise_server_exceptions=False).get("/metrics")
    assert response.status_code == 500
    assert response.json() == {"error": "internal_error", "message": "the receiver failed; see its log"}


def test_unknown_paths_and_wrong_methods_get_json_errors(hx: Harness) -> None:
    missing = hx.client.get("/nope")
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    wrong = hx.client.get("/webhooks/jira")
    assert (wrong.status_code, wrong.json()["error"]) == (405, "method_not_allowed")
    assert wrong.headers["allow"] == "POST"
    assert hx.client.post("/healthz").json()["error"] == "method_not_allowed"


# -- real deliveries from the simulators over HTTP ---------------------------------------------


JIRA_EVENTS = ["jira:issue_created", "jira:issue_updated", "jira:issue_deleted",
               "issuelink_created", "jira:version_created", "jira:version_released",
               "jira:version_deleted"]


@pytest.fixture
def served(inbox: Inbox) -> Iterator[tuple[Simulators, Harness, str]]:
    """Fresh simulators delivering to the receiver on a real loopback HTTP server."""
    with start_simulators(seed="empty") as own:
        # Real Jira issue bodies are several KiB: the default limit, not the tests' small one.
        config = webhooks_config(max_body_bytes=WebhooksConfig().max_body_bytes)
        hx = Harness(inbox, real_adapters(own), config=config, clock=time.time)
        server = start_in_thread(hx.app)
        try:
            yield own, hx, server.url
        finally:
            server.stop()


def test_simulators_deliver_real_webhooks_into_the_inbox(served: tuple[Simulators, Harness, str]) -> None:
    sims, hx, url = served
    assert sims.jira_url is not None and sims.jira_webhooks is not None
    requests.post(f"{sims.servicenow_url}/_sim/webhooks", timeout=5, json={
        "url": f"{url}/webhooks/servicenow", "secret": SN_SECRET,
        "tables": ["rm_release", "change_request", "incident"]}).raise_for_status()
    requests.post(f"{sims.jira_url}/rest/webhooks/1.0/webhook", timeout=5, auth=AUTH, json={
        "name": "relbridge", "url": f"{url}/webhooks/jira", "events": JIRA_EVENTS,
        "secret": JIRA_SECRET}).raise_for_status()

    sn, jira = ServiceNow(sims.servicenow_url), Jira(sims.jira_url)
    release = sn.create("rm_release", short_description="R-1")
    change = sn.create("change_request", short_description="deploy")
    sn.update("change_request", change["sys_id"], state="-4")
    version = jira.create_version("R-1")
    issue = jira.create_issue("Change", "deploy")
    jira.update_issue(issue["key"], summary="deploy v2")
    assert sims.servicenow_webhooks.flush(10) and sims.jira_webhooks.flush(10)

    assert not sims.servicenow_webhooks.failed and not sims.jira_webhooks.failed
    assert len(sims.servicenow_webhooks.delivered) == 3
    assert len(sims.jira_webhooks.delivered) == 3
    events = {(e.system, e.entity, e.ext_id, e.source) for e in claim_all(hx.inbox)}
    assert events == {
        ("servicenow", "release", release["sys_id"], "webhook"),
        ("servicenow", "change", change["sys_id"], "webhook"),  # created + updated coalesce
        ("jira", "release", str(version["id"]), "webhook"),
        ("jira", "change", str(issue["id"]), "webhook"),
    }
    assert hx.sample("relbridge_webhook_requests_total", endpoint="/webhooks/jira",
                     status="202") == 3


def test_simulator_deliveries_with_the_wrong_secret_are_refused(
    served: tuple[Simulators, Harness, str]
) -> None:
    sims, hx, url = served
    assert sims.jira_url is not None and sims.jira_webhooks is not None
    requests.post(f"{sims.servicenow_url}/_sim/webhooks", timeout=5, json={
        "url": f"{url}/webhooks/servicenow", "secret": "guessed",
        "tables": ["change_request"]}).raise_for_status()
    requests.post(f"{sims.jira_url}/rest/webhooks/1.0/webhook", timeout=5, auth=AUTH, json={
        "name": "unsigned", "url": f"{url}/webhooks/jira",
        "events": ["jira:version_created"]}).raise_for_status()
    ServiceNow(sims.servicenow_url).create("change_request", short_description="x")
    Jira(sims.jira_url).create_version("R-2")
    assert sims.servicenow_webhooks.flush(10) and sims.jira_webhooks.flush(10)
    assert [d.status for d in sims.servicenow_webhooks.failed] == [401]
    assert [d.status for d in sims.jira_webhooks.failed] == [401]
    assert hx.queued() == (0, 0)


def test_an_oversized_chunked_upload_over_http_is_cut_off(
    served: tuple[Simulators, Harness, str]
) -> None:
    _, hx, url = served
    sent: list[int] = []

    def endless() -> Iterator[bytes]:
        for _ in range(10_000):  # 80 MB if nobody stopped reading
            sent.append(1)
            yield b"x" * 8192

    try:
        response = requests.post(f"{url}/webhooks/jira", data=endless(), timeout=10,
                                 headers={"Content-Type": "application/json"})
    except requests.ConnectionError:  # the server may close while we still send
        response = None
    if response is not None:
        assert response.status_code == 413
        assert response.json()["error"] == "payload_too_large"
    assert len(sent) < 10_000
    assert hx.queued() == (0, 0)
    # The server is still fine afterwards.
    assert requests.get(f"{url}/healthz", timeout=5).json() == {"status": "ok"}


# -- schemes come from plugins -----------------------------------------------------------------

ACME_SECRET = "acme-webhook-secret"


class AcmeAdapter:
    name = "acme"
    entities = ("change",)

    def parse_webhook(self, headers: Any, body: Any) -> list[WebhookHint]:
        return [WebhookHint("acme", "change", str(body["id"]), delivery_id=str(body["id"]))]


class AcmePlugin:
    """A third-party system: ``X-Acme-Signature: sha256=hex(HMAC(secret, body))``."""

    @hookimpl
    def relbridge_webhook_schemes(self) -> list[WebhookScheme]:
        def verify(secret: bytes, headers: Any, body: bytes, now: float) -> None:
            check_sha256_header(headers, "x-acme-signature", hmac_sha256_hex(secret, body))

        return [WebhookScheme("acme", verify, SecretStr(ACME_SECRET), "[acme] webhook_secret",
                              "An Acme delivery", (SignedHeader("X-Acme-Signature", "sha256=…", "^sha256="),))]


def test_a_third_party_webhook_scheme_is_served_and_checked(inbox: Inbox) -> None:
    hx = Harness(inbox, {"acme": AcmeAdapter()}, extra_plugins=[("acme", AcmePlugin())])  # type: ignore[dict-item]
    raw = encode({"id": 7})
    signed = {"Content-Type": "application/json", "X-Acme-Signature": hub_signature(ACME_SECRET, raw)}
    assert hx.client.post("/webhooks/acme", content=raw, headers=signed).json() == {"accepted": 1, "duplicates": 0}
    wrong = {**signed, "X-Acme-Signature": hub_signature("not-the-secret", raw)}
    refused = hx.client.post("/webhooks/acme", content=raw, headers=wrong)
    assert (refused.status_code, refused.json()["error"]) == (401, "invalid_signature")
    assert "/webhooks/acme" in hx.client.get("/openapi.json").json()["paths"]
    assert {(e.system, e.ext_id) for e in claim_all(inbox)} == {("acme", "7")}


def test_the_first_party_schemes_come_from_the_system_plugins() -> None:
    schemes = Hooks(make_plugin_manager()).webhook_schemes(Config(webhooks=webhooks_config()))
    assert {system: scheme.verify.__module__ for system, scheme in schemes.items()} == {
        "jira": "relbridge_jira.signature", "servicenow": "relbridge_servicenow.signature"}
    assert schemes["jira"].secret is not None and schemes["jira"].secret.get_secret_value() == JIRA_SECRET


def test_two_plugins_with_a_scheme_for_one_system_is_an_error() -> None:
    class Twin:
        @hookimpl
        def relbridge_webhook_schemes(self) -> list[WebhookScheme]:
            return [WebhookScheme("jira", lambda *args: None, None, "-", "-")]

    with pytest.raises(ConfigError, match="two plugins provide a webhook scheme named 'jira'"):
        Hooks(make_plugin_manager(extra=[("twin", Twin())])).webhook_schemes(Config())


@pytest.mark.parametrize("system", ["jira", "servicenow"])
def test_signatures_are_compared_in_constant_time(hx: Harness, system: str, monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signatures.hmac, "compare_digest", spy)
    response = hx.jira(jira_issue_body()) if system == "jira" else hx.servicenow(sn_body())
    assert response.status_code == 202
    assert len(compared) == 1
