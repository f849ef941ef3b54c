"""The Jira REST simulator package (DESIGN §7): `create_jira_app` builds the Starlette app.

Modules: `app` (the app and its handles), `routes`/`search` (endpoints), `store` with
`issues`/`versions` (operations on the in-memory state), `state` (data classes and the state
file), `catalog` (projects, issue types, workflows), `render` (JSON shapes), `jql`, `seed`,
`base` (errors and shared helpers).
"""

from bridge.sim.jira.app import FLAVORS, JiraSim, create_jira_app

__all__ = ["FLAVORS", "JiraSim", "create_jira_app"]
