"""kubequery extraction mode: the rows come from kubequery itself, run against the remote cluster.

For users who trust the kubequery binary over the native extractor. As in the original aggregator,
each table is one `basequery --json` process (`kubequery/runquery.sh`, remote-access patch, see
kubequery/README.md); tables run concurrently up to a bound, each under a timeout. The token is
handed to each child through its environment only.

**All or nothing per cluster.** If any table fails (runner missing, non-zero exit, timeout,
unparsable output, a key that is not a column, no rows where a cluster always has some), EVERY
table of the cluster is returned failed (`rows=None`) with an error naming the cluster and the
failing table, so the refresh loads nothing for that cluster and keeps its previous snapshot. One
kubequery process per table sees the cluster at different instants; a partial set would mix them
with the previous load's tables, and a failing binary is more often broken for every table.

Rows have the native extractor's shape (`dict[str, str]`, no key for an omitted value), so the same
typed frames follow. basequery prints every column and "" for SQL NULL; kubequery never emits an
empty string (it omits the key), so "" is read back as "no key".
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from kq_pipeline.extract.kubequery_runner import (
    Aborted,
    KubequeryRunError,
    Target,
    run_table,
    runner_path,
    table_timeout_s,
)
from kq_pipeline.extract.result import ClusterExtract, Row, TableExtract
from kq_pipeline.extract.secrets import LAST_APPLIED, redact_last_applied
from kq_pipeline.kube.errors import KubeConfigError
from kq_pipeline.registry import NEVER_EMPTY
from kq_pipeline.registry import table as registry_table
from kq_pipeline.rows.memo import encoder

log = logging.getLogger(__name__)

PROBE_TABLE = "kubernetes_info"
EVENTS_NOTE = (
    "kubequery mode: kubequery streams kubernetes_events; a one-shot query returns the events it saw "
    "while it ran, not a snapshot"
)
# API versions kubequery 1.1.1 (client-go 0.21) lists that newer Kubernetes no longer serves:
# (group_version, resource) -> first 1.x minor without it. kubequery gets a 404 for those tables.
REMOVED_IN: dict[tuple[str, str], int] = {
    ("batch/v1beta1", "cronjobs"): 25,
    ("policy/v1beta1", "poddisruptionbudgets"): 25,
    ("policy/v1beta1", "podsecuritypolicies"): 25,
}
# kubernetes_info columns -> the /version document keys the native extractor reports.
_VERSION_KEYS = {
    "major": "major",
    "minor": "minor",
    "git_version": "gitVersion",
    "git_commit": "gitCommit",
    "git_tree_state": "gitTreeState",
    "build_date": "buildDate",
    "go_version": "goVersion",
    "compiler": "compiler",
    "platform": "platform",
}
SECRETS_TABLE = "kubernetes_secrets"
_ENCODER_LOCK = threading.Lock()


def parse_rows(cluster_name: str, table: str, stdout: bytes) -> list[Row]:
    """kubequery's JSON (a list of row objects) as rows; KubequeryRunError if it is not exactly that."""
    where = f"cluster {cluster_name}: kubequery table {table}"
    if not stdout.strip():
        raise KubequeryRunError(f"{where}: no output (basequery --json prints a JSON array even for no rows)")
    try:
        doc = orjson.loads(stdout)
    except orjson.JSONDecodeError as exc:
        raise KubequeryRunError(f"{where}: output is not JSON ({exc})") from None
    if not isinstance(doc, list):
        raise KubequeryRunError(f"{where}: output is a JSON {type(doc).__name__}, not a list of rows")
    columns = {c.name: c for c in registry_table(table).columns}
    rows: list[Row] = []
    for i, obj in enumerate(doc):
        if not isinstance(obj, dict):
            raise KubequeryRunError(f"{where}: row {i} is a JSON {type(obj).__name__}, not an object")
        unknown = [k for k in obj if k not in columns]
        if unknown:
            raise KubequeryRunError(
                f"{where}: row {i} has keys that are not columns of {table}: {unknown[:5]}"
            )
        row: Row = {}
        for key, value in obj.items():
            if isinstance(value, str):
                if value:
                    row[key] = value
            elif value is None:
                continue
            elif isinstance(value, int) and not isinstance(value, bool) and columns[key].kq_type != "TEXT":
                row[key] = str(value)
            else:
                raise KubequeryRunError(
                    f"{where}: row {i} column {key} is a JSON {type(value).__name__}, not a string"
                )
        rows.append(row)
    if not rows and table in NEVER_EMPTY:
        raise KubequeryRunError(f"{where}: no rows, but every cluster has some; refusing an empty snapshot")
    return rows


