"""relbridge: one authoritative release record across ServiceNow and Jira."""

from importlib.metadata import PackageNotFoundError, version

import pluggy

PROJECT_NAME = "relbridge"

#: Marker for plugin authors: ``from bridge import hookimpl``.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

try:
    __version__ = version(PROJECT_NAME)
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["PROJECT_NAME", "hookimpl", "__version__"]
