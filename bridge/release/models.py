"""Deployment models: templates of phases and tasks a release plan is made from (ITIL's
"a template of the activities and plans from which specific deployment instances can be
customized for geography, scale, local conditions").

A model is a TOML file (DESIGN §12): phases with an offset and a duration in days from the
release's planned start, tasks with a duration in hours, names that may use ``{variables}``
and ``when`` conditions on them. The shipped models live in ``deployment_models/`` (package
data ``bridge.deployment_models``); ``[deployment] models_dir`` adds or overrides models by
file name. Like a mapping file, a model is checked as a whole and every problem is reported
as ``file:line: message``; ``instantiate`` then checks the ``--set`` values against it.
"""

from __future__ import annotations

import importlib.resources
import re
import string
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.errors import BadInput, did_you_mean

PACKAGE = "bridge.deployment_models"
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")
MAX_OFFSET_DAYS = 366
MAX_NAME = 100  # a ServiceNow short description holds 160; leave room for a prefix
#: The phase that deploys: a task of a phase before it must be done before the go-live.
DEPLOY_PHASE = "deploy"

_MODEL_KEYS = ("name", "description", "phases")
_PHASE_KEYS = ("name", "offset_days", "duration_days", "when", "tasks")
_TASK_KEYS = ("name", "duration_hours", "when")


class ModelError(BadInput):
    """A deployment model file, or the values given for it, cannot be used."""

    code = "deployment_model"


@dataclass(frozen=True)
class TaskTemplate:
    name: str
    duration_hours: float
    when: Mapping[str, str]
    line: int
    name_line: int = 0
    when_line: int = 0


@dataclass(frozen=True)
class PhaseTemplate:
    name: str
    offset_days: int
    duration_days: int
    when: Mapping[str, str]
    tasks: tuple[TaskTemplate, ...]
    line: int
    name_line: int = 0
    when_line: int = 0


@dataclass(frozen=True)
class DeploymentModel:
    name: str
    description: str
    phases: tuple[PhaseTemplate, ...]
    source: str  # the file, as messages name it
    lines: dict[str, int] = field(default_factory=dict, compare=False)

    def variables(self) -> dict[str, int]:
        """Each variable the model uses (in a name or a ``when``) -> the first line using it."""
        found: dict[str, int] = {}
        for phase in self.phases:
            for item in (phase, *phase.tasks):
                for name in placeholders(item.name):
                    found.setdefault(name, item.name_line or item.line)
                for name in item.when:
                    found.setdefault(name, item.when_line or item.line)
        return found


def placeholders(text: str) -> list[str]:
    """The ``{variable}`` names in ``text`` (``ValueError`` for a malformed one)."""
    names = []
    for _, name, spec, conversion in string.Formatter().parse(text):
        if name is None:
            continue
        if spec or conversion or not VARIABLE.match(name):
            raise ValueError(f"{{{name}}} is not a variable (write {{region}}, letters, digits and _)")
        names.append(name)
    return names


def shipped_models() -> dict[str, str]:
    """The models shipped with relbridge: name -> TOML text."""
    folder = importlib.resources.files(PACKAGE)
    return {entry.name[:-5]: entry.read_text(encoding="utf-8")
            for entry in folder.iterdir() if entry.name.endswith(".toml")}


