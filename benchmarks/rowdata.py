"""kubequery rows of simulated clusters built directly from generated objects (no HTTP): for the cases
that measure the database side only."""

from __future__ import annotations

from collections.abc import Sequence

from kq_pipeline.rows import Row, rows_for_tables
from kq_pipeline.simulator.objects import ClusterSpec, generate_objects

SOURCES = {
    "v1/pods": ("kubernetes_pods", "kubernetes_pod_containers"),
    "v1/nodes": ("kubernetes_nodes",),
}


def cluster_rows(spec: ClusterSpec, tables: Sequence[str]) -> dict[str, list[Row]]:
    """Rows of the wanted pod/node tables of one simulated cluster."""
    objects = generate_objects(spec)
    uid = f"uid-{spec.name}"
    out: dict[str, list[Row]] = {}
    for key, names in SOURCES.items():
        wanted = [t for t in names if t in tables]
        if wanted:
            out.update(rows_for_tables(wanted, objects[key], cluster_name=spec.name, cluster_uid=uid))
    del objects
    return out
