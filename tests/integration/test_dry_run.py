"""`relbridge sync --once --dry-run`: the plan of a pass with zero write requests to either
simulator, the store left row for row (and, on SQLite, byte for byte) as it was, and a
following real pass that does exactly what the plan said."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.engine import make_url

from bridge.cli import main
from bridge.engine import Engine
from bridge.engine.dryrun import Recorder, RecordingAdapter, dry_run
from bridge.errors import RelbridgeError
from bridge.store import Store
from bridge.store import schema as tables
from tests.integration.helpers import clear_log, requests_log, writes


def store_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary-key order."""
    with Store(url, migrate=False) as store, store.engine.connect() as conn:
        return {table.name: [tuple(row) for row in conn.execute(select(table).order_by(*table.primary_key.columns))]
                for table in tables.metadata.sorted_tables}


def sqlite_bytes(url: str) -> str | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    return hashlib.sha256(Path(parsed.database).read_bytes()).hexdigest()


def config_file(bridge, tmp_path: Path, **sections: Mapping[str, Any]) -> str:
    lines = [f'[servicenow]\nurl = "{bridge.sims.servicenow_url}"', f'[jira]\nurl = "{bridge.sims.jira_url}"',
             f'[store]\nurl = "{bridge.store_url}"', "[sync]\noverlap_seconds = 5"]
    for name, values in sections.items():
        lines.append(f"[{name}]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items()))
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


class SpyAdapter(RecordingAdapter):
    """Records like the dry run's adapter, then really writes: the real pass told the same way."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adapter, name)

    def create(self, entity, payload, correlation):
        self._recorder.created(self.name, entity, payload, correlation)
        return self._adapter.create(entity, payload, correlation)

    def write(self, entity, id, payload):
        if payload:
            self._recorder.written(self.name, entity, id, payload)
        return self._adapter.write(entity, id, payload)

    def delete(self, entity, id):
        self._recorder.deleted(self.name, entity, id)
        return self._adapter.delete(entity, id)


def told(writes_: list[Any]) -> list[tuple[Any, ...]]:
    """Planned or made writes, comparable: by record, system, action and canonical change."""
    return sorted((w.entity, w.key, w.system, w.action,
                   tuple(sorted((c.field, c.kind, repr(c.old), repr(c.new)) for c in w.changes)))
                  for w in writes_)


def people_edit(bridge) -> None:
    """What a team does between two passes on the demo data: a description, a new change
    linked to a release, a version released in Jira without authorization (the gate puts it
    back), and a closed release rolled back in ServiceNow (a destructive write to Jira)."""
    sn, jira = bridge.sn, bridge.jira
    portal = sn.list("rm_release", "short_description=Customer portal 5.2")[0]
    sn.update("rm_release", portal["sys_id"], description="Self-service invoices and the new login flow")
    change = sn.create("change_request", short_description="Rotate portal certificates", state="-5",
                       approval="not requested", type="standard", risk="4")
    sn.link(portal, change)
    mobile = next(v for v in jira.versions() if v["name"] == "Mobile app 3.0")
    jira.update_version(mobile["id"], released=True)
    closed = [r for r in sn.list("rm_release") if r["state"] == "3"]
    assert closed, "the demo seed has a closed release"
    sn.update("rm_release", closed[0]["sys_id"], state="4")


def test_a_dry_run_writes_nothing_and_the_next_pass_does_what_it_planned(bridge_factory, tmp_path: Path) -> None:
    bridge = bridge_factory(seed="demo")
    bridge.sections["safety"] = {"max_destructive_writes": 0}
    assert not bridge.sync().errors
    bridge.sync()  # settle the echoes of the first pass
    people_edit(bridge)
    config = config_file(bridge, tmp_path, safety={"max_destructive_writes": 0})
    before, before_bytes = store_rows(bridge.store_url), sqlite_bytes(bridge.store_url)
    clear_log(bridge.sims.servicenow_url, bridge.sims.jira_url)

    result = CliRunner().invoke(main, ["sync", "--once", "--dry-run", "--json", "--config", config])

    assert result.exit_code == 1, result.output  # as the real pass: the brake would hold the rollback
    for url in (bridge.sims.servicenow_url, bridge.sims.jira_url):
        assert writes(url) == [], f"a dry run wrote to {url}"
        assert requests_log(url)["count"] > 0  # it did read
    assert store_rows(bridge.store_url) == before
    assert sqlite_bytes(bridge.store_url) == before_bytes
    plan = json.loads(result.stdout)
    assert plan["dry_run"] is True and plan["errors"] == []
    actions = {(w["system"], w["action"]) for r in plan["records"] for w in r["writes"]}
    assert {("jira", "create"), ("jira", "held"), ("jira", "update")} <= actions
    portal = next(r for r in plan["records"] if r["title"] == "Customer portal 5.2")
    [update] = [w for w in portal["writes"] if w["system"] == "jira" and w["action"] == "update"]
    assert {"field": "description", "kind": "update",
            "old": "Self-service invoices, new login flow and a database upgrade.",
            "new": "Self-service invoices and the new login flow"}.items() <= update["changes"][0].items()
    held = sorted((r["title"], w["reason"], w["changes"][0]["old"], w["changes"][0]["new"])
                  for r in plan["records"] for w in r["writes"] if w["action"] == "held")
    assert held == [  # the rollback, and the gate putting back a version released without authorization
        ("Mobile app 3.0", "release_backwards", "deployed", "planned"),
        ("Payments platform 2025.3", "rollback", "deployed", "rolled_back")]

    # Twice the same plan: the first left nothing behind that changes the second.
    again = CliRunner().invoke(main, ["sync", "--once", "--dry-run", "--json", "--config", config])
    assert json.loads(again.stdout) == plan

    rt = bridge.runtime()
    recorder = Recorder(rt.store, rt.mappings)
    spies = {name: SpyAdapter(adapter, recorder) for name, adapter in rt.adapters.items()}
    engine = Engine(rt.store, rt.mappings, spies, rt.hooks, rt.config)
    assert not engine.sync_once().errors
    made = list(recorder.writes)
    assert made, "the real pass wrote"
    planned = dry_run_writes(plan)
    assert told_documents(made, engine) == planned


def dry_run_writes(plan: dict[str, Any]) -> list[tuple[Any, ...]]:
    return sorted((r["entity"], r["key"], w["system"], w["action"],
                   tuple(sorted((c["field"], c["kind"], json.dumps(c["old"]), json.dumps(c["new"]))
                                for c in w["changes"])))
                  for r in plan["records"] for w in r["writes"])


def told_documents(made: list[Any], engine: Engine) -> list[tuple[Any, ...]]:
    from bridge.engine.dryrun import FieldChange, Plan, PlannedWrite

    held = [PlannedWrite(h.entity, h.key, h.system, "held", None,
                         (FieldChange(h.field, "held", h.old, h.new, h.field, None, None),), reason=h.kind.value)
            for h in engine.brake.held]
    document = Plan(writes=[*made, *held]).as_dict()
    return dry_run_writes(document)


def test_the_text_plan_shows_old_and_new_per_record(bridge, tmp_path: Path) -> None:
    release = bridge.sn.create("rm_release", short_description="Billing 9.0", state="1",
                               start_date="2026-06-01 08:00:00", end_date="2026-06-20 17:00:00")
    assert not bridge.sync().errors
    bridge.sn.update("rm_release", release["sys_id"], short_description="Billing 9.1")
    result = CliRunner().invoke(main, ["sync", "--once", "--dry-run", "--config", config_file(bridge, tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "dry run: nothing was written to either system or to the store"
    assert f"release {release['number']}  'Billing 9.1'" in lines
    assert "  update     in jira Billing 9.0: name: Billing 9.0 -> Billing 9.1" in lines
    assert lines[-1].startswith("plan: 1 records, 0 create, 1 update")
    assert bridge.jira.versions()[0]["name"] == "Billing 9.0"


def test_a_dry_run_before_the_first_sync_creates_no_store(bridge, tmp_path: Path) -> None:
    bridge.sn.create("change_request", short_description="First", state="-5")
    if make_url(bridge.store_url).get_backend_name() != "sqlite":
        pytest.skip("a file that must not appear: SQLite only")
    result = CliRunner().invoke(main, ["sync", "--once", "--dry-run", "--json", "--config", config_file(bridge, tmp_path)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["summary"]["create"] == 1
    assert not Path(make_url(bridge.store_url).database).parent.exists()
    assert writes(bridge.sims.jira_url) == []


def test_plans_with_allow_destructive_include_held_writes_and_deletes(bridge, tmp_path: Path) -> None:
    bridge.sections["safety"] = {"max_destructive_writes": 0}
    release = bridge.sn.create("rm_release", short_description="Closed", state="3")
    assert not bridge.sync().errors
    bridge.sn.update("rm_release", release["sys_id"], state="4")
    assert bridge.sync().total("held") == 1
    config = config_file(bridge, tmp_path, safety={"max_destructive_writes": 0})
    clear_log(bridge.sims.servicenow_url, bridge.sims.jira_url)
    result = CliRunner().invoke(main, ["sync", "--once", "--dry-run", "--allow-destructive", "--json",
                                       "--config", config])
    assert result.exit_code == 0, result.output
    [record] = json.loads(result.stdout)["records"]
    [write] = record["writes"]
    assert (write["system"], write["action"], write["changes"][0]["field"], write["changes"][0]["new"]) == (
        "jira", "update", "state", "rolled_back")
    assert writes(bridge.sims.jira_url) == [] and writes(bridge.sims.servicenow_url) == []
    assert bridge.runtime().store.held_count() == 1  # still held: a dry run releases nothing


def test_an_adapter_method_not_known_to_read_is_refused(bridge) -> None:
    rt = bridge.runtime()
    adapter = RecordingAdapter(rt.adapters["jira"], Recorder(rt.store, rt.mappings))
    assert adapter.name == "jira" and callable(adapter.read)
    rt.adapters["jira"].transition_issue = lambda *args: None  # a write the dry run does not know
    with pytest.raises(RelbridgeError, match="transition_issue.*not known to be read-only"):
        adapter.transition_issue("OPS-1", "Done")


def test_dry_run_api_returns_the_plan_without_the_cli(bridge) -> None:
    bridge.sn.create("change_request", short_description="Planned only", state="-5")
    rt = bridge.runtime()
    plan = dry_run(rt)
    assert [(w.entity, w.system, w.action) for w in plan.writes] == [("change", "jira", "create")]
    assert told(plan.writes)[0][:4] == ("change", plan.writes[0].key, "jira", "create")
    assert bridge.jira.search('project = OPS AND issuetype = "Change"') == []
