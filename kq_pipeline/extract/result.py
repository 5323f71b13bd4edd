"""What an extraction hands to the loader: per table, complete rows or a failure, never a partial list."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Row = dict[str, str]


@dataclass
class TableExtract:
    table: str
    rows: list[Row] | None
    """None when the table failed: the loader must keep the previous snapshot."""
    error: str | None = None
    objects: int = 0
    """Objects listed for this table's resource (shared by the tables that read it)."""
    duration_s: float = 0.0
    note: str | None = None
    """Why rows may look unusual although the extraction succeeded (kind not served, other version)."""
    kept_kinds: dict[tuple[str, ...], str] = field(default_factory=dict)
    """Parts of the table that failed, by the table's `kept_by` values (custom resources: (api_group,
    kind)) -> why: the load keeps their previous rows instead of replacing them with nothing."""

    @property
    def ok(self) -> bool:
        return self.rows is not None

    def __repr__(self) -> str:
        n = "failed" if self.rows is None else f"{len(self.rows)} rows"
        return f"TableExtract({self.table!r}, {n}, objects={self.objects}, {self.duration_s:.2f}s)"


@dataclass
class ClusterExtract:
    cluster_name: str
    cluster_uid: str | None
    server_version: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, TableExtract] = field(default_factory=dict)
    duration_s: float = 0.0
    error: str | None = None
    """Set when the cluster could not be reached at all; every table then carries this failure."""

    @property
    def failed_tables(self) -> list[str]:
        return [name for name, t in self.tables.items() if t.rows is None]

    def __repr__(self) -> str:
        ok = sum(1 for t in self.tables.values() if t.rows is not None)
        return (
            f"ClusterExtract({self.cluster_name!r}, uid={self.cluster_uid!r}, "
            f"{ok}/{len(self.tables)} tables ok, {self.duration_s:.2f}s)"
        )
