"""What to collect from a cluster: which tables, which custom kinds, which namespaces, how many objects.

A selection is ordered glob lists in which a pattern starting with `!` excludes: a name is collected
when it matches some include pattern (no include pattern: every name) and no exclude pattern.

* `tables`: fleet table names (`"!kubernetes_secrets"`, `"kubernetes_pod*"`). An excluded table is
  not listed at all (no API call) and its rows for the cluster are deleted at the next refresh.
* `custom_kinds`: `group/Kind` or `group/plural` (`"cert-manager.io/*"`, `"!*.internal.example.com/*"`).
* `exclude_namespaces`: namespaces whose rows are dropped from every table with a namespace column.
  Their objects are still listed (one list per kind serves every namespace) but never stored.
* `max_objects_per_kind`: a custom kind with more objects is not loaded (a failed kind, noted), so a
  runaway CRD cannot flood the database.

The default collects everything. A selection comes from the inventory file (a fleet-wide `collect:`
block and per-cluster `collect:` overrides, key by key) or from `kq clusters add` options, and is
stored with the cluster in kq_meta.clusters.collect.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from fnmatch import fnmatchcase
from typing import Any

from kq_pipeline.registry import TABLES
from kq_pipeline.registry import table as registry_table

DEFAULT_MAX_OBJECTS_PER_KIND = 50_000
TABLE_PREFIX = "kubernetes_"
_GLOB = r"*?\[\]"
_TABLE_PATTERN = re.compile(rf"^[a-z0-9_{_GLOB}]+$")
# DNS subdomain (group) / DNS label (namespace) characters, plus glob characters.
_GROUP_PATTERN = re.compile(rf"^[a-z0-9.{_GLOB}-]+$")
_KIND_PATTERN = re.compile(rf"^[A-Za-z0-9{_GLOB}-]+$")
_NAMESPACE_PATTERN = re.compile(rf"^[a-z0-9{_GLOB}-]+$")
KEYS = ("tables", "custom_kinds", "exclude_namespaces", "max_objects_per_kind")


class CollectError(ValueError):
    """A selection that cannot be right (bad pattern, unknown table): one line for the user."""


def _split(patterns: Iterable[str]) -> tuple[list[str], list[str]]:
    include, exclude = [], []
    for p in patterns:
        (exclude if p.startswith("!") else include).append(p.removeprefix("!"))
    return include, exclude


def selected(names: Iterable[str], patterns: Iterable[str]) -> bool:
    """Whether any of `names` (one object's names: "group/Kind" and "group/plural") is selected."""
    include, exclude = _split(patterns)
    names = list(names)
    if any(fnmatchcase(n, p) for n in names for p in exclude):
        return False
    return not include or any(fnmatchcase(n, p) for n in names for p in include)


def _check_tables(patterns: tuple[str, ...]) -> None:
    for raw in patterns:
        p = raw.removeprefix("!")
        if not _TABLE_PATTERN.match(p):
            raise CollectError(
                f"collect.tables: {raw!r} is not a table name or glob (e.g. '!kubernetes_secrets')"
            )
        if not any(fnmatchcase(t, p) for t in TABLES):
            close = difflib.get_close_matches(p, list(TABLES), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise CollectError(f"collect.tables: {raw!r} matches no table{hint}")


def _check_kinds(patterns: tuple[str, ...]) -> None:
    for raw in patterns:
        group, slash, kind = raw.removeprefix("!").partition("/")
        if not (slash and group and kind and _GROUP_PATTERN.match(group) and _KIND_PATTERN.match(kind)):
            raise CollectError(
                f"collect.custom_kinds: {raw!r} is not group/Kind or group/plural "
                "(e.g. 'cert-manager.io/*', '!*.internal.example.com/*')"
            )


def _check_namespaces(patterns: tuple[str, ...]) -> None:
    for p in patterns:
        if p.startswith("!") or not _NAMESPACE_PATTERN.match(p):
            raise CollectError(
                f"collect.exclude_namespaces: {p!r} is not a namespace name or glob (e.g. 'tenant-*')"
            )


@dataclass(frozen=True)
class Collect:
    tables: tuple[str, ...] = ()
    custom_kinds: tuple[str, ...] = ()
    exclude_namespaces: tuple[str, ...] = ()
    max_objects_per_kind: int = DEFAULT_MAX_OBJECTS_PER_KIND

    def __post_init__(self) -> None:
        for name in ("tables", "custom_kinds", "exclude_namespaces"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(p, str) and p for p in value):
                raise CollectError(f"collect.{name} must be a list of non-empty strings, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        limit = self.max_objects_per_kind
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise CollectError(f"collect.max_objects_per_kind must be a positive integer, got {limit!r}")
        _check_tables(self.tables)
        _check_kinds(self.custom_kinds)
        _check_namespaces(self.exclude_namespaces)

    # -- decisions ---------------------------------------------------------------------------------
    def table_collected(self, table: str) -> bool:
        return selected([table], self.tables)

    def kind_collected(self, group: str, kind: str, plural: str) -> bool:
        return selected([f"{group}/{kind}", f"{group}/{plural}"], self.custom_kinds)

    def namespace_excluded(self, namespace: str | None) -> bool:
        return bool(namespace) and any(fnmatchcase(namespace, p) for p in self.exclude_namespaces)

    @property
    def is_default(self) -> bool:
        return self == Collect()

    # -- storage and display -----------------------------------------------------------------------
    def to_json(self) -> dict[str, Any] | None:
        """What kq_meta.clusters.collect stores: the keys that differ from the default; None for none."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out or None

    @classmethod
    def from_json(cls, doc: Mapping[str, Any] | None) -> Collect:
        return collect_from_mapping(doc or {}, "kq_meta.clusters.collect")

    def summary(self) -> str:
        """One short line for `kq clusters list`: "all", or what differs ("-secrets; custom: x.io/*")."""
        parts: list[str] = []
        if self.tables:
            include, exclude = _split(self.tables)
            short = [p.removeprefix(TABLE_PREFIX) for p in include] + [
                "-" + p.removeprefix(TABLE_PREFIX) for p in exclude
            ]
            parts.append(",".join(short))
        if self.custom_kinds:
            parts.append("custom: " + ",".join(self.custom_kinds))
        if self.exclude_namespaces:
            parts.append("-ns: " + ",".join(self.exclude_namespaces))
        if self.max_objects_per_kind != DEFAULT_MAX_OBJECTS_PER_KIND:
            parts.append(f"max {self.max_objects_per_kind}/kind")
        return "; ".join(parts) or "all"


def _patterns(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str):  # one pattern, or several separated by commas (CLI style)
        value = [v.strip() for v in value.split(",")]
    if not isinstance(value, list | tuple):
        raise CollectError(f"collect.{key} must be a list of patterns, got {value!r}")
    return tuple(value)


def collect_from_mapping(doc: Any, where: str) -> Collect:
    """A selection from a mapping (YAML, JSON, CLI options), every mistake a CollectError naming `where`."""
    if not isinstance(doc, Mapping):
        raise CollectError(f"{where}: collect must be a mapping with keys {', '.join(KEYS)}")
    unknown = sorted(set(doc) - set(KEYS))
    if unknown:
        raise CollectError(f"{where}: collect has unknown keys {unknown} (known: {', '.join(KEYS)})")
    kwargs: dict[str, Any] = {}
    try:
        for key in KEYS[:3]:
            if doc.get(key) is not None:
                kwargs[key] = _patterns(doc[key], key)
        if doc.get("max_objects_per_kind") is not None:
            kwargs["max_objects_per_kind"] = doc["max_objects_per_kind"]
        return Collect(**kwargs)
    except CollectError as exc:
        raise CollectError(f"{where}: {exc}") from None


def merged(default: Mapping[str, Any] | None, override: Mapping[str, Any] | None) -> dict[str, Any]:
    """A cluster's collect mapping over the fleet default's: each key it gives replaces the default's."""
    return {**(default or {}), **(override or {})}


# -- applying a selection --------------------------------------------------------------------------
EXCLUDED_NOTE = "excluded by the cluster's selection (collect.tables)"
NO_KUBEQUERY_NOTE = "not available with the kubequery extractor (kubequery has no such table)"


def not_collected(collect: Collect, extractor: str, tables: Sequence[str]) -> dict[str, str]:
    """The tables of `tables` a cluster does not collect, and why (the note of its 'excluded' load):
    its selection leaves them out, or its extractor (kubequery) has no such table."""
    out: dict[str, str] = {}
    for table in tables:
        if not collect.table_collected(table):
            out[table] = EXCLUDED_NOTE
        elif extractor == "kubequery" and not registry_table(table).kubequery:
            out[table] = NO_KUBEQUERY_NOTE
    return out


def without_excluded_namespaces(
    table: str, rows: list[dict[str, str]], collect: Collect
) -> tuple[list[dict[str, str]], str | None]:
    """The rows of `table` outside the excluded namespaces, and a note when some were dropped."""
    if not collect.exclude_namespaces or not rows or not registry_table(table).namespaced:
        return rows, None
    kept = [r for r in rows if not collect.namespace_excluded(r.get("namespace"))]
    dropped = len(rows) - len(kept)
    if not dropped:
        return rows, None
    return kept, f"{dropped} row(s) of excluded namespaces not stored (collect.exclude_namespaces)"
