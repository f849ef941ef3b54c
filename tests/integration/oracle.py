"""The no-damage oracle (issue 11): acts as the people editing ServiceNow and Jira, remembers
every value they wrote, and afterwards says, field by field, where either system holds
something else.

Why not compare the two systems with each other: the damage this looks for ends with both
systems *agreeing* on a value nobody wrote (a closed change back at "new", a resolved
incident reopened, a fix version removed). So every person's write goes through the
oracle (`create`, `edit`), which records when it was acknowledged, in which system, for
which record and canonical field, and with which value; `check()` then reads both systems
through their REST APIs and expects every tracked field to hold the last value a person
wrote to it, in both systems.

How the lead uses it::

    oracle = Oracle(bridge.sn, bridge.jira)
    oracle.adopt()                  # records on both systems now are the people's
    key = oracle.create("servicenow", "change", summary="Roll out X", state="new")
    oracle.edit("jira", "change", key, "state", "assess")
    ... faults, kills, passes, daemons ...
    oracle.assert_no_damage()       # or: damage = oracle.check()

Modelled (independently of relbridge's mapping code, from DESIGN §8):

* release: name, description, planned_start, planned_end (compared as dates), state
  (set-valued: ServiceNow "2" stands for four canonical states, an unreleased Jira version
  for five). The release state is *derived* by default (the gate reverts, derived
  lifecycle follows the changes): both systems must then agree on it, not hold a value a
  person wrote. `Oracle(derived=())` checks it like any other field.
* change: summary, state, release (fix version / release link); ServiceNow only: close_code.
* incident: summary, state, priority, caused_by_change; ServiceNow only: opened_at (set
  once when the incident is opened, never changed afterwards).

Fields nobody edited keep the value they had when the oracle first saw the record.
Records are identified across systems by relbridge's documented correlation: ServiceNow
`correlation_id`, Jira issue label `relbridge-<KEY>`, a Jira version's name (ServiceNow-born)
or `JV<id>` (Jira-born). Every tracked record must exist exactly once in each system, and
no change, incident or release may exist that no person created.

The people's calls carry the simulators' fault-bypass header: injected faults hit relbridge
only. Time: ServiceNow stamps updates to the second, so two edits of one field in the two
systems closer than `AMBIGUOUS_SECONDS` cannot be ordered by anyone; `edit` waits that
long when it would write such a pair (so expectations stay exact).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bridge.sim.control import BYPASS_FAULTS_HEADER
from tests.integration.helpers import Jira, ServiceNow

SYSTEMS = ("servicenow", "jira")
ENTITIES = ("release", "change", "incident")
#: Edits of one field in the two systems closer than this cannot be ordered (whole seconds).
AMBIGUOUS_SECONDS = 1.1

SN_TABLE = {"release": "rm_release", "change": "change_request", "incident": "incident"}
JIRA_TYPE = {"change": "Change", "incident": "Incident"}
LABEL_PREFIX = "relbridge-"

SN_CHANGE_STATE = {"-5": "new", "-4": "assess", "-3": "authorize", "-2": "scheduled", "-1": "implement",
                   "0": "review", "3": "closed", "4": "canceled"}
JIRA_CHANGE_STATE = {"New": "new", "Assess": "assess", "Authorize": "authorize", "Scheduled": "scheduled",
                     "Implement": "implement", "Review": "review", "Closed": "closed", "Canceled": "canceled"}
SN_INCIDENT_STATE = {"1": "new", "2": "in_progress", "3": "on_hold", "6": "resolved", "7": "closed",
                     "8": "canceled"}
JIRA_INCIDENT_STATE: dict[str, frozenset[str]] = {
    "Open": frozenset({"new"}), "In Progress": frozenset({"in_progress", "on_hold"}),
    "Resolved": frozenset({"resolved"}), "Closed": frozenset({"closed", "canceled"})}
JIRA_PRIORITY = {"Highest": 1, "High": 2, "Medium": 3, "Low": 4, "Lowest": 5}
SN_RELEASE_STATE: dict[str, frozenset[str]] = {
    "-5": frozenset({"planned"}), "1": frozenset({"planned"}),
    "2": frozenset({"in_progress", "authorized", "deploying", "deployed"}),
    "3": frozenset({"closed"}), "4": frozenset({"rolled_back"}), "7": frozenset({"cancelled"})}
JIRA_UNRELEASED = frozenset({"planned", "in_progress", "authorized", "deploying", "rolled_back"})
JIRA_RELEASED = frozenset({"deployed", "closed"})
JIRA_ARCHIVED = frozenset({"cancelled"})

#: Canonical fields the oracle checks, per entity and system.
FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "release": {"servicenow": ("name", "description", "planned_start", "planned_end", "state"),
                "jira": ("name", "description", "planned_start", "planned_end", "state")},
    "change": {"servicenow": ("summary", "state", "release", "close_code"),
               "jira": ("summary", "state", "release")},
    "incident": {"servicenow": ("summary", "state", "priority", "caused_by_change", "opened_at"),
                 "jira": ("summary", "state", "priority", "caused_by_change")},
}
#: Fields a person may edit through `Oracle.edit` (the rest are checked, never edited).
EDITABLE: dict[str, tuple[str, ...]] = {
    "release": ("name", "description", "planned_end"),
    "change": ("summary", "state"),
    "incident": ("summary", "state", "priority"),
}
#: Values a person may write, per enumerated field (the generators draw from these).
CHOICES: dict[tuple[str, str], tuple[Any, ...]] = {
    ("change", "state"): tuple(SN_CHANGE_STATE.values()),
    ("incident", "state"): ("new", "in_progress", "resolved", "closed"),
    ("incident", "priority"): (1, 2, 3, 4, 5),
}


#: State moves Jira's workflows can follow (relbridge walks them, one or more transitions);
#: people's state edits stay within these so both systems can hold every value written.
CHANGE_ORDER = ("new", "assess", "authorize", "scheduled", "implement", "review", "closed")
INCIDENT_MOVES = {"new": ("in_progress", "resolved", "closed"), "in_progress": ("resolved", "closed"),
                  "on_hold": ("resolved", "closed"), "resolved": ("closed", "in_progress"), "closed": (),
                  "canceled": ()}


def reachable_states(entity: str, current: Any) -> tuple[Any, ...]:
    """States a person may move a record to from ``current`` (see CHANGE_ORDER)."""
    if entity == "change":
        if current not in CHANGE_ORDER or current == "closed":
            return ()
        return (*CHANGE_ORDER[CHANGE_ORDER.index(current) + 1:], "canceled")
    return INCIDENT_MOVES.get(current, ())


@dataclass(frozen=True)
class Write:
    """One value a person wrote (or the value a record had when the oracle first saw it)."""

    at: float
    system: str  # "servicenow", "jira", or "both" for a value seen in both at adoption
    value: Any


@dataclass(frozen=True)
class Damage:
    """A field of a record holding something no person wrote (or a record gone/doubled)."""

    entity: str
    key: str
    system: str
    field: str
    found: Any
    expected: Any

    def __str__(self) -> str:
        return f"{self.entity} {self.key} in {self.system}: {self.field} is {self.found!r}, expected {self.expected!r}"


@dataclass
class Tracked:
    """A record the people know: where it was born and what they wrote to it."""

    entity: str
    key: str
    born: str
    writes: dict[str, list[Write]] = field(default_factory=lambda: defaultdict(list))
    jira_version_id: str | None = None  # pinned once seen (ServiceNow-born releases)


@dataclass
class Snapshot:
    """Both systems read once: per system and entity, canonical key -> list of objects (each
    canonical field -> a frozenset of the canonical values its system value stands for)."""

    objects: dict[tuple[str, str], dict[str, list[dict[str, Any]]]]
    ids: dict[tuple[str, str, str], str]  # (system, entity, key) -> object id


class Oracle:
    def __init__(self, sn: ServiceNow, jira: Jira, *, derived: Iterable[tuple[str, str]] = (("release", "state"),)
                 ) -> None:
        # Its own sessions, exempt from injected faults: the people are not under test.
        self.sn = ServiceNow(sn.url)
        self.jira = Jira(jira.url)
        for session in (self.sn.session, self.jira.session):
            session.headers[BYPASS_FAULTS_HEADER] = "1"
        self.derived = set(derived)
        self.records: dict[tuple[str, str], Tracked] = {}

    # -- the people ------------------------------------------------------------------------

    def adopt(self, *, settled: bool = True) -> None:
        """Take every release, change and incident in the systems now as written by people.

        ``settled``: the systems were synced already, so each record exists in both and its
        values there are the baseline (a field on which they disagree is reported now,
        as an AssertionError: the baseline must be clean). ``settled=False``: before any
        sync, every object is a person's record in the system that holds it."""
        snap = self.read()
        disagreements = []
        for (system, entity), by_key in snap.objects.items():
            for key, objects in by_key.items():
                if (entity, key) in self.records:
                    continue
                obj = objects[0]
                born = self._born(snap, entity, key)
                if settled and born != system:
                    continue  # the copy; taken with the original
                if not settled and obj.get("_copy"):
                    continue
                tracked = self.records[(entity, key)] = Tracked(entity, key, born)
                other = snap.objects.get((_other(born), entity), {}).get(key)
                for name in FIELDS[entity][born]:
                    tracked.writes[name].append(Write(0.0, born, _one(obj[name])))
                if settled and other:
                    for name in FIELDS[entity][_other(born)]:
                        mine, theirs = obj.get(name), other[0][name]
                        if name in FIELDS[entity][born] and not (mine & theirs):
                            disagreements.append(f"{entity} {key} {name}: {born} {set(mine)} vs {set(theirs)}")
                        elif name not in FIELDS[entity][born]:
                            tracked.writes[name].append(Write(0.0, _other(born), _one(theirs)))
                if entity == "incident" and born == "jira" and not settled:
                    tracked.writes["opened_at"].append(Write(0.0, born, obj["_created"]))
                if entity == "release" and born == "servicenow" and other:
                    tracked.jira_version_id = snap.ids[("jira", "release", key)]
        assert not disagreements, "the systems disagree before the run:\n" + "\n".join(disagreements)

    def create(self, system: str, entity: str, **values: Any) -> str:
        """A person creates a record in ``system`` with canonical ``values``; returns its key."""
        if system == "servicenow":
            row = self.sn.create(SN_TABLE[entity], **_sn_payload(entity, values, self))
            key = row["number"]
            extra = {"opened_at": row.get("opened_at")} if entity == "incident" else {}
        elif entity == "release":
            version = self.jira.create_version(**_jira_version_payload(values))
            key = f"JV{version['id']}"
            extra = {}
        else:
            fields = _jira_issue_fields(entity, values, self)
            summary = fields.pop("summary")
            issue = self.jira.create_issue(JIRA_TYPE[entity], summary, **fields)
            key = issue["key"]
            extra = {"opened_at": _jira_created(issue["fields"]["created"])} if entity == "incident" else {}
            target = values.get("state")
            if target is not None and _jira_state(entity, issue["fields"]["status"]["name"]) != {target}:
                self._jira_transition(key, entity, target)
        at = time.time()
        tracked = self.records[(entity, key)] = Tracked(entity, key, system)
        defaults = {"release": {"description": None, "planned_start": None, "planned_end": None, "state": "planned"},
                    "change": {"release": (), "close_code": None, "state": "new"},
                    "incident": {"caused_by_change": None, "state": "new", "priority": 3}}[entity]
        for name in {*FIELDS[entity]["servicenow"], *FIELDS[entity]["jira"]}:
            value = {**defaults, **extra, **values}.get(name)
            if name == "release" and isinstance(value, str):
                value = (value,)
            tracked.writes[name].append(Write(at, system, value))
        return key

    def edit(self, system: str, entity: str, key: str, name: str, value: Any) -> bool:
        """A person sets one field in one system. False when nothing was written (the system
        holds that value already, or Jira's workflow has no transition to it from here)."""
        assert name in EDITABLE[entity], f"{entity}.{name} is not editable through the oracle"
        tracked = self.records[(entity, key)]
        snap = self.read(entities=(entity,))
        objects = snap.objects.get((system, entity), {}).get(key)
        if not objects:
            return False  # not in that system (yet): a person cannot edit it there
        if value in objects[0][name]:
            return False
        last = tracked.writes[name][-1] if tracked.writes[name] else None
        if last is not None and last.system not in (system, "both"):
            wait = last.at + AMBIGUOUS_SECONDS - time.time()
            if wait > 0:
                time.sleep(wait)
        object_id = snap.ids[(system, entity, key)]
        if system == "servicenow":
            self.sn.update(SN_TABLE[entity], object_id, **_sn_payload(entity, {name: value}, self))
        elif entity == "release":
            self.jira.update_version(object_id, **_jira_version_payload({name: value}))
        elif name == "state":
            if not self._jira_transition(key, entity, value, issue_key=object_id):
                return False
        else:
            self.jira.update_issue(object_id, **_jira_issue_fields(entity, {name: value}, self))
        tracked.writes[name].append(Write(time.time(), system, value))
        return True

    def _jira_transition(self, key: str, entity: str, target: str, *, issue_key: str | None = None) -> bool:
        issue_key = issue_key or key
        names = {v: k for k, v in JIRA_CHANGE_STATE.items()} if entity == "change" else {
            "new": "Open", "in_progress": "In Progress", "on_hold": "In Progress", "resolved": "Resolved",
            "closed": "Closed", "canceled": "Closed"}
        r = self.jira.session.get(f"{self.jira.api}/issue/{issue_key}/transitions")
        r.raise_for_status()
        ids = {t["to"]["name"]: t["id"] for t in r.json()["transitions"]}
        if names[target] not in ids:
            return False
        self.jira.session.post(f"{self.jira.api}/issue/{issue_key}/transitions",
                               json={"transition": {"id": ids[names[target]]}}).raise_for_status()
        return True

    # -- what people expect ------------------------------------------------------------------

    def expected(self, entity: str, key: str, name: str) -> set[Any]:
        """The values a field may hold: the last one written, and any written in the other
        system too close before it to be ordered."""
        writes = self.records[(entity, key)].writes.get(name) or []
        if not writes:
            return set()
        last = writes[-1]
        values = _values(last.value)
        for write in reversed(writes[:-1]):
            if write.system in (last.system, "both") or last.at - write.at >= AMBIGUOUS_SECONDS:
                break
            values |= _values(write.value)
        return values

    def choices(self, entity: str, key: str, name: str) -> tuple[Any, ...]:
        """Values a person may write to an enumerated field of this record now."""
        if name == "state":
            current = sorted(self.expected(entity, key, name), key=repr)
            return reachable_states(entity, current[0]) if len(current) == 1 else ()
        return CHOICES[(entity, name)]

    def keys(self, entity: str, born: str | None = None) -> list[str]:
        return sorted(k for (e, k), t in self.records.items() if e == entity and born in (None, t.born))

    # -- checking ------------------------------------------------------------------------------

    def check(self) -> list[Damage]:
        """Every way the two systems differ from what the people wrote."""
        snap = self.read()
        damage: list[Damage] = []
        for (entity, key), tracked in sorted(self.records.items()):
            for system in SYSTEMS:
                objects = snap.objects.get((system, entity), {}).get(key, [])
                if len(objects) != 1:
                    damage.append(Damage(entity, key, system, "<record>", f"{len(objects)} objects", "exactly 1"))
                    continue
                if entity == "release" and system == "jira" and tracked.born == "servicenow":
                    tracked.jira_version_id = snap.ids[("jira", "release", key)]
                obj = objects[0]
                for name in FIELDS[entity][system]:
                    found = obj[name]
                    if (entity, name) in self.derived:
                        other = snap.objects.get((_other(system), entity), {}).get(key, [])
                        if system == "jira" and len(other) == 1 and not (found & other[0][name]):
                            damage.append(Damage(entity, key, system, name, _show(found),
                                                 f"agreeing with servicenow {_show(other[0][name])}"))
                        continue
                    expected = self.expected(entity, key, name)
                    if expected and not (found & expected):
                        damage.append(Damage(entity, key, system, name, _show(found), _show(frozenset(expected))))
        for (system, entity), by_key in sorted(snap.objects.items()):
            for key in sorted(by_key):
                if (entity, key) not in self.records:
                    damage.append(Damage(entity, key, system, "<record>", f"{len(by_key[key])} objects",
                                         "none (no person created it)"))
        return damage

    def assert_no_damage(self, context: str = "") -> None:
        damage = self.check()
        assert not damage, (f"{len(damage)} damaged field(s){' ' + context if context else ''}:\n"
                            + "\n".join(f"  {d}" for d in damage))

    # -- reading both systems --------------------------------------------------------------------

    def read(self, entities: Iterable[str] = ENTITIES) -> Snapshot:
        """Both systems as canonical values, keyed by correlation (see the module docstring)."""
        wanted = set(entities)
        objects: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
        ids: dict[tuple[str, str, str], str] = {}

        def put(system: str, entity: str, key: str, object_id: str, values: dict[str, Any]) -> None:
            objects[(system, entity)][key].append(values)
            ids[(system, entity, key)] = object_id

        # ServiceNow
        releases = self.sn.list("rm_release")
        release_key = {r["sys_id"]: r.get("correlation_id") or r["number"] for r in releases}
        changes = self.sn.list("change_request")
        change_key = {c["sys_id"]: c.get("correlation_id") or c["number"] for c in changes}
        links: dict[str, set[str]] = defaultdict(set)
        for row in self.sn.list("rm_m2m_release_task"):
            if row.get("release") in release_key:
                links[row["task"]].add(release_key[row["release"]])
        if "release" in wanted:
            for r in releases:
                put("servicenow", "release", release_key[r["sys_id"]], r["sys_id"], {
                    "_copy": bool(r.get("correlation_id")),
                    "name": _set(r["short_description"]), "description": _set(r.get("description")),
                    "planned_start": _set(_date(r.get("start_date"))), "planned_end": _set(_date(r.get("end_date"))),
                    "state": SN_RELEASE_STATE.get(r["state"], frozenset({f"?{r['state']}"}))})
        if "change" in wanted:
            for c in changes:
                put("servicenow", "change", change_key[c["sys_id"]], c["sys_id"], {
                    "_copy": bool(c.get("correlation_id")),
                    "summary": _set(c["short_description"]),
                    "state": _set(SN_CHANGE_STATE.get(c["state"], f"?{c['state']}")),
                    "release": _set(tuple(sorted(links.get(c["sys_id"], ())))),
                    "close_code": _set(c.get("close_code"))})
        if "incident" in wanted:
            for i in self.sn.list("incident"):
                put("servicenow", "incident", i.get("correlation_id") or i["number"], i["sys_id"], {
                    "_copy": bool(i.get("correlation_id")),
                    "summary": _set(i["short_description"]),
                    "state": _set(SN_INCIDENT_STATE.get(i["state"], f"?{i['state']}")),
                    "priority": _set(int(i["priority"]) if i.get("priority") else None),
                    "caused_by_change": _set(change_key.get(i.get("caused_by") or "", i.get("caused_by") or None)),
                    "opened_at": _set(i.get("opened_at") or None)})

        # Jira
        sn_born_release = {r["short_description"]: r["number"] for r in releases if not r.get("correlation_id")}
        pinned = {t.jira_version_id: t.key for t in self.records.values() if t.jira_version_id}
        version_key: dict[str, str] = {}
        for v in self.jira.versions():
            jv = f"JV{v['id']}"
            if jv in release_key.values() or ("release", jv) in self.records:
                key = jv
            elif v["id"] in pinned:
                key = pinned[v["id"]]
            else:
                key = sn_born_release.get(v["name"], jv)
            version_key[v["id"]] = key
            if "release" in wanted:
                state = JIRA_ARCHIVED if v.get("archived") else JIRA_RELEASED if v.get("released") else JIRA_UNRELEASED
                put("jira", "release", key, v["id"], {
                    "_copy": key != jv, "name": _set(v["name"]), "description": _set(v.get("description")),
                    "planned_start": _set(v.get("startDate")), "planned_end": _set(v.get("releaseDate")),
                    "state": state})
        if wanted & {"change", "incident"}:
            issues = [i for i in self.jira.search("project = OPS") if i["fields"]["issuetype"]["name"] in
                      JIRA_TYPE.values()]
            issue_key = {i["key"]: _issue_key(i) for i in issues}
            for i in issues:
                f = i["fields"]
                entity = "change" if f["issuetype"]["name"] == "Change" else "incident"
                if entity not in wanted:
                    continue
                key = issue_key[i["key"]]
                values: dict[str, Any] = {"_copy": key != i["key"], "summary": _set(f["summary"]),
                                          "state": _jira_state(entity, f["status"]["name"])}
                if entity == "change":
                    values["release"] = _set(tuple(sorted(version_key.get(v["id"], f"JV{v['id']}")
                                                          for v in f.get("fixVersions") or [])))
                else:
                    values["priority"] = _set(JIRA_PRIORITY.get((f.get("priority") or {}).get("name", "")))
                    causes = [link["inwardIssue"]["key"] for link in f.get("issuelinks") or []
                              if link["type"]["name"] == "Problem/Incident" and "inwardIssue" in link]
                    values["caused_by_change"] = _set(issue_key.get(causes[0], causes[0]) if causes else None)
                    values["_created"] = _jira_created(f["created"])
                put("jira", entity, key, i["key"], values)
        return Snapshot({k: dict(v) for k, v in objects.items()}, ids)

    def _born(self, snap: Snapshot, entity: str, key: str) -> str:
        if (entity, key) in self.records:
            return self.records[(entity, key)].born
        sn = snap.objects.get(("servicenow", entity), {}).get(key)
        if sn and not sn[0]["_copy"]:
            return "servicenow"
        return "jira"

    # -- summaries for tests ---------------------------------------------------------------------

    def counts(self) -> Counter[tuple[str, str]]:
        """How many objects each system holds per entity (duplicates included)."""
        snap = self.read()
        return Counter({k: sum(len(v) for v in by_key.values()) for k, by_key in snap.objects.items()})


