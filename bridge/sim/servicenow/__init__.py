"""The simulated ServiceNow instance (Table API over real HTTP), one module per concern.

`app` serves the HTTP API and the `/_sim` control routes; `store` holds the records;
`schema` describes the tables; `query` reads encoded queries; `render` shapes records as the
Table API shows them; `seed` fills a fresh instance.
"""

from bridge.sim.servicenow.app import ServiceNowSim, create_servicenow_app, servicenow_error_body

__all__ = ["ServiceNowSim", "create_servicenow_app", "servicenow_error_body"]
