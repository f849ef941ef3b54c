"""The default mapping files (DESIGN §8), both directions, as shipped in the package."""

from __future__ import annotations

import importlib.resources
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.mapping.loader import (
    IdentityResolver,
    Mappings,
    PendingRef,
    UnmappableValue,
    UnresolvedRef,
    load_mappings,
)

REPO_MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
ID = IdentityResolver()


class Resolver:
    def __init__(self, pairs: dict[tuple[str, str], str]) -> None:
        self.keys = pairs
        self.ids = {(entity, key): system_id for (entity, system_id), key in pairs.items()}

    def to_key(self, entity: str, system_id: str) -> str | None:
        return self.keys.get((entity, system_id))

    def to_id(self, entity: str, key: str) -> str | None:
        return self.ids.get((entity, key))


@pytest.fixture(scope="module")
def mappings() -> Mappings:
    return load_mappings(None, None)


@pytest.fixture(scope="module")
def sn(mappings: Mappings):
    return mappings.servicenow


@pytest.fixture(scope="module")
def jira(mappings: Mappings):
    return mappings.jira


def test_defaults_ship_with_the_package_and_load_from_the_repo_folder() -> None:
    for name in ("servicenow.toml", "jira.toml"):
        shipped = importlib.resources.files("bridge.default_mappings") / name
        assert shipped.read_text(encoding="utf-8") == (REPO_MAPPINGS / name).read_text(
            encoding="utf-8"
        )
    explicit = load_mappings(REPO_MAPPINGS / "servicenow.toml", REPO_MAPPINGS / "jira.toml")
    assert explicit.servicenow.object("change") == "change_request"


def test_defaults_pass_the_offline_check(sn, jira) -> None:
    assert sn.check_offline() == []
    assert jira.check_offline() == []


def test_objects_and_default_owners(mappings: Mappings, sn, jira) -> None:
    assert [sn.object(e) for e in ("release", "change", "incident")] == [
        "rm_release",
        "change_request",
        "incident",
    ]
    assert [jira.object(e) for e in ("release", "change", "incident")] == [
        "version",
        "Change",
        "Incident",
    ]
    assert mappings.owner("change", "approval") == "servicenow"
    assert mappings.owner("change", "risk") == "servicenow"
    for entity, field in (
        ("release", "state"),
        ("release", "name"),
        ("change", "state"),
        ("incident", "priority"),
    ):
        assert mappings.owner(entity, field) == "any"


def test_fields_to_read_are_only_mapped_fields(sn, jira) -> None:
    assert sn.fields_to_read("release") == [
        "short_description",
        "description",
        "start_date",
        "end_date",
        "work_start",
        "work_end",
        "state",
        "survey_satisfaction",  # a pseudo-field: the mean survey score ([servicenow_survey])
    ]
    assert jira.fields_to_read("release") == [
        "name",
        "description",
        "startDate",
        "releaseDate",
        "state",
    ]
    assert jira.fields_to_read("incident") == [
        "summary",
        "description",
        "assignee",
        "status",
        "priority",
        "caused_by",
        "release",
        "created",
        "resolutiondate",
        "comment",  # [incident.comments]: read with the issue
    ]


# -- ServiceNow --------------------------------------------------------------------------------

SN_RELEASE_STATES = [
    ("-5", "planned"),
    ("1", "planned"),
    ("2", "in_progress"),
    ("3", "closed"),
    ("4", "rolled_back"),
    ("7", "cancelled"),
]


@pytest.mark.parametrize(("system", "canonical"), SN_RELEASE_STATES)
def test_servicenow_release_state_inbound(sn, system: str, canonical: str) -> None:
    assert sn.to_canonical("release", {"state": system}, None, ID).values == {"state": canonical}


@pytest.mark.parametrize(
    ("canonical", "system"),
    [
        ("planned", "-5"),
        ("in_progress", "2"),
        ("authorized", "2"),
        ("deploying", "2"),
        ("deployed", "2"),
        ("closed", "3"),
        ("rolled_back", "4"),
        ("cancelled", "7"),
    ],
)
def test_servicenow_release_state_outbound(sn, canonical: str, system: str) -> None:
    assert sn.to_system("release", {"state": canonical}, {"state": "garbage"}, ID).payload == {
        "state": system
    }
    assert sn.to_system("release", {"state": canonical}, {"state": system}, ID).payload == {}


