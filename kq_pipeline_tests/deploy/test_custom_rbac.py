"""The reader's rules follow the cluster's selection: custom kinds granted, Secrets not when excluded.

Proven on the simulator's RBAC mode (the registered service account's rights are the stored
ClusterRole's, discovery only what it grants), as test_target_rbac.py does for the default role:

* sufficient: with a selection of custom kinds and without kubernetes_secrets, every collected table
  loads in full through the registered reader (every selected custom object, no kind denied);
* minimal: dropping any one resource of the generated role makes exactly what reads it fail (a
  built-in table with 403, a custom kind denied and kept, both custom tables without the CRD list);
* the trade-off the README documents: a CRD installed after registration is denied for its kind only
  until the cluster is registered again (which updates the role in place), unless it was granted by
  group (`custom_rbac="groups"`).
"""

from __future__ import annotations

import copy
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from kq_pipeline.collect import Collect, not_collected
from kq_pipeline.extract.native import extract_cluster
from kq_pipeline.inventory import Cluster, access_for
from kq_pipeline.register import READER, custom_groups, reader_rules, register_cluster
from kq_pipeline.registry import CUSTOM_RESOURCE_DEFINITIONS_TABLE as CRD_TABLE
from kq_pipeline.registry import CUSTOM_RESOURCES_TABLE as CR_TABLE
from kq_pipeline.registry import TABLES
from kq_pipeline.simulator import Fleet, SimulatedCluster
from kq_pipeline.simulator.objects import CUSTOM_KINDS, OPERATORS
from kq_pipeline.simulator.objects.custom import CRD_KEY, KINDS
from kq_pipeline_tests.deploy.reader_role import reader_role_rules
from kq_pipeline_tests.deploy.targets import fresh_target

SELECTION = Collect(
    tables=("!kubernetes_secrets",),
    custom_kinds=(
        "cert-manager.io/*",
        "argoproj.io/Application",
        "networking.istio.io/virtualservices",
        "!cert-manager.io/ClusterIssuer",
    ),
)
"""Custom kinds by glob, Kind and plural, one excluded, prometheus-operator's not selected; no Secrets."""
TARGET = fresh_target("custom", pods=20, operators=OPERATORS, custom_objects=80)
CRDS = TARGET[CRD_KEY]
SELECTED = {("cert-manager.io", "Certificate"), ("cert-manager.io", "Issuer")} | {
    ("argoproj.io", "Application"),
    ("networking.istio.io", "VirtualService"),
}
TABLES_COLLECTED = [t for t in TABLES if t not in not_collected(SELECTION, "native", list(TABLES))]
ROLE = reader_rules(SELECTION, CRDS)
LISTED = sorted(
    (group, resource)
    for rule in ROLE
    if rule["verbs"] == ["list"]
    for group in rule["apiGroups"]
    for resource in rule["resources"]
)


def _kind_counts(objects: dict[str, Any]) -> dict[tuple[str, str], int]:
    """What the simulator serves per custom kind (its generator keys: one per kind)."""
    return {
        (key.split("/")[0], kind): len(objects[key])
        for key, (kind, _) in CUSTOM_KINDS.items()
        if key in objects
    }


def _row_counts(rows: list[dict[str, str]]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for r in rows:
        key = (r["api_group"], r["kind"])
        out[key] = out.get(key, 0) + 1
    return out


# -- the rules, without a cluster --------------------------------------------------------------------
def test_the_generated_role_grants_the_selected_kinds_and_no_secrets() -> None:
    assert ("", "secrets") not in LISTED and ("", "pods") in LISTED
    assert ("apiextensions.k8s.io", "customresourcedefinitions") in LISTED
    custom = [(g, r) for g, r in LISTED if g in {k.group for k in KINDS}]
    assert custom == [
        ("argoproj.io", "applications"),
        ("cert-manager.io", "certificates"),
        ("cert-manager.io", "issuers"),
        ("networking.istio.io", "virtualservices"),
    ]
    assert all(set(r["verbs"]) <= {"list", "get"} and "*" not in str(r.get("resources")) for r in ROLE)


def test_every_secret_free_selection_grants_no_secrets_and_an_excluded_table_nothing_of_its_own() -> None:
    no_custom = reader_rules(Collect(tables=("!kubernetes_secrets", "!kubernetes_custom_*")), CRDS)
    granted = {(g, r) for rule in no_custom for g in rule.get("apiGroups", ()) for r in rule["resources"]}
    assert ("", "secrets") not in granted
    assert not {g for g, _ in granted} & {"apiextensions.k8s.io", *(k.group for k in KINDS)}
    only_crds = reader_rules(Collect(tables=(CRD_TABLE,)), CRDS)  # CRDs alone: no core table at all
    assert only_crds == [
        {"apiGroups": [""], "resources": ["namespaces"], "resourceNames": ["kube-system"], "verbs": ["get"]},
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["list"],
        },
        {"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/version"], "verbs": ["get"]},
    ]


