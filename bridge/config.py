"""Configuration: one TOML file, overridden by ``RELBRIDGE_<SECTION>__<KEY>`` variables.

Every section forbids unknown keys so a typo is an error rather than a silently ignored
setting. Secrets are ``SecretStr`` and never printed. Relative paths (mapping files, a
SQLite store) resolve against the folder of the config file, so a config works from any
working directory. An error about a key set from the environment names the variable,
since that is where the admin has to fix it.

Plugins declare sections of their own (``relbridge_config_sections``): ``load_config``
loads the plugins the file names and validates their sections the same way, so a
plugin's ``[acme]`` works, its typos are errors with a did-you-mean, its keys take
``RELBRIDGE_ACME__<KEY>`` overrides, and a section nobody declares is still an error.

Commands find the file with ``locate_config``: ``--config``, else ``RELBRIDGE_CONFIG``,
else ``./relbridge.toml``; with none of them they refuse to start rather than run on the
simulator defaults against whatever answers on 127.0.0.1.
"""

from __future__ import annotations

import functools
import json
import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from bridge.adapter import DEFAULT_PAGE_SIZE
from bridge.errors import ConfigError, did_you_mean
from bridge.timeutil import zone

if TYPE_CHECKING:
    from bridge.plugins import PluginManager

ENV_PREFIX = "RELBRIDGE_"
CONFIG_VARIABLE = "RELBRIDGE_CONFIG"
#: Looked for in the working directory when neither --config nor RELBRIDGE_CONFIG is given.
DEFAULT_CONFIG_NAME = "relbridge.toml"

#: How long a claimed event stays a worker's before another may take it (``[sync]
#: claim_lease_seconds``); the daemon renews it while the work goes on.
CLAIM_LEASE_SECONDS = 30.0


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServiceNowConfig(Section):
    url: str = "http://127.0.0.1:8081"
    user: str = "admin"
    password: SecretStr = SecretStr("admin")
    verify_tls: bool = True
    timeout_seconds: float = Field(default=30, gt=0)


class JiraConfig(Section):
    url: str = "http://127.0.0.1:8082"
    user: str = "admin"
    token: SecretStr = SecretStr("admin")
    projects: list[str] = Field(default_factory=lambda: ["OPS"], min_length=1)
    timezone: str = "UTC"  # reading and writing Jira's date-only fields (version dates)
    verify_tls: bool = True
    timeout_seconds: float = Field(default=30, gt=0)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        zone(value)
        return value


class StoreConfig(Section):
    url: str = "sqlite:///relbridge.db"


class SyncConfig(Section):
    interval_seconds: float = Field(default=60, gt=0)
    overlap_seconds: float = Field(default=120, ge=0)
    concurrency: int = Field(default=4, ge=1, le=64)  # parallel API calls per system
    page_size: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=10000)
    conflict_policy: Literal["last_writer_wins", "servicenow_wins", "jira_wins"] = "last_writer_wins"
    propagate_deletes: bool = False
    derive_lifecycle: bool = True  # release state follows its linked changes
    # Daemon worker threads. They mostly wait on the systems: an event makes several API calls
    # in a row, so at 20 ms a call 4 workers top out near 35 events per second.
    workers: int = Field(default=8, ge=1, le=64)
    max_attempts: int = Field(default=8, ge=1)
    retry_base_seconds: float = Field(default=1.0, gt=0)
    retry_max_seconds: float = Field(default=300, gt=0)
    claim_lease_seconds: float = Field(default=CLAIM_LEASE_SECONDS, ge=1)  # a dead worker's events return after this
    # How often each poller lists every object to find deletions no webhook reported; 0 = never.
    reconcile_interval_seconds: float = Field(default=3600, ge=0)


class WebhooksConfig(Section):
    bind: str = "127.0.0.1:8090"
    jira_secret: SecretStr | None = None
    servicenow_secret: SecretStr | None = None
    max_body_bytes: int = Field(default=1_048_576, ge=1024)

    @field_validator("bind")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{value!r} is not host:port (e.g. '127.0.0.1:8090')")
        return value


