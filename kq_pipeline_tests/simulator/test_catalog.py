"""The catalogue serves every kind the kubequery tables read, at versions a modern cluster offers."""

from __future__ import annotations

from kq_pipeline.registry import KUBEQUERY_TABLES
from kq_pipeline.simulator.catalog import Catalog, parse_minor

# kubequery's 1.21-era versions and what a current cluster serves instead.
MODERN = {"batch/v1beta1": "batch/v1", "policy/v1beta1": "policy/v1"}


def test_every_table_source_is_served_on_a_modern_cluster():
    catalog = Catalog.for_minor(29)
    served = {(t.group_version, t.resource) for t in catalog.types}
    for table in KUBEQUERY_TABLES.values():
        src = table.source
        if src.resource is None or src.resource == "podsecuritypolicies":
            continue
        gv = MODERN.get(src.api_version or "", src.api_version)
        assert (gv, src.resource) in served, table.name


def test_removed_apis_only_on_old_clusters():
    old, new = Catalog.for_minor(24), Catalog.for_minor(25)
    assert old.lookup("policy", "v1beta1", "podsecuritypolicies") is not None
    assert new.lookup("policy", "v1beta1", "podsecuritypolicies") is None
    assert new.lookup("batch", "v1beta1", "cronjobs") is None and new.lookup("batch", "v1", "cronjobs")


def test_preferred_version_comes_first():
    gvs = Catalog.for_minor(29).group_versions()
    assert gvs["autoscaling"] == ["v2", "v1"] and gvs[""] == ["v1"]


def test_parse_minor():
    assert parse_minor("v1.30.2") == 30 and parse_minor("1.24") == 24 and parse_minor("v1.29.0-eks-1") == 29
