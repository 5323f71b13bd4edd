"""Rows of the custom-resource tables: kubequery's value conventions, Go's JSON of unstructured maps,
and nothing of the object lost (every top-level field beside spec and status lands in `extra`)."""

from __future__ import annotations

import json

import orjson
import pytest

from kq_pipeline.rows.custom import CustomKind, crd_kind, crd_row, custom_resource_row, served_versions
from kq_pipeline.rows.gojson import escape_html, go_float
from kq_pipeline.rows.unstructured import _encode, go_json
from kq_pipeline.simulator.objects import OPERATORS, ClusterSpec, generate_objects
from kq_pipeline.simulator.objects.custom import CRD_KEY

SPEC = ClusterSpec(
    "rows",
    seed=6,
    pods=10,
    operators=OPERATORS,
    custom_objects=200,
    pending_crds=("applications.argoproj.io",),
)
OBJECTS = generate_objects(SPEC)
CRDS = {c["metadata"]["name"]: c for c in OBJECTS[CRD_KEY]}
CERT = CustomKind("cert-manager.io", "Certificate", "certificates", True, "certificates.cert-manager.io")


def test_go_json_sorts_keys_without_spaces_and_escapes_like_go() -> None:
    value = {"b": [1, "x<y>&z"], "a": {"d": True, "c": None}, "e": "line\u2028sep\b"}
    assert (
        go_json(value)
        == '{"a":{"c":null,"d":true},"b":[1,"x\\u003cy\\u003e\\u0026z"],"e":"line\\u2028sep\\u0008"}'
    )
    assert json.loads(go_json(value)) == value


def test_go_json_falls_back_for_values_orjson_refuses() -> None:
    assert go_json({"big": 2**70}) == '{"big":1180591620717411303424}'
    lone = json.dumps({"s": "\ud800"}, ensure_ascii=False, separators=(",", ":"))
    assert go_json({"s": "\ud800"}) == escape_html(lone)  # the frame replaces the surrogate later


# Go's encoding/json output for float64 values (floatEncoder: strconv 'f' with the shortest digits,
# 'e' below 1e-6 and from 1e21 on, a one-digit negative exponent), as json.Marshal writes them.
GO_FLOATS = {
    1.0: "1",
    -3.0: "-3",
    100.0: "100",
    0.5: "0.5",
    -2.25: "-2.25",
    0.1: "0.1",
    3.14159: "3.14159",
    1e16: "10000000000000000",
    1.2345678901234568e20: "123456789012345680000",
    9.999999999999999e20: "999999999999999900000",
    1e21: "1e+21",
    1.5e300: "1.5e+300",
    0.00001: "0.00001",
    0.000001: "0.000001",
    5e-6: "0.000005",
    9.99e-6: "0.00000999",
    1e-7: "1e-7",
    2.5e-10: "2.5e-10",
    5e-324: "5e-324",
    1.7976931348623157e308: "1.7976931348623157e+308",
}


def test_floats_render_as_go_writes_them() -> None:
    for value, go in GO_FLOATS.items():
        assert go_float(value) == go, value
        assert go_json({"v": value}) == f'{{"v":{go}}}', value
        assert go_json([value]) == f"[{go}]" and go_json(value) == go
    assert go_float(-0.0) == "-0" and go_float(0.0) == "0"
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError):
            go_float(bad)


def test_an_integral_float_in_a_custom_object_reads_as_go_writes_it() -> None:
    """`1.0` in an object (the simulator's, or a client's that wrote floats) is `1`, as a Go client
    marshalling the unstructured object writes it; the rest of the value is unchanged."""
    obj = {"weight": 1.0, "ratio": 0.25, "replicas": 3, "name": "x:1.0,", "nested": [{"t": 2e16}]}
    text = go_json(obj)
    assert text == '{"name":"x:1.0,","nested":[{"t":20000000000000000}],"ratio":0.25,"replicas":3,"weight":1}'
    assert json.loads(text) == obj
    assert go_json({"name": "x:1.0,", "n": 1}) == '{"n":1,"name":"x:1.0,"}'  # a look-alike string