class MappingsConfig(Section):
    # None means the default mapping shipped with relbridge.
    servicenow: Path | None = None
    jira: Path | None = None


class PluginsConfig(Section):
    modules: list[str] = Field(default_factory=list)
    disabled: list[str] = Field(default_factory=list)


class GateConfig(Section):
    policy: Literal["revert", "warn"] = "revert"
    # Readiness: change fields that must not be empty before a release goes live
    # (e.g. ["backout_plan", "test_plan", "implementation_plan"]), and whether each
    # change's CAB date must have passed.
    require_change_fields: list[str] = Field(default_factory=list)
    require_cab: bool = False

    @field_validator("require_change_fields")
    @classmethod
    def _change_fields(cls, value: list[str]) -> list[str]:
        from bridge.model import ChangeRequest

        known = sorted(set(ChangeRequest.model_fields) - {"key", "refs"})
        for name in value:
            if name not in known:
                raise ValueError(f"{name!r} is not a change field{did_you_mean(name, known)}")
        return value


class RollbackConfig(Section):
    # Close code written to a rolled-back release's changes; "" leaves them alone.
    mark_changes: Literal["", "unsuccessful"] = "unsuccessful"


class SafetyConfig(Section):
    # Destructive writes (a release moved backwards, an unsuccessful close code, a delete)
    # allowed per `sync --once` pass, or per window in the daemon; the rest are held.
    max_destructive_writes: int = Field(default=10, ge=0)
    window_seconds: float = Field(default=600, gt=0)  # the daemon's window for that bound


class ConsoleConfig(Section):
    """The read-only web console at /ui on the receiver's bind (``relbridge run``)."""

    enabled: bool = False
    user: str | None = None  # with password: HTTP basic auth on every /ui page
    password: SecretStr | None = None
    cache_seconds: float = Field(default=60, ge=0)  # figures older than this are rebuilt even if data did not move

    @model_validator(mode="after")
    def _both_or_neither(self) -> ConsoleConfig:
        if (self.user is None) != (self.password is None):
            raise ValueError("set both user and password for basic auth, or neither")
        return self


class CheckConfig(Section):
    """One ``[[verify.checks]]`` entry: an HTTP GET that must answer ``expect_status``."""

    name: str = Field(min_length=1, max_length=100)
    url: str
    expect_status: int = Field(default=200, ge=100, le=599)
    body_contains: str | None = None  # the answer's body must hold this text
    timeout_seconds: float = Field(default=10, gt=0, le=300)  # per attempt, connect and read
    retries: int = Field(default=0, ge=0, le=10)  # further attempts after a failed one

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or len(value) < 10:
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value


class VerifyConfig(Section):
    # Checks run when a release enters deployed (besides plugins' relbridge_verify_release).
    checks: list[CheckConfig] = Field(default_factory=list)
    # A failed check marks the release as needing revision; "rollback" also rolls it back.
    on_failure: Literal["mark", "rollback"] = "mark"
    # Incidents a release causes within this many days of its deployment are early-life ones.
    early_life_days: int = Field(default=14, ge=0, le=365)
    # How long plugins' verifiers may take, all together, before they count as failed.
    plugin_timeout_seconds: float = Field(default=60, gt=0, le=3600)

    @field_validator("checks")
    @classmethod
    def _unique_names(cls, value: list[CheckConfig]) -> list[CheckConfig]:
        names = [check.name for check in value]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"check names must be unique: {', '.join(twice)} given twice")
        return value


class KpiConfig(Section):
    """What time worked costs, for ``direct_cost_total`` and ``direct_cost_by_state``."""

    # Read the time logged against releases and changes while syncing (one more query per
    # page of records on systems that keep it apart; off: the cost figures say "no data").
    read_time_worked: bool = False
    hourly_rate: float | None = Field(default=None, ge=0)  # per hour of any entry without a group rate
    group_rates: dict[str, float] = Field(default_factory=dict)  # {group = rate}: the entry's team first

    @field_validator("group_rates")
    @classmethod
    def _rates_not_negative(cls, rates: dict[str, float]) -> dict[str, float]:
        negative = sorted(group for group, rate in rates.items() if rate < 0)
        if negative:
            raise ValueError(f"a rate cannot be negative (group {negative[0]!r})")
        return rates


