"""Deployment model files: the shipped ones are valid, every problem of a bad one is
reported with its line, and a model is made into a plan with the right names and dates."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from bridge.cli import main
from bridge.errors import BadInput
from bridge.release.models import ModelError, load_model, model_files, parse_model
from bridge.release.plan import instantiate, parse_sets, plan_tag

START = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
BAD = """name = "bad"
description = "broken"
[[phases]]
name = "Prepare"
offset_days = "soon"
duration_days = 3
colour = "blue"
[[phases.tasks]]
name = "Rehearse {scale!r}"
duration_hours = -1
when = { scale = 3 }
"""


def test_the_shipped_models_are_valid() -> None:
    assert set(model_files(None)) >= {"standard", "staged", "emergency"}
    for name in model_files(None):
        assert load_model(name, None).phases


def test_every_problem_is_reported_with_its_line() -> None:
    with pytest.raises(ModelError) as raised:
        parse_model(BAD, "bad.toml")
    lines = str(raised.value).splitlines()
    assert "bad.toml:5: offset_days must be a whole number of days from -366 to 366 (got 'soon')" in lines
    assert any(line.startswith("bad.toml:3: unknown key 'colour' in a phase") for line in lines)
    assert any(line.startswith("bad.toml:9: name 'Rehearse {scale!r}'") for line in lines)
    assert any(line.startswith("bad.toml:10: duration_hours must be") for line in lines)
    assert any(line.startswith("bad.toml:11: when must be a table") for line in lines)


def test_a_typo_in_a_key_gets_a_suggestion_and_a_name_must_match_its_file() -> None:
    text = 'name = "x"\n[[phases]]\nname = "Deploy"\noffset_dys = 0\nduration_days = 1\n'
    with pytest.raises(ModelError) as raised:
        parse_model(text, "y.toml", expected_name="y")
    assert "did you mean 'offset_days'" in str(raised.value)
    assert "y.toml:1: name 'x' differs from the file's name 'y'" in str(raised.value)


def test_models_dir_adds_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "standard.toml").write_text('name = "standard"\n[[phases]]\nname = "Deploy"\n'
                                            'offset_days = 0\nduration_days = 1\n')
    assert [p.name for p in load_model("standard", tmp_path).phases] == ["Deploy"]
    with pytest.raises(ModelError, match="is not a folder"):
        model_files(tmp_path / "missing")


def test_instantiate_fills_names_applies_when_and_counts_dates() -> None:
    model = load_model("staged", None)
    small = instantiate(model, "RLSE1", START, {"region": "eu", "scale": "small"})
    names = [p.item.name for p in small]
    assert "Rehearse backout" not in names and "Deploy to eu" in names
    large = instantiate(model, "RLSE1", START, {"region": "eu", "scale": "large"})
    rehearse = next(p for p in large if p.item.name == "Rehearse backout")
    assert rehearse.blocks_go_live and rehearse.item.start == datetime(2026, 5, 27, 8, 0, tzinfo=UTC)
    assert rehearse.item.end == datetime(2026, 5, 27, 12, 0, tzinfo=UTC)
    assert not next(p for p in large if p.item.name == "Deploy to eu").blocks_go_live
    assert len({p.item.tag for p in large}) == len(large)
    assert plan_tag("RLSE1", "Prepare", "Rehearse backout") == rehearse.item.tag


def test_sets_are_checked() -> None:
    model = load_model("staged", None)
    with pytest.raises(ModelError, match=r"staged.toml:\d+: \{region\} needs a value"):
        instantiate(model, "R", START, {"scale": "large"})
    with pytest.raises(ModelError, match="uses no variable 'regon' .did you mean 'region'"):
        instantiate(model, "R", START, {"regon": "eu", "region": "eu", "scale": "large"})
    for bad in (["region"], ["=eu"], ["region="], ["a b=c"]):
        with pytest.raises(BadInput, match="write KEY=VALUE"):
            parse_sets(bad)
    assert parse_sets(["region=eu-west", "scale=large"]) == {"region": "eu-west", "scale": "large"}


def test_cli_lists_shows_and_refuses_a_bad_model(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text(BAD)
    config = tmp_path / "relbridge.toml"
    config.write_text(f'[deployment]\nmodels_dir = "{tmp_path}"\n')
    listed = CliRunner().invoke(main, ["deployment-models", "list", "--config", str(config)])
    assert listed.exit_code == 2 and "staged" in listed.output and "bad.toml:5:" in listed.output
    shown = CliRunner().invoke(main, ["deployment-models", "show", "staged", "--config", str(config)])
    assert shown.exit_code == 0 and "Rehearse backout  4 h  when scale=large" in shown.output
    missing = CliRunner().invoke(main, ["deployment-models", "show", "stagd", "--config", str(config)])
    assert missing.exit_code == 2 and "did you mean 'staged'" in missing.output
