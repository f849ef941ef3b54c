"""How long ``relbridge kpi`` and the console's pages take over a large store.

    python bench/kpi.py --n 10000                      # SQLite (a temporary file)
    RELBRIDGE_TEST_PG_URL=postgresql://postgres@127.0.0.1:5432/test python bench/kpi.py --n 10000

Seeds N releases with full history (bench/_records.py: ~6 state moves and a planned-end
row or two each, 3 changes with time logged against each, an incident for ~30 % of
deployed ones) straight into the store,
then times the KPIs as ``relbridge kpi --format json`` computes them (read + compute +
render; also this process's CPU time, which a busy machine inflates less than wall
time; the database's own work is outside it), and each console page through the
receiver app as a person meets it, all printed:

* right after the daemon's first start over the store (nothing built or saved yet): each
  page once, and whether it showed figures or the "being computed" page;
* once the console's start-up build finished (and how long that took): each page's
  first request and the median of the next five;
* right after a restart, when the saved views are there: each page once.

Each with wall and this process's CPU milliseconds (the builder process's work is apart:
a busy machine inflates the wall figures, not the CPU ones). The console is made as
``relbridge run`` makes it: over a runtime whose engine (plugins, mappings) the daemon built
before its receiver serves, and started building at once. On PostgreSQL it uses a fresh
schema, dropped after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _records import seed_console_extras, seed_records  # noqa: E402

PAGES = ("/ui/", "/ui/kpi", "/ui/releases/RLSE0000042", "/ui/conflicts", "/ui/held", "/ui/dlq")


@contextmanager
def store_url(database: str) -> Iterator[str]:
    if database == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/kpi.db"
        return
    from bridge.store.connect import scratch_schema

    with scratch_schema(os.environ["RELBRIDGE_TEST_PG_URL"], "relbridge_bench") as url:
        yield url


#: What a console page shows before its figures were ever computed (bridge/reports/pages.py).
COMPUTING = "being computed."


def console_app(runtime: Any, config: Any) -> tuple[Any, Any]:
    """The daemon's receiver app with the console, made as ``relbridge run`` makes it (the
    console starts building its views at once), and the console."""
    from bridge.config import SyncConfig
    from bridge.daemon.inbox import Inbox
    from bridge.daemon.metrics import Metrics
    from bridge.daemon.receiver import create_app
    from bridge.reports.console import create_console

    console = create_console(runtime, config.console)
    return create_app(inbox=Inbox.from_config(runtime.store, SyncConfig()), adapters={}, config=config.webhooks,
                      schemes={}, metrics=Metrics(), console=console), console.state.console


def visit(client: Any, path: str, times: int = 1) -> tuple[list[float], list[float], bool]:
    """Wall and CPU milliseconds per request (CPU: this process's, so the daemon's side;
    the builder child's is apart, and a busy machine inflates wall time, not CPU), and
    whether the (last) page showed figures."""
    spent, cpu, text = [], [], ""
    for _ in range(times):
        start, start_cpu = time.perf_counter(), time.process_time()
        response = client.get(path)
        spent.append(round((time.perf_counter() - start) * 1000, 1))
        cpu.append(round((time.process_time() - start_cpu) * 1000, 1))
        response.raise_for_status()
        text = response.text
    return spent, cpu, COMPUTING not in text


def start_daemon_console(config: Any) -> tuple[Any, Any, Any, float]:
    """A runtime as the daemon has it when the receiver starts (engine built: plugins,
    mappings, adapters), then a client of the receiver with the console, the console and
    when it was made."""
    from starlette.testclient import TestClient

    from bridge.runtime import Runtime

    runtime = Runtime(config)
    runtime.engine  # noqa: B018 - the daemon builds it before it serves (bridge/daemon/service.py)
    made = time.perf_counter()
    app, console = console_app(runtime, config)
    console.made_ms = round((time.perf_counter() - made) * 1000, 1)
    client = TestClient(app)
    client.get("/healthz").raise_for_status()  # the test client's own start-up, which a served daemon has behind it
    return runtime, client, console, made


def pages_now(client: Any) -> dict[str, Any]:
    """Each page once, at once: what a person opening it at this moment waits for and sees."""
    result = {}
    for path in PAGES:
        ms, cpu, shown = visit(client, path)
        result[path] = {"ms": ms[0], "cpu_ms": cpu[0], "figures": shown}
    return result


def pages_cold_warm(client: Any) -> dict[str, Any]:
    """Each page's first request, then the median of five more."""
    result = {}
    for path in PAGES:
        ms, cpu, shown = visit(client, path, 6)
        result[path] = {"cold_ms": ms[0], "cold_cpu_ms": cpu[0], "warm_ms": statistics.median(ms[1:]),
                        "warm_cpu_ms": statistics.median(cpu[1:]), "figures": shown}
    return result


def kpi_command(runtime: Any) -> dict[str, float]:
    """``relbridge kpi --format json``'s work three times: best and worst wall, least CPU."""
    from bridge.reports.kpi import kpis_from_store, render_json

    runs, cpu = [], []
    for _ in range(3):
        start, start_cpu = time.perf_counter(), time.process_time()
        render_json(kpis_from_store(runtime.store, since=None, until=None, now=datetime.now(UTC)))
        runs.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {"best": round(min(runs), 2), "worst": round(max(runs), 2), "cpu": round(min(cpu), 2)}


def wait_for_views(console: Any, made: float, timeout: float = 600) -> float:
    """Seconds from making the console until its start-up build (overview, then all-time
    KPIs) finished."""
    for name in ("releases", "kpi"):
        console.views.wait(name, timeout)
    return time.perf_counter() - made


def measure(database: str, n: int) -> dict[str, Any]:
    from bridge.config import Config
    from bridge.runtime import Runtime

    with store_url(database) as url:
        config = Config.model_validate({"store": {"url": url}, "console": {"enabled": True}})
        runtime = Runtime(config)
        seeded = seed_records(runtime.store, n)
        seed_console_extras(runtime.store)
        kpi = kpi_command(runtime)
        runtime.close()

        runtime, client, console, made = start_daemon_console(config)
        at_start = pages_now(client)  # nothing built or saved yet: the first ever start
        build_seconds = wait_for_views(console, made)
        built = pages_cold_warm(client)
        console.close()  # as the daemon's stop does
        runtime.close()

        runtime, client, console, made = start_daemon_console(config)  # a restart: the saved views are there
        after_restart = pages_now(client)
        restart_made_ms = console.made_ms
        wait_for_views(console, made)
        console.close()
        runtime.close()
    return {"database": database, **seeded, "kpi_seconds": kpi,
            "first_build_seconds": round(build_seconds, 2), "pages_at_first_start": at_start,
            "pages_after_build": built, "pages_after_restart": after_restart, "restart_console_made_ms": restart_made_ms}


def _report(result: dict[str, Any]) -> None:
    kpi = result["kpi_seconds"]
    print(f"{result['database']}: {result['releases']} releases, {result['history']} history rows, "
          f"{result['records']} records, {result['worklogs']} time entries — kpi {kpi['best']:.2f} s "
          f"(worst of 3: {kpi['worst']:.2f} s; this process's CPU {kpi['cpu']:.2f} s)")
    print(f"  the console's start-up build (overview, then all-time KPIs) finished {result['first_build_seconds']} s "
          "after the console was made")
    shown = {True: "figures", False: "'being computed' page"}
    print("  first start, each page requested at once (nothing built or saved yet):")
    for path, t in result["pages_at_first_start"].items():
        print(f"    {path:<28} {t['ms']:>8.1f} ms (CPU {t['cpu_ms']:>5.1f})   {shown[t['figures']]}")
    print("  after the start-up build, first request and median of the next five:")
    for path, t in result["pages_after_build"].items():
        print(f"    {path:<28} cold {t['cold_ms']:>7.1f} ms (CPU {t['cold_cpu_ms']:>5.1f})   "
              f"warm {t['warm_ms']:>6.1f} ms (CPU {t['warm_cpu_ms']:>5.1f})   {shown[t['figures']]}")
    print(f"  after a restart: the console was made in {result['restart_console_made_ms']} ms (reading the saved views), "
          "then each page requested at once:")
    for path, t in result["pages_after_restart"].items():
        print(f"    {path:<28} {t['ms']:>8.1f} ms (CPU {t['cpu_ms']:>5.1f})   {shown[t['figures']]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="releases (default 10000)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per database")
    args = parser.parse_args()
    databases = ["sqlite"] + (["postgresql"] if os.environ.get("RELBRIDGE_TEST_PG_URL") else [])
    for database in databases:
        result = measure(database, args.n)
        if args.json:
            print(json.dumps(result))
        else:
            _report(result)


if __name__ == "__main__":
    main()
