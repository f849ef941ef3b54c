"""The Table API as the adapter uses it: five calls on top of pysnow, counted and error-mapped.

pysnow sends every request, but three of its habits need care (research notes §A.8):

* a ``Resource`` shares its parameter dict between calls, so values set by one ``get`` leak
  into the next request; a fresh ``Resource`` per call (no HTTP involved) avoids that;
* booleans go out as ``True``/``False`` and unused defaults (``sysparm_view=``, a 10000
  limit on a POST) ride along; explicit string parameters, and ``None`` to drop the rest,
  make each request say exactly what it means;
* ``update``/``delete`` by query first GET the record; we address records by sys_id, so a
  PATCH or DELETE is one request.

Every request is counted by a response hook on pysnow's session (``calls``, and the
optional ``on_call(system, method, status)`` callback); a request that got no response at
all (connection refused, timeout) is counted with status 0.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import pysnow
import requests
from pydantic import SecretStr
from pysnow.exceptions import PysnowException
from requests.auth import HTTPBasicAuth

from bridge.adapter import OnCall, read_environment_once
from bridge.errors import BadInput, ConfigError, PermanentError, TransientError
from relbridge_servicenow.errors import map_request_error

log = logging.getLogger(__name__)

SYSTEM = "servicenow"

#: Parameters of a list GET. Links are left out of references (a plain sys_id is all we
#: need) and the count query a real instance runs for X-Total-Count is skipped.
LIST_PARAMS: dict[str, str | None] = {
    "sysparm_display_value": "false",
    "sysparm_exclude_reference_link": "true",
    "sysparm_no_count": "true",
    "sysparm_suppress_pagination_header": "true",
    "sysparm_view": None,
}
#: Parameters of a request on one record (GET, POST, PATCH, DELETE): pysnow's list
#: defaults are dropped so they cannot be misread as a query.
RECORD_PARAMS: dict[str, str | None] = {
    "sysparm_query": None,
    "sysparm_limit": None,
    "sysparm_offset": None,
    "sysparm_fields": None,
    "sysparm_view": None,
    "sysparm_suppress_pagination_header": None,
    "sysparm_display_value": "false",
    "sysparm_exclude_reference_link": "true",
}
#: A sys_id: 32 hex digits. Checked before one becomes part of a URL (ids come from
#: webhook bodies too: ``../sys_user`` must never pick another endpoint).
SYS_ID = re.compile(r"[0-9a-fA-F]{32}")
INVALID_ID = "invalid_id"
_SAFE_TABLE = re.compile(r"[0-9A-Za-z_]+")


def split_url(url: str) -> tuple[str, bool]:
    """``https://acme.service-now.com`` -> (``acme.service-now.com``, True), as pysnow wants it."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("[servicenow] url must look like https://<instance>.service-now.com")
    if parts.username or parts.password:
        raise ConfigError("[servicenow] url must not hold credentials; set user and password")
    if parts.query or parts.fragment:
        raise ConfigError("[servicenow] url must not have a query string or fragment")
    return parts.netloc + parts.path.rstrip("/"), parts.scheme == "https"


