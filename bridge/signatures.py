"""Webhook signature schemes: what a system plugin gives the receiver to check a delivery.

A system signs its webhook deliveries its own way (a header, an HMAC over the body or over
a timestamp and the body), so the check lives in that system's plugin and reaches the
receiver (``bridge.daemon.receiver``) through ``relbridge_webhook_schemes``. The core keeps the
parts every scheme shares: the record a plugin returns, the refusal it raises, and the
constant-time comparison of a ``sha256=<hex>`` header, so no plugin compares digests with
``==``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pydantic import SecretStr

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")

#: ``verify(secret, headers, body, now)``: raise ``SignatureRejected`` unless ``body`` is
#: signed with ``secret``; ``headers`` is case-insensitive, ``now`` is unix time.
Verifier = Callable[[bytes, Mapping[str, str], bytes, float], None]


class SignatureRejected(Exception):
    """A delivery whose signature does not hold; the receiver answers 401 with ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class SignedHeader:
    """A header a scheme requires, as the receiver's OpenAPI document describes it."""

    name: str
    description: str
    pattern: str


@dataclass(frozen=True)
class WebhookScheme:
    """How deliveries for ``system`` are signed; served at ``POST /webhooks/<system>``.

    ``secret_setting`` names where the admin sets ``secret`` (for the refusal when it is
    missing); ``summary`` and ``headers`` describe the endpoint in ``/openapi.json``.
    """

    system: str
    verify: Verifier
    secret: SecretStr | None
    secret_setting: str
    summary: str
    headers: tuple[SignedHeader, ...] = ()

    @property
    def path(self) -> str:
        return f"/webhooks/{self.system}"


def hmac_sha256_hex(secret: bytes, message: bytes) -> str:
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def check_sha256_header(headers: Mapping[str, str], name: str, expected_hex: str) -> None:
    """Compare ``sha256=<hex>`` in header ``name`` with ``expected_hex`` in constant time."""
    value = headers.get(name)
    if value is None:
        raise SignatureRejected("missing_signature", f"the {name} header is required")
    scheme, _, digest = value.strip().partition("=")
    if scheme.lower() != "sha256" or not _SHA256_HEX.fullmatch(digest):
        raise SignatureRejected("malformed_signature",
                                f"the {name} header must be 'sha256=' followed by 64 hex digits")
    if not hmac.compare_digest(digest.lower().encode(), expected_hex.encode()):
        raise SignatureRejected("invalid_signature",
                                f"{name} does not match the body: check that both sides use the same secret")