# --- system payloads ----------------------------------------------------------------------------


def _sn_payload(entity: str, values: dict[str, Any], oracle: Oracle) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name in ("summary", "name"):
            out["short_description"] = value
        elif name == "description":
            out["description"] = value or ""
        elif name in ("planned_start", "planned_end"):
            out["start_date" if name == "planned_start" else "end_date"] = f"{value} 12:00:00" if value else ""
        elif name == "state":
            table = {"change": SN_CHANGE_STATE, "incident": SN_INCIDENT_STATE,
                     "release": {"1": "planned", "2": "in_progress", "3": "closed"}}[entity]
            out["state"] = next(code for code, v in table.items() if v == value)
        elif name == "priority":
            out["priority"] = str(value)
        elif name == "caused_by_change":
            out["caused_by"] = oracle.read(("change",)).ids[("servicenow", "change", value)] if value else ""
        elif name in ("close_code", "release"):
            raise AssertionError(f"the oracle does not write {entity}.{name}")
    return out


def _jira_version_payload(values: dict[str, Any]) -> dict[str, Any]:
    names = {"name": "name", "description": "description", "planned_start": "startDate", "planned_end": "releaseDate"}
    return {names[k]: v for k, v in values.items() if k in names}


def _jira_issue_fields(entity: str, values: dict[str, Any], oracle: Oracle) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name == "summary":
            out["summary"] = value
        elif name == "priority":
            out["priority"] = {"name": next(n for n, p in JIRA_PRIORITY.items() if p == value)}
        elif name == "release" and value:
            version_id = oracle.read(("release",)).ids[("jira", "release", value)]
            out["fixVersions"] = [{"id": version_id}]
        elif name in ("state", "release"):
            continue  # state by transition (create walks it afterwards)
        else:
            raise AssertionError(f"the oracle does not write {entity}.{name} in Jira")
    return out


