"""The durable inbox on SQLite and PostgreSQL: coalescing, dedupe, claims, retries."""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from bridge.config import SyncConfig
from bridge.daemon.inbox import Event, Inbox
from bridge.errors import parse_retry_after

from .conftest import FakeClock


class CeilingRng(random.Random):
    """Full jitter at its worst case: always the ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.fixture
def inbox(store) -> Inbox:
    return Inbox(store, max_attempts=3, retry_base_seconds=2, retry_max_seconds=60,
                 rng=random.Random(7))


def only(events: list[Event]) -> Event:
    assert len(events) == 1, events
    return events[0]


# -- enqueue ------------------------------------------------------------------------------


def test_pending_events_for_one_object_coalesce(inbox, clock: FakeClock):
    first_seen = clock.now
    assert inbox.enqueue("jira", "release", "10000", source="webhook")
    clock.advance(10)
    assert inbox.enqueue("jira", "release", "10000", source="poll", deleted=True)
    assert inbox.enqueue("jira", "release", "10000", source="poll")
    assert inbox.enqueue("jira", "change", "10000", source="poll")  # another object
    assert inbox.depth() == 2
    event = only([e for e in inbox.claim("w", limit=5) if e.entity == "release"])
    assert event.received_at == first_seen and event.received_at.tzinfo is UTC
    assert event.deleted is True  # a deletion hint is not lost by a later notice
    assert (event.source, event.attempts) == ("webhook", 0)


def test_simultaneous_notices_for_one_object_make_one_event(inbox):
    start = threading.Barrier(8)

    def notify(n: int) -> None:
        start.wait()
        inbox.enqueue("jira", "release", "1", source="webhook", delivery_id=f"d{n % 4}")

    threads = [threading.Thread(target=notify, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert inbox.depth() == 1


def test_a_repeated_delivery_id_is_dropped(inbox, clock):
    assert inbox.enqueue("jira", "release", "1", source="webhook", delivery_id="d-1")
    claimed = only(inbox.claim("w"))
    inbox.complete(claimed)
    assert not inbox.enqueue("jira", "release", "1", source="webhook", delivery_id="d-1")
    assert inbox.depth() == 0
    # Delivery ids are per system.
    assert inbox.enqueue("servicenow", "release", "1", source="webhook", delivery_id="d-1")


def test_delivery_ids_are_forgotten_after_the_retention(store, clock):
    inbox = Inbox(store, delivery_retention=timedelta(hours=1))
    assert inbox.enqueue("jira", "release", "1", source="webhook", delivery_id="d-1")
    clock.advance(1800)
    assert inbox.enqueue("jira", "release", "2", source="webhook", delivery_id="d-2")
    clock.advance(1801)
    assert inbox.prune_deliveries() == 1
    assert inbox.enqueue("jira", "release", "1", source="webhook", delivery_id="d-1")
    assert not inbox.enqueue("jira", "release", "2", source="webhook", delivery_id="d-2")


def test_unknown_source_is_refused(inbox):
    with pytest.raises(ValueError, match="source must be one of"):
        inbox.enqueue("jira", "release", "1", source="email")  # type: ignore[arg-type]


def test_a_change_during_processing_gets_its_own_event(inbox):
    inbox.enqueue("jira", "release", "1", source="webhook")
    in_flight = only(inbox.claim("w1"))
    assert inbox.enqueue("jira", "release", "1", source="webhook")  # not absorbed
    assert inbox.depth() == 2
    assert inbox.claim("w2") == []  # the object is in flight
    assert inbox.complete(in_flight)
    follow_up = only(inbox.claim("w2"))
    assert follow_up.id != in_flight.id and follow_up.ext_id == "1"


# -- claim --------------------------------------------------------------------------------


def test_claim_takes_due_events_oldest_first_up_to_the_limit(inbox, clock):
    for n in range(5):
        inbox.enqueue("servicenow", "change", f"c{n}", source="poll")
        clock.advance(1)
    batch = inbox.claim("w", limit=3)
    assert [e.ext_id for e in batch] == ["c0", "c1", "c2"]
    assert all(e.claim_token for e in batch)
    assert [e.ext_id for e in inbox.claim("w", limit=10)] == ["c3", "c4"]
    assert inbox.claim("w") == []
    assert inbox.claim("w", limit=0) == []


def test_a_claim_that_finds_nothing_due_writes_nothing(inbox, store, clock):
    """Idle workers ask twice a second: with nothing due, a claim is one read, no write
    transaction (on SQLite, no write lock that the receiver's enqueues would wait for)."""
    from sqlalchemy import event  # a local name: "event" is an inbox event elsewhere here

    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        statements.append(statement.split()[0].upper())

    inbox.enqueue("jira", "release", "1", source="webhook")
    inbox.retry(only(inbox.claim("w")), "HTTP 503")  # backing off: not due yet
    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        assert inbox.claim("w") == []
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    assert statements == ["SELECT"]
    clock.advance(3600)
    assert only(inbox.claim("w")).ext_id == "1"


def test_claims_are_exclusive_under_concurrency(store):
    """Eight workers drain the inbox while changes keep arriving for objects in flight:
    every event is processed exactly once and no object is ever processed twice at once."""
    inbox = Inbox(store)
    objects = [f"obj{n}" for n in range(120)]
    for ext_id in objects:
        inbox.enqueue("jira", "change", ext_id, source="poll")
    processed: Counter[int] = Counter()
    in_flight: set[str] = set()
    overlaps: list[str] = []
    re_enqueued: set[str] = set()
    lock = threading.Lock()
    failures: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            idle = 0
            while idle < 3:
                batch = inbox.claim(name, limit=4)
                idle = 0 if batch else idle + 1
                for event in batch:
                    with lock:
                        if event.ext_id in in_flight:
                            overlaps.append(event.ext_id)
                        in_flight.add(event.ext_id)
                        processed[event.id] += 1
                        again = event.ext_id not in re_enqueued and int(event.ext_id[3:]) % 3 == 0
                        re_enqueued.add(event.ext_id)
                    if again:  # a change arrives while this one is being processed
                        inbox.enqueue("jira", "change", event.ext_id, source="webhook")
                    with lock:
                        in_flight.discard(event.ext_id)
                    assert inbox.complete(event)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert overlaps == []
    assert set(processed.values()) == {1}
    assert len(processed) == 120 + 40  # every object once, every third one twice
    assert inbox.depth() == 0


def test_an_expired_claim_is_reclaimed_and_counts_as_an_attempt(inbox, clock):
    inbox.enqueue("jira", "release", "1", source="poll")
    lost = only(inbox.claim("w1", lease_seconds=30))
    clock.advance(29)
    assert inbox.claim("w2") == []
    clock.advance(2)
    taken = only(inbox.claim("w2"))
    assert taken.id == lost.id and taken.attempts == 1
    assert "claim by w1 expired" in taken.last_error
    assert not inbox.complete(lost)  # w1 came back too late: no effect
    assert inbox.retry(lost, "late") == "lost"
    assert inbox.complete(taken)
    assert inbox.depth() == 0


def test_an_event_whose_workers_keep_dying_ends_as_a_dead_letter(inbox, clock):
    inbox.enqueue("jira", "release", "1", source="poll")
    for _ in range(inbox.max_attempts):
        assert inbox.claim("w", lease_seconds=10)
        clock.advance(11)
    assert inbox.claim("w") == []
    [dead] = inbox.dead_letters()
    assert dead.attempts == inbox.max_attempts and "expired" in dead.last_error


def test_renew_extends_a_claim(inbox, clock):
    inbox.enqueue("jira", "release", "1", source="poll")
    event = only(inbox.claim("w1", lease_seconds=30))
    clock.advance(25)
    assert inbox.renew(event, lease_seconds=30)
    clock.advance(25)
    assert inbox.claim("w2") == []
    assert inbox.complete(event)


# -- retry and backoff --------------------------------------------------------------------


def test_retry_backs_off_and_honours_retry_after_seconds(store, clock):
    inbox = Inbox(store, retry_base_seconds=1, retry_max_seconds=10)
    inbox.enqueue("servicenow", "release", "1", source="poll")
    event = only(inbox.claim("w"))
    assert inbox.retry(event, "HTTP 429", retry_after=120) == "retry"
    clock.advance(119)
    assert inbox.claim("w") == []
    # A new change does not cut the backoff short.
    inbox.enqueue("servicenow", "release", "1", source="webhook")
    assert inbox.claim("w") == []
    clock.advance(1)
    again = only(inbox.claim("w"))
    assert (again.id, again.attempts, again.last_error) == (event.id, 1, "HTTP 429")


def test_retry_honours_retry_after_as_an_http_date(store, clock):
    inbox = Inbox(store, retry_base_seconds=1, retry_max_seconds=5)
    header = format_datetime(clock.now + timedelta(seconds=90), usegmt=True)
    delay = parse_retry_after(header, now=clock.now)
    assert delay == 90
    inbox.enqueue("jira", "release", "1", source="poll")
    assert inbox.retry(only(inbox.claim("w")), "HTTP 503", retry_after=delay) == "retry"
    clock.advance(89)
    assert inbox.claim("w") == []
    clock.advance(1)
    assert inbox.claim("w")


def test_backoff_is_full_jitter_exponential_and_capped(store):
    worst = Inbox(store, retry_base_seconds=2, retry_max_seconds=60, rng=CeilingRng())
    assert [worst.backoff(n) for n in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]
    assert worst.backoff(10_000) == 60  # no overflow
    assert worst.backoff(1, retry_after=30) == 30  # the server's wait wins when longer
    assert worst.backoff(6, retry_after=30) == 60
    jittered = Inbox(store, retry_base_seconds=2, retry_max_seconds=60, rng=random.Random(1))
    delays = [jittered.backoff(4) for _ in range(200)]
    assert all(0 <= d <= 16 for d in delays) and len(set(delays)) > 100
    assert min(delays) < 4 and max(delays) > 12  # spread over the whole range


def test_retry_merges_into_a_change_that_arrived_meanwhile(inbox, clock):
    inbox.enqueue("jira", "release", "1", source="poll")
    event = only(inbox.claim("w"))
    clock.advance(5)
    inbox.enqueue("jira", "release", "1", source="webhook", deleted=True)
    assert inbox.retry(event, "timeout", retry_after=30) == "retry"
    assert inbox.depth() == 1
    clock.advance(30)
    merged = only(inbox.claim("w"))
    assert merged.attempts == 1 and merged.last_error == "timeout" and merged.deleted
    assert merged.received_at == event.received_at


def test_retries_end_in_the_dead_letter_queue_then_replay_or_drop(inbox, clock):
    inbox.enqueue("jira", "change", "7", source="poll")
    outcomes = []
    for _ in range(inbox.max_attempts):
        clock.advance(3600)
        outcomes.append(inbox.retry(only(inbox.claim("w")), "HTTP 500"))
    assert outcomes == ["retry", "retry", "dead"]
    assert inbox.depth() == 0 and inbox.claim("w") == []
    [dead] = inbox.dead_letters()
    assert (dead.ext_id, dead.attempts, dead.last_error) == ("7", 3, "HTTP 500")
    assert dead.dead_at == clock.now

    assert inbox.retry_dead(dead.id)
    assert inbox.dead_letters() == []
    replayed = only(inbox.claim("w"))
    assert (replayed.id, replayed.attempts, replayed.source) == (dead.id, 0, "retry")
    assert inbox.dead_letter(replayed, "still broken")
    assert not inbox.dead_letter(replayed, "twice")  # no longer claimed
    assert inbox.drop_dead(dead.id)
    assert inbox.dead_letters() == [] and inbox.depth() == 0
    assert not inbox.drop_dead(dead.id)
    assert not inbox.retry_dead(dead.id)


def test_replaying_a_dead_letter_whose_object_is_queued_again_keeps_one_event(inbox):
    inbox.enqueue("jira", "change", "7", source="poll")
    inbox.dead_letter(only(inbox.claim("w")), "HTTP 400")
    inbox.enqueue("jira", "change", "7", source="webhook")
    assert inbox.retry_dead(inbox.dead_letters()[0].id)
    assert inbox.depth() == 1 and inbox.dead_letters() == []


def test_pending_events_are_not_dead_letter_operations(inbox):
    inbox.enqueue("jira", "change", "7", source="poll")
    [event] = inbox.claim("w")
    assert not inbox.drop_dead(event.id)
    assert not inbox.retry_dead(event.id)


# -- gauges and configuration -------------------------------------------------------------


def test_depth_and_oldest_pending_age(inbox, clock):
    assert inbox.depth() == 0 and inbox.oldest_pending_age() is None
    inbox.enqueue("jira", "release", "1", source="poll")
    clock.advance(30)
    inbox.enqueue("jira", "release", "2", source="poll")
    clock.advance(15)
    assert inbox.depth() == 2 and inbox.oldest_pending_age() == 45
    inbox.claim("w")  # in flight still counts
    assert inbox.depth() == 2 and inbox.oldest_pending_age() == 45


def test_inbox_from_config_uses_the_sync_settings(store):
    inbox = Inbox.from_config(store, SyncConfig(max_attempts=5, retry_base_seconds=3,
                                                retry_max_seconds=30))
    assert (inbox.max_attempts, inbox.retry_base_seconds, inbox.retry_max_seconds) == (5, 3, 30)
    defaults = Inbox(store)
    config = SyncConfig()
    assert (defaults.max_attempts, defaults.retry_base_seconds, defaults.retry_max_seconds) == (
        config.max_attempts, config.retry_base_seconds, config.retry_max_seconds)
    with pytest.raises(ValueError):
        Inbox(store, max_attempts=0)


# -- Retry-After parsing (pure) -----------------------------------------------------------

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("value, expected", [
    ("120", 120.0),
    (" 0 ", 0.0),
    ("1.5", 1.5),
    ("Wed, 01 May 2024 12:01:30 GMT", 90.0),
    ("Wednesday, 01-May-24 12:00:10 GMT", 10.0),  # RFC 850, still allowed by HTTP
    ("Wed, 01 May 2024 11:00:00 GMT", 0.0),  # in the past: go now
    ("-5", None),
    ("nan", None),
    ("inf", None),
    ("soon", None),
    ("", None),
    (None, None),
])
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value, now=NOW) == expected


