"""The shape of the tree: what the core may know about the systems, and the command line's
entry points."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bridge.cli import main

BRIDGE = Path(__file__).resolve().parents[2] / "bridge"
SYSTEM_NAMES = frozenset({"servicenow", "jira"})
#: The simulators and the demo are about the two systems by design.
OUTSIDE_THE_CORE = ("sim/", "demo.py")

#: The most "servicenow"/"jira" string constants the core may hold. Lower it when you take
#: system knowledge out of the core (into plugins/); never raise it. At 8: model.py 2 (the
#: System enum, the one list of the systems), reports/status.py 2 (the conflicts' columns),
#: engine/ingest.py and engine/creates.py 1 each (Jira versions correlate by name),
#: release/bookkeeping.py 1 (Jira's released flag), mapping/codecs.py 1 (ServiceNow's
#: string values).
MAX_SYSTEM_LITERALS = 8


def system_literals(root: Path = BRIDGE) -> Counter[str]:
    """Per core module, how many string constants are exactly a system's name."""
    found: Counter[str] = Counter()
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative.startswith(OUTSIDE_THE_CORE):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        count = sum(isinstance(node, ast.Constant) and node.value in SYSTEM_NAMES for node in ast.walk(tree))
        if count:
            found[relative] = count
    return found


def test_the_core_names_the_systems_no_more_often_than_it_did() -> None:
    found = system_literals()
    assert sum(found.values()) <= MAX_SYSTEM_LITERALS, (
        f"{sum(found.values())} system-name literals in bridge/ (at most {MAX_SYSTEM_LITERALS}): "
        f"{dict(found.most_common())} — put what is system-specific in its plugin")


def test_the_ratchet_counts_what_it_claims(tmp_path: Path) -> None:
    """A literal in a core module is counted, one in the simulators or the demo is not."""
    (tmp_path / "sim").mkdir()
    (tmp_path / "core.py").write_text('"""Talks to "jira"."""\nSYSTEM = "jira"\nname = {"servicenow": 1}\n')
    (tmp_path / "sim" / "jira.py").write_text('SYSTEM = "jira"\n')
    (tmp_path / "demo.py").write_text('SYSTEM = "servicenow"\n')
    assert system_literals(tmp_path) == {"core.py": 2}


def test_python_m_bridge_cli_help_lists_every_command() -> None:
    result = subprocess.run([sys.executable, "-m", "bridge.cli", "--help"], capture_output=True, text=True,
                            check=True)
    commands = result.stdout.split("Commands:", 1)[1]
    listed = {line.split()[0] for line in commands.splitlines() if line.strip()}
    assert listed == set(main.commands)


#: DESIGN.md §1: one folder per concern.
PACKAGES = ("daemon", "engine", "mapping", "release", "reports", "sim", "sim/jira", "sim/servicenow", "store")


def test_the_tree_reads_like_the_design() -> None:
    """Each concern is a package, and no family of prefixed modules grows beside them."""
    assert all((BRIDGE / package / "__init__.py").is_file() for package in PACKAGES)
    flat = sorted(path.name for path in BRIDGE.glob("*.py"))
    families = {name.split("_")[0] for name in flat if "_" in name.removesuffix(".py").lstrip("_")}
    assert not families & {"mapping", "daemon", "engine", "release", "sim", "store"}, flat
    assert not {"mapping.py", "daemon.py", "queue.py", "webhooks.py", "kpi.py", "status.py"} & set(flat)


def test_one_name_per_concept() -> None:
    """No two public classes or functions of the core share a name (the simulators aside)."""
    seen: dict[str, str] = {}
    clashes = []
    for path in sorted(BRIDGE.rglob("*.py")):
        relative = path.relative_to(BRIDGE).as_posix()
        if relative.startswith("sim/"):
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef | ast.FunctionDef) and not node.name.startswith("_"):
                if node.name in seen:
                    clashes.append(f"{node.name}: {seen[node.name]} and {relative}")
                seen.setdefault(node.name, relative)
    assert not clashes