class DeploymentConfig(Section):
    """Release plans from deployment models (``relbridge release plan``)."""

    # A folder of model files (*.toml) besides the shipped ones; a file there overrides a
    # shipped model of the same name.
    models_dir: Path | None = None
    # A release may not go live while a task of a phase before "Deploy" is open.
    block_go_live_on_open_tasks: bool = True


class LogConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class Config(Section):
    servicenow: ServiceNowConfig = Field(default_factory=ServiceNowConfig)
    jira: JiraConfig = Field(default_factory=JiraConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig)
    mappings: MappingsConfig = Field(default_factory=MappingsConfig)
    plugins: PluginsConfig = Field(default_factory=PluginsConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    rollback: RollbackConfig = Field(default_factory=RollbackConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    safety: SafetyConfig = Field(default_factory=SafetyConfig)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    verify: VerifyConfig = Field(default_factory=VerifyConfig)
    kpi: KpiConfig = Field(default_factory=KpiConfig)
    deployment: DeploymentConfig = Field(default_factory=DeploymentConfig)

    source: str = Field(default="<defaults>", exclude=True)  # where it was loaded from, for messages
    # The plugin manager load_config built to find the plugins' sections; a Runtime reuses it.
    _plugin_manager: PluginManager | None = PrivateAttr(default=None)

    @property
    def plugin_manager(self) -> PluginManager | None:
        return self._plugin_manager


def locate_config(path: str | os.PathLike[str] | None, cwd: Path | None = None) -> Path:
    """The config file a command uses: ``path`` (from ``--config`` or ``RELBRIDGE_CONFIG``),
    else ``./relbridge.toml``. Raises ``ConfigError`` saying where it looked and what to do."""
    if path is not None and str(path) != "":
        return Path(path)
    folder = cwd if cwd is not None else Path.cwd()
    candidate = folder / DEFAULT_CONFIG_NAME
    if candidate.is_file():
        return candidate
    raise ConfigError(
        f"no configuration found: no --config, no {CONFIG_VARIABLE} and no ./{DEFAULT_CONFIG_NAME} "
        f"in {folder} — copy config.example.toml to ./{DEFAULT_CONFIG_NAME} and edit it, "
        "or pass --config PATH"
    )


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    sections: Mapping[str, type[BaseModel]] | None = None,
) -> Config:
    """Load ``path`` (or defaults when None), apply environment overrides, validate.

    ``sections``: the plugins' own sections; None loads the plugins the configuration
    names (entry points and ``[plugins] modules``) and asks them. Raises ``ConfigError``
    with a ``file: dotted.key — message`` text.
    """
    env = os.environ if env is None else env
    source = str(path) if path is not None else "<defaults>"
    data, base = _read(path, source)
    from_env = _apply_env(data, env)
    plugin_manager = None
    if sections is None:
        core = {name: value for name, value in data.items() if name in Config.model_fields}
        plugins = _validate(Config, {**core, "source": source}, source, from_env).plugins
        plugin_manager = _plugin_manager(plugins)
        sections = plugin_manager_sections(plugin_manager)
    config = _validate(config_model(sections), {**data, "source": source}, source, from_env)
    config._plugin_manager = plugin_manager
    return _resolve_paths(config, base)


def with_sections(config: Config, sections: Mapping[str, type[BaseModel]]) -> Config:
    """``config`` with defaults for the ``sections`` it lacks (plugins registered in code,
    as tests do, after the file was loaded)."""
    model = config_model(sections)
    if type(config) is model:
        return config
    values = {name: getattr(config, name) for name in type(config).model_fields if name in model.model_fields}
    extended = _validate(model, values, config.source, {})
    extended._plugin_manager = config.plugin_manager
    return extended


def _read(path: str | os.PathLike[str] | None, source: str) -> tuple[dict[str, Any], Path]:
    if path is None:
        return {}, Path.cwd()
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{source}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML — {exc}") from None
    return data, file.resolve().parent


def _validate(model: type[Config], data: dict[str, Any], source: str,
              from_env: Mapping[tuple[str, ...], str]) -> Config:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc, model, from_env)) from None


