"""Moving an issue to a target status through its workflow's transitions.

Jira has no "set status": a status changes only through a transition available from the
current one, and many workflows allow only the next step. So we walk: look at the current
status and its transitions, take the one that reaches the target if there is one, otherwise
one that gets closer to it (in workflow order) without passing it, avoiding "done" statuses
such as "Canceled" on the way; repeat, bounded.

Workflows are configuration, not data: the transitions out of a status are the same for
every issue of a type. ``TransitionCache`` keeps what a walk learned, per (project, issue
type, status), so after the first walk a step from a known status is one ``POST
issue/{id}/transitions`` and nothing else. The current status is known without a read when
the caller knows it (a new issue is in its workflow's initial status, learned the same way)
or after a step of our own (a transition lands on its ``to`` status). A step from an unknown
status costs ``GET issue/{id}?fields=status&expand=transitions`` first (current status and
its transitions in one response). A cached transition that Jira refuses (400: a condition,
or the workflow was edited) is forgotten and the step is retried the GET way. The workflow
order (``GET project/{key}/statuses``) is read only when a target is not directly reachable,
once per issue type for the adapter's lifetime.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from bridge.errors import PermanentError
from relbridge_jira.connection import JiraConnection
from relbridge_jira.errors import translated_errors

CATEGORY_ORDER = {"new": 0, "indeterminate": 1, "done": 2}


class Step(NamedTuple):
    """One status of a workflow, in order."""

    name: str
    done: bool  # in Jira's "done" status category


class TransitionCache:
    """Transitions out of each status, per workflow key (project and issue type), and the
    status new issues start in. Thread-safe; shared by every walk of one adapter."""

    def __init__(self) -> None:
        self._transitions: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
        self._initial: dict[str, str] = {}
        self._lock = threading.Lock()

    def transitions(self, workflow: str, status: str) -> list[Mapping[str, Any]] | None:
        with self._lock:
            return self._transitions.get((workflow, status.casefold()))

    def learn(self, workflow: str, status: str, transitions: Sequence[Mapping[str, Any]]) -> None:
        with self._lock:
            self._transitions[(workflow, status.casefold())] = list(transitions)

    def forget(self, workflow: str, status: str) -> None:
        with self._lock:
            self._transitions.pop((workflow, status.casefold()), None)

    def forget_workflow(self, workflow: str) -> None:
        """Drop all that is known of ``workflow`` (its transitions changed under us)."""
        with self._lock:
            self._initial.pop(workflow, None)
            for known in [k for k in self._transitions if k[0] == workflow]:
                del self._transitions[known]

    def initial(self, workflow: str) -> str | None:
        with self._lock:
            return self._initial.get(workflow)

    def learn_initial(self, workflow: str, status: str) -> None:
        with self._lock:
            self._initial.setdefault(workflow, status)


def walk_to_status(
    conn: JiraConnection,
    issue_id: str,
    target: str,
    order: Callable[[], Sequence[Step]],
    max_steps: int = 12,
    *,
    cache: TransitionCache | None = None,
    workflow: str = "",
    current: str | None = None,
) -> int:
    """Transition ``issue_id`` until its status is ``target``; returns the transitions made.

    ``current`` is the issue's status when the caller knows it (None: read it). With a
    ``cache``, transitions learned under ``workflow`` are reused (see the module docstring).
    Raises ``PermanentError`` naming the statuses when the target cannot be reached.
    """
    cache = cache if cache is not None else TransitionCache()
    visited: list[str] = []
    made = 0
    for _ in range(max_steps):
        transitions = cache.transitions(workflow, current) if current is not None else None
        fresh = transitions is None
        if transitions is None:
            current, transitions = read_status(conn, issue_id)
            cache.learn(workflow, current, transitions)
        assert current is not None
        if _same(current, target):
            return made
        chosen = choose_transition(transitions, current, target, order, [*visited, current])
        if chosen is None and not fresh:
            cache.forget(workflow, current)  # perhaps stale: look at the issue itself
            continue
        if chosen is None:
            reachable = ", ".join(sorted({_to_name(t) for t in transitions})) or "none"
            path = " → ".join([*visited, current])
            raise PermanentError(
                f"jira: issue {issue_id}: status {target!r} is not reachable from {current!r} "
                f"(transitions available: {reachable}; path so far: {path})"
            )
        try:
            with translated_errors(f"POST issue/{issue_id}/transitions"):
                conn.client.transition_issue(issue_id, str(chosen["id"]))
        except PermanentError as exc:
            if fresh or exc.status != 400:
                raise
            cache.forget(workflow, current)  # refused: a condition, or the workflow changed
            current = None
            continue
        visited.append(current)
        made += 1
        current = _to_name(chosen)
        if _same(current, target):
            return made
    raise PermanentError(
        f"jira: issue {issue_id}: status {target!r} not reached after {max_steps} steps "
        f"(path: {' → '.join(visited)})"
    )


def read_status(conn: JiraConnection, issue_id: str) -> tuple[str, list[Mapping[str, Any]]]:
    """The issue's current status and the transitions available from it (one GET)."""
    data = conn.get(f"issue/{issue_id}", {"fields": "status", "expand": "transitions"})
    current = ((data.get("fields") or {}).get("status") or {}).get("name", "")
    transitions = data.get("transitions")
    if transitions is None:  # a server that ignores expand=transitions
        transitions = conn.get(f"issue/{issue_id}/transitions").get("transitions", [])
    return str(current), list(transitions)