def redact_secret_rows(rows: list[Row]) -> None:
    """Redact values kubectl copied into Secrets' last-applied-configuration, as the native extractor does.

    kubequery stores that annotation as is; the re-rendered `annotations` is byte-identical to what
    the native row builders give for the redacted Secret (Go's map[string]string JSON).
    """
    with _ENCODER_LOCK:  # gojson compiles on first use and is not thread-safe while it does
        render = encoder("map[string]string")
    for row in rows:
        text = row.get("annotations")
        if not text or LAST_APPLIED not in text:
            continue
        try:
            annotations = orjson.loads(text)
        except orjson.JSONDecodeError:
            row["annotations"] = render({LAST_APPLIED: redact_last_applied(None)})
            continue
        if isinstance(annotations, dict) and LAST_APPLIED in annotations:
            annotations[LAST_APPLIED] = redact_last_applied(annotations[LAST_APPLIED])
            row["annotations"] = render(annotations)


def _check_identity(cluster_name: str, table: str, rows: list[Row], cluster_uid: str | None) -> str | None:
    """The cluster_uid the rows carry; fails when kubequery reports another cluster's name or uid."""
    where = f"cluster {cluster_name}: kubequery table {table}"
    names = {r.get("cluster_name") for r in rows}
    if names and names != {cluster_name}:
        raise KubequeryRunError(
            f"{where}: rows name cluster(s) {sorted(str(n) for n in names)}; the image is missing the "
            "remote-access patch (KUBEQUERY_CLUSTER_NAME) or probes another cluster"
        )
    uids = {r.get("cluster_uid") for r in rows}
    if len(uids) > 1 or (cluster_uid and uids and uids != {cluster_uid}):
        raise KubequeryRunError(
            f"{where}: rows carry cluster_uid {sorted(str(u) for u in uids)}, expected {cluster_uid}"
        )
    return next(iter(uids), None)


def _target(access: Any, cluster_name: str, ca_dir: str) -> Target:
    token = access.bearer_token()
    if not token:
        raise KubeConfigError(
            f"cluster {cluster_name}: kubequery mode needs a bearer token (the remote-access patch does not "
            "take client certificates)",
            cluster=cluster_name,
        )
    ca_file = access.ca_file
    if access.ca_data and not access.insecure_skip_tls_verify:
        pem = access.ca_data.encode() if isinstance(access.ca_data, str) else access.ca_data
        ca_file = str(Path(ca_dir) / "ca.pem")  # a CA certificate is public; the dir is private anyway
        Path(ca_file).write_bytes(pem)
    if access.insecure_skip_tls_verify:
        log.warning(
            "cluster %s: kubequery runs with TLS verification disabled (insecure-skip-tls-verify)",
            cluster_name,
        )
    return Target(
        cluster_name=cluster_name,
        address=access.server,
        token=token,
        ca_file=ca_file,
        tls_server_name=getattr(access, "tls_server_name", None),
        insecure_skip_tls_verify=access.insecure_skip_tls_verify,
    )


def _minor(server_version: dict[str, str]) -> int | None:
    digits = "".join(ch for ch in server_version.get("minor", "") if ch.isdigit())
    return int(digits) if digits else None


def unserved_note(table: str, server_version: dict[str, str]) -> str | None:
    """Why kubequery cannot read `table` from this cluster (its API version was removed), or None."""
    src = registry_table(table).source
    removed = REMOVED_IN.get((src.api_version or "", src.resource or ""))
    minor = _minor(server_version)
    if removed is None or minor is None or minor < removed:
        return None
    return (
        f"kubequery reads {src.kind} at {src.api_version}, which Kubernetes removed in 1.{removed}; "
        f"this cluster runs {server_version.get('gitVersion', f'1.{minor}')}: empty table "
        "(the native extractor reads the served version)"
    )


def _server_version(info_rows: list[Row]) -> dict[str, str]:
    row = info_rows[0] if info_rows else {}
    return {key: row[col] for col, key in _VERSION_KEYS.items() if col in row}


def _all_failed(
    tables: list[str], error: str, durations: dict[str, float] | None = None
) -> dict[str, TableExtract]:
    durations = durations or {}
    return {
        t: TableExtract(table=t, rows=None, error=error, objects=0, duration_s=durations.get(t, 0.0))
        for t in tables
    }


def _failed(cluster_name: str, tables: list[str], error: str, started: float, **kw: Any) -> ClusterExtract:
    """Every table failed; `error` is also the cluster's error unless `cluster_error` says otherwise."""
    return ClusterExtract(
        cluster_name=cluster_name,
        cluster_uid=kw.get("cluster_uid"),
        server_version=kw.get("server_version") or {},
        tables=_all_failed(tables, error, kw.get("durations")),
        duration_s=time.monotonic() - started,
        error=kw.get("cluster_error", error),
    )


