"""`python -m benchmarks [--quick] [--case N ...]`: run the cases, print medians and ratios, write JSON.

Every case builds its own data with the simulator and works in its own scratch database of the
benchmark's own embedded PostgreSQL (a temporary data directory unless --data-dir is given).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import (
    access,
    cluster_cost,
    custom_resources,
    fleet_dagster,
    fleet_deployment,
    fleet_queries,
    history,
    large_cluster,
    load_path,
    mechanisms,
)
from benchmarks.database import bench_server, scratch_database
from benchmarks.machine import load_average, machine_info
from benchmarks.sizes import FULL, QUICK, Sizes
from benchmarks.stats import CaseResult, format_table

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "latest.json"
Case = Callable[[str, Sizes, Path], CaseResult]
CASES: dict[str, tuple[str, Case]] = {
    "1": ("kqbench_large", large_cluster.run),
    "2": ("kqbench_load", load_path.run),
    "3": ("kqbench_fleet", fleet_dagster.run),
    "3p": ("kqbench_fleet_pg", fleet_dagster.run_postgres_storage),
    "4": ("kqbench_queries", fleet_queries.run),
    "5": ("kqbench_thousand", fleet_dagster.run_thousand),
    "6": ("kqbench_cost", cluster_cost.run),
    "7": ("kqbench_deploy", fleet_deployment.run),
    "8": ("kqbench_mechanisms", mechanisms.run),
    "9": ("kqbench_custom", custom_resources.run),
    "10": ("kqbench_history", history.run),
    "11": ("kqbench_access", access.run),
}


def run_cases(
    cases: Sequence[str],
    sizes: Sizes,
    *,
    server_dsn: str | None = None,
    data_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the chosen cases against one server; returns the JSON-ready report."""
    info = machine_info()
    results: list[CaseResult] = []
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kq-bench-") as tmp:
        work = Path(tmp)
        with bench_server(data_dir or work, server_dsn) as server:
            for key in cases:
                db_name, case = CASES[key]
                log(f"case {key}: running ... (load average {load_average():.1f})")
                before = load_average()
                c0 = time.perf_counter()
                try:
                    with scratch_database(server, f"{db_name}_{os.getpid()}") as dsn:
                        result = case(dsn, sizes, work)
                except Exception as exc:  # report the other cases anyway, and this one as failed
                    log(f"case {key}: FAILED: {type(exc).__name__}: {exc}")
                    result = CaseResult(
                        f"{key}-failed", "case failed", notes=[f"{type(exc).__name__}: {exc}"]
                    )
                    result.params["error"] = True
                result.load = {"before": before, "after": load_average()}
                result.params["case_seconds"] = round(time.perf_counter() - c0, 1)
                results.append(result)
                log(f"case {key}: done in {result.params['case_seconds']}s")
    info["load_average_end"] = os.getloadavg()
    return {
        "started_at": started.isoformat(timespec="seconds"),
        "total_seconds": round(time.perf_counter() - t0, 1),
        "machine": info,
        "sizes": sizes.__dict__,
        "cases": [r.to_json() for r in results],
        "table": format_table(results),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke sizes (seconds, not minutes)")
    p.add_argument("--case", action="append", choices=sorted(CASES), help="run only this case (repeatable)")
    p.add_argument("--repeats", type=int, help="repeats per case (default 3; quick 2)")
    p.add_argument("--fleet-repeats", type=int, help="full fleet refreshes in case 3 (default 1; quick 2)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON report (default {DEFAULT_OUT})")
    p.add_argument("--data-dir", type=Path, help="keep the embedded PostgreSQL here (default: a temp dir)")
    p.add_argument("--dsn", help="use this PostgreSQL server instead of an embedded one (needs CREATEDB)")
    args = p.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.repeats:
        sizes = replace(sizes, repeats=args.repeats)
    if args.fleet_repeats:
        sizes = replace(sizes, fleet_repeats=args.fleet_repeats)
    report = run_cases(args.case or sorted(CASES), sizes, server_dsn=args.dsn, data_dir=args.data_dir)
    print(report["table"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten {args.out} (total {report['total_seconds']}s)", file=sys.stderr)
    return 1 if any(c["params"].get("error") for c in report["cases"]) else 0
