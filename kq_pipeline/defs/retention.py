"""Keep Dagster's storage flat: delete finished runs (and with them their event logs) past a retention age.

Dagster keeps every run's events forever; a fleet refreshed every 15 minutes writes about a million
event rows a day. Long-term history lives in our own `kq_meta.loads` table (one row per cluster x table
load), so Dagster only needs recent runs. Each tick deletes at most `max_runs_per_tick` runs, oldest
first, so one tick never holds the storage for long; a backlog drains over later ticks.

The same job prunes the fleet database's history (`history.*`): rows closed more than
KQ_HISTORY_DAYS ago (default 30), in bounded batches (kq_pipeline/db/history.py).

Hourly, because deletion must keep pace with creation: 1,000 clusters in runs of 25 every 15 minutes
create 3,840 runs a day, more than one daily tick of 1,000 could delete (benchmarks/README.md has the
arithmetic and the measured cost of a deletion).
"""

# No `from __future__ import annotations`: Dagster reads the Config annotation of the op at runtime.
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dagster import (
    Config,
    DagsterInstance,
    DagsterRunStatus,
    DefaultScheduleStatus,
    In,
    Nothing,
    OpExecutionContext,
    RunsFilter,
    job,
    op,
    schedule,
)

from kq_pipeline.db import history
from kq_pipeline.db.connection import connect
from kq_pipeline.defs.resources import FleetDatabase

RETENTION_CRON = os.environ.get("KQ_RETENTION_CRON", "17 * * * *")
DEFAULT_RETENTION_DAYS = float(os.environ.get("KQ_RUN_RETENTION_DAYS", "7"))
DEFAULT_MAX_RUNS_PER_TICK = 1000

FINISHED = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]


@dataclass(frozen=True)
class PruneResult:
    deleted: int
    remaining_old: bool
    """True when the tick's bound stopped it: more old runs are left for the next tick."""


def prune_runs(
    instance: DagsterInstance, retention: timedelta, max_runs: int, now: datetime | None = None
) -> PruneResult:
    """Delete finished runs created more than `retention` ago, oldest first, at most `max_runs`.

    Runs still queued or in progress are never deleted, however old.
    """
    cutoff = (now or datetime.now(UTC)) - retention
    records = instance.get_run_records(
        filters=RunsFilter(created_before=cutoff, statuses=FINISHED),
        limit=max_runs + 1,
        ascending=True,
    )
    for record in records[:max_runs]:
        instance.delete_run(record.dagster_run.run_id)
    return PruneResult(deleted=min(len(records), max_runs), remaining_old=len(records) > max_runs)


class RetentionConfig(Config):
    retention_days: float = DEFAULT_RETENTION_DAYS
    """Age (days, fractions allowed) past which finished runs are deleted; KQ_RUN_RETENTION_DAYS."""
    max_runs_per_tick: int = DEFAULT_MAX_RUNS_PER_TICK


@op(description="Delete finished Dagster runs, and their event logs, older than the retention age.")
def prune_old_runs(context: OpExecutionContext, config: RetentionConfig) -> int:
    result = prune_runs(context.instance, timedelta(days=config.retention_days), config.max_runs_per_tick)
    more = "; more remain for the next tick" if result.remaining_old else ""
    context.log.info(f"deleted {result.deleted} run(s) older than {config.retention_days:g} day(s){more}")
    return result.deleted


class HistoryRetentionConfig(Config):
    history_days: float | None = None
    """Age (days) past which closed history rows are pruned; unset: KQ_HISTORY_DAYS (default 30)."""


@op(
    description="Delete fleet history rows closed before the history retention age, in bounded batches.",
    ins={"after": In(Nothing)},
)
def prune_fleet_history(
    context: OpExecutionContext, config: HistoryRetentionConfig, fleet_db: FleetDatabase
) -> int:
    days = config.history_days if config.history_days is not None else history.retention_days()
    cutoff = datetime.now(UTC) - timedelta(days=days)
    with connect(fleet_db.dsn()) as conn:
        conn.autocommit = True
        deleted = history.prune(conn, cutoff)
    total = sum(deleted.values())
    detail = ", ".join(f"{t} {n}" for t, n in sorted(deleted.items()))
    context.log.info(
        f"pruned {total} history row(s) closed over {days:g} day(s) ago{': ' + detail if detail else ''}"
    )
    return total


@job(
    name="prune_dagster_runs",
    description=(
        "Keeps Dagster's run and event-log storage bounded (history stays in kq_meta.loads) and prunes "
        "fleet history older than KQ_HISTORY_DAYS."
    ),
)
def prune_job() -> None:
    prune_fleet_history(after=prune_old_runs())


@schedule(
    name="dagster_run_retention",
    cron_schedule=RETENTION_CRON,
    job=prune_job,
    default_status=DefaultScheduleStatus.RUNNING,
    description=(
        f"Delete Dagster runs older than {DEFAULT_RETENTION_DAYS:g} day(s) (KQ_RUN_RETENTION_DAYS), "
        f"{RETENTION_CRON} (KQ_RETENTION_CRON)."
    ),
)
def retention_schedule() -> dict:
    return {}
