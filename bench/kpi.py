"""How long ``relbridge kpi`` and the console's pages take over a large store.

    python bench/kpi.py --n 10000                      # SQLite (a temporary file)
    RELBRIDGE_TEST_PG_URL=postgresql://postgres@127.0.0.1:5432/test python bench/kpi.py --n 10000

Seeds N releases with full history (bench/_records.py: ~6 state moves and a planned-end
row or two each, 3 changes with time logged against each, an incident for ~30 % of
deployed ones) straight into the store,
then times: the KPIs as ``relbridge kpi --format json`` computes them (read + compute +
render; also this process's CPU time, which a busy machine inflates less than wall
time; the database's own work is outside it), and each console page rendered through the receiver app, cold (first request)
and warm (the median of the next five). On PostgreSQL it uses a fresh schema, dropped after.
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


def measure(database: str, n: int) -> dict[str, object]:
    from starlette.testclient import TestClient

    from bridge.config import Config, SyncConfig
    from bridge.daemon.inbox import Inbox
    from bridge.daemon.metrics import Metrics
    from bridge.daemon.receiver import create_app
    from bridge.reports.console import create_console
    from bridge.reports.kpi import kpis_from_store, render_json
    from bridge.runtime import Runtime

    with store_url(database) as url:
        config = Config.model_validate({"store": {"url": url}, "console": {"enabled": True}})
        runtime = Runtime(config)
        seeded = seed_records(runtime.store, n)
        seed_console_extras(runtime.store)
        runs, cpu = [], []
        for _ in range(3):
            start, start_cpu = time.perf_counter(), time.process_time()
            render_json(kpis_from_store(runtime.store, since=None, until=None, now=datetime.now(UTC)))
            runs.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        app = create_app(inbox=Inbox.from_config(runtime.store, SyncConfig()), adapters={}, config=config.webhooks,
                         schemes={}, metrics=Metrics(), console=create_console(runtime, config.console))
        client, pages = TestClient(app), {}
        for path in PAGES:
            times = []
            for _ in range(6):
                start = time.perf_counter()
                client.get(path).raise_for_status()
                times.append(time.perf_counter() - start)
            pages[path] = {"cold_ms": round(times[0] * 1000, 1), "warm_ms": round(statistics.median(times[1:]) * 1000, 1)}
        runtime.close()
    return {"database": database, **seeded, "kpi_seconds": {"best": round(min(runs), 2), "worst": round(max(runs), 2),
                                                            "cpu": round(min(cpu), 2)},
            "pages": pages}


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
            continue
        best, worst = result["kpi_seconds"]["best"], result["kpi_seconds"]["worst"]  # type: ignore[index]
        print(f"{database}: {result['releases']} releases, {result['history']} history rows, "
              f"{result['records']} records, {result['worklogs']} time entries — kpi {best:.2f} s (worst of 3: {worst:.2f} s; "
              f"this process's CPU {result['kpi_seconds']['cpu']:.2f} s)")  # type: ignore[index]
        for path, t in result["pages"].items():  # type: ignore[union-attr]
            print(f"  {path:<28} cold {t['cold_ms']:>7.1f} ms   warm {t['warm_ms']:>6.1f} ms")


if __name__ == "__main__":
    main()
