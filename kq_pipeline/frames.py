"""Typed frames: kubequery rows (all values strings, omitted keys) → one pandas DataFrame per table.

The frame has exactly the table's storage columns in registry order: INTEGER/BIGINT as nullable
`Int64`, TEXT (JSON included, kept as JSON text for COPY into jsonb) as `object` with None for a
missing value, and `cluster_name` set on every row. Values PostgreSQL cannot store are made safe
(and counted in `sanitized`) or their row is rejected (and listed in `rejected`), never silently:

- NUL characters (text cannot hold \\x00; jsonb cannot hold the escape \\u0000): removed;
- lone surrogates (invalid UTF-8 on the wire): replaced by U+FFFD;
- integers that do not parse or do not fit the column (INTEGER is int32): row rejected;
- JSON that does not parse: row rejected.

Columns are built whole (one list comprehension per column, whole-column checks first), so the
common case costs a few C-level passes per column rather than Python work per value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import orjson
import pandas as pd

from kq_pipeline.db.schema import storage_columns
from kq_pipeline.registry import Column
from kq_pipeline.registry import table as registry_table

INT_RANGES = {"INTEGER": (-(2**31), 2**31 - 1), "BIGINT": (-(2**63), 2**63 - 1)}
# \u0000 preceded by an even number of backslashes is a NUL escape, not a literal "\\u0000".
_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")
_SEP = "\x01"


@dataclass(frozen=True)
class Rejection:
    row_index: int
    """Index of the row in the input list."""
    column: str
    reason: str


@dataclass
class TypedFrame:
    table: str
    frame: pd.DataFrame
    """Accepted rows only, in input order, with a fresh RangeIndex."""
    rejected: list[Rejection] = field(default_factory=list)
    sanitized: int = 0
    """Values changed to be storable (NUL removed, surrogates replaced)."""
    dropped_columns: tuple[str, ...] = ()
    """Keys found in the rows that the table does not have (ignored, reported here)."""

    @property
    def rows_rejected(self) -> int:
        return len({r.row_index for r in self.rejected})


def to_frame(
    table: str, rows: Sequence[Mapping[str, str]], *, cluster_name: str, validate_json: bool = True
) -> TypedFrame:
    """Build the typed frame of one table for one cluster (see the module docstring).

    `validate_json=False` is for rows whose JSON the project rendered itself from parsed objects
    (the native extractor): parsing it again cannot fail and cost a third of the frame time. Rows
    from elsewhere (kubequery's output) are always validated."""
    columns = storage_columns(registry_table(table))
    n = len(rows)
    rejected: list[Rejection] = []
    sanitized = 0
    data: dict[str, object] = {}
    for col in columns:
        if col.name == "cluster_name":
            data[col.name] = np.full(n, cluster_name, dtype=object)
            continue
        raw = [r.get(col.name) for r in rows]
        if col.kq_type == "TEXT":
            values, changed = _text_column(raw, col, rejected, validate_json)
            sanitized += changed
            data[col.name] = np.array(values, dtype=object) if n else np.empty(0, dtype=object)
        else:
            data[col.name] = _int_column(raw, col, rejected)
    frame = pd.DataFrame(data, copy=False)
    if rejected:
        bad = np.zeros(n, dtype=bool)
        bad[[r.row_index for r in rejected]] = True
        frame = frame.loc[~bad].reset_index(drop=True)
    known = {c.name for c in columns}
    dropped = tuple(sorted(set().union(*rows) - known)) if n else ()
    return TypedFrame(table, frame, rejected, sanitized, dropped)


def _text_column(raw: list, col: Column, rejected: list[Rejection], validate_json: bool) -> tuple[list, int]:
    """The column's values as storable str/None, and how many were changed."""
    present = [v for v in raw if v is not None]
    if not present:
        return raw, 0
    try:
        joined = _SEP.join(present)
    except TypeError:  # a non-str value: kubequery rows are strings, but be lenient with numbers
        raw = [v if v is None or isinstance(v, str) else str(v) for v in raw]
        joined = _SEP.join(v for v in raw if v is not None)
    changed = 0
    if "\x00" in joined or (col.is_json and "\\u0000" in joined):
        raw, changed = _strip_nul(raw, col.is_json)
        joined = _SEP.join(v for v in raw if v is not None)
    if not joined.isascii():
        try:
            joined.encode("utf-8")
        except UnicodeEncodeError:
            raw, n_fixed = _replace_surrogates(raw)
            changed += n_fixed
    if col.is_json and validate_json:
        _check_json(raw, col, rejected)
    return raw, changed


def _strip_nul(raw: list, is_json: bool) -> tuple[list, int]:
    out, changed = [], 0
    for v in raw:
        if v is not None:
            fixed = v.replace("\x00", "")
            if is_json and "\\u0000" in fixed:
                fixed = _JSON_NUL.sub(r"\1", fixed)
            if fixed != v:
                changed += 1
                v = fixed
        out.append(v)
    return out, changed


def _replace_surrogates(raw: list) -> tuple[list, int]:
    out, changed = [], 0
    for v in raw:
        if v is not None and not v.isascii():
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                v = v.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
                changed += 1
        out.append(v)
    return out, changed


def _check_json(raw: list, col: Column, rejected: list[Rejection]) -> None:
    for i, v in enumerate(raw):
        if v is None:
            continue
        try:
            orjson.loads(v)
        except orjson.JSONDecodeError as exc:
            rejected.append(Rejection(i, col.name, f"not valid JSON: {exc}"))


def _int_column(raw: list, col: Column, rejected: list[Rejection]) -> pd.arrays.IntegerArray:
    lo, hi = INT_RANGES[col.kq_type]
    n = len(raw)
    mask = np.fromiter((v is None for v in raw), dtype=bool, count=n)
    try:
        values = np.array([0 if v is None else int(v) for v in raw], dtype=np.int64)
        if col.kq_type == "INTEGER" and n and ((values < lo) | (values > hi)).any():
            raise OverflowError
    except (ValueError, TypeError, OverflowError):
        values = np.zeros(n, dtype=np.int64)
        for i, v in enumerate(raw):
            if v is None:
                continue
            try:
                x = int(v)
            except (ValueError, TypeError):
                rejected.append(Rejection(i, col.name, f"not an integer: {str(v)[:40]!r}"))
                mask[i] = True
                continue
            if not lo <= x <= hi:
                rejected.append(Rejection(i, col.name, f"{x} is out of range for {col.kq_type.lower()}"))
                mask[i] = True
                continue
            values[i] = x
    return pd.arrays.IntegerArray(values, mask)
