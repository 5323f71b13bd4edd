"""Case 8: each speed mechanism on and off, in the same run, so each shows what it earns.

The workload is the hot path those mechanisms serve: list a simulated cluster's pods and build the
rows of the three tables they feed (pods, pod containers, pod volumes), in a fresh child process per
sample (`python -m benchmarks.mechanisms`), the variants interleaved so that machine noise hits them
alike. Every sample builds rows in the polling process only (`KQ_ROW_WORKERS=0`; the row workers'
own on/off is case 1's), so a mechanism turned off in that process is off for every page. The child
turns one mechanism off by replacing it with the plain code it stands for:

- `list_meta`: read each page's continue token by parsing the whole page (`orjson.loads`);
- `gc_pause`: parse pages with the cyclic GC running;
- `memo`: no memoising renderers (every value through the general Go encoder).

(The `gofast` orjson fast path for memo misses was measured here at 1.03-1.04 x CPU on pods and on
all 51 tables, under the 1.05 x bar, and removed.)

It also times the simulator generating a cluster with and without its GC pause (same module, one
implementation). Reported: pods/s of wall time and CPU seconds of the child per variant, and the
on/off ratio per mechanism (CPU and wall; > 1 means the mechanism earns its place).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from benchmarks.child import run_child
from benchmarks.large_cluster import POD_TABLES
from benchmarks.sizes import Sizes
from benchmarks.stats import CaseResult, Target, ratio_samples

REPO = Path(__file__).resolve().parents[1]
CLUSTER = "mechanisms"
MECHANISMS = ("list_meta", "gc_pause", "memo")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _turn_off(mechanism: str) -> None:
    """Replace one mechanism with the plain code it stands for (before anything is compiled)."""
    if mechanism == "list_meta":
        import orjson

        from kq_pipeline.kube import client

        def continue_token(body: bytes) -> str | None:
            token = (orjson.loads(body).get("metadata") or {}).get("continue")
            return token or None

        client.continue_token = continue_token
    elif mechanism == "gc_pause":
        from kq_pipeline.extract import row_workers
        from kq_pipeline.kube import client, list_meta

        for module in (client, list_meta, row_workers):
            module.gc_paused = nullcontext  # type: ignore[attr-defined]
    elif mechanism == "memo":
        from kq_pipeline.rows import flattener, gojson

        def plain_encoder(go_type: str, on_disable: Any = None) -> Any:
            raw, escape = gojson.value_encoder(go_type), gojson.escape_html
            return lambda value: escape(raw(value))

        flattener.memo_encoder = plain_encoder
    elif mechanism != "none":
        raise ValueError(f"unknown mechanism {mechanism!r}")


def measure_pods(kubeconfig: str, off: str) -> dict[str, Any]:
    """List the pods and build their three tables' rows in this (fresh) process, one mechanism off."""
    from kq_pipeline.extract.native import extract_cluster
    from kq_pipeline.kube.kubeconfig import access_from_kubeconfig

    _turn_off(off)
    access = access_from_kubeconfig(kubeconfig, CLUSTER)
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    extract = extract_cluster(access, CLUSTER, POD_TABLES, concurrency=4, page_limit=500)
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    failed = {t: e.error for t, e in extract.tables.items() if e.rows is None}
    if failed:
        raise RuntimeError(f"extraction failed: {failed}")
    return {"wall_s": wall, "cpu_s": cpu, "pods": extract.tables["kubernetes_pods"].objects}


def measure_generate(pods: int, paused: bool) -> dict[str, Any]:
    """The simulator generating one cluster's objects, with or without its GC pause."""
    from kq_pipeline.simulator import objects
    from kq_pipeline.simulator.objects import ClusterSpec, generate_objects

    if not paused:
        objects.gc_paused = nullcontext  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    generate_objects(ClusterSpec("gen", seed=3, pods=pods, namespaces=20))
    return {"wall_s": time.perf_counter() - t0}


def _child_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--kubeconfig")
    p.add_argument("--off", default="none")
    p.add_argument("--generate", type=int, help="time the simulator generating this many pods instead")
    p.add_argument("--no-pause", action="store_true")
    args = p.parse_args(argv)
    if args.generate:
        out = measure_generate(args.generate, paused=not args.no_pause)
    else:
        out = measure_pods(args.kubeconfig, args.off)
    print(json.dumps(out))
    return 0


def _child(*flags: str) -> dict[str, Any]:
    return run_child("benchmarks.mechanisms", *flags, env={"KQ_ROW_WORKERS": "0"})


def run(dsn: str, sizes: Sizes, work_dir: Path) -> CaseResult:
    from kq_pipeline.simulator.objects import ClusterSpec
    from kq_pipeline.simulator.process import serve_fleet_process

    spec = ClusterSpec(CLUSTER, seed=5, pods=sizes.mechanism_pods, namespaces=20)
    result = CaseResult(
        "8-mechanisms",
        "each speed mechanism on and off (pods list + rows, fresh process per sample, interleaved)",
        params={"pods": spec.pods, "repeats": sizes.mechanism_repeats, "row_workers": 0},
    )
    kubeconfig = work_dir / "mechanisms-kubeconfig.yaml"
    variants = ("none", *MECHANISMS)
    samples: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    with serve_fleet_process([spec], kubeconfig):
        _child("--kubeconfig", str(kubeconfig))  # warm-up: the simulator's first responses, disk caches
        for _ in range(sizes.mechanism_repeats):
            for variant in variants:
                samples[variant].append(_child("--kubeconfig", str(kubeconfig), "--off", variant))
    base_cpu = [s["cpu_s"] for s in samples["none"]]
    base_wall = [s["wall_s"] for s in samples["none"]]
    result.add("all on: pods list + rows", "pods/s", [s["pods"] / s["wall_s"] for s in samples["none"]])
    result.add("all on: CPU", "s", base_cpu)
    for mechanism in MECHANISMS:
        off = samples[mechanism]
        result.add(f"{mechanism} off: pods list + rows", "pods/s", [s["pods"] / s["wall_s"] for s in off])
        gain = result.add(
            f"{mechanism}: on/off gain, CPU",
            "x",
            ratio_samples([s["cpu_s"] for s in off], base_cpu),
            note="CPU of the off variant / CPU with every mechanism on",
        )
        result.add(
            f"{mechanism}: on/off gain, wall", "x", ratio_samples([s["wall_s"] for s in off], base_wall)
        )
        result.targets.append(Target(f"{mechanism} earns its place (CPU on/off)", gain.median, 1.05, "x"))
    generated = {paused: [] for paused in (True, False)}
    for _ in range(sizes.mechanism_repeats):
        for paused in (True, False):
            flags = ["--generate", str(sizes.mechanism_pods)] + ([] if paused else ["--no-pause"])
            generated[paused].append(_child(*flags)["wall_s"])
    result.add("simulator: generate cluster, GC paused", "s", generated[True])
    result.add("simulator: generate cluster, GC running", "s", generated[False])
    sim_gain = result.add(
        "simulator GC pause: on/off gain", "x", ratio_samples(generated[False], generated[True])
    )
    result.targets.append(Target("simulator GC pause earns its place", sim_gain.median, 1.05, "x"))
    return result


if __name__ == "__main__":
    sys.exit(_child_main())
