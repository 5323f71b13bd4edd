"""The assets: one partitioned asset per Kubernetes API group (plus "custom": custom resources), and
every fleet table (kubequery's 51 and the two custom-resource tables) as a catalog entry.

Why groups and not tables: every asset-partition materialization costs Dagster 30-80 ms of
bookkeeping, so 51 per-table assets would cost seconds per cluster before any data moves. The
group assets are one subsettable multi-asset, so one op lists a cluster once for all selected groups.
A run may carry many clusters (a backfill batch); each cluster gets its own materialization and check
evaluation, and the run fails at the end, naming them, if any cluster failed. The table entries get
one materialization per run (not per cluster) with the table's fleet-wide row count, so the catalog
shows when each table was last loaded and how big it is.
"""

import time
import warnings
from collections.abc import Iterator, Sequence

import psycopg
from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetSpec,
    BackfillPolicy,
    Failure,
    MetadataValue,
    Output,
    PreviewWarning,
    TableColumn,
    TableSchema,
    multi_asset,
)
from psycopg import sql

from kq_pipeline.db.connection import connect
from kq_pipeline.defs.checks import ROW_COUNT_CHECK, judge_row_counts, previous_counts
from kq_pipeline.defs.partitions import clusters_partitions
from kq_pipeline.defs.resources import FleetDatabase, PollingSettings
from kq_pipeline.refresh import ClusterOutcome, iter_refresh_clusters
from kq_pipeline.registry import ASSET_GROUPS, TABLES

ASSET_PREFIX = "kubequery"
MAX_CLUSTERS_PER_RUN = 25
MAX_DROP_RATIO = 0.5
KINDS_METADATA = "kinds"
"""The custom group's materialization: rows per custom kind, {"cert-manager.io/Certificate": 120, ...}
(one JSON entry: the event is written once per cluster and refresh, so it stays one small value)."""
CHANGES_METADATA = "changes"
"""Each group's materialization: rows added/removed/modified since the cluster's previous load, per
table with any change, {"kubernetes_pods": {"added": 3, "removed": 3, "modified": 1}}; {} = unchanged."""

GROUP_DESCRIPTIONS = {
    "core": "Core API (v1) objects, plus events.k8s.io Events",
    "apps": "apps/v1 workloads: deployments, replica sets, daemon sets, stateful sets",
    "batch": "batch jobs and cron jobs",
    "autoscaling": "horizontal pod autoscalers",
    "networking": "networking.k8s.io: ingresses, ingress classes, network policies",
    "policy": "policy: pod disruption budgets, pod security policies",
    "rbac": "rbac.authorization.k8s.io roles, bindings and their rules/subjects",
    "storage": "storage.k8s.io: storage classes, CSI drivers and nodes, volume attachments",
    "admissionregistration": "mutating and validating admission webhooks",
    "discovery": "server version and API resources (discovery)",
    "custom": "custom resources: every CRD, and the objects of the selected established kinds",
}


def group_key(group: str) -> AssetKey:
    return AssetKey([ASSET_PREFIX, group])


KEY_TO_GROUP = {group_key(g): g for g in ASSET_GROUPS}


def _column_schema(table: str) -> TableSchema:
    kinds = {"TEXT": "text", "INTEGER": "integer", "BIGINT": "bigint"}
    return TableSchema(
        columns=[
            TableColumn(name=c.name, type="jsonb" if c.is_json else kinds[c.kq_type])
            for c in TABLES[table].columns
        ]
    )


group_specs = [
    AssetSpec(
        group_key(group),
        description=f"{GROUP_DESCRIPTIONS[group]}. Tables: {', '.join(tables)}.",
        group_name=ASSET_PREFIX,
        skippable=True,
        kinds={"kubernetes", "postgres"},
        metadata={"tables": MetadataValue.json(list(tables))},
    )
    for group, tables in ASSET_GROUPS.items()
]

# Partitioned check specs are a preview API in Dagster 1.13; they are what makes check results
# per cluster in a batched run, so we use them knowingly and keep the warning out of every log.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", category=PreviewWarning)
    row_count_checks = [
        AssetCheckSpec(
            ROW_COUNT_CHECK,
            asset=group_key(group),
            partitions_def=clusters_partitions,
            description=(
                "Per cluster, every table of the group: loaded == extracted, never empty where a live "
                f"cluster cannot be, and no drop of more than {MAX_DROP_RATIO:.0%} against the previous load."
            ),
        )
        for group in ASSET_GROUPS
    ]

