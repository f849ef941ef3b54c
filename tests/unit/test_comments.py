"""The text of a copied comment and the ``[<entity>.comments]`` mapping section (issue #14)."""

from __future__ import annotations

import pytest

from bridge.engine.comments import copied_from, copy_text, units
from bridge.mapping.spec import parse_file


def entry(body: str, author: str = "Ada Lovelace") -> dict:
    return {"id": "10023", "body": body, "author": author, "email": "ada@example.com",
            "created": "2026-04-01T10:00:00+00:00", "internal": False}


def test_a_copy_names_its_origin_and_author_and_carries_its_marker() -> None:
    text = copy_text("Jira", "jira", entry("Prod window confirmed"), 4000)
    assert text == "[Jira] Ada Lovelace: Prod window confirmed\n(relbridge jira:10023)"
    assert copied_from(text) == ("jira", "10023")
    assert copied_from("an original (relbridge is great)") is None


@pytest.mark.parametrize("body", ["é" * 5000, "🙂" * 3000, "a\n" * 2500])
def test_a_long_body_is_cut_to_the_limit_with_a_note_never_dropped(body: str) -> None:
    text = copy_text("Jira", "jira", entry(body), 4000)
    assert units(text) <= 4000
    assert "[cut by relbridge: " in text and copied_from(text) == ("jira", "10023")
    kept = text.split(": ", 1)[1].split("\n… [cut by relbridge")[0]
    missing = int(text.split("[cut by relbridge: ")[1].split(" ")[0])
    assert body.startswith(kept) and units(kept) + missing == units(body)


def test_a_body_that_fits_is_kept_whole() -> None:
    body = "x" * (4000 - len("[Jira] Ada Lovelace: ") - len("\n(relbridge jira:10023)"))
    assert copy_text("Jira", "jira", entry(body), 4000).count("x") == len(body)


def test_the_comments_section_is_checked_key_by_key() -> None:
    data = {"change": {"object": "change_request", "comments": {"read": "work_notes", "wirte": "x"}}}
    _, problems = parse_file(data, label="sn.toml", system="servicenow", timezone="UTC", transforms={})
    assert any("change.comments.wirte — unknown key (did you mean 'write'?)" in p for p in problems)
    assert any("change.comments.read — must be a list" in p for p in problems)
