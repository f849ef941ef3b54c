"""The mapping engine: conversions, value maps, refs, diffs, owners, and load errors."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from relbridge_servicenow.metadata import PSEUDO_FIELDS as SERVICENOW_PSEUDO_FIELDS

from bridge.adapter import FieldInfo, Metadata
from bridge.errors import MappingError, PermanentError
from bridge.mapping.codecs import codec_for, format_jira_datetime
from bridge.mapping.loader import (
    IdentityResolver,
    Mappings,
    PendingRef,
    Transform,
    UnmappableValue,
    UnresolvedRef,
    load_mappings,
    preview,
)

EMPTY_JIRA = 'system = "jira"\n'
EMPTY_SN = 'system = "servicenow"\n'

SN_RELEASE = """
system = "servicenow"

[release]
object = "rm_release"

[release.fields.name]
source = "short_description"

[release.fields.description]
source = "description"
direction = "outbound"

[release.fields.planned_end]
source = "end_date"
type = "servicenow_datetime"

[release.fields.actual_end]
source = "work_end"
type = "servicenow_datetime"
direction = "inbound"

[release.fields.state]
source = "state"
values = { "-5" = "planned", "1" = "planned", "2" = ["in_progress", "authorized", "deploying", "deployed"], "3" = "closed", "4" = "rolled_back", "7" = "cancelled" }

[release.fields.revision_count]
source = "u_revisions"
type = "int"
default = 0

[change]
object = "change_request"

[change.fields.summary]
source = "short_description"

[change.fields.release]
source = "release"
ref = "release"

[incident]
object = "incident"

[incident.fields.summary]
source = "short_description"