def test_servicenow_release_state_does_not_flap(sn) -> None:
    for kept in ("in_progress", "authorized", "deploying", "deployed"):
        assert (
            sn.to_canonical("release", {"state": "2"}, {"state": kept}, ID).values["state"] == kept
        )
    assert (
        sn.to_canonical("release", {"state": "1"}, {"state": "deploying"}, ID).values["state"]
        == "planned"
    )
    # "1" (Open) already stands for planned: no write back to "-5".
    assert sn.to_system("release", {"state": "planned"}, {"state": "1"}, ID).payload == {}


def test_servicenow_release_record_both_ways(sn) -> None:
    record = {
        "short_description": "Payments 2026.1",
        "description": "Quarterly",
        "start_date": "2026-01-05 08:00:00",
        "end_date": "2026-01-09 18:00:00",
        "work_start": "",
        "work_end": "",
        "state": "-5",
    }
    values = sn.to_canonical("release", record, None, ID).values
    assert values == {
        "name": "Payments 2026.1",
        "description": "Quarterly",
        "state": "planned",
        "planned_start": datetime(2026, 1, 5, 8, tzinfo=UTC),
        "planned_end": datetime(2026, 1, 9, 18, tzinfo=UTC),
        "actual_start": None,
        "actual_end": None,
    }
    assert sn.to_system("release", values, record, ID).payload == {}
    assert sn.to_system("release", values, None, ID).payload == {
        "short_description": "Payments 2026.1",
        "description": "Quarterly",
        "start_date": "2026-01-05 08:00:00",
        "end_date": "2026-01-09 18:00:00",
        "state": "-5",
    }


CHANGE_STATES = [
    ("-5", "new"),
    ("-4", "assess"),
    ("-3", "authorize"),
    ("-2", "scheduled"),
    ("-1", "implement"),
    ("0", "review"),
    ("3", "closed"),
    ("4", "canceled"),
]


@pytest.mark.parametrize(("system", "canonical"), CHANGE_STATES)
def test_servicenow_change_state_both_ways(sn, system: str, canonical: str) -> None:
    assert sn.to_canonical("change", {"state": system}, None, ID).values == {"state": canonical}
    assert sn.to_system(
        "change", {"state": canonical}, {"state": "-5" if system != "-5" else "0"}, ID
    ).payload == {"state": system}


def test_servicenow_change_record_both_ways(sn) -> None:
    resolver = Resolver({("release", "a" * 32): "RLSE0001001"})
    record = {
        "short_description": "Upgrade DB",
        "state": "-2",
        "approval": "not requested",
        "type": "emergency",
        "risk": "2",
        "start_date": "2026-01-05 22:00:00",
        "end_date": "2026-01-05 23:30:00",
        "close_code": "",
        "release": {"link": "https://x/api/now/table/rm_release/" + "a" * 32, "value": "a" * 32},
    }
    result = sn.to_canonical("change", record, None, resolver)
    assert result.values == {
        "summary": "Upgrade DB",
        "state": "scheduled",
        "approval": "not_requested",
        "type": "emergency",
        "risk": 2,
        "planned_start": datetime(2026, 1, 5, 22, tzinfo=UTC),
        "planned_end": datetime(2026, 1, 5, 23, 30, tzinfo=UTC),
        "close_code": None,
        "release": "RLSE0001001",
    }
    assert sn.to_system("change", result.values, record, resolver).payload == {}
    changed = {
        **result.values,
        "approval": "approved",
        "risk": 3,
        "close_code": "successful_issues",
    }
    assert sn.to_system("change", changed, record, resolver).payload == {
        "approval": "approved",
        "risk": "3",
        "close_code": "successful_issues",
    }


def test_servicenow_change_unknown_approval_is_unmappable(sn) -> None:
    with pytest.raises(UnmappableValue) as info:
        sn.to_canonical("change", {"approval": "cancelled"}, None, ID)
    assert info.value.known_values == ("not requested", "requested", "approved", "rejected")


INCIDENT_STATES = [
    ("1", "new"),
    ("2", "in_progress"),
    ("3", "on_hold"),
    ("6", "resolved"),
    ("7", "closed"),
    ("8", "canceled"),
]


