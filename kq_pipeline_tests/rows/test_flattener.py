"""Compiled row builders: the fast JSON paths (memo, orjson) give exactly the general path's rows."""

from __future__ import annotations

from typing import Any

import pytest

from kq_pipeline.registry import KUBEQUERY_TABLES
from kq_pipeline.rows.flattener import compile_tables
from kq_pipeline.simulator.objects import ClusterSpec, generate_objects


def _table_groups(objects: dict[str, Any]) -> list[tuple[tuple[str, ...], list[dict[str, Any]]]]:
    """Tables over each listed resource, grouped as the native extractor lists them."""
    groups: dict[str, list[str]] = {}
    for name, tbl in KUBEQUERY_TABLES.items():
        resource = tbl.source.resource
        keys = [k for k in objects if resource and k.endswith("/" + resource)]
        if keys:
            groups.setdefault(keys[0], []).append(name)
    return [(tuple(names), objects[key]) for key, names in groups.items()]


@pytest.mark.parametrize(
    "spec",
    [
        ClusterSpec("fast-a", seed=1, pods=400, namespaces=7, k8s_minor=24),
        ClusterSpec("fast-b", seed=2, pods=300, namespaces=5),
        ClusterSpec("fast-c", seed=3, pods=250, namespaces=4, k8s_minor=22),
    ],
    ids=lambda s: s.name,
)
def test_fast_json_paths_equal_the_general_encoders_on_every_table(spec: ClusterSpec) -> None:
    groups = _table_groups(generate_objects(spec))
    assert sum(len(names) for names, _ in groups) >= 48
    for names, objects in groups:
        fast: list[list[dict[str, str]]] = [[] for _ in names]
        general: list[list[dict[str, str]]] = [[] for _ in names]
        for _ in range(2):  # the second pass answers from the memos
            fast = [[] for _ in names]
            compile_tables(names)(objects, fast, "c", "uid", "2024-07-01T12:00:00Z")
        compile_tables(names, general_json=True)(objects, general, "c", "uid", "2024-07-01T12:00:00Z")
        for name, got, want in zip(names, fast, general, strict=True):
            assert got == want, name
        assert sum(map(len, fast)) > 0 or not objects


def test_pod_volumes_read_only_the_source_present() -> None:
    """A volume's columns come from its one source; other sources' columns stay absent."""
    pod = {
        "metadata": {"name": "p", "uid": "u"},
        "spec": {"volumes": [{"name": "v", "hostPath": {"path": "/x", "type": "Directory"}}, {"name": "w"}]},
    }
    out: list[list[dict[str, str]]] = [[]]
    compile_tables(("kubernetes_pod_volumes",))([pod], out, "", "k", "")
    host, bare = out[0]
    assert host["volume_type"] == "host_path"
    assert host["host_path_path"] == "/x"
    assert host["host_path_type"] == "Directory"
    assert "volume_type" not in bare and "host_path_path" not in bare
    assert not any(k.startswith(("nfs_", "rbd_", "secret_")) for k in host)
