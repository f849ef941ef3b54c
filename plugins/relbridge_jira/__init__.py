"""relbridge's Jira plugin: contributes the ``jira`` adapter (see ``adapter.JiraAdapter``)."""

from __future__ import annotations

from collections.abc import Callable

from bridge import hookimpl
from bridge.config import Config
from relbridge_jira.adapter import JiraAdapter

OnCall = Callable[[str, str, int], None]

__all__ = ["JiraAdapter", "relbridge_adapters"]


@hookimpl
def relbridge_adapters(config: Config, on_call: OnCall | None = None) -> list[JiraAdapter]:
    """The Jira adapter, configured from ``[jira]`` and ``[sync] page_size``."""
    jira = config.jira
    return [
        JiraAdapter(
            jira.url,
            jira.user,
            jira.token,
            jira.projects,
            verify_tls=jira.verify_tls,
            timeout=jira.timeout_seconds,
            page_size=config.sync.page_size,
            on_call=on_call,
        )
    ]
