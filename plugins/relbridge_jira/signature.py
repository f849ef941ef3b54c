"""Jira's webhook signature: ``X-Hub-Signature: sha256=hex(HMAC-SHA256(secret, body))``.

Jira (Cloud and Data Center) signs a webhook registered with a secret this way; the
secret is ``[webhooks] jira_secret``.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import SecretStr

from bridge.signatures import SignedHeader, WebhookScheme, check_sha256_header, hmac_sha256_hex
from relbridge_jira.records import SYSTEM

HUB_SIGNATURE = "x-hub-signature"
_SIGNATURE = "^sha256=[0-9a-fA-F]{64}$"


def verify(secret: bytes, headers: Mapping[str, str], body: bytes, now: float) -> None:
    """The signature covers the raw body; there is no timestamp to check."""
    check_sha256_header(headers, HUB_SIGNATURE, hmac_sha256_hex(secret, body))


def scheme(secret: SecretStr | None) -> WebhookScheme:
    return WebhookScheme(
        system=SYSTEM,
        verify=verify,
        secret=secret,
        secret_setting="[webhooks] jira_secret",
        summary="A Jira webhook delivery",
        headers=(SignedHeader("X-Hub-Signature", "sha256=hex(HMAC-SHA256(jira_secret, raw body))", _SIGNATURE),),
    )
