"""Seed data for the simulated ServiceNow instance.

`empty`: what a fresh instance has for our tables: the schema (`sys_dictionary`, `sys_choice`)
and the admin user. `demo`: that plus four releases in different states, their changes linked
through `rm_m2m_release_task`, and two incidents caused by changes, dated around today.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bridge.sim.servicenow.schema import choice_rows, dictionary_rows, table_rows
from bridge.sim.servicenow.store import ServiceNowStore

#: The admin user's sys_id on every real instance.
ADMIN_SYS_ID = "6816f79cc0a8016401c5a33be04be441"
SYSTEM_USER = "system"
#: The API user's time zone and date format: deliberately not UTC, so display values
#: (`sysparm_display_value=true|all`) differ from the stored UTC values, as on most instances.
ADMIN_TIME_ZONE = "America/New_York"
ADMIN_DATE_FORMAT = "MM/dd/yyyy"

DEMO_USERS = (
    ("beth.anglin", "Beth", "Anglin"),
    ("david.loo", "David", "Loo"),
    ("fred.luddy", "Fred", "Luddy"),
    ("abel.tuter", "Abel", "Tuter"),
)


def _at(days: float, hour: int = 9) -> str:
    moment = datetime.now(UTC).replace(hour=hour, minute=0, second=0, microsecond=0)
    return (moment + timedelta(days=days)).strftime("%Y-%m-%d %H:%M:%S")


def _past(days: float, hour: int) -> str:
    """Like `_at`, but never later than now: system timestamps cannot be in the future."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return min(_at(days, hour), now)


def seed_empty(store: ServiceNowStore) -> None:
    """The schema rows and the admin user, created when the instance was provisioned."""
    created = _at(-365, 0)
    stamps = {"sys_created_on": created, "sys_updated_on": created}
    store.insert("sys_user", {"sys_id": ADMIN_SYS_ID, "user_name": "admin",
                              "name": "System Administrator", "first_name": "System",
                              "last_name": "Administrator", "email": "admin@example.com",
                              "time_zone": ADMIN_TIME_ZONE, "date_format": ADMIN_DATE_FORMAT},
                 SYSTEM_USER, sys_values=stamps)
    table_ids: dict[str, str] = {}
    for row in table_rows():  # parents first, so super_class can point at them
        row["super_class"] = table_ids.get(row["super_class"], "")
        table_ids[row["name"]] = store.insert("sys_db_object", row, SYSTEM_USER,
                                              sys_values=stamps)["sys_id"]
    for row in dictionary_rows():
        store.insert("sys_dictionary", row, SYSTEM_USER, sys_values=stamps)
    for row in choice_rows():
        store.insert("sys_choice", row, SYSTEM_USER, sys_values=stamps)


