"""``record_values``: the database picks named fields out of every record of an entity."""

from __future__ import annotations

from bridge.store import Store


def test_named_fields_come_back_as_json_holds_them(store: Store) -> None:
    store.put_record("change", "C1", {"fields": {"release": "R1", "opened_at": "2024-04-01T08:00:00+00:00",
                                                 "summary": "one"}})
    store.put_record("change", "C2", {"fields": {"summary": "no release"}})
    store.put_record("release", "R1", {"fields": {"name": "Rel"}})
    assert sorted(store.record_values("change", ("release", "opened_at"))) == [
        ("C1", "R1", "2024-04-01T08:00:00+00:00"), ("C2", None, None)]
