"""`kq demo`: a simulated fleet, the embedded PostgreSQL and the Dagster UI, from one command.

The fleet runs in a child process (so serving it does not compete with loading for the GIL) and
writes a kubeconfig under $KQ_HOME/demo; the clusters are registered from it, loaded once through
the same Dagster job as everything else, and then `dagster dev` serves the UI, schedule and sensor
until Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable

from kq_pipeline.settings import dagster_home, kq_home

# Varied sizes, so the UI's charts and the fleet queries have something to compare.
DEMO_FLEET: tuple[tuple[int, int], ...] = ((60, 4), (150, 6), (300, 8), (600, 12), (1200, 20))

QUERY_HINTS = """
Data for {n} simulated clusters is in PostgreSQL. Query it with:

  psql '{dsn}'

  -- namespaces and pods per cluster
  select cluster_name, count(distinct namespace) ns_count, count(*) pod_cnt
  from kubernetes_pods group by cluster_name;

  -- most used container images
  select image, count(*) from kubernetes_pod_containers group by image order by 2 desc limit 10;
"""


def demo_specs(clusters: int) -> list:
    from kq_pipeline.simulator.objects import ClusterSpec

    sizes = [DEMO_FLEET[i % len(DEMO_FLEET)] for i in range(clusters)]
    return [
        ClusterSpec(name=f"demo-{i}", seed=100 + i, pods=p, namespaces=ns) for i, (p, ns) in enumerate(sizes)
    ]


def run_demo(*, clusters: int, ui: bool, port: int, kq: Callable[[list[str]], int]) -> int:
    """`kq` runs a kq sub-command in this process (cli.main), so the demo is made of ordinary commands."""
    from kq_pipeline.db.connection import masked_dsn, resolve_dsn
    from kq_pipeline.simulator.process import serve_fleet_process

    kubeconfig = kq_home() / "demo" / "kubeconfig.yaml"
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    print(f"starting {clusters} simulated clusters ...", flush=True)
    with serve_fleet_process(demo_specs(clusters), kubeconfig) as fleet:
        for name, url in fleet.urls.items():
            print(f"  {name}  {url}")
        for step in (["db", "init"], ["clusters", "add", "--kubeconfig", str(kubeconfig)], ["load"]):
            code = kq(step)
            if code != 0:
                return code
        print(QUERY_HINTS.format(n=clusters, dsn=masked_dsn(resolve_dsn())), flush=True)
        if not ui:
            return 0
        return _serve_ui(port)


def _serve_ui(port: int) -> int:
    """Run `dagster dev` (webserver + daemon) on 127.0.0.1 until Ctrl-C, in its own process group."""
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home())}
    cmd = [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port)]
    # warning level: the query hints printed above stay readable under the services' start-up logs
    cmd += ["--log-level", "warning", "-m", "kq_pipeline.definitions"]
    print(f"Dagster UI: http://127.0.0.1:{port}  (Ctrl-C stops the UI and the simulated fleet)", flush=True)
    # cwd: dagster dev warns about any dagster.yaml in the current folder that DAGSTER_HOME doesn't use.
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, cwd=dagster_home())
    try:
        return proc.wait()
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        return 0
