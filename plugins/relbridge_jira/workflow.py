"""Moving an issue to a target status through its workflow's transitions.

Jira has no "set status": a status changes only through a transition available from the
current one, and many workflows allow only the next step. So we walk: look at the current
status and its transitions, take the one that reaches the target if there is one, otherwise
one that gets closer to it (in workflow order) without passing it, avoiding "done" statuses
such as "Canceled" on the way; repeat, bounded.

Cost: each step is two calls — ``GET issue/{id}?fields=status&expand=transitions`` (current
status and its transitions in one response) and ``POST issue/{id}/transitions``; no call at
all when the issue is already in the target status besides the first GET. The workflow order
(``GET project/{key}/statuses``) is read only when a target is not directly reachable, once
per issue type for the adapter's lifetime.
"""

from __future__ import annotations

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


def walk_to_status(
    conn: JiraConnection,
    issue_id: str,
    target: str,
    order: Callable[[], Sequence[Step]],
    max_steps: int = 12,
) -> int:
    """Transition ``issue_id`` until its status is ``target``; returns the transitions made.

    Raises ``PermanentError`` naming the statuses when the target cannot be reached.
    """
    visited: list[str] = []
    for step in range(max_steps):
        data = conn.get(f"issue/{issue_id}", {"fields": "status", "expand": "transitions"})
        current = ((data.get("fields") or {}).get("status") or {}).get("name", "")
        if _same(current, target):
            return step
        visited.append(current)
        transitions = data.get("transitions")
        if transitions is None:  # a server that ignores expand=transitions
            transitions = conn.get(f"issue/{issue_id}/transitions").get("transitions", [])
        chosen = choose_transition(transitions, current, target, order, visited)
        if chosen is None:
            reachable = ", ".join(sorted({_to_name(t) for t in transitions})) or "none"
            raise PermanentError(
                f"jira: issue {issue_id}: status {target!r} is not reachable from {current!r} "
                f"(transitions available: {reachable}; path so far: {' → '.join(visited)})"
            )
        with translated_errors(f"POST issue/{issue_id}/transitions"):
            conn.client.transition_issue(issue_id, str(chosen["id"]))
        if _same(_to_name(chosen), target):
            return step + 1
    raise PermanentError(
        f"jira: issue {issue_id}: status {target!r} not reached after {max_steps} transitions "
        f"(path: {' → '.join(visited)})"
    )


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


def _to_name(transition: Mapping[str, Any]) -> str:
    return str((transition.get("to") or {}).get("name") or transition.get("name") or "")


def _same(a: str, b: str) -> bool:
    return a.casefold() == b.casefold()
