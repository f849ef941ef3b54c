"""Validate JSON against component schemas of Atlassian's Jira platform OpenAPI spec.

The spec (2.3 MB) is read once per test session. OpenAPI 3.0's `nullable: true` is turned
into JSON Schema (`type: [T, "null"]`, or `anyOf` with null for `$ref`/`allOf` schemas), and
`$ref`s resolve against the spec's own `#/components/schemas`.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator

SPEC_PATH = Path(__file__).resolve().parents[3] / "shared" / "contracts" / \
    "jira-platform.openapi.json"


def spec_path() -> Path:
    """The shared contract; `/work/shared/...` next to the repository checkout."""
    for candidate in (SPEC_PATH, Path("/work/shared/contracts/jira-platform.openapi.json")):
        if candidate.exists():
            return candidate
    raise FileNotFoundError("jira-platform.openapi.json not found in ../shared/contracts")


def _nullable(node: Any) -> Any:
    if isinstance(node, list):
        return [_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _nullable(value) for key, value in node.items()}
    if node.pop("nullable", False):
        if isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
            if "enum" in node:
                node["enum"] = [*node["enum"], None]
        else:
            return {"anyOf": [node, {"type": "null"}]}
    return node


@functools.lru_cache(maxsize=1)
def components() -> dict[str, Any]:
    spec = json.loads(spec_path().read_text(encoding="utf-8"))
    return {"schemas": _nullable(spec["components"]["schemas"])}


@functools.cache
def validator(name: str) -> Draft7Validator:
    schemas = components()
    if name not in schemas["schemas"]:
        raise KeyError(f"no component schema {name!r} in the Jira spec")
    return Draft7Validator({"$ref": f"#/components/schemas/{name}", "components": schemas})


def schema_errors(name: str, instance: Any) -> list[str]:
    """Readable validation errors (empty when `instance` conforms to component `name`)."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in validator(name).iter_errors(instance)]


def assert_schema(name: str, instance: Any) -> None:
    errors = schema_errors(name, instance)
    assert not errors, f"{name} violations:\n" + "\n".join(errors[:20])


#: Component schemas for the values of issue fields (IssueBean leaves `fields` open).
FIELD_SCHEMAS = {"status": "StatusDetails", "issuetype": "IssueTypeDetails",
                 "priority": "Priority", "resolution": "Resolution", "project": "Project"}
FIELD_ITEM_SCHEMAS = {"fixVersions": "Version", "versions": "Version"}


def assert_issue(issue: dict[str, Any]) -> None:
    """An IssueBean whose field values also match their own component schemas."""
    assert_schema("IssueBean", issue)
    for field, value in (issue.get("fields") or {}).items():
        if value is None:
            continue
        if field in FIELD_SCHEMAS:
            assert_schema(FIELD_SCHEMAS[field], value)
        elif field in FIELD_ITEM_SCHEMAS:
            for item in value:
                assert_schema(FIELD_ITEM_SCHEMAS[field], item)
    for link in (issue.get("fields") or {}).get("issuelinks") or []:
        assert_issue_link_entry(link)
    if "changelog" in issue:
        assert_schema("PageOfChangelogs", issue["changelog"])


def assert_issue_link_entry(link: dict[str, Any]) -> None:
    """An `issuelinks` entry: like IssueLink, but only the *other* issue is present."""
    sides = [side for side in ("inwardIssue", "outwardIssue") if side in link]
    assert len(sides) == 1, f"an issuelinks entry names exactly one other issue: {link}"
    assert set(link) <= {"id", "self", "type", *sides}, link
    assert_schema("IssueLinkType", link["type"])
    assert_schema("LinkedIssue", link[sides[0]])
