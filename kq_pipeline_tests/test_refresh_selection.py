"""What a cluster collects, applied by the refresh: excluded tables are never listed and are emptied
for the cluster ('excluded' in kq_meta.loads), only selected custom kinds are stored, and rows of excluded
namespaces are dropped from every table with a namespace column (their objects are still listed)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from kq_pipeline import inventory
from kq_pipeline.collect import Collect
from kq_pipeline.refresh import RefreshSettings, refresh_clusters
from kq_pipeline.registry import CUSTOM_RESOURCES_TABLE as CRS
from kq_pipeline.registry import TABLES
from kq_pipeline.simulator import Fleet, SimulatedCluster, serve_fleet
from kq_pipeline.simulator.objects import ClusterSpec

SPEC = ClusterSpec(
    "sel", seed=4, pods=30, namespaces=6, operators=("cert-manager", "istio"), custom_objects=60
)


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with serve_fleet([SPEC]) as f:
        yield f


@pytest.fixture
def sim(fleet: Fleet) -> SimulatedCluster:
    return fleet.clusters["sel"]


@pytest.fixture
def dsn(fleet: Fleet, pg_dsn: str, tmp_path: Path) -> str:
    with psycopg.connect(pg_dsn) as conn:
        inventory.upsert_clusters(
            conn, inventory.clusters_from_kubeconfig(fleet.write_kubeconfig(tmp_path / "k"))
        )
    return pg_dsn


def select(dsn: str, collect: Collect) -> None:
    with psycopg.connect(dsn) as conn:
        cluster = inventory.get_cluster(conn, "sel")
        assert cluster is not None
        inventory.upsert_clusters(conn, [replace(cluster, collect=collect)])


def refresh(dsn: str, run_id: str) -> None:
    (outcome,) = refresh_clusters(dsn, ["sel"], list(TABLES), run_id=run_id, settings=RefreshSettings())
    assert outcome.ok, (outcome.error, outcome.failed_tables)


def rows(dsn: str, table: str, where: str = "TRUE") -> int:
    query = sql.SQL("SELECT count(*) FROM {} WHERE cluster_name = 'sel' AND {}").format(
        sql.Identifier(table), sql.SQL(where)
    )
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchone()[0]


def loads(dsn: str, run_id: str) -> dict[str, tuple[str, str | None]]:
    with psycopg.connect(dsn) as conn:
        got = conn.execute(
            "SELECT table_name, status, note FROM kq_meta.loads WHERE run_id = %s", (run_id,)
        ).fetchall()
    return {t: (status, note) for t, status, note in got}


def lists(sim: SimulatedCluster) -> set[str]:
    """The list requests the cluster served (not discovery, not the kube-system GET)."""
    resources = {t.resource for t in sim.catalog.types}
    return {r.removeprefix("GET ") for r in sim.request_log if r.rsplit("/", 1)[-1] in resources}


def test_an_excluded_table_is_not_listed_and_its_previous_rows_are_deleted(
    dsn: str, sim: SimulatedCluster
) -> None:
    refresh(dsn, "r1")
    assert rows(dsn, "kubernetes_secrets") > 0 and "/api/v1/secrets" in lists(sim)
    select(dsn, Collect(tables=("!kubernetes_secrets",)))
    sim.request_log.clear()

    refresh(dsn, "r2")

    assert "/api/v1/secrets" not in lists(sim)  # no API call at all
    assert not [r for r in sim.request_log if "secrets" in r]
    assert rows(dsn, "kubernetes_secrets") == 0
    status, note = loads(dsn, "r2")["kubernetes_secrets"]
    assert status == "excluded" and note is not None
    assert (
        note.startswith("excluded by the cluster's selection (collect.tables); its ")
        and "previous rows deleted" in note
    )
    assert rows(dsn, "kubernetes_pods") == SPEC.pods and len(loads(dsn, "r2")) == len(TABLES)

    refresh(dsn, "r3")  # still excluded: nothing left to delete
    assert loads(dsn, "r3")["kubernetes_secrets"] == (
        "excluded",
        "excluded by the cluster's selection (collect.tables)",
    )


def test_an_include_list_lists_only_those_tables(dsn: str, sim: SimulatedCluster) -> None:
    select(dsn, Collect(tables=("kubernetes_pods", "kubernetes_namespaces")))
    sim.request_log.clear()
    refresh(dsn, "r1")
    assert lists(sim) == {"/api/v1/pods", "/api/v1/namespaces"}
    statuses = {t: s for t, (s, _) in loads(dsn, "r1").items()}
    assert {t for t, s in statuses.items() if s == "success"} == {"kubernetes_pods", "kubernetes_namespaces"}
    assert set(statuses.values()) == {"success", "excluded"} and len(statuses) == len(TABLES)


def test_excluding_the_custom_resource_table_lists_no_custom_kind(dsn: str, sim: SimulatedCluster) -> None:
    select(dsn, Collect(tables=("!kubernetes_custom_resources",)))
    sim.request_log.clear()
    refresh(dsn, "r1")
    assert not [p for p in lists(sim) if "cert-manager.io" in p or "istio" in p]
    assert "/apis/apiextensions.k8s.io/v1/customresourcedefinitions" in lists(sim)  # the CRD table is kept
    assert rows(dsn, "kubernetes_custom_resource_definitions") == 4 and rows(dsn, CRS) == 0


def test_only_selected_custom_kinds_are_stored_and_deselected_ones_leave(
    dsn: str, sim: SimulatedCluster
) -> None:
    refresh(dsn, "r1")
    assert rows(dsn, CRS, "kind = 'VirtualService'") > 0
    select(dsn, Collect(custom_kinds=("cert-manager.io/*", "!cert-manager.io/Issuer")))
    sim.request_log.clear()

    refresh(dsn, "r2")

    with psycopg.connect(dsn) as conn:
        kinds = {k for (k,) in conn.execute(f"SELECT DISTINCT kind FROM {CRS}").fetchall()}
    assert kinds == {"Certificate", "ClusterIssuer"}
    assert not [p for p in lists(sim) if "istio" in p or p.endswith("/issuers")]
    assert "2 custom kind(s) not selected (collect.custom_kinds)" in (loads(dsn, "r2")[CRS][1] or "")


def test_rows_of_excluded_namespaces_are_not_stored_in_any_namespaced_table(
    dsn: str, sim: SimulatedCluster
) -> None:
    refresh(dsn, "r1")
    assert rows(dsn, "kubernetes_pods", "namespace = 'kube-system'") > 0
    assert rows(dsn, CRS, "namespace = 'payments'") > 0
    select(dsn, Collect(exclude_namespaces=("kube-system", "pay*")))

    refresh(dsn, "r2")

    for table in (
        "kubernetes_pods",
        "kubernetes_pod_containers",
        "kubernetes_config_maps",
        "kubernetes_events",
        CRS,
    ):
        assert rows(dsn, table, "namespace IN ('kube-system', 'payments')") == 0, table
    assert rows(dsn, "kubernetes_pods") > 0 and rows(dsn, CRS, "namespace = 'ingress-nginx'") > 0
    assert rows(dsn, CRS, "namespace = ''") > 0  # cluster-scoped objects have no namespace to exclude
    assert rows(dsn, "kubernetes_namespaces", "name = 'kube-system'") == 1  # the namespace itself stays
    status, note = loads(dsn, "r2")["kubernetes_pods"]
    assert (
        status == "success"
        and "row(s) of excluded namespaces not stored (collect.exclude_namespaces)" in (note or "")
    )
    assert "/api/v1/pods" in lists(sim)  # still listed: one list serves every namespace