def test_go_json_equals_orjson_where_go_and_orjson_agree() -> None:
    """The exact encoder (used when a float needs Go's formatting) writes everything else as orjson does."""
    value = {
        "s": 'tab\tnl\ncr\r\x00\x1f\x7f é 😀 "q" \\',
        "n": [0, -1, 2**63 - 1, True, False, None],
        "m": {"é": {}, "a": [], "Z": "z"},
        "f": 0.5,
    }
    assert _encode(value) == orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def test_a_crd_row_has_its_names_served_versions_storage_version_and_conditions() -> None:
    row = crd_row(CRDS["virtualservices.networking.istio.io"], "c1", "uid-1")
    crd = CRDS["virtualservices.networking.istio.io"]
    assert row["cluster_name"] == "c1" and row["cluster_uid"] == "uid-1"
    assert (row["uid"], row["name"]) == (crd["metadata"]["uid"], "virtualservices.networking.istio.io")
    assert (row["group"], row["kind"], row["plural"], row["singular"], row["scope"]) == (
        "networking.istio.io",
        "VirtualService",
        "virtualservices",
        "virtualservice",
        "Namespaced",
    )
    # served versions in the CRD's own order
    assert json.loads(row["versions"]) == [v["name"] for v in crd["spec"]["versions"]] == served_versions(crd)
    assert set(served_versions(crd)) == {"v1", "v1beta1", "v1alpha3"}
    assert row["storage_version"] == "v1alpha3"
    assert (row["established"], row["names_accepted"]) == ("1", "1")
    assert row["creation_timestamp"].isdigit() and int(row["creation_timestamp"]) > 1_600_000_000
    assert json.loads(row["labels"]) == crd["metadata"]["labels"]


def test_an_unestablished_crd_is_a_row_with_established_0() -> None:
    row = crd_row(CRDS["applications.argoproj.io"], "c1", "uid-1")
    assert (row["established"], row["names_accepted"]) == ("0", "1")


def test_a_crd_names_its_kind_and_scope() -> None:
    kind = crd_kind(CRDS["clusterissuers.cert-manager.io"])
    assert kind == CustomKind("cert-manager.io", "ClusterIssuer", "clusterissuers", False, kind.crd_name)
    assert kind.label == "cert-manager.io/ClusterIssuer"


def test_a_custom_object_row_keeps_metadata_columns_and_spec_and_status_as_go_json() -> None:
    cert = OBJECTS["cert-manager.io/v1/certificates"][0]
    row = custom_resource_row(cert, CERT, "cert-manager.io/v1", "c1", "uid-1")
    md = cert["metadata"]
    assert (row["api_group"], row["api_version"], row["kind"], row["resource"]) == (
        "cert-manager.io",
        "cert-manager.io/v1",
        "Certificate",
        "certificates",
    )
    assert (row["namespace"], row["name"], row["uid"], row["resource_version"]) == (
        md["namespace"],
        md["name"],
        md["uid"],
        md["resourceVersion"],
    )
    assert row["spec"] == go_json(cert["spec"]) and json.loads(row["spec"]) == cert["spec"]
    assert json.loads(row["status"]) == cert["status"]
    assert row["extra"] == "{}"
    assert orjson.loads(row["labels"]) == md.get("labels")


def test_a_cluster_scoped_object_has_an_empty_namespace_not_a_missing_one() -> None:
    issuer = OBJECTS["cert-manager.io/v1/clusterissuers"][0]
    kind = CustomKind(
        "cert-manager.io", "ClusterIssuer", "clusterissuers", False, "clusterissuers.cert-manager.io"
    )
    assert custom_resource_row(issuer, kind, "cert-manager.io/v1", "c1", "u")["namespace"] == ""


def test_every_other_top_level_field_lands_in_extra() -> None:
    obj = {
        "apiVersion": "example.com/v1",
        "kind": "Report",
        "metadata": {"name": "r", "namespace": "ns", "ownerReferences": [{"kind": "Pod", "name": "p"}]},
        "report": {"z": 1, "a": "<b>"},
        "data": ["x"],
    }
    kind = CustomKind("example.com", "Report", "reports", True, "reports.example.com")
    row = custom_resource_row(obj, kind, "example.com/v1", "c1", "u")
    assert row["extra"] == '{"data":["x"],"report":{"a":"\\u003cb\\u003e","z":1}}'
    assert "spec" not in row and "status" not in row  # absent: NULL, as kubequery omits nil values
    assert json.loads(row["owner_references"]) == [{"kind": "Pod", "name": "p"}]
    assert row["creation_timestamp"] == "0"  # kubequery's value for a missing time


def test_argo_cds_operation_field_is_kept_in_extra() -> None:
    spec = ClusterSpec("argo", seed=2, pods=30, operators=("argocd",), custom_objects=300)
    apps = generate_objects(spec)["argoproj.io/v1alpha1/applications"]
    running = next(a for a in apps if "operation" in a)
    kind = CustomKind("argoproj.io", "Application", "applications", True, "applications.argoproj.io")
    row = custom_resource_row(running, kind, "argoproj.io/v1alpha1", "c1", "u")
    assert json.loads(row["extra"]) == {"operation": running["operation"]}
