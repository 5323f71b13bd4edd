"""What `kq load` says about a run, from kq_meta.loads: one line per cluster, and (with --tables) the
per-table report users of the original aggregator know.

Everything here formats; nothing prints. A line never exceeds the width it is given, so a fleet of
hundreds of clusters stays one screen line per cluster whatever the errors say.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import psycopg

RULE = "-" * 78
MAX_NAME_WIDTH = 40
MIN_REASON_WIDTH = 30


@dataclass(frozen=True)
class TableLoad:
    """One kq_meta.loads row of a run."""

    id: int
    cluster: str
    server: str
    table: str
    status: str
    rows_loaded: int | None
    rows_rejected: int
    duration_ms: float
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None
    note: str | None = None

    @property
    def ok(self) -> bool:
        """Not failed: loaded, or not collected for this cluster (excluded)."""
        return self.status != "failed"

    @property
    def excluded(self) -> bool:
        return self.status == "excluded"


@dataclass
class ClusterResult:
    """A cluster's outcome in one run, as kq reports it."""

    name: str
    ok: bool
    rows: int = 0
    duration_s: float = 0.0
    reason: str = ""
    """Why it failed (one line), or a note on a success (rejected rows)."""
    server: str = ""
    tables: list[TableLoad] = field(default_factory=list)


def fetch_loads(conn: psycopg.Connection, run_id: str, skip: Sequence[str] = ()) -> list[TableLoad]:
    """The run's kq_meta.loads rows, in id order, but those of the clusters in `skip` (already reported).

    Not "ids above the last seen": a cluster's rows commit together at the end of its transaction,
    so a cluster that started earlier commits lower ids after a later one's higher ids."""
    with conn.cursor() as cur:
        cur.execute(
            """
            SELECT l.id, l.cluster_name, coalesce(c.server, ''), l.table_name, l.status, l.rows_loaded,
                   coalesce(l.rows_rejected, 0),
                   coalesce(l.duration_ms, extract(epoch FROM l.finished_at - l.started_at) * 1000, 0),
                   l.error, l.started_at, l.finished_at, l.note
            FROM kq_meta.loads l LEFT JOIN kq_meta.clusters c ON c.name = l.cluster_name
            WHERE l.run_id = %s AND l.cluster_name <> ALL(%s)
            ORDER BY l.id
            """,
            (run_id, list(skip)),
        )
        return [
            TableLoad(r[0], r[1], r[2], r[3], r[4], r[5], int(r[6]), float(r[7]), r[8], r[9], r[10], r[11])
            for r in cur.fetchall()
        ]


def one_line(text: str) -> str:
    """Collapse newlines and runs of blanks: an error message must never break the one-line layout."""
    return re.sub(r"\s+", " ", text).strip()


def truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 3)] + "..."


def strip_context(error: str, cluster: str, table: str | None = None) -> str:
    """Drop the "cluster X: " and "table T: " prefixes: the line already names the cluster, and the
    same cause repeated for 51 tables is one cause."""
    error = one_line(error)
    prefix = f"cluster {cluster}: "
    if error.startswith(prefix):
        error = error[len(prefix) :]
    if table and error.startswith(f"table {table}: "):
        error = error[len(f"table {table}: ") :]
    return error


def failure_reason(cluster: str, loads: Sequence[TableLoad]) -> str:
    """One cause for a cluster's failed tables: the shared error when they share one (an unreachable
    server fails every table the same way), else how many failed and the first one's error."""
    failed = [t for t in loads if not t.ok]
    if not failed:
        return ""
    errors = [strip_context(t.error or "failed", cluster, t.table) for t in failed]
    first = failed[0]
    collected = [t for t in loads if not t.excluded]
    if len(failed) == len(collected) and len(set(errors)) == 1:
        return errors[0]
    if len(failed) == 1:
        return f"{first.table}: {errors[0]}"
    return f"{len(failed)} of {len(collected)} tables failed; {first.table}: {errors[0]}"


def cluster_result(cluster: str, loads: Sequence[TableLoad]) -> ClusterResult:
    """Sum one cluster's table loads into its result (its duration: first start to last finish)."""
    ok = bool(loads) and all(t.ok for t in loads)
    starts = [t.started_at for t in loads if t.started_at]
    ends = [t.finished_at for t in loads if t.finished_at]
    duration = (
        (max(ends) - min(starts)).total_seconds()
        if starts and ends
        else sum(t.duration_ms for t in loads) / 1000
    )
    rejected = sum(t.rows_rejected for t in loads)
    reason = failure_reason(cluster, loads) if not ok else (f"{rejected} rows rejected" if rejected else "")
    return ClusterResult(
        name=cluster,
        ok=ok,
        rows=sum(t.rows_loaded or 0 for t in loads if t.ok),
        duration_s=max(0.0, duration),
        reason=reason or ("" if ok else "no table loaded"),
        server=loads[0].server if loads else "",
        tables=list(loads),
    )


def name_width(names: Sequence[str]) -> int:
    return min(MAX_NAME_WIDTH, max((len(n) for n in names), default=0))


def cluster_line(result: ClusterResult, *, name_width: int, columns: int) -> str:
    """`name  rows  duration  ok|failed: reason`, cut to `columns` characters."""
    head = f"{result.name:<{name_width}}  {result.rows:>9,} rows  {result.duration_s:>6.1f}s  "
    status = f"failed: {result.reason}"
    if result.ok:
        status = f"ok ({result.reason})" if result.reason else "ok"
    return truncate(head + status, max(columns, len(head) + MIN_REASON_WIDTH))


def table_report(result: ClusterResult) -> list[str]:
    """The aggregator's per-cluster block: a header, then one line per table (with its note, if any:
    a kind not served, custom kinds that kept their previous rows, why a table is excluded)."""
    lines = [RULE, f"Cluster REPORT {result.name} - {result.server}", RULE]
    collected = [t for t in result.tables if not t.excluded]
    if collected and not any(t.ok for t in collected):  # the cluster itself failed: say it once
        lines.append(f"  {result.name} FAILED (all {len(collected)} tables): {collected[0].error}")
        collected = []
    for t in result.tables:
        note = f" ({one_line(t.note)})" if t.note else ""
        if t.excluded:
            lines.append(f"  {result.name} {t.table} EXCLUDED{note}")
        elif t not in collected:
            continue
        elif t.ok:
            lines.append(
                f"  {result.name} {t.table} Rows={t.rows_loaded}, Duration={t.duration_ms:.1f}ms{note}"
            )
        else:
            lines.append(f"  {result.name} {t.table} FAILED: {t.error}")
    return lines


def summary_line(loaded: int, failed: Sequence[str], elapsed_s: float, *, columns: int) -> str:
    """One line however many failed: the names that fit, then "... and N more"."""
    line = f"{loaded} cluster(s) loaded, {len(failed)} failed in {elapsed_s:.1f}s"
    if not failed:
        return line
    line += ": "
    shown: list[str] = []
    for i, name in enumerate(failed):
        rest = len(failed) - i - 1
        tail = f", ... and {rest} more" if rest else ""
        if shown and len(line) + len(", ".join([*shown, name])) + len(tail) > columns:
            break
        shown.append(name)
    hidden = len(failed) - len(shown)
    return line + ", ".join(shown) + (f", ... and {hidden} more" if hidden else "")