def model_files(models_dir: Path | None) -> dict[str, tuple[str, str]]:
    """Every model by name -> (source label, TOML text); ``models_dir``'s override shipped ones."""
    found = {name: (f"deployment_models/{name}.toml", text) for name, text in shipped_models().items()}
    if models_dir is None:
        return dict(sorted(found.items()))
    if not models_dir.is_dir():
        raise ModelError(f"[deployment] models_dir {str(models_dir)!r} is not a folder")
    for path in sorted(models_dir.glob("*.toml")):
        try:
            found[path.stem] = (str(path), path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ModelError(f"{path}: cannot read ({exc.strerror})") from None
    return dict(sorted(found.items()))


def load_model(name: str, models_dir: Path | None) -> DeploymentModel:
    """The model called ``name``, checked (``ModelError`` with every problem, one per line)."""
    files = model_files(models_dir)
    if name not in files:
        raise ModelError(f"no deployment model {name!r}{did_you_mean(name, files)} "
                         f"(models: {', '.join(files) or 'none'}; relbridge deployment-models list)")
    source, text = files[name]
    return parse_model(text, source, expected_name=name)


def parse_model(text: str, source: str, expected_name: str | None = None) -> DeploymentModel:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ModelError(f"{source}: invalid TOML — {exc}") from None
    checker = _Checker(source, text.splitlines())
    model = checker.model(data, expected_name)
    if checker.problems:
        raise ModelError("\n".join(checker.problems))
    return model


class _Checker:
    """Collects every problem of one file as ``file:line: message``."""

    def __init__(self, source: str, lines: list[str]) -> None:
        self.source = source
        self.lines = lines
        self.problems: list[str] = []

    def problem(self, line: int, message: str) -> None:
        self.problems.append(f"{self.source}:{line}: {message}")

    def model(self, data: dict[str, Any], expected_name: str | None) -> DeploymentModel:
        self.unknown(data, _MODEL_KEYS, "a model", 1)
        name = data.get("name")
        line = self.line_of(None, None, "name")
        if not isinstance(name, str) or not NAME.match(name):
            self.problem(line, f"name must be lower-case letters, digits, - or _ (got {name!r})")
        elif expected_name is not None and name != expected_name:
            self.problem(line, f"name {name!r} differs from the file's name {expected_name!r}")
        description = data.get("description", "")
        if not isinstance(description, str):
            self.problem(self.line_of(None, None, "description"), "description must be text")
        phases_data = data.get("phases")
        if not isinstance(phases_data, list) or not phases_data:
            self.problem(1, "a model needs at least one [[phases]] table")
            phases_data = []
        phases = tuple(self.phase(i, p) for i, p in enumerate(phases_data) if isinstance(p, dict))
        self.duplicates([p.name for p in phases], [p.line for p in phases], "phase")
        return DeploymentModel(str(name), str(description), phases, self.source)

    def phase(self, index: int, data: dict[str, Any]) -> PhaseTemplate:
        line = self.line_of(index, None, None)
        self.unknown(data, _PHASE_KEYS, "a phase", line)
        name = self.name(data, index, None)
        offset = self.integer(data, "offset_days", index, -MAX_OFFSET_DAYS, MAX_OFFSET_DAYS)
        duration = self.integer(data, "duration_days", index, 0, MAX_OFFSET_DAYS)
        tasks_data = data.get("tasks", [])
        if not isinstance(tasks_data, list):
            self.problem(line, "tasks must be [[phases.tasks]] tables")
            tasks_data = []
        tasks = tuple(self.task(index, i, t) for i, t in enumerate(tasks_data) if isinstance(t, dict))
        self.duplicates([t.name for t in tasks], [t.line for t in tasks], f"task in phase {name!r}")
        return PhaseTemplate(name, offset, duration, self.when(data, index, None), tasks, line,
                             self.line_of(index, None, "name"), self.line_of(index, None, "when"))

    def task(self, phase: int, index: int, data: dict[str, Any]) -> TaskTemplate:
        line = self.line_of(phase, index, None)
        self.unknown(data, _TASK_KEYS, "a task", line)
        hours = data.get("duration_hours")
        if isinstance(hours, bool) or not isinstance(hours, int | float) or not 0 < hours <= 24 * MAX_OFFSET_DAYS:
            self.problem(self.line_of(phase, index, "duration_hours"),
                         f"duration_hours must be a number of hours above 0 (got {hours!r})")
            hours = 1
        return TaskTemplate(self.name(data, phase, index), float(hours), self.when(data, phase, index), line,
                            self.line_of(phase, index, "name"), self.line_of(phase, index, "when"))

    def name(self, data: dict[str, Any], phase: int, task: int | None) -> str:
        name = data.get("name")
        line = self.line_of(phase, task, "name")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            self.problem(line, f"name must be text of 1 to {MAX_NAME} characters (got {name!r})")
            return f"#{phase}.{task}"
        try:
            placeholders(name)
        except ValueError as exc:
            self.problem(line, f"name {name!r}: {exc}")
        return name.strip()

    def integer(self, data: dict[str, Any], key: str, phase: int, low: int, high: int) -> int:
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            line = self.line_of(phase, None, key)
            self.problem(line, f"{key} must be a whole number of days from {low} to {high} (got {value!r})")
            return 0
        return value

    def when(self, data: dict[str, Any], phase: int, task: int | None) -> dict[str, str]:
        when = data.get("when", {})
        line = self.line_of(phase, task, "when")
        if not isinstance(when, dict) or not all(
                isinstance(k, str) and VARIABLE.match(k) and isinstance(v, str) for k, v in when.items()):
            self.problem(line, 'when must be a table of variable = "value" (e.g. when = { scale = "large" })')
            return {}
        return dict(when)

    def unknown(self, data: dict[str, Any], known: Iterable[str], what: str, line: int) -> None:
        for key in data:
            if key not in known:
                self.problem(line, f"unknown key {key!r} in {what}{did_you_mean(key, known)}")

    def duplicates(self, names: list[str], lines: list[int], what: str) -> None:
        seen: set[str] = set()
        for name, line in zip(names, lines, strict=True):
            if name.casefold() in seen:
                self.problem(line, f"{what} {name!r} is named twice")
            seen.add(name.casefold())

    def line_of(self, phase: int | None, task: int | None, key: str | None) -> int:
        """The 1-based line of ``key`` in the given phase/task table (its header when
        ``key`` is None), found by counting ``[[phases]]``/``[[phases.tasks]]`` headers."""
        phases, tasks, start = -1, -1, 1
        for number, raw in enumerate(self.lines, start=1):
            text = raw.strip()
            if text.startswith("[[phases]]"):
                phases, tasks = phases + 1, -1
            elif text.startswith("[[phases.tasks]]"):
                tasks += 1
            here = (phases == (-1 if phase is None else phase)) and (tasks == (-1 if task is None else task))
            if not here:
                continue
            if key is None and text.startswith("[["):
                return number
            start = start if start > 1 else number
            if key is not None and re.match(rf"{re.escape(key)}\s*=", text):
                return number
        return start