[incident.fields.priority]
source = "priority"
type = "int"
"""


class DictResolver:
    """Knows a fixed set of (entity, system id) <-> key pairs."""

    def __init__(self, pairs: dict[tuple[str, str], str]) -> None:
        self.keys = pairs
        self.ids = {(entity, key): system_id for (entity, system_id), key in pairs.items()}

    def to_key(self, entity: str, system_id: str) -> str | None:
        return self.keys.get((entity, system_id))

    def to_id(self, entity: str, key: str) -> str | None:
        return self.ids.get((entity, key))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(
    tmp_path: Path, servicenow: str = EMPTY_SN, jira: str = EMPTY_JIRA, **kw: object
) -> Mappings:
    return load_mappings(
        write(tmp_path, "sn.toml", servicenow), write(tmp_path, "jira.toml", jira), **kw
    )  # type: ignore[arg-type]


def load_error(
    tmp_path: Path, servicenow: str = EMPTY_SN, jira: str = EMPTY_JIRA, **kw: object
) -> str:
    with pytest.raises(MappingError) as info:
        load(tmp_path, servicenow, jira, **kw)
    return str(info.value)


@pytest.fixture
def sn(tmp_path: Path):
    return load(tmp_path, SN_RELEASE).for_system("servicenow")


# -- type conversions -----------------------------------------------------------------------


def test_servicenow_datetime_reads_utc_text_and_writes_it_back() -> None:
    codec = codec_for("servicenow_datetime", "servicenow")
    assert codec.to_canonical("2026-01-05 10:00:00") == datetime(2026, 1, 5, 10, tzinfo=UTC)
    assert codec.to_canonical("") is None
    assert codec.to_system(None) == ""
    assert codec.to_system("2026-01-05T12:00:00+02:00") == "2026-01-05 10:00:00"


aware_seconds = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=0))


@given(aware_seconds)
def test_servicenow_datetime_round_trip(value: datetime) -> None:
    codec = codec_for("servicenow_datetime", "servicenow")
    assert codec.to_canonical(codec.to_system(value)) == value


@given(aware_seconds, st.integers(0, 999))
def test_jira_datetime_round_trip(value: datetime, millis: int) -> None:
    value = value.replace(microsecond=millis * 1000)
    codec = codec_for("jira_datetime", "jira")
    text = codec.to_system(value)
    assert text.endswith("+0000") and len(text) == len("2019-01-30T15:51:33.199+0000")
    assert codec.to_canonical(text) == value


def test_jira_datetime_reads_any_offset_as_utc() -> None:
    codec = codec_for("jira_datetime", "jira")
    assert codec.to_canonical("2019-01-30T15:51:33.199+0300") == datetime(
        2019, 1, 30, 12, 51, 33, 199000, tzinfo=UTC
    )
    assert (
        format_jira_datetime(datetime(2019, 1, 30, 12, 51, 33, 199000, tzinfo=UTC))
        == "2019-01-30T12:51:33.199+0000"
    )
    with pytest.raises(ValueError):
        codec.to_canonical("2019-01-30T15:51:33")  # no offset: ambiguous


@pytest.mark.parametrize(
    ("zone", "day", "start_utc"),
    [
        ("Pacific/Auckland", "2026-01-05", datetime(2026, 1, 4, 11, tzinfo=UTC)),  # NZDT +13
        ("Pacific/Auckland", "2026-07-05", datetime(2026, 7, 4, 12, tzinfo=UTC)),  # NZST +12
        ("America/Los_Angeles", "2026-01-05", datetime(2026, 1, 5, 8, tzinfo=UTC)),  # PST -8
        ("America/Los_Angeles", "2026-07-05", datetime(2026, 7, 5, 7, tzinfo=UTC)),  # PDT -7
        ("UTC", "2026-01-05", datetime(2026, 1, 5, tzinfo=UTC)),
    ],
)
def test_jira_date_is_the_start_of_the_day_in_the_jira_timezone(
    zone: str, day: str, start_utc: datetime
) -> None:
    codec = codec_for("jira_date", "jira", zone)
    assert codec.to_canonical(day) == start_utc
    assert codec.to_system(start_utc) == day
    assert (
        codec.to_system(start_utc - timedelta(seconds=1))
        == (date.fromisoformat(day) - timedelta(days=1)).isoformat()
    )


@pytest.mark.parametrize(
    ("zone", "utc", "day"),
    [
        # Just before / after UTC midnight: the local day is what Jira users see.
        ("America/Los_Angeles", datetime(2026, 1, 5, 23, 59, tzinfo=UTC), "2026-01-05"),
        ("America/Los_Angeles", datetime(2026, 1, 6, 0, 1, tzinfo=UTC), "2026-01-05"),
        ("Pacific/Auckland", datetime(2026, 1, 5, 23, 59, tzinfo=UTC), "2026-01-06"),
        ("Pacific/Auckland", datetime(2026, 1, 5, 10, 59, tzinfo=UTC), "2026-01-05"),
        ("Pacific/Auckland", datetime(2026, 1, 5, 11, 0, tzinfo=UTC), "2026-01-06"),
        ("UTC", datetime(2026, 1, 5, 23, 59, 59, tzinfo=UTC), "2026-01-05"),
    ],
)
def test_jira_date_outbound_near_utc_midnight(zone: str, utc: datetime, day: str) -> None:
    assert codec_for("jira_date", "jira", zone).to_system(utc) == day


@settings(max_examples=200)
@given(
    st.dates(min_value=date(1971, 1, 1), max_value=date(2099, 12, 31)),
    st.sampled_from(
        [
            "UTC",
            "Pacific/Auckland",
            "America/Los_Angeles",
            "America/Santiago",
            "Asia/Kolkata",
            "Pacific/Chatham",
        ]
    ),
)
def test_jira_date_round_trip_in_every_zone(day: date, zone: str) -> None:
    codec = codec_for("jira_date", "jira", zone)
    assert codec.to_system(codec.to_canonical(day.isoformat())) == day.isoformat()


def test_int_and_bool_follow_each_systems_representation() -> None:
    assert codec_for("int", "servicenow").to_canonical("3") == 3
    assert codec_for("int", "servicenow").to_system(3) == "3"
    assert codec_for("int", "jira").to_system(3) == 3
    assert codec_for("int", "jira").to_system(None) is None
    assert codec_for("bool", "servicenow").to_canonical("false") is False
    assert codec_for("bool", "servicenow").to_system(True) == "true"
    assert codec_for("bool", "jira").to_system(True) is True
    assert codec_for("string", "jira").to_canonical(None) == ""
    with pytest.raises(ValueError):
        codec_for("int", "servicenow").to_canonical("three")
    with pytest.raises(ValueError):
        codec_for("bool", "jira").to_canonical("maybe")


# -- inbound ----------------------------------------------------------------------------------


def test_inbound_converts_by_type_and_reads_only_what_was_given(sn) -> None:
    result = sn.to_canonical(
        "release",
        {"short_description": "R1", "end_date": "2026-01-05 10:00:00", "state": "3"},
        None,
        IdentityResolver(),
    )
    assert result.values == {
        "name": "R1",
        "planned_end": datetime(2026, 1, 5, 10, tzinfo=UTC),
        "state": "closed",
    }
    assert result.unresolved == []


def test_set_valued_map_keeps_the_current_value(sn) -> None:
    resolver = IdentityResolver()
    assert (
        sn.to_canonical("release", {"state": "2"}, {"state": "deploying"}, resolver).values["state"]
        == "deploying"
    )
    assert (
        sn.to_canonical("release", {"state": "2"}, {"state": "planned"}, resolver).values["state"]
        == "in_progress"
    )
    assert (
        sn.to_canonical("release", {"state": "2"}, None, resolver).values["state"] == "in_progress"
    )


def test_unknown_system_value_is_a_record_level_error(sn) -> None:
    with pytest.raises(UnmappableValue) as info:
        sn.to_canonical("release", {"state": "99"}, None, IdentityResolver())
    error = info.value
    assert isinstance(error, PermanentError)
    assert (error.entity, error.field, error.system_field, error.value) == (
        "release",
        "state",
        "state",
        "99",
    )
    assert error.known_values == ("-5", "1", "2", "3", "4", "7")
    assert "'99'" in str(error) and "'-5'" in str(error)


def test_unconvertible_value_names_the_expected_format(sn) -> None:
    with pytest.raises(UnmappableValue, match="YYYY-MM-DD HH:MM:SS"):
        sn.to_canonical("release", {"end_date": "05/01/2026"}, None, IdentityResolver())


def test_default_applies_to_an_empty_system_value(sn) -> None:
    assert (
        sn.to_canonical("release", {"u_revisions": ""}, None, IdentityResolver()).values[
            "revision_count"
        ]
        == 0
    )
    assert (
        sn.to_canonical("release", {"u_revisions": "4"}, None, IdentityResolver()).values[
            "revision_count"
        ]
        == 4
    )


def test_empty_value_of_a_required_field_is_left_out(sn) -> None:
    values = sn.to_canonical(
        "incident", {"priority": "", "short_description": "x"}, None, IdentityResolver()
    ).values
    assert values == {"summary": "x"}


def test_outbound_only_fields_are_never_read(sn) -> None:
    values = sn.to_canonical(
        "release", {"description": "d", "short_description": "R"}, None, IdentityResolver()
    ).values
    assert "description" not in values


def test_refs_resolve_to_keys_or_are_reported(sn) -> None:
    resolver = DictResolver({("release", "abc"): "RLSE0001001"})
    resolved = sn.to_canonical("change", {"release": "abc"}, None, resolver)
    assert resolved.values == {"release": "RLSE0001001"} and resolved.unresolved == []
    # ServiceNow's reference shape {link, value} is read too.
    linked = sn.to_canonical(
        "change", {"release": {"link": "http://x/abc", "value": "abc"}}, None, resolver
    )
    assert linked.values == {"release": "RLSE0001001"}
    unresolved = sn.to_canonical("change", {"release": "zzz"}, None, resolver)
    assert unresolved.values == {"release": None}
    assert unresolved.unresolved == [UnresolvedRef("release", "zzz")]
    assert sn.to_canonical("change", {"release": ""}, None, resolver).values == {"release": None}


# -- outbound ---------------------------------------------------------------------------------


def test_outbound_writes_only_changed_fields(sn) -> None:
    canonical = {
        "name": "R1",
        "description": "d",
        "planned_end": datetime(2026, 1, 5, 10, tzinfo=UTC),
        "state": "planned",
    }
    current = {
        "short_description": "R1",
        "description": "d",
        "end_date": "2026-01-05 10:00:00",
        "state": "1",
    }
    assert sn.to_system("release", canonical, current, IdentityResolver()).payload == {}
    moved = {
        **canonical,
        "planned_end": "2026-01-06T10:00:00+00:00",
    }  # ISO text as in model_dump(mode="json")
    assert sn.to_system("release", moved, current, IdentityResolver()).payload == {
        "end_date": "2026-01-06 10:00:00"
    }


def test_outbound_create_sends_every_mapped_field_with_a_value(sn) -> None:
    canonical = {
        "name": "R1",
        "description": "",
        "planned_end": None,
        "actual_end": None,
        "state": "authorized",
        "revision_count": 2,
    }
    payload = sn.to_system("release", canonical, None, IdentityResolver()).payload
    assert payload == {"short_description": "R1", "state": "2", "u_revisions": "2"}


def test_outbound_value_map_keeps_a_system_value_that_stands_for_it(sn) -> None:
    resolver = IdentityResolver()
    assert sn.to_system("release", {"state": "deploying"}, {"state": "2"}, resolver).payload == {}
    assert sn.to_system("release", {"state": "planned"}, {"state": "1"}, resolver).payload == {}
    # Otherwise the first system value in file order that stands for it.
    assert sn.to_system("release", {"state": "planned"}, {"state": "2"}, resolver).payload == {
        "state": "-5"
    }
    assert sn.to_system(
        "release", {"state": "deployed"}, {"state": "garbage"}, resolver
    ).payload == {"state": "2"}


def test_outbound_unmappable_canonical_value(tmp_path: Path) -> None:
    text = SN_RELEASE.replace('"7" = "cancelled"', '"7" = "closed"')
    mapping = load(tmp_path, text).servicenow
    with pytest.raises(UnmappableValue) as info:
        mapping.to_system("release", {"state": "cancelled"}, {"state": "1"}, IdentityResolver())
    assert info.value.value == "cancelled" and "planned" in info.value.known_values


def test_inbound_only_fields_are_never_written_and_fields_limits(sn) -> None:
    canonical = {"name": "New", "actual_end": datetime(2026, 1, 1, tzinfo=UTC), "state": "closed"}
    current = {"short_description": "Old", "work_end": "", "state": "1"}
    assert sn.to_system("release", canonical, current, IdentityResolver()).payload == {
        "short_description": "New",
        "state": "3",
    }
    limited = sn.to_system("release", canonical, current, IdentityResolver(), fields=["state"])
    assert limited.payload == {"state": "3"}


def test_outbound_refs_resolve_clear_or_wait(sn) -> None:
    resolver = DictResolver({("release", "abc"): "RLSE0001001"})
    assert sn.to_system(
        "change", {"release": "RLSE0001001"}, {"release": ""}, resolver
    ).payload == {"release": "abc"}
    assert (
        sn.to_system(
            "change", {"release": "RLSE0001001"}, {"release": {"value": "abc"}}, resolver
        ).payload
        == {}
    )
    assert sn.to_system("change", {"release": None}, {"release": "abc"}, resolver).payload == {
        "release": ""
    }
    waiting = sn.to_system("change", {"release": "OPS-V7"}, {"release": ""}, resolver)
    assert waiting.payload == {} and waiting.pending == [PendingRef("release", "release", "OPS-V7")]


def test_int_compares_after_normalising(sn) -> None:
    assert (
        sn.to_system("incident", {"priority": 3}, {"priority": "3"}, IdentityResolver()).payload
        == {}
    )
    assert sn.to_system(
        "incident", {"priority": 2}, {"priority": "3"}, IdentityResolver()
    ).payload == {"priority": "2"}


# -- transforms, owners, previews ---------------------------------------------------------


def _upper() -> dict[str, Transform]:
    def to_canonical(raw: object) -> str:
        if not isinstance(raw, str):
            raise ValueError("text expected")
        return raw.lower()

    return {"case": Transform("case", to_canonical, lambda value: str(value).upper())}


def test_plugin_transform_runs_both_ways(tmp_path: Path) -> None:
    text = (
        EMPTY_SN
        + '[release]\nobject = "rm_release"\n[release.fields.name]\nsource = "short_description"\ntransform = "case"\n'
    )
    mapping = load(tmp_path, text, transforms=_upper()).servicenow
    assert mapping.to_canonical(
        "release", {"short_description": "ABC"}, None, IdentityResolver()
    ).values == {"name": "abc"}
    assert (
        mapping.to_system(
            "release", {"name": "abc"}, {"short_description": "ABC"}, IdentityResolver()
        ).payload
        == {}
    )
    assert mapping.to_system(
        "release", {"name": "abd"}, {"short_description": "ABC"}, IdentityResolver()
    ).payload == {"short_description": "ABD"}
    with pytest.raises(UnmappableValue, match="transform 'case'"):
        mapping.to_canonical("release", {"short_description": 5}, None, IdentityResolver())


def test_owner_stated_in_one_file_applies_to_both(tmp_path: Path) -> None:
    jira = (
        EMPTY_JIRA
        + '[release]\nobject = "version"\n[release.fields.name]\nsource = "name"\nowner = "servicenow"\n'
    )
    mappings = load(tmp_path, SN_RELEASE, jira)
    assert mappings.owner("release", "name") == "servicenow"
    assert mappings.owner("change", "approval") == "servicenow"  # DESIGN default
    assert mappings.owner("release", "state") == "any"
    # Jira never supplies a field ServiceNow owns…
    assert (
        mappings.jira.to_canonical("release", {"name": "x"}, None, IdentityResolver()).values == {}
    )
    # …but it still shows it.
    assert mappings.jira.to_system(
        "release", {"name": "x"}, {"name": "y"}, IdentityResolver()
    ).payload == {"name": "x"}
    assert mappings.servicenow.to_canonical(
        "release", {"short_description": "x"}, None, IdentityResolver()
    ).values == {"name": "x"}


def test_preview_is_json_ready(sn) -> None:
    inbound = preview(
        sn, "release", {"end_date": "2026-01-05 10:00:00", "state": "2"}, "to_canonical"
    )
    assert inbound["values"] == {"planned_end": "2026-01-05T10:00:00+00:00", "state": "in_progress"}
    assert inbound["object"] == "rm_release"
    outbound = preview(sn, "change", {"summary": "S", "release": "RLSE1"}, "to_system")
    assert outbound["payload"] == {"short_description": "S", "release": "RLSE1"}
    with pytest.raises(MappingError):
        preview(sn, "release", {}, "sideways")  # type: ignore[arg-type]


def test_unmapped_entity_and_system_are_clear_errors(tmp_path: Path) -> None:
    mappings = load(tmp_path, SN_RELEASE)
    with pytest.raises(MappingError, match="release — not mapped for jira"):
        mappings.jira.object("release")
    with pytest.raises(MappingError, match="no mapping for system 'github'"):
        mappings.for_system("github")
    assert mappings.servicenow.fields_to_read("change") == ["short_description", "release"]


# -- load errors ------------------------------------------------------------------------------


def test_unknown_canonical_field_suggests_the_closest(tmp_path: Path) -> None:
    jira = EMPTY_JIRA + '[change]\nobject = "Change"\n[change.fields.stauts]\nsource = "status"\n'
    message = load_error(tmp_path, jira=jira)
    assert (
        f"{tmp_path / 'jira.toml'}: change.fields.stauts — unknown canonical field (did you mean 'state'?)"
        in message
    )


def test_unknown_value_in_a_value_map(tmp_path: Path) -> None:
    message = load_error(
        tmp_path, SN_RELEASE.replace('"deploying", "deployed"', '"deployng", "deployed"')
    )
    assert (
        f"{tmp_path / 'sn.toml'}: release.fields.state.values.2 — 'deployng' is not a valid state"
        in message
    )
    assert "did you mean 'deploying'?" in message


def test_broken_toml_reports_line_and_column(tmp_path: Path) -> None:
    message = load_error(tmp_path, EMPTY_SN + '[release]\nobject = "rm_release\n')
    assert message.startswith(f"{tmp_path / 'sn.toml'}: line 3, column")
    assert "invalid TOML" in message
    end = load_error(tmp_path, EMPTY_SN + "[release]\nobject = [\n")
    assert "line 4 (end of file)" in end


def test_owner_disagreement_names_both_files(tmp_path: Path) -> None:
    sn = (
        EMPTY_SN
        + '[release]\nobject = "rm_release"\n[release.fields.name]\nsource = "short_description"\nowner = "servicenow"\n'
    )
    jira = (
        EMPTY_JIRA
        + '[release]\nobject = "version"\n[release.fields.name]\nsource = "name"\nowner = "jira"\n'
    )
    message = load_error(tmp_path, sn, jira)
    assert f"{tmp_path / 'jira.toml'}: release.fields.name.owner" in message
    assert (
        str(tmp_path / "sn.toml") in message and "'servicenow'" in message and "'jira'" in message
    )


def test_unknown_transform(tmp_path: Path) -> None:
    text = (
        EMPTY_SN
        + '[release]\nobject = "rm_release"\n[release.fields.name]\nsource = "x"\ntransform = "cse"\n'
    )
    message = load_error(tmp_path, text, transforms=_upper())
    assert (
        f"{tmp_path / 'sn.toml'}: release.fields.name.transform — no plugin provides transform 'cse' (did you mean 'case'?)"
        in message
    )
    assert "none are installed" in load_error(tmp_path, text, transforms={})


def test_every_problem_of_both_files_is_reported_at_once(tmp_path: Path) -> None:
    sn = """
