"""The ``relbridge`` command line.

Exit codes: 0 ok, 2 bad input (config, mapping, arguments — one-line reason, no
traceback), 1 failure. Every command takes ``--config PATH`` (or ``RELBRIDGE_CONFIG``, or
finds ``./relbridge.toml``) and refuses to start without one; only ``demo`` and ``sim`` run
on built-in settings. ``sync`` and ``run`` check plugins, store, systems and the mappings
against live metadata before their first write (``bridge.preflight``).
"""

from bridge.cli import admin, conflicts, plan, records, sync  # noqa: F401  (each registers its commands on main)
from bridge.cli.common import main

__all__ = ["main"]
