"""``collector_paused``: the KPIs pause Python's garbage collector while they read and
measure, and hand it back as they found it, however the calls overlap."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from bridge.reports.reading import collector_paused


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    gc.enable() if was else gc.disable()


def test_paused_inside_and_back_on_after_even_on_an_error() -> None:
    with pytest.raises(ValueError), collector_paused():
        assert not gc.isenabled()
        raise ValueError("bad input")
    assert gc.isenabled()


def test_overlapping_calls_leave_it_off_until_the_last_one_leaves() -> None:
    first, second = collector_paused(), collector_paused()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert not gc.isenabled()  # the second is still measuring
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()
