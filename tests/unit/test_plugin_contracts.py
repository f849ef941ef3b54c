"""The plugin contracts of DESIGN.md §4: notifications through pluggy's call path (wrappers
see them), sections of a plugin's own in the configuration, and the one collector for the
contribution hooks."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge import hookimpl
from bridge.config import Section, load_config
from bridge.errors import ConfigError
from bridge.plugins import Hooks, make_plugin_manager
from bridge.runtime import Runtime

# -- notifications --------------------------------------------------------------------------


def test_a_wrapper_plugin_sees_a_notification_and_the_others_still_hear_it(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[Any] = []

    class Timing:
        @hookimpl(wrapper=True)
        def relbridge_release_deployed(self, release: Any, source: str) -> Any:
            seen.append(("before", release, source))
            result = yield
            seen.append(("after", release))
            return result

    class Raises:
        @hookimpl
        def relbridge_release_deployed(self, release: Any) -> None:
            raise RuntimeError("plugin bug")

    class Listens:
        @hookimpl
        def relbridge_release_deployed(self, release: Any, source: str) -> None:
            seen.append(("heard", release, source))

    pm = make_plugin_manager(entry_point_group=None,
                             extra=[("timing", Timing()), ("raises", Raises()), ("listens", Listens())])
    Hooks(pm).release_deployed("RLS-1", "jira")
    assert seen == [("before", "RLS-1", "jira"), ("heard", "RLS-1", "jira"), ("after", "RLS-1")]
    assert "plugin raises failed in relbridge_release_deployed" in caplog.text


def test_notifications_are_traced_by_pluggy() -> None:
    class Listens:
        @hookimpl
        def relbridge_change_linked(self, change: Any, release: Any, source: str) -> None:
            pass

    pm = make_plugin_manager(entry_point_group=None, extra=[("listens", Listens())])
    calls: list[str] = []
    undo = pm.add_hookcall_monitoring(lambda name, impls, kwargs: calls.append(name), lambda *args: None)
    try:
        Hooks(pm).change_linked("CHG1", None, "servicenow")
    finally:
        undo()
    assert calls == ["relbridge_change_linked"]


def test_a_raising_wrapper_does_not_stop_the_sync(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        @hookimpl(wrapper=True)
        def relbridge_release_created(self, release: Any, source: str) -> Any:
            raise RuntimeError("wrapper bug")
            yield  # pragma: no cover

    Hooks(make_plugin_manager(entry_point_group=None, extra=[("broken", Broken())])).release_created("R", "jira")
    assert "wrapper bug" in caplog.text


# -- a plugin's own config section ----------------------------------------------------------

ACME = '''
from pydantic import Field
from bridge import hookimpl
from bridge.config import Section

configured = []

class AcmeConfig(Section):
    team: str = "release-desk"
    retries: int = Field(default=3, ge=0)

@hookimpl
def relbridge_config_sections():
    return {"acme": AcmeConfig}

@hookimpl
def relbridge_configure(config):
    configured.append(config.acme)
'''


@pytest.fixture
def acme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A plugin module ``acme_plugin`` on the path, named in ``[plugins] modules``."""
    (tmp_path / "acme_plugin.py").write_text(ACME)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("acme_plugin", None)


def write(folder: Path, text: str) -> Path:
    path = folder / "relbridge.toml"
    path.write_text('[plugins]\nmodules = ["acme_plugin"]\n' + textwrap.dedent(text))
    return path


def test_a_plugin_section_from_the_file_and_the_environment_reaches_relbridge_configure(acme: Path) -> None:
    config = load_config(write(acme, '[acme]\nteam = "ops"\n'), env={"RELBRIDGE_ACME__RETRIES": "5"})
    Runtime(config).hooks  # noqa: B018 - building the hooks runs relbridge_configure
    configured = sys.modules["acme_plugin"].configured
    assert [(section.team, section.retries) for section in configured] == [("ops", 5)]