def extract_cluster(
    access: Any,
    cluster_name: str,
    tables: Iterable[str],
    *,
    concurrency: int = 4,
    deadline_s: float = 300,
    page_limit: int = 500,
    runner: str | os.PathLike[str] | None = None,
) -> ClusterExtract:
    """Rows of `tables` for one cluster, from kubequery (one runner process per table).

    Same contract as `native.extract_cluster` (`page_limit` is unused: kubequery pages itself), except
    that any failing table fails every table of the cluster (see the module docstring). `access` is a
    `kq_pipeline.kube.access.ClusterAccess`; its token is read now, so a rotated token is picked up.
    `runner` overrides $KQ_KUBEQUERY_RUNNER and the repo's kubequery/runquery.sh.
    """
    del page_limit
    wanted = list(dict.fromkeys(tables))
    for name in wanted:
        registry_table(name)  # UnknownTableError before any process starts
    path = runner_path(runner)
    started = time.monotonic()
    durations: dict[str, float] = {}

    def remaining() -> float:
        return deadline_s - (time.monotonic() - started)

    with tempfile.TemporaryDirectory(prefix="kq-kubequery-") as tmp:
        try:
            target = _target(access, cluster_name, tmp)
        except KubeConfigError as exc:
            return _failed(cluster_name, wanted, str(exc), started)

        def call(table: str, index: int, cluster_uid: str, abort: threading.Event | None) -> list[Row]:
            t0 = time.monotonic()
            try:
                budget = min(table_timeout_s(), remaining())
                if budget <= 0:
                    raise KubequeryRunError(
                        f"cluster {cluster_name}: kubequery table {table}: "
                        f"cluster deadline of {deadline_s:.0f}s passed"
                    )
                out = run_table(
                    path,
                    target,
                    table,
                    cluster_uid=cluster_uid,
                    index=index,
                    tmpdir=tmp,
                    timeout_s=budget,
                    abort=abort,
                )
                rows = parse_rows(cluster_name, table, out)
                del out
                if table == SECRETS_TABLE:
                    redact_secret_rows(rows)
                _check_identity(cluster_name, table, rows, cluster_uid or None)
                return rows
            finally:
                durations[table] = time.monotonic() - t0

        # The probe: one cheap table first gives the cluster uid and server version, and fails fast on
        # bad credentials instead of in 51 processes.
        try:
            info_rows = call(PROBE_TABLE, 0, "", None)
            cluster_uid = _check_identity(cluster_name, PROBE_TABLE, info_rows, None) or ""
            if not cluster_uid:
                raise KubequeryRunError(
                    f"cluster {cluster_name}: kubequery table {PROBE_TABLE}: no cluster_uid"
                )
        except KubequeryRunError as exc:
            log.warning("%s", exc)
            return _failed(cluster_name, wanted, str(exc), started, durations=durations)

        results: dict[str, list[Row]] = {PROBE_TABLE: info_rows}
        server_version = _server_version(info_rows)
        notes = {t: n for t in wanted if (n := unserved_note(t, server_version))}
        results.update({t: [] for t in notes})
        rest = [t for t in wanted if t != PROBE_TABLE and t not in notes]
        abort = threading.Event()
        failures: list[tuple[str, KubequeryRunError]] = []

        def job(table: str, index: int) -> None:
            if abort.is_set():
                return
            try:
                results[table] = call(table, index, cluster_uid, abort)
            except Aborted:
                pass
            except KubequeryRunError as exc:
                failures.append((table, exc))
                abort.set()

        with ThreadPoolExecutor(
            max_workers=max(1, concurrency), thread_name_prefix=f"kq-{cluster_name}"
        ) as pool:
            for f in [pool.submit(job, t, i) for i, t in enumerate(rest, start=1)]:
                f.result()

    if failures:
        table, exc = failures[0]
        error = (
            f"{exc} (kubequery mode loads a cluster whole or not at all: nothing loaded for {cluster_name})"
        )
        log.warning("%s", error)
        return _failed(
            cluster_name,
            wanted,
            error,
            started,
            cluster_uid=cluster_uid,
            server_version=server_version,
            durations=durations,
            cluster_error=None,
        )
    return ClusterExtract(
        cluster_name=cluster_name,
        cluster_uid=cluster_uid,
        server_version=server_version,
        tables={
            # kubequery does not say how many objects it listed, so `objects` stays 0.
            t: TableExtract(
                table=t,
                rows=results[t],
                duration_s=durations.get(t, 0.0),
                note=EVENTS_NOTE if t == "kubernetes_events" else notes.get(t),
            )
            for t in wanted
        },
        duration_s=time.monotonic() - started,
    )
