"""Plugin loading: entry points, config modules, disabled plugins, broken plugins, listing."""

from __future__ import annotations

import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from bridge import hookimpl
from bridge.errors import ConfigError
from bridge.plugins import Hooks, describe, make_plugin_manager


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [n for n in sys.modules if n.startswith("plug_")]:
        del sys.modules[name]


def test_first_party_plugins_load_from_entry_points() -> None:
    pm = make_plugin_manager()
    names = {info.name: info for info in describe(pm)}
    assert {"servicenow", "jira", "gate"} <= set(names)
    assert names["gate"].hooks == ("relbridge_check_transition", "relbridge_configure")
    assert names["servicenow"].source == "entry point (relbridge)"
    assert names["servicenow"].version not in ("", "-")


def test_config_module_is_registered(module_dir: Path) -> None:
    (module_dir / "plug_good.py").write_text(textwrap.dedent('''
        from bridge import hookimpl

        @hookimpl
        def relbridge_release_created(release, source):
            pass
    '''))
    pm = make_plugin_manager(["plug_good"], entry_point_group=None)
    [info] = describe(pm)
    assert (info.name, info.source, info.hooks) == ("plug_good", "config module", ("relbridge_release_created",))


def test_disabled_plugins_are_skipped() -> None:
    pm = make_plugin_manager(disabled=["gate"])
    assert "gate" not in {info.name for info in describe(pm)}


def test_missing_config_module_is_bad_input() -> None:
    with pytest.raises(ConfigError, match="no module named 'plug_missing'"):
        make_plugin_manager(["plug_missing"], entry_point_group=None)


def test_broken_third_party_module_warns_and_the_rest_load(module_dir: Path, caplog) -> None:
    (module_dir / "plug_broken.py").write_text("raise RuntimeError('boom at import')\n")
    (module_dir / "plug_fine.py").write_text("from bridge import hookimpl\n\n@hookimpl\ndef relbridge_configure(config):\n    pass\n")
    pm = make_plugin_manager(["plug_broken", "plug_fine"], entry_point_group=None)
    assert [info.name for info in describe(pm)] == ["plug_fine"]
    assert pm.problems[0].name == "plug_broken" and "boom at import" in pm.problems[0].error
    assert "plug_broken" in caplog.text


def test_broken_third_party_entry_point_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = EntryPoint(name="acme", value="plug_does_not_exist_anywhere", group="relbridge")
    monkeypatch.setattr("bridge.plugins.entry_points", lambda group: [broken])
    pm = make_plugin_manager()
    assert [p.name for p in pm.problems] == ["acme"]


def test_misspelt_hook_is_a_config_error(module_dir: Path) -> None:
    (module_dir / "plug_typo.py").write_text(
        "from bridge import hookimpl\n\n@hookimpl\ndef relbridge_release_craeted(release):\n    pass\n")
    with pytest.raises(ConfigError, match="relbridge_release_craeted"):
        make_plugin_manager(["plug_typo"], entry_point_group=None)


def test_notification_failures_are_isolated(caplog) -> None:
    calls = []

    class Raises:
        @hookimpl
        def relbridge_release_deployed(self, release, source):
            raise RuntimeError("plugin bug")

    class Records:
        @hookimpl
        def relbridge_release_deployed(self, release, source):
            calls.append((release, source))

    pm = make_plugin_manager(entry_point_group=None, extra=[("raises", Raises()), ("records", Records())])
    Hooks(pm).release_deployed("R1", "jira")
    assert calls == [("R1", "jira")]
    assert "plugin bug" in caplog.text


def test_duplicate_adapter_names_are_an_error() -> None:
    class Twin:
        name = "servicenow"

    class Plugin:
        @hookimpl
        def relbridge_adapters(self, config):
            return [Twin()]

    pm = make_plugin_manager(extra=[("twin", Plugin())])
    from bridge.config import load_config

    with pytest.raises(ConfigError, match="two plugins provide an adapter named 'servicenow'"):
        Hooks(pm).adapters(load_config(None, env={}))


def test_wants_tells_which_notifications_a_plugin_listens_to() -> None:
    class Listens:
        @hookimpl
        def relbridge_change_linked(self, change, release, source):
            pass

    assert not Hooks(make_plugin_manager(entry_point_group=None)).wants("change_linked")
    hooks = Hooks(make_plugin_manager(entry_point_group=None, extra=[("listens", Listens())]))
    assert hooks.wants("change_linked") and not hooks.wants("incident_linked")
