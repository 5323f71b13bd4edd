"""The row-count check: which loads it passes, which it fails and why, and what "previous" means."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from kq_pipeline.db.history import ChangeCounts
from kq_pipeline.db.snapshot import record_failed_load
from kq_pipeline.defs.checks import judge_row_counts, previous_counts
from kq_pipeline.refresh import ClusterOutcome, TableOutcome

DROP = 0.5
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _outcome(**tables: tuple[int | None, int | None, int] | str) -> ClusterOutcome:
    """tables: name=(extracted, loaded, rejected), or name="error message" for a failed table."""
    outcome = ClusterOutcome(cluster="c1")
    for name, spec in tables.items():
        if isinstance(spec, str):
            outcome.tables[name] = TableOutcome(name, None, None, 0, 0.1, error=spec)
        else:
            extracted, loaded, rejected = spec
            outcome.tables[name] = TableOutcome(name, extracted, loaded, rejected, 0.1)
    return outcome


def test_a_clean_load_passes_and_reports_each_tables_count() -> None:
    outcome = _outcome(kubernetes_pods=(40, 40, 0), kubernetes_secrets=(0, 0, 0))
    verdict = judge_row_counts(outcome, ["kubernetes_pods", "kubernetes_secrets"], {}, DROP)
    assert verdict.passed
    assert verdict.counts == {"kubernetes_pods": 40, "kubernetes_secrets": 0}
    assert verdict.broken == []


def test_loaded_plus_rejected_must_equal_extracted() -> None:
    verdict = judge_row_counts(_outcome(kubernetes_pods=(40, 38, 0)), ["kubernetes_pods"], {}, DROP)
    assert not verdict.passed
    assert verdict.broken == ["kubernetes_pods: loaded 38 + rejected 0 != extracted 40"]


def test_rejected_rows_fail_the_check_even_when_the_sum_adds_up() -> None:
    verdict = judge_row_counts(_outcome(kubernetes_pods=(40, 38, 2)), ["kubernetes_pods"], {}, DROP)
    assert not verdict.passed
    assert verdict.broken == ["kubernetes_pods: 2 rows rejected"]


@pytest.mark.parametrize("table", ["kubernetes_namespaces", "kubernetes_nodes", "kubernetes_info"])
def test_tables_a_live_cluster_always_fills_must_not_be_empty(table: str) -> None:
    verdict = judge_row_counts(_outcome(**{table: (0, 0, 0)}), [table], {}, DROP)
    assert not verdict.passed
    assert verdict.broken == [f"{table}: empty, but a live cluster always has rows here"]


def test_a_table_the_cluster_does_not_collect_breaks_no_rule() -> None:
    outcome = ClusterOutcome(cluster="c1")
    for name in ("kubernetes_namespaces", "kubernetes_secrets"):  # even a never-empty one, when excluded
        outcome.tables[name] = TableOutcome(name, 0, 0, 0, 0.0, note="excluded", excluded=True)
    previous = {"kubernetes_namespaces": 5, "kubernetes_secrets": 40}  # emptied on purpose: no "drop"
    verdict = judge_row_counts(outcome, ["kubernetes_namespaces", "kubernetes_secrets"], previous, DROP)
    assert verdict.passed and verdict.broken == []


def test_kept_rows_of_failed_custom_kinds_are_neither_a_mismatch_nor_a_drop() -> None:
    outcome = ClusterOutcome(cluster="c1")
    # 10 rows extracted and written, 90 kept from the previous load of a kind that failed this time
    outcome.tables["kubernetes_custom_resources"] = TableOutcome(
        "kubernetes_custom_resources", 10, 100, 0, 0.1, rows_kept=90
    )
    verdict = judge_row_counts(
        outcome, ["kubernetes_custom_resources"], {"kubernetes_custom_resources": 100}, DROP
    )
    assert verdict.passed, verdict.broken


def test_other_tables_may_be_empty() -> None:
    assert judge_row_counts(
        _outcome(kubernetes_cron_jobs=(0, 0, 0)), ["kubernetes_cron_jobs"], {}, DROP
    ).passed


def test_a_drop_beyond_the_ratio_against_the_previous_load_fails() -> None:
    tables = ["kubernetes_pods"]
    assert judge_row_counts(
        _outcome(kubernetes_pods=(50, 50, 0)), tables, {"kubernetes_pods": 100}, DROP
    ).passed
    verdict = judge_row_counts(_outcome(kubernetes_pods=(49, 49, 0)), tables, {"kubernetes_pods": 100}, DROP)
    assert not verdict.passed
    assert verdict.broken == ["kubernetes_pods: dropped from 100 to 49 rows (more than 50%)"]


def test_with_history_the_drop_is_measured_by_what_the_load_removed_and_named() -> None:
    """The history's counts say what the table held before this load (loaded - added + removed), so
    the rule needs no earlier kq_meta.loads row, and the message says what went."""
    tables = ["kubernetes_pods"]
    outcome = _outcome(kubernetes_pods=(40, 40, 0))
    outcome.tables["kubernetes_pods"].changes = ChangeCounts(added=2, removed=62, modified=5)
    verdict = judge_row_counts(outcome, tables, {}, DROP)
    assert verdict.broken == [
        "kubernetes_pods: dropped from 100 to 40 rows (more than 50%): 62 removed, 2 added"
    ]
    outcome.tables["kubernetes_pods"].changes = ChangeCounts(added=0, removed=10, modified=90)
    assert judge_row_counts(outcome, tables, {"kubernetes_pods": 1000}, DROP).passed  # history wins


def test_growth_and_a_first_load_never_count_as_a_drop() -> None:
    tables = ["kubernetes_pods"]
    assert judge_row_counts(
        _outcome(kubernetes_pods=(500, 500, 0)), tables, {"kubernetes_pods": 100}, DROP
    ).passed
    assert judge_row_counts(_outcome(kubernetes_pods=(1, 1, 0)), tables, {}, DROP).passed


def test_a_table_that_failed_or_was_not_loaded_fails_the_group_with_its_name() -> None:
    outcome = _outcome(kubernetes_pods=(10, 10, 0), kubernetes_services="timeout")
    verdict = judge_row_counts(
        outcome, ["kubernetes_pods", "kubernetes_services", "kubernetes_secrets"], {}, DROP
    )
    assert not verdict.passed
    assert verdict.counts == {"kubernetes_pods": 10, "kubernetes_services": None, "kubernetes_secrets": None}
    assert verdict.broken == ["kubernetes_services: not loaded", "kubernetes_secrets: not loaded"]


def test_every_broken_rule_of_every_table_is_listed() -> None:
    outcome = _outcome(kubernetes_nodes=(0, 0, 0), kubernetes_pods=(10, 8, 2))
    verdict = judge_row_counts(
        outcome,
        ["kubernetes_nodes", "kubernetes_pods"],
        {"kubernetes_nodes": 3, "kubernetes_pods": 100},
        DROP,
    )
    assert verdict.broken == [
        "kubernetes_nodes: empty, but a live cluster always has rows here",
        "kubernetes_nodes: dropped from 3 to 0 rows (more than 50%)",
        "kubernetes_pods: 2 rows rejected",
        "kubernetes_pods: dropped from 100 to 8 rows (more than 50%)",
    ]


def _load(
    conn: psycopg.Connection, run_id: str, cluster: str, table: str, rows: int, finished: datetime
) -> None:
    conn.execute(
        "INSERT INTO kq_meta.loads (run_id, cluster_name, table_name, status, rows_extracted, rows_loaded, "
        "started_at, finished_at) VALUES (%s, %s, %s, 'success', %s, %s, %s, %s)",
        (run_id, cluster, table, rows, rows, finished - timedelta(seconds=1), finished),
    )


def test_previous_counts_are_the_last_successful_load_of_another_run(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        _load(conn, "r1", "c1", "kubernetes_pods", 100, T0)
        _load(conn, "r2", "c1", "kubernetes_pods", 120, T0 + timedelta(minutes=15))
        _load(conn, "r2", "c1", "kubernetes_nodes", 4, T0 + timedelta(minutes=15))
        _load(conn, "r2", "c2", "kubernetes_pods", 999, T0 + timedelta(minutes=15))  # another cluster
        _load(conn, "r3", "c1", "kubernetes_pods", 7, T0 + timedelta(minutes=30))  # the current run
        record_failed_load(conn, "kubernetes_pods", "c1", error="boom", run_id="r2b", started_at=T0)
        conn.commit()

        previous = previous_counts(
            conn, "c1", ["kubernetes_pods", "kubernetes_nodes", "kubernetes_secrets"], "r3"
        )

    assert previous == {"kubernetes_pods": 120, "kubernetes_nodes": 4}


def test_previous_counts_include_loads_without_a_run_id(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        _load(conn, None, "c1", "kubernetes_pods", 30, T0)  # type: ignore[arg-type]
        conn.commit()
        assert previous_counts(conn, "c1", ["kubernetes_pods"], "r9") == {"kubernetes_pods": 30}
        assert previous_counts(conn, "c1", ["kubernetes_pods"], None) == {}
