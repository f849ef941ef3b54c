"""relbridge's ServiceNow plugin: contributes the ServiceNow adapter (Table API, via pysnow).

Registered under the ``relbridge`` entry-point group; the adapter is built from the
``[servicenow]`` section of the configuration and pages by ``[sync] page_size``. The
plugin also gives the receiver relbridge's ServiceNow webhook signature (``signature``), and
owns the ``[servicenow_survey]`` section: the survey question whose answers score releases
(``surveys``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge import hookimpl
from bridge.adapter import OnCall
from bridge.signatures import WebhookScheme
from relbridge_servicenow import signature
from relbridge_servicenow.adapter import ServiceNowAdapter
from relbridge_servicenow.surveys import SECTION, ServiceNowSurveyConfig

if TYPE_CHECKING:
    from bridge.config import Config


__all__ = ["ServiceNowAdapter", "relbridge_adapters", "relbridge_config_sections", "relbridge_webhook_schemes"]


@hookimpl
def relbridge_config_sections() -> dict[str, type[ServiceNowSurveyConfig]]:
    """``[servicenow_survey]``: which survey question scores a release (1-5 satisfaction)."""
    return {SECTION: ServiceNowSurveyConfig}


@hookimpl
def relbridge_adapters(config: Config, on_call: OnCall | None = None) -> list[ServiceNowAdapter]:
    """The one ServiceNow adapter, for the instance in ``[servicenow]``."""
    section = config.servicenow
    return [
        ServiceNowAdapter(
            section.url,
            section.user,
            section.password,
            verify_tls=section.verify_tls,
            timeout=section.timeout_seconds,
            page_size=config.sync.page_size,
            on_call=on_call,
            read_time_worked=config.kpi.read_time_worked,
            survey=getattr(config, SECTION, None),
        )
    ]


@hookimpl
def relbridge_webhook_schemes(config: Config) -> list[WebhookScheme]:
    """``X-Relbridge-Signature`` over timestamp and body, with ``[webhooks] servicenow_secret``."""
    return [signature.scheme(config.webhooks.servicenow_secret)]
