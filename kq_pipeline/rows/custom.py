"""Rows of the two custom-resource tables, in kubequery's value conventions.

Values are strings as in every other row (omitted key = NULL): times are unix seconds ("0" for a
missing one, as kubequery's creation_timestamp), flags "1"/"0", JSON values Go-rendered (see
`unstructured`). A custom object's row keeps metadata's common fields in columns, spec and status as
they are, and every other top-level field (Argo CD's `operation`, a `data` or `report` block) in
`extra`, so nothing the API returned is lost. A cluster-scoped object's namespace is '' rather than
NULL, so `namespace = ''` finds them and (cluster_name, namespace, name) lookups need no IS NULL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kq_pipeline.rows import Row
from kq_pipeline.rows.gotime import unix_seconds
from kq_pipeline.rows.unstructured import go_json

# Top-level fields that have their own columns; everything else goes to `extra`.
_OWN_COLUMNS = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})


@dataclass(frozen=True)
class CustomKind:
    """One custom kind as its CRD names it; `label` is how notes and selections name it."""

    group: str
    kind: str
    plural: str
    namespaced: bool
    crd_name: str

    @property
    def label(self) -> str:
        return f"{self.group}/{self.kind}"


def _condition(crd: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (crd.get("status") or {}).get("conditions") or ():
        if isinstance(cond, dict) and cond.get("type") == type_:
            return cond
    return {}


def crd_is_established(crd: dict[str, Any]) -> bool:
    return _condition(crd, "Established").get("status") == "True"


def crd_not_established_reason(crd: dict[str, Any]) -> str:
    cond = _condition(crd, "Established")
    return cond.get("reason") or cond.get("message") or "no Established condition"


def crd_kind(crd: dict[str, Any]) -> CustomKind:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    return CustomKind(
        group=str(spec.get("group") or ""),
        kind=str(names.get("kind") or ""),
        plural=str(names.get("plural") or ""),
        namespaced=spec.get("scope") != "Cluster",
        crd_name=str((crd.get("metadata") or {}).get("name") or ""),
    )


def served_versions(crd: dict[str, Any]) -> list[str]:
    """The CRD's served version names, in its spec's order."""
    return [
        str(v.get("name"))
        for v in (crd.get("spec") or {}).get("versions") or ()
        if isinstance(v, dict) and v.get("served") and v.get("name")
    ]


def _put(row: Row, column: str, value: Any) -> None:
    if value:
        row[column] = str(value)


def _put_json(row: Row, column: str, value: Any) -> None:
    if value is not None:
        row[column] = go_json(value)


def crd_row(crd: dict[str, Any], cluster_name: str, cluster_uid: str) -> Row:
    """The kubernetes_custom_resource_definitions row of one CRD."""
    meta = crd.get("metadata") or {}
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    row: Row = {}
    _put(row, "cluster_name", cluster_name)
    _put(row, "cluster_uid", cluster_uid)
    _put(row, "uid", meta.get("uid"))
    _put(row, "name", meta.get("name"))
    _put(row, "group", spec.get("group"))
    _put(row, "kind", names.get("kind"))
    _put(row, "plural", names.get("plural"))
    _put(row, "singular", names.get("singular"))
    _put(row, "scope", spec.get("scope"))
    row["versions"] = go_json(served_versions(crd))
    storage = [v.get("name") for v in spec.get("versions") or () if isinstance(v, dict) and v.get("storage")]
    _put(row, "storage_version", storage[0] if storage else None)
    row["established"] = "1" if crd_is_established(crd) else "0"
    row["names_accepted"] = "1" if _condition(crd, "NamesAccepted").get("status") == "True" else "0"
    row["creation_timestamp"] = unix_seconds(meta.get("creationTimestamp"))
    _put_json(row, "labels", meta.get("labels"))
    _put_json(row, "annotations", meta.get("annotations"))
    return row


def custom_resource_row(
    obj: dict[str, Any], kind: CustomKind, api_version: str, cluster_name: str, cluster_uid: str
) -> Row:
    """The kubernetes_custom_resources row of one custom object listed at `api_version`."""
    meta = obj.get("metadata") or {}
    row: Row = {
        "cluster_name": cluster_name,
        "api_group": kind.group,
        "api_version": str(obj.get("apiVersion") or api_version),
        "kind": kind.kind,
        "resource": kind.plural,
        "namespace": str(meta.get("namespace") or ""),
        "creation_timestamp": unix_seconds(meta.get("creationTimestamp")),
    }
    _put(row, "cluster_uid", cluster_uid)
    _put(row, "name", meta.get("name"))
    _put(row, "uid", meta.get("uid"))
    _put(row, "resource_version", meta.get("resourceVersion"))
    _put_json(row, "labels", meta.get("labels"))
    _put_json(row, "annotations", meta.get("annotations"))
    _put_json(row, "owner_references", meta.get("ownerReferences"))
    _put_json(row, "spec", obj.get("spec"))
    _put_json(row, "status", obj.get("status"))
    row["extra"] = go_json({k: v for k, v in obj.items() if k not in _OWN_COLUMNS})
    return row