def seed_demo(store: ServiceNowStore) -> None:
    """A realistic release calendar: past, running, upcoming and pending releases."""
    seed_empty(store)
    users = {}
    for user_name, first, last in DEMO_USERS:
        users[user_name] = store.insert(
            "sys_user", {"user_name": user_name, "name": f"{first} {last}", "first_name": first,
                         "last_name": last, "email": f"{user_name}@example.com"},
            SYSTEM_USER, sys_values={"sys_created_on": _at(-300, 8), "sys_updated_on": _at(-300, 8)},
        )["sys_id"]

    def add(table: str, created_days: float, updated_days: float, mods: int,
            values: dict[str, str]) -> str:
        stamps = {"sys_created_on": _past(created_days, 8),
                  "sys_updated_on": _past(updated_days, 11),
                  "sys_mod_count": str(mods), "sys_created_by": "admin", "sys_updated_by": "admin"}
        return store.insert(table, values, "admin", sys_values=stamps)["sys_id"]

    def release(created: float, updated: float, mods: int, **values: str) -> str:
        return add("rm_release", created, updated, mods, values)

    def change(release_id: str, created: float, updated: float, mods: int, **values: str) -> str:
        sys_id = add("change_request", created, updated, mods, values)
        add("rm_m2m_release_task", created, created, 0, {"release": release_id, "task": sys_id})
        return sys_id

    # Shipped last month, with one incident after go-live.
    payments = release(
        -60, -29, 6, short_description="Payments platform 2025.3",
        description="Quarterly payments release: SEPA instant transfers and fraud rules update.",
        state="3", priority="2", start_date=_at(-35, 20), end_date=_at(-30, 23),
        work_start=_at(-35, 20), work_end=_at(-30, 22), assigned_to=users["beth.anglin"])
    sepa = change(payments, -55, -29, 9, short_description="Deploy SEPA instant transfer service",
                  description="Roll out the instant transfer service to the EU payment cluster.",
                  state="3", approval="approved", type="normal", risk="2",
                  start_date=_at(-35, 20), end_date=_at(-35, 23), work_start=_at(-35, 20),
                  work_end=_at(-35, 22), close_code="successful_issues",
                  close_notes="Deployed; queue backlog on day one, see incident.",
                  assigned_to=users["david.loo"])
    change(payments, -54, -30, 7, short_description="Update fraud scoring rules",
           description="Enable rule set FR-2025-09 on the scoring engine.", state="3",
           approval="approved", type="standard", risk="4", start_date=_at(-31, 20),
           end_date=_at(-31, 21), work_start=_at(-31, 20), work_end=_at(-31, 21),
           close_code="successful", close_notes="Rules active, no alerts.",
           assigned_to=users["fred.luddy"])

    # Running now: mid-deployment.
    portal = release(
        -30, -1, 5, short_description="Customer portal 5.2",
        description="Self-service invoices, new login flow and a database upgrade.",
        state="2", priority="3", start_date=_at(-2, 18), end_date=_at(5, 22),
        work_start=_at(-2, 18), assigned_to=users["beth.anglin"])
    login = change(portal, -25, -1, 6, short_description="Release new login flow",
                   description="Switch the portal to the OIDC login flow.", state="-1",
                   approval="approved", type="normal", risk="3", start_date=_at(-1, 18),
                   end_date=_at(-1, 21), work_start=_at(-1, 18), assigned_to=users["david.loo"])
    change(portal, -24, -3, 4, short_description="Upgrade portal database to PostgreSQL 16",
           description="Major version upgrade of the portal database cluster.", state="-2",
           approval="approved", type="normal", risk="2", start_date=_at(3, 20),
           end_date=_at(3, 23), assigned_to=users["abel.tuter"])
    change(portal, -4, -1, 3, short_description="Hotfix invoice PDF rendering",
           description="Fix truncated totals in generated invoice PDFs.", state="-3",
           approval="requested", type="emergency", risk="3", start_date=_at(1, 19),
           end_date=_at(1, 20), assigned_to=users["fred.luddy"])

    # Next up: still being assessed.
    mobile = release(
        -14, -5, 2, short_description="Mobile app 3.0",
        description="Redesigned home screen and push notification service.", state="1",
        priority="3", start_date=_at(12, 8), end_date=_at(19, 17),
        assigned_to=users["abel.tuter"])
    change(mobile, -12, -6, 1, short_description="Deploy push notification service",
           description="New service sending push notifications through the provider gateway.",
           state="-4", approval="requested", type="normal", risk="3", start_date=_at(12, 8),
           end_date=_at(12, 12), assigned_to=users["david.loo"])
    change(mobile, -10, -10, 0, short_description="Publish app 3.0 to the stores",
           description="Store submission of the 3.0 builds.", state="-5",
           approval="not requested", type="normal", risk="4", start_date=_at(19, 9),
           end_date=_at(19, 10), assigned_to=users["abel.tuter"])

    # Pending: planned, one change already rejected and cancelled.
    warehouse = release(
        -7, -7, 0, short_description="Data warehouse migration",
        description="Move the reporting warehouse to the new analytics cluster.", state="-5",
        priority="4", start_date=_at(33, 6), end_date=_at(47, 18),
        assigned_to=users["fred.luddy"])
    change(warehouse, -6, -6, 0, short_description="Provision analytics cluster",
           description="Build the target cluster and its network zones.", state="-5",
           approval="not requested", type="normal", risk="3", start_date=_at(33, 6),
           end_date=_at(35, 18), assigned_to=users["abel.tuter"])
    change(warehouse, -6, -2, 3, short_description="Cut over reporting jobs (big bang)",
           description="Single-weekend cut-over of all reporting jobs.", state="4",
           approval="rejected", type="normal", risk="1", start_date=_at(40, 6),
           end_date=_at(40, 18), close_notes="Rejected by CAB: split into phased cut-overs.",
           assigned_to=users["fred.luddy"])

    add("incident", -34, -31, 5, {
        "short_description": "Instant transfers stuck in pending queue",
        "description": "Customers report instant transfers pending for more than 10 minutes.",
        "state": "6", "priority": "2", "caused_by": sepa, "rfc": sepa,
        "opened_at": _at(-34, 7), "resolved_at": _at(-31, 15),
        "assigned_to": users["david.loo"]})
    add("incident", -1, 0, 2, {
        "short_description": "Login loop after portal sign-in",
        "description": "Some users are sent back to the sign-in page after logging in.",
        "state": "2", "priority": "3", "caused_by": login,
        "opened_at": _at(-1, 21), "assigned_to": users["david.loo"]})


SEEDS = {"empty": seed_empty, "demo": seed_demo}