@pytest.mark.parametrize(("system", "canonical"), INCIDENT_STATES)
def test_servicenow_incident_state_both_ways(sn, system: str, canonical: str) -> None:
    assert sn.to_canonical("incident", {"state": system}, None, ID).values == {"state": canonical}
    assert sn.to_system("incident", {"state": canonical}, {}, ID).payload == {"state": system}


def test_servicenow_incident_refs_and_dates(sn) -> None:
    resolver = Resolver({("change", "c1"): "CHG0030001"})
    record = {
        "short_description": "Checkout down",
        "priority": "1",
        "caused_by": "c1",
        "release": "r9",
        "opened_at": "2026-01-06 00:05:00",
        "resolved_at": "",
    }
    result = sn.to_canonical("incident", record, None, resolver)
    assert result.values == {
        "summary": "Checkout down",
        "priority": 1,
        "caused_by_change": "CHG0030001",
        "caused_by_release": None,
        "opened_at": datetime(2026, 1, 6, 0, 5, tzinfo=UTC),
        "resolved_at": None,
    }
    assert result.unresolved == [UnresolvedRef("caused_by_release", "r9")]
    # caused_by_release is read only: ServiceNow incidents have no release column to write.
    out = sn.to_system(
        "incident", {**result.values, "caused_by_release": "RLSE1"}, record, resolver
    )
    assert out.payload == {} and out.pending == []
    later = sn.to_system("incident", {"caused_by_change": "OPS-7"}, record, resolver)
    assert later.payload == {} and later.pending == [
        PendingRef("caused_by_change", "change", "OPS-7")
    ]


# -- Jira ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("system", "canonical"),
    [("unreleased", "planned"), ("released", "deployed"), ("archived", "cancelled")],
)
def test_jira_version_state_inbound(jira, system: str, canonical: str) -> None:
    assert jira.to_canonical("release", {"state": system}, None, ID).values == {"state": canonical}


@pytest.mark.parametrize(
    ("canonical", "current", "written"),
    [
        ("authorized", "unreleased", None),  # unreleased already stands for authorized
        ("deploying", "unreleased", None),
        ("rolled_back", "unreleased", None),
        ("closed", "released", None),
        ("deployed", "unreleased", "released"),
        ("rolled_back", "released", "unreleased"),
        ("cancelled", "unreleased", "archived"),
        ("planned", "archived", "unreleased"),
    ],
)
def test_jira_version_state_outbound(
    jira, canonical: str, current: str, written: str | None
) -> None:
    payload = jira.to_system("release", {"state": canonical}, {"state": current}, ID).payload
    assert payload == ({} if written is None else {"state": written})


def test_jira_version_state_does_not_flap(jira) -> None:
    for kept in ("planned", "in_progress", "authorized", "deploying", "rolled_back"):
        assert (
            jira.to_canonical("release", {"state": "unreleased"}, {"state": kept}, ID).values[
                "state"
            ]
            == kept
        )
    assert (
        jira.to_canonical("release", {"state": "released"}, {"state": "closed"}, ID).values["state"]
        == "closed"
    )
    assert (
        jira.to_canonical("release", {"state": "released"}, {"state": "deploying"}, ID).values[
            "state"
        ]
        == "deployed"
    )


def test_jira_version_dates_in_the_jira_timezone() -> None:
    auckland = load_mappings(None, None, timezone="Pacific/Auckland").jira
    record = {
        "name": "2026.1",
        "description": None,
        "startDate": "2026-01-05",
        "releaseDate": None,
        "state": "unreleased",
    }
    values = auckland.to_canonical("release", record, None, ID).values
    assert values["planned_start"] == datetime(2026, 1, 4, 11, tzinfo=UTC)
    assert values["planned_end"] is None and values["description"] == ""
    # A ServiceNow end date late on 9 January UTC is already 10 January in Auckland.
    out = auckland.to_system(
        "release", {"planned_end": datetime(2026, 1, 9, 18, tzinfo=UTC)}, record, ID
    )
    assert out.payload == {"releaseDate": "2026-01-10"}


