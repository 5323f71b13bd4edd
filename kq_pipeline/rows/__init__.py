"""kubequery rows from Kubernetes objects: the native extractor's row builders.

`kubequery_rows(table, objects, cluster_name=..., cluster_uid=...)` returns exactly the
`[]map[string]string` kubequery's Generate gives for those objects: string values, no key for an
omitted value, rows in kubequery's order for the given object order (objects are not sorted here;
pass them in API list order). `objects` are the listed objects of the table's source kind:

* `kubernetes_info`: `[version]`, the GET /version object;
* `kubernetes_api_resources`: the discovery `APIResourceList` objects (one per group version);
* `kubernetes_events`: events.k8s.io/v1 Event objects. kubequery streams informer events instead
  of answering queries; a poll is a snapshot, so each current Event is one row with
  `event_type` "add" and `time` = its `eventTime`, or the poll time (`now`, default: the current
  time) when eventTime is null/zero, exactly as kubequery's add handler computes it;
* every other table: the items of its resource's List.

`rows_for_tables(tables, objects, ...)` builds several tables over ONE object list in one pass
(e.g. pods + pod containers + pod volumes): paths and shared columns (labels, annotations, ...)
are read and rendered once per object. It is the fast path for the extractor.

Rows are built by code compiled once per table set from schema.json (see `flattener`); Go JSON
rendering follows go_types.json (see `gojson`). Secrets are NOT redacted here: the caller redacts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from kq_pipeline.registry import table as _table
from kq_pipeline.rows.flattener import SchemaError, compile_tables
from kq_pipeline.rows.gotime import InvalidTimeError, rfc3339
from kq_pipeline.rows.quantity import InvalidQuantityError

Row = dict[str, str]

__all__ = [
    "InvalidQuantityError",
    "InvalidTimeError",
    "Row",
    "SchemaError",
    "kubequery_rows",
    "rows_for_tables",
]


def rows_for_tables(
    tables: Iterable[str],
    objects: Sequence[dict[str, Any]],
    *,
    cluster_name: str,
    cluster_uid: str,
    now: datetime | None = None,
) -> dict[str, list[Row]]:
    """Rows of several tables whose source is the same object list, built in one pass."""
    names = tuple(tables)
    for name in names:
        _table(name)  # UnknownTableError for a name kubequery does not have
    builder = compile_tables(names)
    outs: list[list[Row]] = [[] for _ in names]
    builder(objects, outs, cluster_name, cluster_uid, rfc3339(now or datetime.now(UTC)))
    return dict(zip(names, outs, strict=True))


def kubequery_rows(
    table: str,
    objects: Sequence[dict[str, Any]],
    *,
    cluster_name: str,
    cluster_uid: str,
    now: datetime | None = None,
) -> list[Row]:
    """kubequery's rows of `table` for `objects` (see the module docstring for what to pass)."""
    return rows_for_tables([table], objects, cluster_name=cluster_name, cluster_uid=cluster_uid, now=now)[
        table
    ]