table_specs = [
    AssetSpec(
        AssetKey(name),
        deps=[group_key(t.asset_group)],
        description=f"{'kubequery' if t.kubequery else 'kq-pipeline'} table {name} for every cluster "
        "(one snapshot per cluster_name).",
        group_name="tables",
        kinds={"postgres"},
        metadata={"dagster/column_schema": _column_schema(name), "dagster/table_name": f"public.{name}"},
    )
    for name, t in TABLES.items()
]


def _materialization(group: str, outcome: ClusterOutcome) -> AssetMaterialization:
    counts = {t: outcome.tables[t].rows_loaded or 0 for t in ASSET_GROUPS[group]}
    # The partition names the cluster; every entry here is stored once per cluster, group and refresh.
    metadata: dict[str, object] = {
        "dagster/row_count": sum(counts.values()),
        "dagster/partition_row_count": sum(counts.values()),
        "duration_s": round(sum(outcome.tables[t].duration_s for t in ASSET_GROUPS[group]), 3),
        **counts,
    }
    if outcome.server_version:
        metadata["server_version"] = outcome.server_version
    notes = {t: outcome.tables[t].note for t in ASSET_GROUPS[group] if outcome.tables[t].note}
    if notes:
        metadata["notes"] = MetadataValue.json(notes)
    changes = {t: c.as_dict() for t in ASSET_GROUPS[group] if (c := outcome.tables[t].changes) and c.total}
    if any(outcome.tables[t].changes is not None for t in ASSET_GROUPS[group]):
        # Rows added/removed/modified since the cluster's previous load, per table with any (history).
        metadata[CHANGES_METADATA] = MetadataValue.json(changes)
    for t in ASSET_GROUPS[group]:  # custom resources: rows per kind ("group/Kind"), kept kinds included
        parts = outcome.tables[t].parts
        if parts is not None:
            metadata[KINDS_METADATA] = MetadataValue.json({"/".join(key): n for key, n in parts.items()})
    return AssetMaterialization(asset_key=group_key(group), partition=outcome.cluster, metadata=metadata)


def _check_output_names(context: AssetExecutionContext) -> dict[str, str]:
    """The op output of each selected group's row-count check, by group."""
    return {
        KEY_TO_GROUP[key.asset_key]: context.assets_def.get_output_name_for_asset_check_key(key)
        for key in context.selected_asset_check_keys
        if key.name == ROW_COUNT_CHECK and key.asset_key in KEY_TO_GROUP
    }


def fleet_row_counts(conn: psycopg.Connection, tables: Sequence[str]) -> dict[str, int]:
    """Rows of each table over the whole fleet, in one statement (one snapshot).

    A snapshot is replaced whole, in the transaction that records its kq_meta.loads row, so a cluster's rows
    are its latest successful load's rows_loaded, unless the retire policy deleted them (hence EXISTS).
    That costs two index probes per cluster and table; count(*) reads every row instead, measured 3-6x
    slower at the original fleet's 105,000 pods right after a batch was replaced (issue 13)."""
    if not tables:
        return {}
    query = sql.SQL(" UNION ALL ").join(
        sql.SQL(
            "SELECT {name}, coalesce(sum(l.rows_loaded), 0)::bigint FROM kq_meta.clusters c "
            "CROSS JOIN LATERAL (SELECT rows_loaded FROM kq_meta.loads WHERE cluster_name = c.name "
            "AND table_name = {name} AND status = 'success' ORDER BY finished_at DESC LIMIT 1) l "
            "WHERE l.rows_loaded > 0 AND EXISTS (SELECT FROM {table} WHERE cluster_name = c.name)"
        ).format(name=sql.Literal(t), table=sql.Identifier(t))
        for t in tables
    )
    with conn.cursor() as cur:
        cur.execute(query)
        return {t: n for t, n in cur.fetchall()}


def table_materializations(
    conn: psycopg.Connection, tables: Sequence[str], outcomes: Sequence[ClusterOutcome]
) -> Iterator[AssetMaterialization]:
    """One materialization per table that some cluster of this run loaded, with the fleet-wide row count,
    so the catalog's 51 tables say when they were last loaded and how big they are. Per run, not per
    cluster: each event costs Dagster a write."""
    loaded: dict[str, list[tuple[str, int]]] = {}
    for outcome in outcomes:
        if outcome.error:
            continue
        for t in tables:
            result = outcome.tables.get(t)
            if result is not None and result.ok:
                loaded.setdefault(t, []).append((outcome.cluster, result.rows_loaded or 0))
    counts = fleet_row_counts(conn, [t for t in tables if t in loaded])
    for table, clusters in loaded.items():
        yield AssetMaterialization(
            asset_key=AssetKey(table),
            metadata={
                "dagster/row_count": counts[table],
                "clusters_loaded": len(clusters),
                "rows_loaded": sum(n for _, n in clusters),
                "clusters": ", ".join(sorted(c for c, _ in clusters)),
            },
        )