def test_jira_date_keeps_the_more_precise_canonical_time(jira) -> None:
    # The canonical planned end (from ServiceNow) is 18:00; Jira shows only the day.
    stored = {"planned_end": "2026-01-09T18:00:00+00:00"}
    assert jira.to_system("release", stored, {"releaseDate": "2026-01-09"}, ID).payload == {}
    values = jira.to_canonical("release", {"releaseDate": "2026-01-09"}, stored, ID).values
    assert values["planned_end"] == datetime(2026, 1, 9, 18, tzinfo=UTC)
    # A different day in Jira is a real change: the start of that day.
    moved = jira.to_canonical("release", {"releaseDate": "2026-01-12"}, stored, ID).values
    assert moved["planned_end"] == datetime(2026, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "canonical"),
    [
        ("New", "new"),
        ("Assess", "assess"),
        ("Authorize", "authorize"),
        ("Scheduled", "scheduled"),
        ("Implement", "implement"),
        ("Review", "review"),
        ("Closed", "closed"),
        ("Canceled", "canceled"),
    ],
)
def test_jira_change_status_both_ways(jira, status: str, canonical: str) -> None:
    assert jira.to_canonical("change", {"status": status}, None, ID).values == {"state": canonical}
    assert jira.to_system("change", {"state": canonical}, {"status": "Nowhere"}, ID).payload == {
        "status": status
    }


def test_jira_change_record_both_ways(jira) -> None:
    resolver = Resolver({("release", "10001"): "RLSE0001001"})
    record = {
        "summary": "Upgrade DB",
        "status": "Scheduled",
        "duedate": "2026-01-05",
        "release": "10001",
    }
    values = jira.to_canonical("change", record, None, resolver).values
    assert values == {
        "summary": "Upgrade DB",
        "state": "scheduled",
        "planned_end": datetime(2026, 1, 5, tzinfo=UTC),
        "release": "RLSE0001001",
    }
    # Approval and risk are not in Jira; ServiceNow owns them anyway.
    assert (
        jira.to_system(
            "change", {**values, "approval": "approved", "risk": 1}, record, resolver
        ).payload
        == {}
    )
    new = jira.to_system("change", {**values, "release": None}, record, resolver)
    assert new.payload == {"release": None}


@pytest.mark.parametrize(
    ("status", "current", "canonical"),
    [
        ("Open", None, "new"),
        ("In Progress", None, "in_progress"),
        ("In Progress", "on_hold", "on_hold"),
        ("Resolved", "on_hold", "resolved"),
        ("Closed", None, "closed"),
        ("Closed", "canceled", "canceled"),
    ],
)
def test_jira_incident_status_inbound(
    jira, status: str, current: str | None, canonical: str
) -> None:
    now = None if current is None else {"state": current}
    assert jira.to_canonical("incident", {"status": status}, now, ID).values == {"state": canonical}


@pytest.mark.parametrize(
    ("canonical", "current", "written"),
    [
        ("on_hold", "In Progress", None),
        ("on_hold", "Open", "In Progress"),
        ("canceled", "Closed", None),
        ("canceled", "Resolved", "Closed"),
        ("new", "Closed", "Open"),
        ("resolved", "In Progress", "Resolved"),
    ],
)
def test_jira_incident_status_outbound(
    jira, canonical: str, current: str, written: str | None
) -> None:
    payload = jira.to_system("incident", {"state": canonical}, {"status": current}, ID).payload
    assert payload == ({} if written is None else {"status": written})


@pytest.mark.parametrize(
    ("name", "number"), [("Highest", 1), ("High", 2), ("Medium", 3), ("Low", 4), ("Lowest", 5)]
)
def test_jira_priority_names_both_ways(jira, name: str, number: int) -> None:
    assert jira.to_canonical("incident", {"priority": name}, None, ID).values == {
        "priority": number
    }
    assert jira.to_system("incident", {"priority": number}, {"priority": "Nope"}, ID).payload == {
        "priority": name
    }
    assert jira.to_system("incident", {"priority": number}, {"priority": name}, ID).payload == {}


