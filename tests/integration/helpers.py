"""Small HTTP helpers that act as the people editing ServiceNow and Jira in tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from bridge.config import Config
from bridge.runtime import Runtime

AUTH = ("admin", "admin")
WRITES = ("POST", "PUT", "PATCH", "DELETE")


def make_config(sn_url: str, jira_url: str, store_url: str, **sections: dict[str, Any]) -> Config:
    data: dict[str, Any] = {
        "servicenow": {"url": sn_url},
        "jira": {"url": jira_url},
        "store": {"url": store_url},
        "sync": {"overlap_seconds": 5, "concurrency": 4, "page_size": 50},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return Config.model_validate(data)


class ServiceNow:
    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.auth = AUTH

    def create(self, table: str, **fields: Any) -> dict[str, Any]:
        r = self.session.post(f"{self.url}/api/now/table/{table}", json=fields)
        r.raise_for_status()
        return r.json()["result"]

    def update(self, table: str, sys_id: str, **fields: Any) -> dict[str, Any]:
        r = self.session.patch(f"{self.url}/api/now/table/{table}/{sys_id}", json=fields)
        r.raise_for_status()
        return r.json()["result"]

    def delete(self, table: str, sys_id: str) -> None:
        self.session.delete(f"{self.url}/api/now/table/{table}/{sys_id}").raise_for_status()

    def list(self, table: str, query: str = "") -> list[dict[str, Any]]:
        r = self.session.get(f"{self.url}/api/now/table/{table}",
                             params={"sysparm_query": query, "sysparm_exclude_reference_link": "true"})
        r.raise_for_status()
        return r.json()["result"]

    def get(self, table: str, sys_id: str) -> dict[str, Any]:
        r = self.session.get(f"{self.url}/api/now/table/{table}/{sys_id}",
                             params={"sysparm_exclude_reference_link": "true"})
        r.raise_for_status()
        return r.json()["result"]

    def link(self, release: dict[str, Any], change: dict[str, Any]) -> None:
        self.create("rm_m2m_release_task", release=release["sys_id"], task=change["sys_id"])


class Jira:
    def __init__(self, url: str) -> None:
        self.url = url
        self.api = f"{url}/rest/api/2"
        self.session = requests.Session()
        self.session.auth = AUTH

    def create_version(self, name: str, **fields: Any) -> dict[str, Any]:
        r = self.session.post(f"{self.api}/version", json={"name": name, "project": "OPS", **fields})
        r.raise_for_status()
        return r.json()

    def update_version(self, version_id: str, **fields: Any) -> dict[str, Any]:
        r = self.session.put(f"{self.api}/version/{version_id}", json=fields)
        r.raise_for_status()
        return r.json()

    def versions(self) -> list[dict[str, Any]]:
        r = self.session.get(f"{self.api}/project/OPS/versions")
        r.raise_for_status()
        return r.json()

    def create_issue(self, issuetype: str, summary: str, **fields: Any) -> dict[str, Any]:
        body = {"fields": {"project": {"key": "OPS"}, "issuetype": {"name": issuetype}, "summary": summary, **fields}}
        r = self.session.post(f"{self.api}/issue", json=body)
        r.raise_for_status()
        return self.issue(r.json()["key"])

    def issue(self, key: str) -> dict[str, Any]:
        r = self.session.get(f"{self.api}/issue/{key}")
        r.raise_for_status()
        return r.json()

    def update_issue(self, key: str, **fields: Any) -> None:
        self.session.put(f"{self.api}/issue/{key}", json={"fields": fields}).raise_for_status()

    def transition(self, key: str, status: str) -> None:
        r = self.session.get(f"{self.api}/issue/{key}/transitions")
        r.raise_for_status()
        ids = {t["to"]["name"]: t["id"] for t in r.json()["transitions"]}
        self.session.post(f"{self.api}/issue/{key}/transitions",
                          json={"transition": {"id": ids[status]}}).raise_for_status()

    def search(self, jql: str) -> list[dict[str, Any]]:
        r = self.session.get(f"{self.api}/search/jql", params={"jql": jql, "fields": "*all", "maxResults": 1000})
        if r.status_code == 404:  # server flavor
            r = self.session.get(f"{self.api}/search", params={"jql": jql, "fields": "*all", "maxResults": 1000})
        r.raise_for_status()
        return r.json()["issues"]

    def link(self, link_type: str, inward: str, outward: str) -> None:
        self.session.post(f"{self.api}/issueLink", json={
            "type": {"name": link_type}, "inwardIssue": {"key": inward}, "outwardIssue": {"key": outward},
        }).raise_for_status()


def requests_log(url: str) -> dict[str, Any]:
    r = requests.get(f"{url}/_sim/requests")
    r.raise_for_status()
    return r.json()


def clear_log(*urls: str) -> None:
    for url in urls:
        requests.delete(f"{url}/_sim/requests").raise_for_status()


def writes(url: str) -> list[dict[str, Any]]:
    return [r for r in requests_log(url)["requests"] if r["method"] in WRITES]


def runtime(config: Config, tmp: Path | None = None, **kwargs: Any) -> Runtime:
    return Runtime(config, **kwargs)
