"""relbridge's Jira plugin: contributes the ``jira`` adapter (see ``adapter.JiraAdapter``) and
the signature scheme of Jira's webhooks (``signature``)."""

from __future__ import annotations

from bridge import hookimpl
from bridge.adapter import OnCall
from bridge.config import Config
from bridge.mapping.spec import Transform
from bridge.signatures import WebhookScheme
from relbridge_jira import signature, wiki
from relbridge_jira.adapter import JiraAdapter

__all__ = ["JiraAdapter", "relbridge_adapters", "relbridge_transforms", "relbridge_webhook_schemes"]


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
            read_time_worked=config.kpi.read_time_worked,
        )
    ]


@hookimpl
def relbridge_webhook_schemes(config: Config) -> list[WebhookScheme]:
    """``X-Hub-Signature`` over the body, with ``[webhooks] jira_secret``."""
    return [signature.scheme(config.webhooks.jira_secret)]


@hookimpl
def relbridge_transforms() -> list[Transform]:
    """``jira_wiki``: a text field in Jira wiki markup <-> plain text (``wiki``), for descriptions."""
    return [Transform("jira_wiki", wiki.read, wiki.write)]