def test_jira_incident_record_both_ways(jira) -> None:
    resolver = Resolver({("change", "10050"): "CHG0030001", ("release", "10001"): "RLSE0001001"})
    record = {
        "summary": "Checkout down",
        "status": "Resolved",
        "priority": "High",
        "caused_by": "10050",
        "release": "10001",
        "created": "2026-01-06T01:05:00.000+0100",
        "resolutiondate": "2026-01-06T03:00:00.250+0100",
    }
    values = jira.to_canonical("incident", record, None, resolver).values
    assert values == {
        "summary": "Checkout down",
        "state": "resolved",
        "priority": 2,
        "caused_by_change": "CHG0030001",
        "caused_by_release": "RLSE0001001",
        "opened_at": datetime(2026, 1, 6, 0, 5, tzinfo=UTC),
        "resolved_at": datetime(2026, 1, 6, 2, 0, 0, 250000, tzinfo=UTC),
    }
    # Jira sets created/resolutiondate itself: they are never written, even when they differ.
    later = {**values, "opened_at": datetime(2020, 1, 1, tzinfo=UTC), "resolved_at": None}
    assert jira.to_system("incident", later, record, resolver).payload == {}
    assert jira.to_system("incident", later, None, resolver).payload == {
        "summary": "Checkout down",
        "status": "Resolved",
        "priority": "High",
        "caused_by": "10050",
        "release": "10001",
    }


def test_jira_unknown_status_is_unmappable(jira) -> None:
    with pytest.raises(UnmappableValue, match="'Done'"):
        jira.to_canonical("incident", {"status": "Done"}, None, ID)


def test_servicenow_release_to_jira_end_to_end(sn, jira) -> None:
    """A release authorized in relbridge and in progress in ServiceNow: Jira needs no write."""
    sn_record = {
        "short_description": "2026.1",
        "description": "",
        "start_date": "2026-01-05 08:00:00",
        "end_date": "2026-01-09 18:00:00",
        "work_start": "",
        "work_end": "",
        "state": "2",
    }
    values = sn.to_canonical("release", sn_record, {"state": "authorized"}, ID).values
    assert values["state"] == "authorized"
    jira_current = {
        "name": "2026.1",
        "description": "",
        "startDate": "2026-01-05",
        "releaseDate": "2026-01-09",
        "state": "unreleased",
    }
    assert jira.to_system("release", values, jira_current, ID).payload == {}
    deployed = {**values, "state": "deployed"}
    assert jira.to_system("release", deployed, jira_current, ID).payload == {"state": "released"}


def test_descriptions_map_plain_text_to_jira_wiki_markup_and_back(sn, jira) -> None:
    from bridge.mapping.convert import IdentityResolver

    resolver = IdentityResolver()
    for entity in ("change", "incident"):
        assert sn.to_canonical(entity, {"description": "a *b*"}, None, resolver).values["description"] == "a *b*"
        out = jira.to_system(entity, {"description": "- a *b*"}, {"description": None}, resolver)
        assert out.payload == {"description": "\\- a \\*b*"}
        assert jira.to_canonical(entity, {"description": "*bold*"}, None, resolver).values["description"] == "bold"
        # A person's markup is not rewritten while its text is the canonical text.
        assert jira.to_system(entity, {"description": "bold"}, {"description": "*bold*"}, resolver).payload == {}
        assert jira.to_system(entity, {"description": ""}, {"description": "x"}, resolver).payload == {"description": None}


def test_assignees_are_mapped_both_ways_by_default(sn, jira) -> None:
    for entity in ("change", "incident"):
        assert "assigned_to" in sn.fields_to_read(entity)
        assert "assignee" in jira.fields_to_read(entity)
        assert sn.owner(entity, "assignee") == jira.owner(entity, "assignee") == "any"


def test_servicenow_release_satisfaction_is_the_survey_score_read_only(sn) -> None:
    """The adapter's mean of survey answers ("" for none) becomes a number; it is never written."""
    assert sn.to_canonical("release", {"survey_satisfaction": "4.33"}, None, ID).values == {"satisfaction": 4.33}
    assert sn.to_canonical("release", {"survey_satisfaction": ""}, None, ID).values == {"satisfaction": None}
    assert sn.to_canonical("release", {"state": "1"}, None, ID).values == {"state": "planned"}  # not read: left alone
    assert sn.to_system("release", {"satisfaction": 2.5}, {"survey_satisfaction": "4.33"}, ID).payload == {}
    with pytest.raises(UnmappableValue):
        sn.to_canonical("release", {"survey_satisfaction": "lots"}, None, ID)
