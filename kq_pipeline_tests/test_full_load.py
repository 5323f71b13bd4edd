"""Loading a simulated cluster fills every fleet table (kubequery's 51 and the two custom-resource
tables) with exactly the rows its objects call for.

The expected counts are computed here from the simulator's objects with kubequery's fan-out rules
(one row per object, container, volume, rule, subject, ...), independently of the row builders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from kq_pipeline import inventory
from kq_pipeline.refresh import RefreshSettings, refresh_clusters
from kq_pipeline.registry import CUSTOM_RESOURCES_TABLE, TABLES
from kq_pipeline.simulator import serve_fleet
from kq_pipeline.simulator.catalog import Catalog
from kq_pipeline.simulator.objects import OPERATORS, ClusterSpec, custom_counts

Obj = dict[str, Any]


def _pod_spec(obj: Obj, table: str) -> Obj:
    if table.startswith("kubernetes_pod_template"):
        return obj["template"]["spec"]
    if table.startswith("kubernetes_pod"):
        return obj["spec"]
    return obj["spec"]["template"]["spec"]


def _containers(table: str) -> Callable[[Obj], int]:
    def count(obj: Obj) -> int:
        spec = _pod_spec(obj, table)
        return sum(len(spec.get(k) or []) for k in ("initContainers", "containers", "ephemeralContainers"))

    return count


def _volumes(table: str) -> Callable[[Obj], int]:
    return lambda obj: len(_pod_spec(obj, table).get("volumes") or [])


def _items(*path: str) -> Callable[[Obj], int]:
    def count(obj: Obj) -> int:
        value: Any = obj
        for key in path:
            value = (value or {}).get(key)
        return len(value or [])

    return count


FAN_OUT: dict[str, Callable[[Obj], int]] = {
    "kubernetes_mutating_webhooks": _items("webhooks"),
    "kubernetes_validating_webhooks": _items("webhooks"),
    "kubernetes_component_statuses": _items("conditions"),
    "kubernetes_endpoint_subsets": _items("subsets"),
    "kubernetes_limit_ranges": _items("spec", "limits"),
    "kubernetes_network_policies": lambda o: _items("spec", "ingress")(o) + _items("spec", "egress")(o),
    "kubernetes_cluster_role_binding_subjects": _items("subjects"),
    "kubernetes_role_binding_subjects": _items("subjects"),
    "kubernetes_cluster_role_policy_rules": _items("rules"),
    "kubernetes_role_policy_rules": _items("rules"),
    "kubernetes_csi_node_drivers": _items("spec", "drivers"),
}


def _source_objects(objects: dict[str, Any], table: str) -> list[Obj]:
    source = TABLES[table].source
    prefix = "v1/" if source.api_group == "core" else f"{source.api_group}/"
    keys = [k for k in objects if k.startswith(prefix) and k.rsplit("/", 1)[1] == source.resource]
    return objects[keys[0]] if keys else []  # a kind served at two versions: same objects


def expected_rows(objects: dict[str, Any], table: str, catalog: Catalog, spec: ClusterSpec) -> int:
    if table == "kubernetes_info":
        return 1
    if table == "kubernetes_api_resources":
        return sum(1 + len(t.subresources) for t in catalog.types)
    if table == CUSTOM_RESOURCES_TABLE:  # each kind once, at its preferred version
        return sum(custom_counts(spec).values())
    source = _source_objects(objects, table)
    row_per = TABLES[table].row_per
    if row_per == "container":
        return sum(map(_containers(table), source))
    if row_per == "volume":
        return sum(map(_volumes(table), source))
    if table in FAN_OUT:
        return sum(map(FAN_OUT[table], source))
    return len(source)


SPECS = {
    minor: ClusterSpec(
        name="full", seed=21, pods=120, namespaces=6, k8s_minor=minor, operators=OPERATORS, custom_objects=90
    )
    for minor in (29, 24)
}


@pytest.fixture(params=[29, 24], ids=["k8s-1.29", "k8s-1.24"])
def fleet(request: pytest.FixtureRequest) -> Iterator:
    with serve_fleet([SPECS[request.param]]) as f:
        yield f


def test_every_table_holds_exactly_the_rows_the_cluster_objects_call_for(
    fleet, pg_dsn: str, tmp_path
) -> None:
    sim = fleet.clusters["full"]
    minor = sim.catalog.minor
    kubeconfig = fleet.write_kubeconfig(tmp_path / "k.yaml")
    with psycopg.connect(pg_dsn) as conn:
        inventory.upsert_clusters(conn, inventory.clusters_from_kubeconfig(kubeconfig))

    (outcome,) = refresh_clusters(pg_dsn, ["full"], list(TABLES), run_id="full", settings=RefreshSettings())

    assert outcome.ok, (outcome.error, outcome.failed_tables)
    with psycopg.connect(pg_dsn) as conn:
        loaded = {
            t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0]
            for t in TABLES
        }
    expected = {t: expected_rows(sim.objects, t, sim.catalog, SPECS[minor]) for t in TABLES}
    assert loaded == expected
    assert loaded["kubernetes_pods"] == 120
    assert all(n > 0 for t, n in loaded.items() if t != "kubernetes_pod_security_policies")
    assert (loaded["kubernetes_pod_security_policies"] > 0) == (minor < 25)
