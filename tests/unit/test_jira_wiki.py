"""Descriptions: plain text <-> Jira wiki markup (v2) must survive any number of round trips."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from relbridge_jira.wiki import from_plain, to_plain

MARKUP = "*_+-^~{}[]|\\!#.h1bq \n"
texts = st.text(alphabet=st.one_of(st.sampled_from(MARKUP), st.characters(codec="utf-8")), max_size=200)


@settings(max_examples=600, deadline=None)
@given(texts)
def test_plain_text_to_wiki_and_back_is_identity(text: str) -> None:
    assert to_plain(from_plain(text)) == text


@settings(max_examples=600, deadline=None)
@given(texts)
def test_markup_a_person_writes_reads_as_plain_text_once_and_for_all(wiki: str) -> None:
    plain = to_plain(wiki)
    assert to_plain(from_plain(plain)) == plain  # a second pass writes nothing new


def test_what_people_write_in_jira_reads_as_they_would_read_it() -> None:
    assert to_plain("h2. Rollout\n*Friday* 18:00, _after_ the freeze; see [runbook|https://wiki.example/rb]") == \
        "Rollout\nFriday 18:00, after the freeze; see runbook (https://wiki.example/rb)"
    assert to_plain("{{kubectl rollout undo}} {color:red}now{color}") == "kubectl rollout undo now"
    assert to_plain("{code:bash}\nrm -rf *tmp*\n{code}") == "\nrm -rf *tmp*\n"
    assert to_plain("on-call snake_case 2*3*4 a+b+c") == "on-call snake_case 2*3*4 a+b+c"
    assert to_plain("\\*not bold\\*") == "*not bold*"


def test_plain_text_stays_readable_in_jira() -> None:
    assert from_plain("on-call snake_case_name 2*3 a+b") == "on-call snake_case_name 2*3 a+b"
    assert from_plain("- item *one*") == "\\- item \\*one*"
    assert from_plain("Ünïcødé ✓ 🚀 日本語") == "Ünïcødé ✓ 🚀 日本語"


def test_long_text_round_trips() -> None:
    text = ("Line with *stars* and [brackets] — ünïcode 🚀\n" * 800)[:32_000]
    assert to_plain(from_plain(text)) == text