def test_group_mode_grants_each_selected_group_whole_and_groups_named_before_they_exist() -> None:
    assert custom_groups(SELECTION, CRDS, "groups") == {
        "argoproj.io": ["*"],
        "cert-manager.io": ["*"],
        "networking.istio.io": ["*"],
    }
    later = Collect(custom_kinds=("example.com/*", "*.example.org/*", "!internal.example.com/*"))
    assert custom_groups(later, [], "groups") == {"example.com": ["*"]}  # a glob names no group
    assert custom_groups(later, [], "kinds") == {}
    with pytest.raises(ValueError, match="custom_rbac"):
        custom_groups(SELECTION, CRDS, "everything")


# -- sufficient and minimal, live -------------------------------------------------------------------
@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SimulatedCluster, Cluster, Path]]:
    """The target, registered with SELECTION; (simulator, inventory entry, admin kubeconfig)."""
    tmp = tmp_path_factory.mktemp("custom-rbac")
    with Fleet() as fleet:
        sim = fleet.add("custom", copy.deepcopy(TARGET))
        admin = fleet.write_kubeconfig(tmp / "admin.yaml")
        out = io.StringIO()
        cluster = register_cluster(
            admin, "custom", name=None, dry_run=False, token_dir=tmp, out=out, collect=SELECTION
        )
        assert cluster is not None and cluster.collect == SELECTION
        assert "custom resources (--custom-rbac kinds): 4 kind(s) of the cluster's 7 CRD(s)" in out.getvalue()
        yield sim, cluster, admin


@pytest.fixture
def role(target: tuple[SimulatedCluster, Cluster, Path]) -> Iterator[Any]:
    """Set the stored kq-reader ClusterRole's rules for one test; restored afterwards."""
    with reader_role_rules(target[0], READER) as set_rules:
        yield set_rules


def _extract(cluster: Cluster, tables: list[str]) -> Any:
    return extract_cluster(
        access_for(cluster), cluster.name, tables, concurrency=4, deadline_s=60, collect=cluster.collect
    )


def test_the_registered_role_is_the_generated_one(target: tuple[SimulatedCluster, Cluster, Path]) -> None:
    sim = target[0]
    rtype = sim.catalog.lookup("rbac.authorization.k8s.io", "v1", "clusterroles")
    assert rtype is not None
    assert (sim.store.get(rtype, "", READER) or {})["rules"] == ROLE


def test_every_collected_table_and_selected_kind_loads_and_secrets_are_never_listed(
    target: tuple[SimulatedCluster, Cluster, Path],
) -> None:
    sim, cluster, _ = target
    sim.request_log.clear()
    result = _extract(cluster, TABLES_COLLECTED)
    assert result.error is None
    assert result.failed_tables == [], {t: result.tables[t].error for t in result.failed_tables}
    assert set(result.tables) == set(TABLES_COLLECTED) and "kubernetes_secrets" not in result.tables
    custom = result.tables[CR_TABLE]
    assert custom.kept_kinds == {}
    served = _kind_counts(sim.objects)
    assert _row_counts(custom.rows or []) == {k: n for k, n in served.items() if k in SELECTED}
    assert "3 custom kind(s) not selected" in (custom.note or "")
    assert len(result.tables[CRD_TABLE].rows or []) == len(KINDS)
    assert not [r for r in sim.request_log if "/secrets" in r]


