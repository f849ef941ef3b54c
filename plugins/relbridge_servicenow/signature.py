"""relbridge's ServiceNow webhook signature (ServiceNow has no standard one).

The business rule in docs/ sends ``X-Relbridge-Timestamp`` (unix seconds) and
``X-Relbridge-Signature: sha256=hex(HMAC-SHA256(secret, timestamp + "." + body))``; the
secret is ``[webhooks] servicenow_secret``. The timestamp must be within
``TIMESTAMP_TOLERANCE`` of our clock either way, so a captured delivery cannot be replayed
later.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import SecretStr

from bridge.signatures import (
    SignatureRejected,
    SignedHeader,
    WebhookScheme,
    check_sha256_header,
    hmac_sha256_hex,
)
from relbridge_servicenow.webhook import SYSTEM

TIMESTAMP_TOLERANCE = 300.0  # seconds a delivery may be early or late
RELBRIDGE_SIGNATURE = "x-relbridge-signature"
RELBRIDGE_TIMESTAMP = "x-relbridge-timestamp"
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = "^sha256=[0-9a-fA-F]{64}$"


def verify(secret: bytes, headers: Mapping[str, str], body: bytes, now: float) -> None:
    """The signature is checked before the timestamp's age, so an unsigned stranger learns
    nothing about our clock."""
    timestamp = headers.get(RELBRIDGE_TIMESTAMP)
    if timestamp is None:
        raise SignatureRejected("missing_timestamp", f"the {RELBRIDGE_TIMESTAMP} header is required")
    timestamp = timestamp.strip()
    if not _TIMESTAMP.fullmatch(timestamp):
        raise SignatureRejected("malformed_timestamp", f"{RELBRIDGE_TIMESTAMP} must be unix time in whole seconds")
    check_sha256_header(headers, RELBRIDGE_SIGNATURE, hmac_sha256_hex(secret, timestamp.encode() + b"." + body))
    if abs(now - int(timestamp)) > TIMESTAMP_TOLERANCE:
        raise SignatureRejected("stale_timestamp",
                                f"{RELBRIDGE_TIMESTAMP} is more than {TIMESTAMP_TOLERANCE:.0f} seconds "
                                "away from our clock: check the sender's clock, or this is a replay")


def scheme(secret: SecretStr | None) -> WebhookScheme:
    return WebhookScheme(
        system=SYSTEM,
        verify=verify,
        secret=secret,
        secret_setting="[webhooks] servicenow_secret",
        summary="A ServiceNow business-rule delivery",
        headers=(
            SignedHeader("X-Relbridge-Timestamp", "unix seconds; within 5 minutes of ours", "^[0-9]{1,12}$"),
            SignedHeader("X-Relbridge-Signature",
                         'sha256=hex(HMAC-SHA256(servicenow_secret, timestamp + "." + raw body))', _SIGNATURE),
        ),
    )