def choose_transition(
    transitions: Sequence[Mapping[str, Any]],
    current: str,
    target: str,
    order: Callable[[], Sequence[Step]],
    visited: Sequence[str] = (),
) -> Mapping[str, Any] | None:
    """The transition to take from ``current`` toward ``target``, or None.

    A transition straight to the target wins. Otherwise, with the statuses in workflow
    order, take one that lies between the current status and the target, never revisiting
    a status; prefer statuses that are not "done" (a done status such as "Canceled" is
    usually a dead end), then the one closest to the target.
    """
    for transition in transitions:
        if _same(_to_name(transition), target):
            return transition
    steps = list(order())
    rank = {step.name.casefold(): index for index, step in enumerate(steps)}
    goal = rank.get(target.casefold())
    here = rank.get(current.casefold())
    if goal is None or here is None:
        return None
    seen = {name.casefold() for name in visited}
    best: tuple[tuple[bool, int], Mapping[str, Any]] | None = None
    for transition in transitions:
        name = _to_name(transition).casefold()
        position = rank.get(name)
        if position is None or name in seen:
            continue
        between = here < position < goal if here < goal else goal < position < here
        if not between:
            continue
        score = (steps[position].done, abs(goal - position))
        if best is None or score < best[0]:
            best = (score, transition)
    return best[1] if best else None


def workflow_order(statuses: Sequence[Mapping[str, Any]]) -> list[Step]:
    """Statuses in workflow order: Jira's list order, stably grouped by status category
    (to do → in progress → done), which is the order Jira itself uses on boards."""
    def category(status: Mapping[str, Any]) -> str:
        return str((status.get("statusCategory") or {}).get("key") or "indeterminate")

    ranked = sorted(enumerate(statuses),
                    key=lambda item: (CATEGORY_ORDER.get(category(item[1]), 1), item[0]))
    return [Step(str(status["name"]), category(status) == "done") for _, status in ranked]


def transition_target(transition: Mapping[str, Any]) -> str:
    """The name of the status a transition leads to."""
    return _to_name(transition)


def _to_name(transition: Mapping[str, Any]) -> str:
    return str((transition.get("to") or {}).get("name") or transition.get("name") or "")


def _same(a: str, b: str) -> bool:
    return a.casefold() == b.casefold()
