"""The schema registry: the one source of table names, column names, types and JSON columns.

Everything that names a SQL identifier (DDL, COPY, queries, Dagster table schemas) reads it from
here, so a name that is not in the registry can never reach PostgreSQL. Two sources:

* kubequery's own schema (`schema.json`, shipped in the package, copied from the test data,
  kq_pipeline_tests/data/kubequery, by `tools/build_registry.py`): `KUBEQUERY_TABLES`, the 51 tables
  whose rows must be exactly kubequery's;
* the project's own tables in the same style (`custom_tables.json`): custom resources and their
  definitions, which kubequery does not have.

`TABLES` is every fleet table (both), the set a refresh loads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal

KqType = Literal["TEXT", "INTEGER", "BIGINT"]

# Dagster asset groups: one partitioned multi-asset per Kubernetes API group. events.k8s.io is
# folded into "core" (Events are a core concept and the table is small); tables read from
# discovery (/version, /api, /apis) form "discovery".
API_GROUP_TO_ASSET_GROUP: dict[str | None, str] = {
    "core": "core",
    "events.k8s.io": "core",
    "apps": "apps",
    "batch": "batch",
    "autoscaling": "autoscaling",
    "networking.k8s.io": "networking",
    "policy": "policy",
    "rbac.authorization.k8s.io": "rbac",
    "storage.k8s.io": "storage",
    "admissionregistration.k8s.io": "admissionregistration",
    None: "discovery",
}

# Tables that cannot be empty on a live cluster: an empty snapshot of these means a broken load.
NEVER_EMPTY: frozenset[str] = frozenset({"kubernetes_namespaces", "kubernetes_nodes", "kubernetes_info"})


class UnknownTableError(KeyError):
    """A table name that the registry does not have."""

    def __str__(self) -> str:
        return f"unknown table {self.args[0]!r}: not one of the {len(TABLES)} fleet tables"


@dataclass(frozen=True)
class Column:
    name: str
    kq_type: KqType
    is_json: bool
    """kubequery renders the value as a JSON string; PostgreSQL stores it as jsonb."""
    render: str
    go_type: str
    sources: tuple[dict[str, Any], ...] = field(repr=False, compare=False)


@dataclass(frozen=True)
class Source:
    api_group: str | None
    api_version: str | None
    group_version: str | None
    resource: str | None
    kind: str | None
    namespaced: bool


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    source: Source
    row_per: str
    asset_group: str
    spec: dict[str, Any] = field(repr=False, compare=False)
    """The full schema entry (for kubequery's tables: row loops, Go provenance) for the row builders."""
    kubequery: bool = True
    """One of kubequery's tables (its rows are kubequery's); False for the project's own tables."""
    indexes: tuple[tuple[tuple[str, ...], str], ...] | None = None
    """(columns, method) of each index when the definition declares them (else derived, see db.schema)."""
    kept_by: tuple[str, ...] = ()
    """Columns naming a part of a cluster's snapshot that a load may keep when that part failed
    (custom resources: (api_group, kind)); empty: the snapshot is replaced whole."""

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def json_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.is_json)

    @property
    def namespaced(self) -> bool:
        return "namespace" in self.column_names


def _load_json(name: str) -> Any:
    return json.loads(resources.files(__package__).joinpath(name).read_text())


def _build_tables(file: str, *, kubequery: bool) -> dict[str, Table]:
    out: dict[str, Table] = {}
    for name, spec in _load_json(file)["tables"].items():
        src = spec["source"]
        columns = tuple(
            Column(
                name=c["name"],
                kq_type=c["type"],
                is_json=c["render"] == "json",
                render=c["render"],
                go_type=c["go_type"],
                sources=tuple(c["from"]),
            )
            for c in spec["columns"]
        )
        out[name] = Table(
            name=name,
            columns=columns,
            source=Source(
                api_group=src.get("api_group"),
                api_version=src.get("api_version"),
                group_version=src.get("group_version"),
                resource=src.get("resource"),
                kind=src.get("kind"),
                namespaced=bool(src.get("namespaced")),
            ),
            row_per=spec["row_per"],
            asset_group=spec.get("asset_group") or API_GROUP_TO_ASSET_GROUP[src.get("api_group")],
            spec=spec,
            kubequery=kubequery,
            indexes=tuple((tuple(cols), method) for cols, method in spec["indexes"])
            if "indexes" in spec
            else None,
            kept_by=tuple(spec.get("kept_by") or ()),
        )
    return out


KUBEQUERY_TABLES: dict[str, Table] = _build_tables("schema.json", kubequery=True)
"""kubequery's 51 tables, in its docs/schema.md order: conformance, kubequery mode, and whatever must
be exactly kubequery's use these."""
CUSTOM_RESOURCE_DEFINITIONS_TABLE = "kubernetes_custom_resource_definitions"
CUSTOM_RESOURCES_TABLE = "kubernetes_custom_resources"
PROJECT_TABLES: dict[str, Table] = _build_tables("custom_tables.json", kubequery=False)
"""The project's own tables (custom resources), which kubequery does not have."""
TABLES: dict[str, Table] = {**KUBEQUERY_TABLES, **PROJECT_TABLES}
"""Every fleet table: kubequery's, then the project's."""

ASSET_GROUPS: dict[str, tuple[str, ...]] = {}
for _t in TABLES.values():
    ASSET_GROUPS.setdefault(_t.asset_group, ())
    ASSET_GROUPS[_t.asset_group] += (_t.name,)


def table(name: str) -> Table:
    try:
        return TABLES[name]
    except KeyError:
        raise UnknownTableError(name) from None


@cache
def go_types() -> dict[str, Any]:
    """Go struct layouts (field order, json names, omitempty) that JSON rendering follows."""
    return _load_json("go_types.json")["types"]