@pytest.mark.parametrize(("group", "resource"), LISTED, ids=[f"{g or 'core'}/{r}" for g, r in LISTED])
def test_dropping_one_resource_of_the_generated_role_fails_what_reads_it(
    target: tuple[SimulatedCluster, Cluster, Path], role: Any, group: str, resource: str
) -> None:
    rules = []
    for rule in copy.deepcopy(ROLE):
        if rule.get("apiGroups") == [group] and rule["verbs"] == ["list"]:
            rule["resources"] = [r for r in rule["resources"] if r != resource]
            if not rule["resources"]:
                continue
        rules.append(rule)
    role(rules)
    custom_kinds = {(k.group, k.kind) for k in KINDS if (k.group, k.plural) == (group, resource)}
    if custom_kinds:  # a custom kind: denied and kept, the other kinds load
        result = _extract(target[1], [CR_TABLE])
        custom = result.tables[CR_TABLE]
        assert custom.ok and set(custom.kept_kinds) == custom_kinds
        assert all(why.startswith("permission denied: ") for why in custom.kept_kinds.values())
        assert set(_row_counts(custom.rows or [])) == SELECTED - custom_kinds
        return
    needing = [
        t.name
        for t in TABLES.values()
        if t.name in TABLES_COLLECTED
        and t.source.resource == resource
        and (t.source.api_group == group or (group == "" and t.source.api_group == "core"))
    ]
    if (group, resource) == ("apiextensions.k8s.io", "customresourcedefinitions"):
        needing.append(CR_TABLE)  # it finds the kinds in the CRD list
    assert needing
    bystander = "kubernetes_storage_classes" if resource != "storageclasses" else "kubernetes_nodes"
    result = _extract(target[1], [*needing, bystander, "kubernetes_info"])
    for name in needing:
        error = result.tables[name].error or ""
        assert "permission denied" in error and f'"{resource}"' in error, (name, error)
    assert result.tables[bystander].ok and result.tables["kubernetes_info"].ok


# -- CRDs installed after registration: the documented trade-off --------------------------------------
ISTIO = next(k for k in KINDS if k.kind == "VirtualService")


@contextmanager
def _late_target(tmp: Path, custom_rbac: str) -> Iterator[tuple[SimulatedCluster, Cluster, Path]]:
    """A target registered while istio's CRD was missing; the CRD is installed right after."""
    objects = fresh_target("late", pods=10, operators=("cert-manager", "istio"), custom_objects=40)
    crd = next(c for c in objects[CRD_KEY] if c["metadata"]["name"] == ISTIO.crd_name)
    istio = {k: v for k, v in objects.items() if k.startswith(f"{ISTIO.group}/")}
    with Fleet() as fleet:
        sim = fleet.add("late", objects)
        assert sim.remove_crd(ISTIO.crd_name) is not None
        admin = fleet.write_kubeconfig(tmp / "admin.yaml")
        cluster = register_cluster(
            admin,
            "late",
            name=None,
            dry_run=False,
            token_dir=tmp,
            out=io.StringIO(),
            collect=Collect(custom_kinds=("cert-manager.io/*", f"{ISTIO.group}/*")),
            custom_rbac=custom_rbac,
        )
        assert cluster is not None
        sim.install_crd(copy.deepcopy(crd), copy.deepcopy(istio))
        yield sim, cluster, admin


def test_a_crd_installed_later_is_denied_for_its_kind_only_until_registered_again(tmp_path: Path) -> None:
    with _late_target(tmp_path, "kinds") as (sim, cluster, admin):
        custom = _extract(cluster, [CR_TABLE]).tables[CR_TABLE]
        assert custom.ok and list(custom.kept_kinds) == [(ISTIO.group, ISTIO.kind)]
        assert custom.kept_kinds[(ISTIO.group, ISTIO.kind)].startswith("permission denied: ")
        assert set(_row_counts(custom.rows or [])) == {("cert-manager.io", k.kind) for k in KINDS[:3]}

        out = io.StringIO()
        again = register_cluster(
            admin, "late", name=None, dry_run=False, token_dir=tmp_path, out=out, collect=cluster.collect
        )
        assert again is not None
        update = f"updated   ClusterRole {READER} (rules: +list virtualservices.networking.istio.io)"
        assert update in out.getvalue()
        custom = _extract(again, [CR_TABLE]).tables[CR_TABLE]
        assert custom.kept_kinds == {}
        assert _row_counts(custom.rows or []) == _kind_counts(sim.objects)


def test_group_rules_cover_a_crd_installed_later_in_a_selected_group(tmp_path: Path) -> None:
    with _late_target(tmp_path, "groups") as (sim, cluster, _):
        custom = _extract(cluster, [CR_TABLE]).tables[CR_TABLE]
        assert custom.kept_kinds == {}
        assert _row_counts(custom.rows or []) == _kind_counts(sim.objects)
        assert (ISTIO.group, ISTIO.kind) in _row_counts(custom.rows or [])


def test_a_dry_run_prints_the_role_from_the_clusters_crds(
    target: tuple[SimulatedCluster, Cluster, Path], tmp_path: Path
) -> None:
    out = io.StringIO()
    printed = register_cluster(
        target[2], "custom", name=None, dry_run=True, token_dir=tmp_path, out=out, collect=SELECTION
    )
    assert printed is None
    docs = [d for d in yaml.safe_load_all(out.getvalue()) if d]
    assert next(d for d in docs if d["kind"] == "ClusterRole")["rules"] == ROLE
    assert not list(tmp_path.glob("*.token"))
