"""`relbridge demo` shows a dry run's plan before its second real sync."""

from __future__ import annotations

from pathlib import Path

from bridge.demo import run_demo


def test_the_demo_shows_a_dry_run_plan_before_the_second_sync(tmp_path: Path) -> None:
    lines: list[str] = []
    assert run_demo(lines.append, keep=tmp_path) == 0
    text = "\n".join(lines)
    dry, second = text.index("== 3. Dry run"), text.index("== 4. Second sync")
    plan = text[dry:second]
    assert "dry run: nothing was written to either system or to the store" in plan
    assert "transition in jira Mobile app 3.0: state: deployed -> planned" in plan  # the gate's revert
    assert "plan: 4 records, 1 create, 2 update" in plan  # the 2 updates: a comment each way
    assert ": comment: - -> [ServiceNow] System Administrator: Smoke tests" in plan  # the issue key varies
    assert "Jira now says version 'Mobile app 3.0' released=False" in text[second:]
    assert "work note: [Jira] Administrator: Rollback plan reviewed: go for Friday" in text[second:]
    assert "comment: \\[ServiceNow] System Administrator: Smoke tests passed in staging" in text[second:]
    # The go-live's verification note stays where relbridge wrote it: it is not a person's
    # comment, so it never crosses as one.
    assert "comment: relbridge verified Customer portal 5.2 (deployment 1): passed" in text[second:]
    assert "[Jira] Administrator: relbridge verified" not in text
