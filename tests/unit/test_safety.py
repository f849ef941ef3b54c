"""The safety brake's rules: what is destructive (in canonical terms, through the mappings),
and how many go through per pass or per window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.config import SafetyConfig
from bridge.engine.envelope import Envelope, SyncReport
from bridge.engine.safety import Kind, SafetyBrake, destructive_kind, destructive_writes
from bridge.mapping.loader import IdentityResolver, load_mappings
from bridge.store import Store
from bridge.store.rows import RefRow


@pytest.mark.parametrize("entity, field, old, new, kind", [
    ("release", "state", "deployed", "rolled_back", Kind.ROLLBACK),
    ("release", "state", "in_progress", "rolled_back", Kind.ROLLBACK),
    ("release", "state", None, "rolled_back", Kind.ROLLBACK),
    ("release", "state", "deployed", "planned", Kind.RELEASE_BACKWARDS),
    ("release", "state", "closed", "deploying", Kind.RELEASE_BACKWARDS),
    ("release", "state", "deployed", "closed", None),
    ("release", "state", "closed", "cancelled", None),
    ("release", "state", "in_progress", "planned", None),  # re-planning is not destructive
    ("release", "state", "rolled_back", "rolled_back", None),
    ("change", "close_code", None, "unsuccessful", Kind.UNSUCCESSFUL_CLOSE),
    ("change", "close_code", "successful", "unsuccessful", Kind.UNSUCCESSFUL_CLOSE),
    ("change", "close_code", None, "successful", None),
    ("change", "state", "implement", "canceled", None),
    ("release", "name", "deployed", "rolled_back", None),
])
def test_classify(entity: str, field: str, old: object, new: object, kind: Kind | None) -> None:
    assert destructive_kind(entity, field, old, new) == kind


REF = RefRow("release", "RLSE1", "jira", "10001", "1.0", None, None, None)


@pytest.mark.parametrize("system, current, state, kind", [
    ("jira", {"state": "released"}, "rolled_back", Kind.ROLLBACK),
    ("jira", {"state": "released"}, "planned", Kind.RELEASE_BACKWARDS),
    ("jira", {"state": "released"}, "cancelled", None),  # archiving is not moving back
    ("jira", {"state": "unreleased"}, "cancelled", None),
    ("servicenow", {"state": "3"}, "in_progress", Kind.RELEASE_BACKWARDS),  # Closed Complete reopened
    ("servicenow", {"state": "2"}, "planned", None),  # "2" stands for in_progress first
    ("servicenow", {"state": "2"}, "rolled_back", Kind.ROLLBACK),
    ("servicenow", {}, "rolled_back", Kind.ROLLBACK),  # never read: judged by what is written
])
def test_judged_in_canonical_terms_through_the_mapping(system: str, current: dict, state: str,
                                                      kind: Kind | None) -> None:
    mapping = load_mappings(None, None).for_system(system)
    fields = {"name": "1.0", "state": state}
    out = mapping.to_system("release", fields, current, IdentityResolver(), fields=["state"])
    found = destructive_writes(mapping, "release", "RLSE1", fields, current, out, IdentityResolver(), REF)
    assert [w.kind for w in found] == ([kind] if kind else [])
    if kind:
        assert (found[0].system, found[0].field, found[0].new, found[0].ext_key) == (system, "state", state, "1.0")


def test_a_field_the_other_system_owns_is_still_judged(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[2] / "mappings" / "jira.toml").read_text()
    edited = text.replace('[release.fields.state]\nsource = "state"\n',
                          '[release.fields.state]\nsource = "state"\nowner = "servicenow"\n', 1)
    assert edited != text
    (tmp_path / "jira.toml").write_text(edited)
    mapping = load_mappings(None, tmp_path / "jira.toml").for_system("jira")
    fields = {"state": "planned"}
    out = mapping.to_system("release", fields, {"state": "released"}, IdentityResolver())
    found = destructive_writes(mapping, "release", "RLSE1", fields, {"state": "released"}, out,
                               IdentityResolver(), REF)
    assert [(w.kind, w.old) for w in found] == [(Kind.RELEASE_BACKWARDS, "deployed")]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(tmp_path: Path):
    with Store(f"sqlite:///{tmp_path / 'relbridge.db'}") as opened:
        yield opened


def deleting(brake: SafetyBrake, n: int) -> bool:
    ref = RefRow("change", f"CHG{n}", "jira", f"{n}", f"OPS-{n}", None, None, None)
    return brake.admit_delete("change", f"CHG{n}", "jira", ref, SyncReport())


def test_per_pass_bound_resets_each_pass(store: Store) -> None:
    brake = SafetyBrake(SafetyConfig(max_destructive_writes=2), store, Clock())
    brake.start_pass()
    assert [deleting(brake, n) for n in range(4)] == [True, True, False, False]
    assert [w.key for w in brake.held] == ["CHG2", "CHG3"]
    assert [(r.key, r.kind, r.old) for r in store.held_writes()] == [("CHG2", "delete", "OPS-2"), ("CHG3", "delete", "OPS-3")]
    brake.start_pass()
    assert brake.held == [] and brake.in_window() == 0
    assert deleting(brake, 5) is True


def test_window_bound_in_the_daemon_slides_with_time(store: Store) -> None:
    clock = Clock()
    brake = SafetyBrake(SafetyConfig(max_destructive_writes=2, window_seconds=600), store, clock)
    brake.use_window()
    assert [deleting(brake, n) for n in range(3)] == [True, True, False]
    brake.start_pass()  # no passes in the daemon: the window still counts both
    clock.now += timedelta(seconds=599)
    assert deleting(brake, 3) is False and brake.in_window() == 2
    clock.now += timedelta(seconds=1)
    assert brake.in_window() == 0
    assert [deleting(brake, n) for n in range(4, 7)] == [True, True, False]


def test_zero_holds_everything_unbounded_holds_nothing(store: Store) -> None:
    brake = SafetyBrake(SafetyConfig(max_destructive_writes=0), store, Clock())
    assert deleting(brake, 1) is False
    brake.unbounded = True
    assert all(deleting(brake, n) for n in range(2, 30))


def test_screen_takes_held_fields_out_of_the_payload_and_keeps_the_rest(store: Store) -> None:
    mapping = load_mappings(None, None).for_system("jira")
    brake = SafetyBrake(SafetyConfig(max_destructive_writes=0), store, Clock())
    env = Envelope(fields={"name": "1.0", "description": "new text", "state": "rolled_back"},
                   raw={"jira": {"name": "1.0", "description": "old", "state": "released"}})
    out = mapping.to_system("release", env.fields, env.raw["jira"], IdentityResolver())
    assert out.payload == {"description": "new text", "state": "unreleased"}
    held = brake.screen(mapping, "release", "RLSE1", env, REF, out, IdentityResolver())
    assert [(w.field, w.old, w.new) for w in held] == [("state", "deployed", "rolled_back")]
    assert out.payload == {"description": "new text"}
