"""Custom resources end to end: a simulated fleet over HTTPS, refresh, PostgreSQL.

Acceptance of issue 15's load semantics: every served custom object of every cluster and every CRD
is in the database; a removed CRD's objects disappear at the next refresh; a kind that fails (403, over
the object limit) keeps its previous rows while the other kinds are refreshed, and the load says so;
a CRD not yet established is skipped with a note; JSON columns are jsonb and queryable.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from kq_pipeline import inventory
from kq_pipeline.collect import Collect, not_collected
from kq_pipeline.refresh import RefreshSettings, refresh_clusters
from kq_pipeline.registry import CUSTOM_RESOURCE_DEFINITIONS_TABLE as CRDS
from kq_pipeline.registry import CUSTOM_RESOURCES_TABLE as CRS
from kq_pipeline.registry import PROJECT_TABLES, TABLES
from kq_pipeline.simulator import Fleet, serve_fleet
from kq_pipeline.simulator.objects import CUSTOM_KINDS, OPERATORS, ClusterSpec, custom_counts
from kq_pipeline.simulator.objects.custom import KINDS

SPECS = [
    ClusterSpec("ops-a", seed=1, pods=20, namespaces=3, operators=OPERATORS, custom_objects=120),
    ClusterSpec(
        "ops-b", seed=2, pods=10, namespaces=2, operators=("cert-manager", "istio"), custom_objects=40
    ),
    ClusterSpec(
        "ops-c",
        seed=3,
        pods=10,
        namespaces=2,
        operators=("argocd", "prometheus-operator"),
        custom_objects=30,
        pending_crds=("applications.argoproj.io",),
    ),
]
BY_NAME = {s.name: s for s in SPECS}
CERTS = ("cert-manager.io", "Certificate")


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with serve_fleet(SPECS) as f:
        yield f


@pytest.fixture
def dsn(fleet: Fleet, pg_dsn: str, tmp_path: Path) -> str:
    kubeconfig = fleet.write_kubeconfig(tmp_path / "k.yaml")
    with psycopg.connect(pg_dsn) as conn:
        inventory.upsert_clusters(conn, inventory.clusters_from_kubeconfig(kubeconfig))
    return pg_dsn


def refresh(dsn: str, names: list[str], tables: list[str] | None = None, run_id: str = "r") -> None:
    outcomes = refresh_clusters(dsn, names, tables or list(TABLES), run_id=run_id, settings=RefreshSettings())
    assert all(o.ok for o in outcomes), [(o.cluster, o.error, o.failed_tables) for o in outcomes]


def query(dsn: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


def counts(dsn: str, cluster: str) -> dict[tuple[str, str], int]:
    rows = query(
        dsn, f"SELECT api_group, kind, count(*) FROM {CRS} WHERE cluster_name = %s GROUP BY 1, 2", (cluster,)
    )
    return {(g, k): n for g, k, n in rows}


def expected(spec: ClusterSpec) -> dict[tuple[str, str], int]:
    return {(key.split("/")[0], CUSTOM_KINDS[key][0]): n for key, n in custom_counts(spec).items()}


def uids(dsn: str, cluster: str, kind: tuple[str, str]) -> set[str]:
    sql = f"SELECT uid FROM {CRS} WHERE cluster_name = %s AND api_group = %s AND kind = %s"
    return {u for (u,) in query(dsn, sql, (cluster, *kind))}


def latest_load(dsn: str, cluster: str, table: str) -> tuple[str, int, str | None]:
    sql = "SELECT status, rows_loaded, note FROM kq_latest_loads WHERE cluster_name = %s AND table_name = %s"
    (row,) = query(dsn, sql, (cluster, table))
    return row


def test_every_custom_object_and_every_crd_of_the_fleet_is_loaded(fleet: Fleet, dsn: str) -> None:
    refresh(dsn, list(BY_NAME))
    for spec in SPECS:
        assert counts(dsn, spec.name) == expected(spec), spec.name
        crds = query(dsn, f"SELECT name FROM {CRDS} WHERE cluster_name = %s ORDER BY name", (spec.name,))
        assert [n for (n,) in crds] == sorted(k.crd_name for k in KINDS if k.operator in spec.operators)
    assert latest_load(dsn, "ops-c", CRS)[2] == (
        "argoproj.io/Application: CRD applications.argoproj.io not established (Installing): skipped"
    )
    established = (
        f"SELECT cluster_name, established FROM {CRDS} WHERE name = 'applications.argoproj.io' ORDER BY 1"
    )
    assert query(dsn, established) == [("ops-a", 1), ("ops-c", 0)]


def test_json_columns_are_jsonb_and_queryable(fleet: Fleet, dsn: str) -> None:
    refresh(dsn, ["ops-a"])
    types = dict(
        query(
            dsn,
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s",
            (CRS,),
        )
    )
    assert {
        c: types[c] for c in ("labels", "annotations", "owner_references", "spec", "status", "extra")
    } == dict.fromkeys(("labels", "annotations", "owner_references", "spec", "status", "extra"), "jsonb")
    certs = fleet.clusters["ops-a"].objects["cert-manager.io/v1/certificates"]
    got = query(
        dsn,
        f"SELECT namespace, name, spec->>'secretName' FROM {CRS} WHERE kind = 'Certificate' ORDER BY 1, 2",
    )
    assert got == sorted(
        (c["metadata"]["namespace"], c["metadata"]["name"], c["spec"]["secretName"]) for c in certs
    )
    not_ready = query(
        dsn,
        f"SELECT count(*) FROM {CRS} WHERE kind = 'Certificate' "
        'AND status->\'conditions\' @> \'[{"type": "Ready", "status": "False"}]\'',
    )
    assert 0 < not_ready[0][0] < len(certs)
    cluster_scoped = query(dsn, f"SELECT DISTINCT namespace FROM {CRS} WHERE kind = 'ClusterIssuer'")
    assert cluster_scoped == [("",)]
    running = query(dsn, f"SELECT count(*) FROM {CRS} WHERE kind = 'Application' AND extra ? 'operation'")
    apps = fleet.clusters["ops-a"].objects["argoproj.io/v1alpha1/applications"]
    assert running == [(sum(1 for a in apps if "operation" in a),)]


def test_a_removed_crd_takes_its_objects_out_at_the_next_refresh(fleet: Fleet, dsn: str) -> None:
    refresh(dsn, ["ops-a", "ops-b"], run_id="r1")
    assert uids(dsn, "ops-a", CERTS)
    fleet.clusters["ops-a"].remove_crd("certificates.cert-manager.io")
    refresh(dsn, ["ops-a", "ops-b"], run_id="r2")
    assert CERTS not in counts(dsn, "ops-a")
    left = expected(BY_NAME["ops-a"])
    del left[CERTS]
    assert counts(dsn, "ops-a") == left
    assert counts(dsn, "ops-b") == expected(BY_NAME["ops-b"])  # its Certificates are not touched
    crds = query(dsn, f"SELECT name FROM {CRDS} WHERE cluster_name = 'ops-a'")
    assert ("certificates.cert-manager.io",) not in crds and len(crds) == len(KINDS) - 1


def test_a_403_on_one_kind_keeps_its_previous_rows_and_refreshes_the_others(fleet: Fleet, dsn: str) -> None:
    refresh(dsn, ["ops-a"], run_id="r1")
    before = uids(dsn, "ops-a", CERTS)
    issuers_before = uids(dsn, "ops-a", ("cert-manager.io", "Issuer"))
    sim = fleet.clusters["ops-a"]
    sim.faults.fail_page("certificates.cert-manager.io", 1, code=403)
    issuers = sim.catalog.lookup("cert-manager.io", "v1", "issuers")
    assert issuers is not None
    sim.store.delete(
        issuers,
        *next(  # one Issuer goes away: the refreshed kinds must show it
            (o["metadata"]["namespace"], o["metadata"]["name"])
            for o in sim.objects["cert-manager.io/v1/issuers"]
        ),
    )

    refresh(dsn, ["ops-a"], run_id="r2")

    assert uids(dsn, "ops-a", CERTS) == before
    assert len(uids(dsn, "ops-a", ("cert-manager.io", "Issuer"))) == len(issuers_before) - 1
    status, loaded, note = latest_load(dsn, "ops-a", CRS)
    assert status == "success" and loaded == sum(expected(BY_NAME["ops-a"]).values()) - 1  # kept ones count
    denied = "permission denied: GET /apis/cert-manager.io/v1/certificates: 403 Forbidden"
    assert note is not None and note.startswith(f"cert-manager.io/Certificate: {denied}")
    assert note.endswith(f"previous rows kept ({len(before)})")


def test_a_kind_over_the_limit_keeps_its_previous_rows_with_a_note(fleet: Fleet, dsn: str) -> None:
    refresh(dsn, ["ops-b"], run_id="r1")
    before = counts(dsn, "ops-b")
    limit = 10
    over = {k for k, n in before.items() if n > limit}
    assert over and len(over) < len(before)
    with psycopg.connect(dsn) as conn:
        cluster = inventory.get_cluster(conn, "ops-b")
        assert cluster is not None
        inventory.upsert_clusters(conn, [replace(cluster, collect=Collect(max_objects_per_kind=limit))])

    refresh(dsn, ["ops-b"], run_id="r2")

    assert counts(dsn, "ops-b") == before  # the others re-listed, the big ones kept
    note = latest_load(dsn, "ops-b", CRS)[2] or ""
    for group, kind in over:
        kept = f"previous rows kept ({before[(group, kind)]})"
        assert f"{group}/{kind}: more than {limit} objects (limit), not loaded: {kept}" in note


def test_the_kubequery_extractor_has_no_custom_resource_tables_they_are_excluded_with_a_note() -> None:
    why = not_collected(Collect(), "kubequery", list(TABLES))
    assert set(why) == set(PROJECT_TABLES)
    assert set(why.values()) == {"not available with the kubequery extractor (kubequery has no such table)"}
    assert not_collected(Collect(), "native", list(TABLES)) == {}
