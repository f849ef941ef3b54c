"""The ``relbridge`` command line.

Exit codes: 0 ok, 2 bad input (config, mapping, arguments — one-line reason, no
traceback), 1 failure. Every command takes ``--config PATH`` (or ``RELBRIDGE_CONFIG``, or
finds ``./relbridge.toml``) and refuses to start without one; only ``demo`` and ``sim`` run
on built-in settings. ``sync`` and ``run`` check plugins, store, systems and the mappings
against live metadata before their first write (``bridge.preflight``).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from bridge import __version__
from bridge.config import Config, load_config, locate_config
from bridge.errors import BadInput, RelbridgeError
from bridge.runtime import Runtime

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handle_errors(func: F) -> F:
    """Turn domain errors into exit codes with a one-line message, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BadInput as exc:
            fail(str(exc), 2)
        except RelbridgeError as exc:
            fail(str(exc), 1)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # a bug or an unexpected environment problem
            if os.environ.get("RELBRIDGE_DEBUG"):
                raise
            fail(f"{type(exc).__name__}: {exc} (set RELBRIDGE_DEBUG=1 for the traceback)", 1)

    return wrapper  # type: ignore[return-value]


def config_option(func: F) -> F:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="RELBRIDGE_CONFIG",
        help="Config file (TOML). Default: env RELBRIDGE_CONFIG, else ./relbridge.toml.",
    )(func)


def load(config_path: Path | None) -> Config:
    return load_config(locate_config(config_path))


def runtime(config_path: Path | None, *, writes: bool = False) -> Runtime:
    """The runtime for a command; ``writes``: the command leads to writes in the systems,
    so a plugin that failed to load (perhaps the gate) stops it instead of a warning."""
    config = load(config_path)
    logging.basicConfig(level=config.log.level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rt = Runtime(config)
    if writes:
        from bridge.preflight import refuse_broken_plugins

        refuse_broken_plugins(rt.plugin_manager)
    return rt


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="relbridge")
def main() -> None:
    """Keep one authoritative release record across ServiceNow and Jira.

    \b
    Try it with no accounts:
      relbridge demo
    Run the service:
      relbridge run --config config.toml
    """