system = "servicenow"
[relase]
object = "rm_release"
[change]
objet = "change_request"
[change.fields.key]
source = "number"
[change.fields.summary]
sorce = "short_description"
[change.fields.risk]
source = "risk"
type = "integer"
owner = "servicnow"
direction = "out"
[change.fields.release]
source = "release"
ref = "releases"
[change.fields.state]
source = "state"
type = "ref"
"""
    jira = 'system = "servicenow"\n[incident]\nobject = "Incident"\n[incident.fields.caused_by_change]\nsource = "caused_by"\ntype = "ref"\nref = "change"\n[incident.fields.priority]\nsource = "priority"\nvalues = { High = 9 }\n'
    lines = load_error(tmp_path, sn, jira).splitlines()
    expected = [
        ("sn.toml", "relase — unknown entity (did you mean 'release'?)"),
        ("sn.toml", "change.objet — unknown key (did you mean 'object'?)"),
        ("sn.toml", "change.object — missing"),
        ("sn.toml", "change.fields.key — 'key' is kept by relbridge itself"),
        ("sn.toml", "change.fields.summary.sorce — unknown key (did you mean 'source'?)"),
        ("sn.toml", "change.fields.summary.source — missing"),
        ("sn.toml", "change.fields.risk.type — unknown type 'integer' (did you mean 'int'?)"),
        (
            "sn.toml",
            "change.fields.risk.owner — unknown owner 'servicnow' (did you mean 'servicenow'?)",
        ),
        ("sn.toml", "change.fields.risk.direction — unknown direction 'out'"),
        (
            "sn.toml",
            "change.fields.release.ref — unknown entity 'releases' (did you mean 'release'?)",
        ),
        ("sn.toml", "change.fields.state.ref — missing"),
        ("jira.toml", "system — this file says 'servicenow' but is loaded as the jira mapping"),
        ("jira.toml", "incident.fields.priority.values.High — 9 is not a valid priority"),
    ]
    for file, text in expected:
        assert any(line.startswith(f"{tmp_path / file}: {text}") for line in lines), (
            file,
            text,
            lines,
        )
    assert len(lines) == len(expected)


def test_value_map_keys_must_fit_the_type(tmp_path: Path) -> None:
    text = (
        EMPTY_SN
        + '[incident]\nobject = "incident"\n[incident.fields.priority]\nsource = "priority"\ntype = "int"\nvalues = { high = 1 }\n'
    )
    assert (
        "incident.fields.priority.values.high — system value 'high' is not a whole number"
        in load_error(tmp_path, text)
    )
    dated = (
        EMPTY_SN
        + '[incident]\nobject = "incident"\n[incident.fields.opened_at]\nsource = "o"\ntype = "jira_date"\nvalues = { x = 1 }\n'
    )
    assert "a value map works with types string, int, bool, not 'jira_date'" in load_error(
        tmp_path, dated
    )


def test_two_fields_writing_one_system_field(tmp_path: Path) -> None:
    text = (
        EMPTY_SN
        + '[release]\nobject = "rm_release"\n[release.fields.name]\nsource = "short_description"\n[release.fields.description]\nsource = "short_description"\n'
    )
    assert (
        "release.fields.description — source 'short_description' is also written by release.fields.name"
        in load_error(tmp_path, text)
    )
    inbound = text + 'direction = "inbound"\n'
    load(tmp_path, inbound)  # reading one field into two is fine


def test_bad_default_missing_file_and_timezone(tmp_path: Path) -> None:
    text = (
        EMPTY_SN
        + '[incident]\nobject = "incident"\n[incident.fields.state]\nsource = "state"\ndefault = "opened"\n'
    )
    assert "incident.fields.state.default — 'opened' is not a valid state" in load_error(
        tmp_path, text
    )
    with pytest.raises(MappingError, match="nope.toml: file not found"):
        load_mappings(tmp_path / "nope.toml", None)
    with pytest.raises(MappingError, match="unknown time zone 'Mars/Olympus'"):
        load_mappings(None, None, timezone="Mars/Olympus")


# -- checks ---------------------------------------------------------------------------------


def test_check_offline_warns_about_unwritable_states_and_missing_required_fields(
    tmp_path: Path,
) -> None:
    text = (
        EMPTY_SN
        + '[change]\nobject = "change_request"\n[change.fields.state]\nsource = "state"\nvalues = { "1" = "new", "3" = "closed" }\n[change.fields.release]\nsource = "release"\nref = "release"\n'
    )
    lines = load(tmp_path, text).servicenow.check_offline()
    assert any(
        "change.fields.state.values — canonical 'assess' has no servicenow value" in line
        for line in lines
    )
    assert any(
        "change.fields.summary — required canonical field is not read" in line for line in lines
    )
    assert any(
        "change.fields.release.ref — points to 'release', which this file does not map" in line
        for line in lines
    )
    assert all(line.startswith(str(tmp_path / "sn.toml")) for line in lines)


def test_check_against_live_metadata(sn) -> None:
    metadata = Metadata(
        objects={
            "rm_release": {
                "short_description": FieldInfo("short_description"),
                "description": FieldInfo("description"),
                "end_dat": FieldInfo("end_dat"),
                "work_end": FieldInfo("work_end"),
                "u_revisions": FieldInfo("u_revisions"),
                "state": FieldInfo("state", "integer", ("-5", "1", "2", "3", "4", "7", "10")),
            },
            "change_reqest": {},
        }
    )
    lines = sn.check_against(metadata)
    assert any(
        "release.fields.planned_end.source — rm_release has no field 'end_date' (did you mean 'end_dat'?)"
        in line
        for line in lines
    )
    assert any(
        "release.fields.state.values — choice '10' of rm_release.state is not mapped" in line
        for line in lines
    )
    assert any(
        "change.object — servicenow has no object 'change_request' (did you mean 'change_reqest'?)"
        in line
        for line in lines
    )
    assert any("incident.object — servicenow has no object 'incident'" in line for line in lines)
    assert len(lines) == 4


def test_check_against_reports_choices_the_system_lacks(sn) -> None:
    columns = {
        name: FieldInfo(name)
        for name in ("short_description", "description", "end_date", "work_end", "u_revisions")
    }
    columns["state"] = FieldInfo("state", "integer", ("-5", "1", "2", "3", "4"))
    lines = sn.check_against(
        Metadata(
            objects={
                "rm_release": columns,
                "change_request": {"short_description": FieldInfo("x")},
                "incident": {"short_description": FieldInfo("x"), "priority": FieldInfo("p")},
            },
            pseudo_fields=SERVICENOW_PSEUDO_FIELDS,  # what the ServiceNow adapter's metadata carries
        )
    )
    assert lines == [
        f"{sn.label}: release.fields.state.values — rm_release.state has no choice '7'"
    ]