def test_a_plugin_section_left_out_gets_its_defaults(acme: Path) -> None:
    config = load_config(write(acme, ""), env={})
    assert (config.acme.team, config.acme.retries) == ("release-desk", 3)


@pytest.mark.parametrize("text, env, expected", [
    ('[acme]\ntem = "ops"\n', {}, "{file}: acme.tem — unknown key (did you mean 'team'?)"),
    ('[acme]\nretries = -1\n', {}, "{file}: acme.retries — Input should be greater than or equal to 0"),
    ("", {"RELBRIDGE_ACME__RETRIES": "many"},
     "environment variable RELBRIDGE_ACME__RETRIES: acme.retries — Input should be a valid integer"),
    ("", {"RELBRIDGE_ACME__TAEM": "x"},
     "environment variable RELBRIDGE_ACME__TAEM: acme.taem — unknown key (did you mean 'team'?)"),
    ("[acmee]\nteam = 'ops'\n", {}, "{file}: acmee — unknown key (did you mean 'acme'?)"),
])
def test_a_bad_key_in_a_plugin_section_is_a_config_error_naming_it(
    acme: Path, text: str, env: dict[str, str], expected: str
) -> None:
    path = write(acme, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=env)
    assert str(caught.value).startswith(expected.format(file=path))


def test_a_section_no_plugin_declares_is_still_an_error(tmp_path: Path) -> None:
    path = tmp_path / "relbridge.toml"
    path.write_text("[acme]\nteam = 'ops'\n")
    with pytest.raises(ConfigError, match=r": acme — unknown key"):
        load_config(path, env={})


class Declares:
    def __init__(self, sections: dict[str, Any]) -> None:
        self.sections = sections

    @hookimpl
    def relbridge_config_sections(self) -> dict[str, Any]:
        return self.sections


class Other(Section):
    x: int = 1


def test_two_plugins_declaring_one_section_is_an_error() -> None:
    pm = make_plugin_manager(entry_point_group=None,
                             extra=[("one", Declares({"acme": Other})), ("two", Declares({"acme": Other}))])
    with pytest.raises(ConfigError, match="two plugins provide a config section named 'acme'"):
        Hooks(pm).config_sections()


def test_a_plugin_cannot_take_a_core_section() -> None:
    with pytest.raises(ConfigError, match=r"declares a config section \[sync\], which relbridge itself uses"):
        load_config(None, env={}, sections={"sync": Other})


def test_plugins_registered_in_code_get_their_sections_in_the_runtime() -> None:
    rt = Runtime(load_config(None, env={}), extra_plugins=[("other", Declares({"other": Other}))])
    rt.hooks  # noqa: B018
    assert rt.config.other.x == 1


def test_the_first_party_sections_keep_their_keys() -> None:
    """The system plugins' sections stay where admins know them: same keys, same variables."""
    config = load_config(None, env={"RELBRIDGE_SERVICENOW__USER": "svc", "RELBRIDGE_JIRA__PROJECTS": '["A"]'})
    assert (config.servicenow.user, config.jira.projects) == ("svc", ["A"])


def test_the_cli_takes_a_plugin_section_and_refuses_an_unknown_one(acme: Path) -> None:
    from click.testing import CliRunner

    from bridge.cli import main

    runner = CliRunner()
    ok = runner.invoke(main, ["plugins", "--config", str(write(acme, '[acme]\nteam = "ops"\n'))], env={})
    assert ok.exit_code == 0, ok.output
    assert "relbridge_config_sections" in ok.output and "relbridge_configure" in ok.output
    bad = runner.invoke(main, ["plugins", "--config", str(write(acme, '[acmee]\nteam = "ops"\n'))], env={})
    assert bad.exit_code == 2
    assert "acmee — unknown key (did you mean 'acme'?)" in bad.output
    assert "Traceback" not in bad.output
