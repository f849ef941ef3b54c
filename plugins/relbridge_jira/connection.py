"""The adapter's one ``jira.JIRA`` client: built lazily, counted, without hidden retries.

Why not the library's high-level methods everywhere: several of them spend calls we do not
need (``search_issues`` fetches ``GET /field`` every time, ``create_issue`` looks the
project and its issue types up before and re-reads the issue after, ``create_version``
sleeps a second, ``Version.update`` re-reads, ``create_issue_link`` fetches the link types).
Where a high-level method sends exactly the one request we want we use it; elsewhere we send
the request on the client's own authenticated session with its URL helpers, so auth, TLS
options, headers and error parsing stay the library's.

Retries are ours (tenacity + the durable queue, honouring ``Retry-After``): the library's
``ResilientSession`` would otherwise sleep for up to a minute on a 429/503 inside a worker,
so the client is built with ``max_retries=0``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests
from jira import JIRA
from pydantic import SecretStr

from bridge.adapter import read_environment_once
from relbridge_jira.errors import translated_errors

log = logging.getLogger(__name__)

ResponseObserver = Callable[[str, int], None]  # (HTTP method, status)


class JiraConnection:
    """Lazily built ``jira.JIRA`` plus the few raw requests the adapter sends.

    Start-up costs one call, ``GET /rest/api/2/serverInfo`` (its ``deploymentType`` tells
    Cloud from Server/Data Center, which search endpoint to use). The user's time zone
    (``GET myself``) is read once, the first time a JQL date is needed.
    """

    def __init__(
        self,
        url: str,
        user: str,
        token: SecretStr,
        *,
        verify_tls: bool = True,
        timeout: float = 30,
        observer: ResponseObserver | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._user = user
        self._token = token
        self._verify_tls = verify_tls
        self._timeout = timeout
        self._observer = observer
        self._client: JIRA | None = None
        self._lock = threading.Lock()
        self._cloud = False
        self._timezone: ZoneInfo | None = None

    # --- the client ----------------------------------------------------------------------

    @property
    def client(self) -> JIRA:
        """The ``jira.JIRA`` client; the first access sends ``GET serverInfo``."""
        with self._lock:
            if self._client is None:
                self._client = self._build()
            return self._client

    @property
    def is_cloud(self) -> bool:
        """True for Jira Cloud; builds the client (which reads ``deploymentType``) if needed."""
        _ = self.client
        return self._cloud

    def _build(self) -> JIRA:
        with translated_errors("GET serverInfo"):
            client = JIRA(
                server=self.url,
                options={"verify": self._verify_tls},
                basic_auth=(self._user, self._token.get_secret_value()),
                get_server_info=False,  # read below, after the call counter is attached
                max_retries=0,
                timeout=self._timeout,
            )
            client._session.hooks["response"].append(self._on_response)
            read_environment_once(client._session, self.url)
            info = client.server_info()
            client._version = tuple(info.get("versionNumbers") or (0, 0, 0))
            client.deploymentType = info.get("deploymentType")
        self._cloud = client.deploymentType == "Cloud"
        return client

    def _on_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if self._observer is not None and response.request is not None:
            self._observer(str(response.request.method), response.status_code)

    # --- raw requests on the client's session ----------------------------------------------

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """``GET /rest/api/2/{path}`` → parsed JSON."""
        with translated_errors(f"GET {path}"):
            return self.client._get_json(path, params=dict(params or {}))

    def send(self, method: str, path: str, body: Any = None,
             params: Mapping[str, Any] | None = None) -> Any:
        """POST/PUT/DELETE ``/rest/api/2/{path}`` → parsed JSON, or None for an empty body."""
        with translated_errors(f"{method} {path}"):
            client = self.client
            data = json.dumps(body) if body is not None else None
            response = client._session.request(
                method, client._get_url(path), data=data, params=dict(params or {})
            )
            return response.json() if response.content.strip() else None

    # --- search ----------------------------------------------------------------------------

    def search(self, jql: str, fields: str, page_size: int) -> Iterator[dict[str, Any]]:
        """Every issue the JQL matches, page by page, one call per page, each with its
        changelog (when each field last changed: for adoption and per-field merges).

        Cloud: ``GET search/jql`` with ``nextPageToken`` (the only search Cloud still has);
        Server/DC: ``GET search`` with ``startAt``/``maxResults``/``total``. The server may
        cap ``maxResults``; paging follows what it returned, not what was asked.
        """
        if self.is_cloud:
            yield from self._search_cloud(jql, fields, page_size)
        else:
            yield from self._search_server(jql, fields, page_size)

    def _search_cloud(self, jql: str, fields: str, page_size: int) -> Iterator[dict[str, Any]]:
        token: str | None = None
        while True:
            params: dict[str, Any] = {"jql": jql, "fields": fields, "maxResults": page_size,
                                      "expand": "changelog"}
            if token:
                params["nextPageToken"] = token
            page = self.get("search/jql", params)
            issues = page.get("issues") or []
            yield from issues
            token = page.get("nextPageToken")
            if not token or not issues or page.get("isLast") is True:
                return

    def _search_server(self, jql: str, fields: str, page_size: int) -> Iterator[dict[str, Any]]:
        start = 0
        while True:
            params = {"jql": jql, "fields": fields, "startAt": start, "maxResults": page_size,
                      "expand": "changelog"}
            page = self.get("search", params)
            issues = page.get("issues") or []
            yield from issues
            start += len(issues)
            if not issues or start >= int(page.get("total") or 0):
                return

    # --- the user --------------------------------------------------------------------------

    def myself(self) -> dict[str, Any]:
        """``GET myself``; also remembers the user's time zone."""
        me = self.get("myself")
        self._timezone = _zone(me.get("timeZone"))
        return me

    def user_timezone(self) -> ZoneInfo:
        """The zone Jira reads JQL date literals in: the API user's profile time zone."""
        if self._timezone is None:
            self.myself()
        assert self._timezone is not None
        return self._timezone


def _zone(name: Any) -> ZoneInfo:
    if isinstance(name, str) and name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            log.warning("jira user time zone %r is unknown here; reading JQL dates as UTC", name)
    return ZoneInfo("UTC")
