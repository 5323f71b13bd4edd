"""Row building needs no process-wide lock: threads that compile and build at the same time get the
rows one thread gets alone.

Extraction lists several resources at once, and each list thread builds its pages' rows. The row
builders compile generated code on first use (Go type encoders, fast-path checkers, table builders)
and keep memo caches per column, all shared by the threads. The test runs in a fresh interpreter so
every compilation starts cold, with a tiny switch interval so threads interleave inside compilation.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, random, sys, threading
    from collections import defaultdict
    from kq_pipeline.registry import KUBEQUERY_TABLES
    from kq_pipeline.rows import rows_for_tables
    from kq_pipeline.simulator.objects import ClusterSpec, generate_objects

    generated = generate_objects(ClusterSpec(name="t", seed=7, pods=300, namespaces=4))
    by_source = defaultdict(list)
    for t in KUBEQUERY_TABLES.values():
        s = t.source
        if s.resource and s.group_version:
            by_source[f"{s.group_version.removeprefix('core/')}/{s.resource}"].append(t.name)
    # each source's table set (as extraction builds them) and each of its tables alone (as kubequery_rows)
    jobs = [(key, tuple(names)) for key, names in sorted(by_source.items()) if generated.get(key)]
    jobs += [(key, (name,)) for key, names in jobs if len(names) > 1 for name in names]

    def build(key, names):
        return rows_for_tables(names, generated[key], cluster_name="t", cluster_uid="u", now=NOW)

    from datetime import UTC, datetime
    NOW = datetime(2026, 1, 1, tzinfo=UTC)
    sys.setswitchinterval(1e-6)
    results, errors = [{} for _ in range(6)], []

    def worker(i):
        order = jobs[:]
        random.Random(i).shuffle(order)
        try:
            for key, names in order:
                results[i][(key, names)] = build(key, names)
        except BaseException as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sys.setswitchinterval(0.005)
    alone = {(key, names): build(key, names) for key, names in jobs}
    differing = sorted({str(job) for r in results for job in alone if r.get(job) != alone[job]})
    rows = sum(len(v) for built in alone.values() for v in built.values())
    print(json.dumps({"errors": errors, "differing": differing, "jobs": len(jobs), "rows": rows}))
    """
)


def test_threads_building_rows_from_a_cold_start_get_the_rows_one_thread_gets() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["errors"] == []
    assert report["differing"] == []
    assert report["jobs"] >= 50 and report["rows"] > 1000  # the run covered most tables, not a few rows