# --- value helpers ------------------------------------------------------------------------------


def _set(value: Any) -> frozenset[Any]:
    return frozenset({None if value == "" else value})


def _one(values: frozenset[Any]) -> Any:
    """The value to record from a (possibly set-valued) observation: a single value, or
    the whole set when the system's value stands for several."""
    return next(iter(values)) if len(values) == 1 else values


def _values(value: Any) -> set[Any]:
    return set(value) if isinstance(value, frozenset) else {value}


def _show(values: frozenset[Any]) -> Any:
    items = sorted(values, key=repr)
    return items[0] if len(items) == 1 else items


def _date(value: str | None) -> str | None:
    return value[:10] if value else None


def _jira_created(value: str) -> str:
    """Jira `2026-11-29T02:49:19.652+0000` as ServiceNow shows it: `2026-11-29 02:49:19` (UTC)."""
    assert value.endswith("+0000"), value
    return value[:19].replace("T", " ")


def _jira_state(entity: str, status: str) -> frozenset[str]:
    if entity == "change":
        return _set(JIRA_CHANGE_STATE.get(status, f"?{status}"))
    return JIRA_INCIDENT_STATE.get(status, frozenset({f"?{status}"}))


def _issue_key(issue: dict[str, Any]) -> str:
    for label in issue["fields"].get("labels") or []:
        if label.startswith(LABEL_PREFIX):
            return label[len(LABEL_PREFIX):]
    return issue["key"]


