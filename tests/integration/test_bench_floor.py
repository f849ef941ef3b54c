"""The backfill benchmark's floor is the leanest client: it sends exactly the calls
`minimal_calls` counts, lands every issue in its status, and on Jira Cloud carries the first
workflow step in the create body (Cloud's create-issue: `transition`, "optional when
creating an issue", https://developer.atlassian.com/cloud/jira/platform/rest/v2/api-group-issues/),
so it costs one call less per issue not left in its initial status than on Server.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import backfill  # noqa: E402
from _common import AUTH, CallLog, seed_servicenow  # noqa: E402

from bridge.sim import start_simulators  # noqa: E402


@pytest.mark.parametrize("flavor", ["cloud", "server"])
def test_floor_sends_the_minimal_calls_and_lands_every_status(flavor: str) -> None:
    with start_simulators(seed="empty", jira_flavor=flavor) as sims:
        counts = seed_servicenow(sims.servicenow.store, 4, seed=3)
        changes, incidents = backfill.seeded_states(sims.servicenow_url)
        for url in (sims.servicenow_url, sims.jira_url):
            requests.delete(f"{url}/_sim/requests", timeout=30).raise_for_status()
        backfill.Floor(sims.servicenow_url, sims.jira_url, 2, 50, flavor).run()
        sent = sum(CallLog.fetch(url).count for url in (sims.servicenow_url, sims.jira_url))
        jira_log = CallLog.fetch(sims.jira_url)
        minimal = backfill.minimal_calls(counts, changes, incidents, 50, flavor)
        assert sent == minimal
        issues = requests.get(f"{sims.jira_url}/rest/api/2/search/jql" if flavor == "cloud"
                              else f"{sims.jira_url}/rest/api/2/search", auth=AUTH, timeout=30,
                              params={"jql": "project = OPS", "fields": "status,issuetype,labels",
                                      "maxResults": 100}).json()["issues"]
    landed = sorted(i["fields"]["status"]["name"] for i in issues
                    if i["fields"]["issuetype"]["name"] == "Change")
    assert landed == sorted(backfill.CHANGE_STATUS[s] for s in changes)
    landed = sorted(i["fields"]["status"]["name"] for i in issues
                    if i["fields"]["issuetype"]["name"] == "Incident")
    assert landed == sorted(backfill.INCIDENT_STATUS[s] for s in incidents)
    transitions = [r for r in jira_log.requests if r["path"].endswith("/transitions")]
    paths = ([backfill.transition_path(backfill.CHANGE_WORKFLOW, backfill.CHANGE_STATUS[s])
              for s in changes]
             + [backfill.transition_path(backfill.INCIDENT_WORKFLOW, backfill.INCIDENT_STATUS[s])
                for s in incidents])
    walked = sum(len(p) for p in paths)
    moved = sum(1 for p in paths if p)
    assert moved > 0
    assert len(transitions) == (walked - moved if flavor == "cloud" else walked)