def _cluster_events(
    conn: psycopg.Connection,
    outcome: ClusterOutcome,
    groups: Sequence[str],
    tables: Sequence[str],
    run_id: str,
    check_outputs: dict[str, str],
    failed: dict[str, str],
) -> Iterator[AssetMaterialization | AssetCheckEvaluation | Output]:
    """One cluster's materialization and check evaluation per selected group; failures go to `failed`."""
    previous = previous_counts(conn, outcome.cluster, tables, run_id)
    for group in groups:
        group_tables = ASSET_GROUPS[group]
        if outcome.error or any(not outcome.tables[t].ok for t in group_tables):
            failed[outcome.cluster] = outcome.error or "; ".join(
                outcome.tables[t].error or "" for t in group_tables if not outcome.tables[t].ok
            )
            continue
        yield _materialization(group, outcome)
        verdict = judge_row_counts(outcome, group_tables, previous, MAX_DROP_RATIO)
        # Dagster counts a check as run only when its op output is emitted, as it does itself for an
        # AssetCheckResult; per-cluster evaluations don't, so emit it once per run.
        output_name = check_outputs.pop(group, None)
        if output_name:
            yield Output(None, output_name=output_name)
        yield AssetCheckEvaluation(
            asset_key=group_key(group),
            check_name=ROW_COUNT_CHECK,
            partition=outcome.cluster,
            passed=verdict.passed,
            severity=AssetCheckSeverity.ERROR,
            # A passed check's counts are the materialization's: stored once, not twice per cluster.
            metadata={}
            if verdict.passed
            else {
                "counts": MetadataValue.json(verdict.counts),
                "broken_rules": MetadataValue.json(verdict.broken),
            },
        )


@multi_asset(
    name="kubequery_snapshot",
    specs=group_specs,
    check_specs=row_count_checks,
    partitions_def=clusters_partitions,
    can_subset=True,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=MAX_CLUSTERS_PER_RUN),
    op_tags={"kind": "kubernetes"},
)
def kubequery_snapshot(context: AssetExecutionContext, fleet_db: FleetDatabase, polling: PollingSettings):
    """Extract the selected API groups of every cluster in this run and replace their snapshots."""
    groups = [KEY_TO_GROUP[k] for k in context.selected_asset_keys if k in KEY_TO_GROUP]
    tables = [t for g in groups for t in ASSET_GROUPS[g]]
    clusters = list(context.partition_keys)
    run_id = context.run.run_id
    dsn = fleet_db.dsn()
    t0 = time.perf_counter()
    context.log.info(
        f"refreshing {len(clusters)} cluster(s), groups: {', '.join(groups)} ({len(tables)} tables)"
    )

    def progress(outcome: ClusterOutcome, done: int, total: int) -> None:
        status = "ok" if outcome.ok else f"FAILED ({outcome.error or ', '.join(outcome.failed_tables)})"
        rows = sum(t.rows_loaded or 0 for t in outcome.tables.values())
        context.log.info(
            f"[{done}/{total}] {outcome.cluster}: {rows} rows in {outcome.duration_s:.2f}s, {status}"
        )

    check_outputs = _check_output_names(context)
    failed: dict[str, str] = {}
    outcomes: list[ClusterOutcome] = []
    with connect(dsn) as conn:
        # Each cluster's events as soon as it is committed, not after the batch: if the run dies
        # mid-batch, Dagster's record still matches what the database holds.
        settings = polling.settings()
        for outcome in iter_refresh_clusters(dsn, clusters, tables, run_id=run_id, settings=settings):
            outcomes.append(outcome)
            progress(outcome, len(outcomes), len(clusters))
            yield from _cluster_events(conn, outcome, groups, tables, run_id, check_outputs, failed)
        t_catalog = time.perf_counter()
        yield from table_materializations(conn, tables, outcomes)
        catalog_s = time.perf_counter() - t_catalog
    elapsed = time.perf_counter() - t0
    context.log.info(
        f"{len(outcomes) - len(failed)}/{len(outcomes)} cluster(s) refreshed in {elapsed:.2f}s "
        f"(table catalog {catalog_s:.2f}s)"
    )
    if failed:
        raise Failure(
            description=f"{len(failed)} of {len(outcomes)} cluster(s) failed: {', '.join(sorted(failed))}",
            metadata={"failed_clusters": MetadataValue.json(failed)},
        )