def _other(system: str) -> str:
    return "jira" if system == "servicenow" else "servicenow"


# --- driving relbridge until it has nothing left to do --------------------------------------------


def settle(bridge: Any, *, max_passes: int = 6, **sections: dict[str, Any]) -> str | None:
    """Run `sync --once` passes (as the CLI does, a failed pass is only reported) until one
    finishes without errors and leaves no unfinished record in the store. Returns None
    once settled, else why not (work that never finishes is damage too: it stays stuck)."""
    from bridge.store import Store

    last: object = None
    for _ in range(max_passes):
        try:
            report = bridge.sync(**sections)
        except Exception as exc:  # a pass cut short by a fault: the next one resumes
            last = exc
            continue
        with Store(bridge.store_url, migrate=False) as store:
            unfinished = store.unfinished_records()
        if not report.errors and not unfinished:
            return None
        last = report.errors or [f"{entity} {key} unfinished" for entity, key, _ in unfinished]
    return f"relbridge did not settle in {max_passes} passes; last: {last}"


def assert_settled_without_damage(oracle: Oracle, unsettled: str | None, context: str = "") -> None:
    """Both verdicts in one message: the fields people wrote, and work left stuck."""
    damage = oracle.check()
    problems = [str(d) for d in damage] + ([unsettled] if unsettled else [])
    assert not problems, (f"{len(damage)} damaged field(s){' ' + context if context else ''}"
                          f"{', not settled' if unsettled else ''}:\n" + "\n".join(f"  {p}" for p in problems))