def claim_at_once(inbox: Inbox, workers: int) -> list[Event]:
    """``workers`` threads each claim once, released together."""
    start = threading.Barrier(workers)
    handed_out: list[Event] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        start.wait()
        batch = inbox.claim(name, lease_seconds=300)
        with lock:
            handed_out.extend(batch)

    threads = [threading.Thread(target=claimer, args=(f"w{n}",)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return handed_out


def test_an_expired_claim_and_a_newer_event_of_one_object_are_never_both_handed_out(
        store, clock):
    """Object-level exclusivity holds while claimers race for rows of that object and of
    others (the two rows of the object are far apart in claim order)."""
    inbox = Inbox(store, max_attempts=1000)
    for round_ in range(10):
        target = f"obj{round_}"
        inbox.enqueue("jira", "change", target, source="poll")
        only(inbox.claim("dying", lease_seconds=5))  # this worker will never finish
        for n in range(3):
            inbox.enqueue("jira", "change", f"filler{round_}-{n}", source="poll")
        inbox.enqueue("jira", "change", target, source="webhook")  # changed meanwhile
        clock.advance(6)
        handed_out = claim_at_once(inbox, workers=6)
        per_object = Counter(event.ext_id for event in handed_out)
        assert per_object[target] == 1, f"round {round_}: {handed_out}"
        assert len(handed_out) == 4
        for event in handed_out:
            assert inbox.complete(event)
        while batch := inbox.claim("drain", limit=10):
            for event in batch:
                inbox.complete(event)
        assert inbox.depth() == 0