class TableApi:
    """One authenticated pysnow client for one instance, speaking to ``/api/now/table``."""

    def __init__(
        self,
        url: str,
        user: str,
        password: SecretStr,
        *,
        verify_tls: bool = True,
        timeout: float = 30,
        on_call: OnCall | None = None,
    ) -> None:
        host, use_ssl = split_url(url)
        self.base_url = f"{'https' if use_ssl else 'http'}://{host}"
        self._secret = password.get_secret_value()
        if not user or not self._secret:
            raise ConfigError("[servicenow] user and password must both be set")
        session = _Session()
        session.auth = HTTPBasicAuth(user, self._secret)
        session.verify = verify_tls
        session.hooks["response"].append(self._on_response)
        read_environment_once(session, self.base_url)
        self._client = pysnow.Client(host=host, use_ssl=use_ssl, session=session)
        self._timeout = timeout
        self._on_call = on_call
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()

    # -- the five calls ------------------------------------------------------------------

    def list(
        self, table: str, *, query: str, fields: Iterable[str], limit: int, offset: int = 0
    ) -> list[dict[str, Any]]:
        """One page of ``GET /table/<table>`` (pysnow does not page; callers loop)."""
        resource = self._resource(table, LIST_PARAMS)
        with self._errors("GET", table):
            response = resource.get(query=query, limit=limit, offset=offset, fields=list(fields))
            return list(response.all())

    def get(self, table: str, sys_id: str, *, fields: Iterable[str] = ()) -> dict[str, Any] | None:
        """``GET /table/<table>/<sys_id>``; None when the record does not exist."""
        resource = self._resource(table, {**RECORD_PARAMS, "sysparm_fields": ",".join(fields) or None})
        try:
            with self._errors("GET", table):
                return dict(resource.request("GET", path_append=_record_path(sys_id)).one())
        except PermanentError as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, table: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /table/<table>``; the 201 body is the record as stored."""
        resource = self._resource(table, RECORD_PARAMS)
        with self._errors("POST", table):
            return dict(resource.create(dict(payload)).one())

    def patch(self, table: str, sys_id: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """``PATCH /table/<table>/<sys_id>`` with only ``payload``'s fields."""
        resource = self._resource(table, RECORD_PARAMS)
        with self._errors("PATCH", table):
            response = resource.request(
                "PATCH", path_append=_record_path(sys_id), data=json.dumps(dict(payload))
            )
            return dict(response.one())

    def delete(self, table: str, sys_id: str) -> bool:
        """``DELETE /table/<table>/<sys_id>``; False when it was already gone."""
        resource = self._resource(table, RECORD_PARAMS)
        try:
            with self._errors("DELETE", table):
                resource.request("DELETE", path_append=_record_path(sys_id)).one()
        except PermanentError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def paged(
        self, table: str, *, query: str, fields: Iterable[str], page_size: int
    ) -> Iterator[list[dict[str, Any]]]:
        """Every page of a query with a stable order, until a short page."""
        fields = list(fields)
        offset = 0
        while True:
            page = self.list(table, query=query, fields=fields, limit=page_size, offset=offset)
            if page:
                yield page
            if len(page) < page_size:
                return
            offset += len(page)

    def record_url(self, table: str, sys_id: str) -> str:
        """The record's form in the ServiceNow UI (what a person clicks)."""
        return f"{self.base_url}/{table}.do?sys_id={sys_id}"

    def close(self) -> None:
        self._client.close()

    # -- plumbing ------------------------------------------------------------------------

    def _resource(self, table: str, params: Mapping[str, str | None]) -> pysnow.Resource:
        if not _SAFE_TABLE.fullmatch(table):
            raise BadInput(f"{table!r} is not a ServiceNow table name")
        resource = self._client.resource(api_path=f"/table/{table}", timeout=self._timeout)
        resource.parameters.add_custom(dict(params))
        return resource

    @contextmanager
    def _errors(self, method: str, table: str) -> Iterator[None]:
        where = f"ServiceNow {method} /table/{table}"
        try:
            yield
        except requests.exceptions.JSONDecodeError as exc:
            # A 2xx page that is not JSON: a hibernating instance or a proxy's login page.
            raise TransientError(f"{where}: the answer is not JSON (instance asleep?)") from exc
        except requests.RequestException as exc:
            if exc.response is None:
                self._count(method, 0)
            raise map_request_error(exc, secret=self._secret) from exc
        except PysnowException as exc:
            raise PermanentError(f"{where}: unexpected answer ({exc.__class__.__name__}: {exc})") from exc

    def _on_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._count(response.request.method or "?", response.status_code)

    def _count(self, method: str, status: int) -> None:
        with self._lock:
            self.calls[method] += 1
        if self._on_call is not None:
            try:
                self._on_call(SYSTEM, method, status)
            except Exception:  # metrics must never break a sync
                log.exception("on_call callback failed")


class _Session(requests.Session):
    """A session whose ``verify = False`` holds even when REQUESTS_CA_BUNDLE is set.

    requests lets that environment variable override a session's ``verify`` (psf/requests
    #3829), which would make ``[servicenow] verify_tls = false`` silently ineffective.
    """

    def merge_environment_settings(self, url, proxies, stream, verify, cert):  # type: ignore[no-untyped-def]
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if self.verify is False and verify is None:
            settings["verify"] = False
        return settings


def checked_sys_id(value: Any, what: str = "ServiceNow sys_id") -> str:
    """``value`` when it is a sys_id (32 hex digits); ``BadInput`` otherwise."""
    if not isinstance(value, str) or not SYS_ID.fullmatch(value):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise BadInput(f"{what} {shown} is not a sys_id (32 hex digits)", code=INVALID_ID)
    return value


def _record_path(sys_id: str) -> str:
    return checked_sys_id(sys_id)