def _plugin_manager(plugins: PluginsConfig) -> PluginManager:
    from bridge.plugins import make_plugin_manager

    return make_plugin_manager(plugins.modules, plugins.disabled)


def plugin_manager_sections(pm: PluginManager) -> dict[str, type[BaseModel]]:
    from bridge.plugins import Hooks

    return Hooks(pm).config_sections()


def config_model(sections: Mapping[str, type[BaseModel]]) -> type[Config]:
    """``Config`` plus the plugins' sections as fields (``Config`` itself when there are none)."""
    return _config_model(tuple(sorted(sections.items())))


@functools.lru_cache(maxsize=64)
def _config_model(sections: tuple[tuple[str, type[BaseModel]], ...]) -> type[Config]:
    if not sections:
        return Config
    fields: dict[str, Any] = {}
    for name, model in sections:
        if name in Config.model_fields:
            raise ConfigError(f"a plugin declares a config section [{name}], which relbridge itself uses")
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise ConfigError(f"a plugin declares config section [{name}] with {model!r}, not a pydantic model")
        fields[name] = (model, Field(default_factory=model) if _has_defaults(model) else ...)
    return create_model("Config", __base__=Config, **fields)


def _has_defaults(model: type[BaseModel]) -> bool:
    try:
        model()
    except ValidationError:
        return False
    return True


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """Merge the ``RELBRIDGE_<SECTION>__<KEY>`` variables into ``data``; returns which
    variable set each (section, key) and each section only the environment created."""
    origins: dict[tuple[str, ...], str] = {}
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX):].lower().partition("__")
        value: Any = raw
        if raw[:1] in "[{":  # lists and tables as JSON
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"environment variable {name}: not valid JSON ({exc.msg})") from None
        if section not in data:
            origins[(section,)] = name
        target = data.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"environment variable {name}: {section} is not a table in the file")
        target[key] = value
        origins[(section, key)] = name
    return origins


def _resolve_paths(config: Config, base: Path) -> Config:
    for system in MappingsConfig.model_fields:
        path = getattr(config.mappings, system)
        if path is not None and not path.is_absolute():
            setattr(config.mappings, system, base / path)
    models_dir = config.deployment.models_dir
    if models_dir is not None and not models_dir.is_absolute():
        config.deployment.models_dir = base / models_dir
    prefix = "sqlite:///"
    url = config.store.url
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        config.store.url = prefix + str(base / url[len(prefix):])
    return config


def format_validation_error(
    source: str,
    exc: ValidationError,
    model: type[BaseModel] | None = None,
    from_env: Mapping[tuple[str, ...], str] | None = None,
) -> str:
    """``file: dotted.key — message`` lines, with a suggestion for a mistyped key; a key
    that came from the environment is ``environment variable NAME: dotted.key — message``."""
    lines = []
    from_env = from_env or {}
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        variable = from_env.get(tuple(loc[:2])) or from_env.get(tuple(loc[:1]))
        where = f"environment variable {variable}" if variable else source
        dotted = ".".join(loc) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key"
            message += did_you_mean(loc[-1], _keys_at(model, loc)) if model else ""
        elif message.startswith("Value error, "):
            message = message[len("Value error, "):]
        lines.append(f"{where}: {dotted} — {message}")
    return "\n".join(lines)


def _keys_at(model: type[BaseModel], loc: list[str]) -> list[str]:
    """The valid key names at ``loc``'s level ([] when that level is not a section)."""
    current: Any = model
    for part in loc[:-1]:
        if part.isdigit():  # an entry of a list of tables ([[verify.checks]])
            continue
        field = getattr(current, "model_fields", {}).get(part)
        annotation = field.annotation if field is not None else None
        args = typing.get_args(annotation)
        if typing.get_origin(annotation) is list and args:
            annotation = args[0]
        if not isinstance(annotation, type):
            return []
        current = annotation
    return list(getattr(current, "model_fields", {}))
