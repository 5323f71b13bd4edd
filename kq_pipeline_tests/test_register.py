"""register_cluster against a simulated target: creates the reader, stores its token as a 0600 file."""

from __future__ import annotations

import io
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml

from kq_pipeline.collect import Collect
from kq_pipeline.inventory import access_for, get_cluster, upsert_clusters
from kq_pipeline.register import READER, RegisterError, reader_manifests, register_cluster
from kq_pipeline.simulator import Fleet
from kq_pipeline_tests.deploy.targets import fresh_target


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    with Fleet() as f:
        f.add("prod-eu", fresh_target("prod-eu", pods=10))
        yield f


@pytest.fixture
def admin(fleet: Fleet, tmp_path: Path) -> Path:
    return fleet.write_kubeconfig(tmp_path / "admin.yaml")


def _stored_token(fleet: Fleet, token_file: str | None) -> str:
    """The token in the file, which the target takes for its reader ServiceAccount's."""
    token = Path(token_file or "").read_text().strip()
    who = fleet.clusters["prod-eu"].tokens.authenticate(token)
    assert who is not None and who.name == f"system:serviceaccount:{READER}:{READER}"
    return token


def test_register_creates_the_reader_and_returns_a_token_file_entry(
    fleet: Fleet, admin: Path, tmp_path: Path
):
    out = io.StringIO()
    cluster = register_cluster(admin, "prod-eu", name=None, dry_run=False, token_dir=tmp_path / "t", out=out)
    assert cluster is not None
    token = _stored_token(fleet, cluster.token_file)
    assert cluster.name == "prod-eu" and cluster.server == fleet.clusters["prod-eu"].url
    assert cluster.kubeconfig is None and cluster.token_env is None
    assert cluster.ca_data == fleet.ca_pem
    path = Path(cluster.token_file or "")
    assert path == tmp_path / "t" / "prod-eu.token"
    assert path.read_text().strip() == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert token not in out.getvalue() and token not in repr(cluster)
    assert out.getvalue().count("created   ") == 4
    with httpx.Client(
        base_url=cluster.server,
        verify=access_for(cluster).ssl_context(),
        headers={"Authorization": f"Bearer {token}"},
    ) as c:
        assert c.get("/api/v1/pods?limit=1").status_code == 200  # reads
        assert (
            c.post(
                "/api/v1/namespaces",
                json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}},
            ).status_code
            == 403
        )  # never writes


def test_register_is_idempotent(fleet: Fleet, admin: Path, tmp_path: Path):
    first = register_cluster(
        admin, "prod-eu", name="eu-1", dry_run=False, token_dir=tmp_path, out=io.StringIO()
    )
    out = io.StringIO()
    again = register_cluster(admin, "prod-eu", name="eu-1", dry_run=False, token_dir=tmp_path, out=out)
    assert again == first
    assert out.getvalue().count("unchanged ") == 4 and "warning" not in out.getvalue()


def test_dry_run_prints_the_manifests_and_changes_nothing(fleet: Fleet, admin: Path, tmp_path: Path):
    out = io.StringIO()
    assert register_cluster(admin, "prod-eu", name=None, dry_run=True, token_dir=tmp_path, out=out) is None
    assert [d for d in yaml.safe_load_all(out.getvalue()) if d] == reader_manifests()
    sim = fleet.clusters["prod-eu"]
    ns = sim.catalog.lookup("", "v1", "namespaces")
    assert ns is not None and sim.store.get(ns, "", READER) is None
    assert not list(tmp_path.glob("*.token"))


def test_a_foreign_binding_of_the_same_name_is_reported_not_trusted(tmp_path: Path):
    with Fleet() as f:
        f.add("old", fresh_target("old", pods=5))
        sim = f.clusters["old"]
        crb = sim.catalog.lookup("rbac.authorization.k8s.io", "v1", "clusterrolebindings")
        assert crb is not None
        sim.store.write(
            crb,
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": READER},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "cluster-admin",
                },
                "subjects": [{"kind": "User", "name": "mallory"}],
            },
            create=True,
        )
        admin = f.write_kubeconfig(tmp_path / "admin.yaml")
        with pytest.raises(RegisterError, match="exists but does not bind ClusterRole kq-reader"):
            register_cluster(admin, "old", name=None, dry_run=False, token_dir=tmp_path, out=io.StringIO())
        assert not list(tmp_path.glob("*.token"))


def test_the_inventory_row_holds_a_file_reference_never_the_token(
    fleet: Fleet, admin: Path, tmp_path: Path, pg_dsn: str
):
    cluster = register_cluster(
        admin, "prod-eu", name=None, dry_run=False, token_dir=tmp_path, out=io.StringIO()
    )
    assert cluster is not None
    token = _stored_token(fleet, cluster.token_file)
    with psycopg.connect(pg_dsn) as conn:
        upsert_clusters(conn, [cluster])
        assert get_cluster(conn, "prod-eu") == cluster
        dump = conn.execute("SELECT row_to_json(c)::text FROM kq_meta.clusters c").fetchone()
    assert dump is not None and token not in dump[0] and str(tmp_path) in dump[0]


def _stored_role(fleet: Fleet, cluster: str) -> dict:
    sim = fleet.clusters[cluster]
    rtype = sim.catalog.lookup("rbac.authorization.k8s.io", "v1", "clusterroles")
    assert rtype is not None
    role = sim.store.get(rtype, "", READER)
    assert role is not None
    return role


def test_registering_again_with_another_selection_updates_our_role_in_place(
    fleet: Fleet, admin: Path, tmp_path: Path
):
    register_cluster(admin, "prod-eu", name=None, dry_run=False, token_dir=tmp_path, out=io.StringIO())
    uid = _stored_role(fleet, "prod-eu")["metadata"]["uid"]
    out = io.StringIO()
    cluster = register_cluster(
        admin,
        "prod-eu",
        name=None,
        dry_run=False,
        token_dir=tmp_path,
        out=out,
        collect=Collect(tables=("!kubernetes_secrets",)),
    )
    assert cluster is not None and cluster.collect == Collect(tables=("!kubernetes_secrets",))
    assert f"updated   ClusterRole {READER} (rules: -list secrets)" in out.getvalue()
    role = _stored_role(fleet, "prod-eu")
    assert role["metadata"]["uid"] == uid and role["rules"] == reader_manifests(cluster.collect)[2]["rules"]
    assert "warning" not in out.getvalue()


def test_a_foreign_role_of_the_same_name_is_reported_and_left_alone(tmp_path: Path):
    with Fleet() as f:
        f.add("old", fresh_target("old", pods=5))
        sim = f.clusters["old"]
        rtype = sim.catalog.lookup("rbac.authorization.k8s.io", "v1", "clusterroles")
        assert rtype is not None
        foreign = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole"}
        foreign["metadata"] = {"name": READER}
        foreign["rules"] = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]
        sim.store.write(rtype, foreign, create=True)
        admin = f.write_kubeconfig(tmp_path / "admin.yaml")
        out = io.StringIO()
        with pytest.raises(RegisterError, match="the reader cannot read namespace kube-system"):
            register_cluster(admin, "old", name=None, dry_run=False, token_dir=tmp_path, out=out)
        assert "is not labelled as kq-pipeline's" in out.getvalue()
        assert _stored_role(f, "old")["rules"] == foreign["rules"]
