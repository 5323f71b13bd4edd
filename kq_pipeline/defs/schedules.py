"""The fleet refresh schedule: every cluster on a cron, in batches of clusters per run.

One run per cluster would cost hundreds of runs per refresh; instead each run takes a contiguous
range of partition keys (at most MAX_CLUSTERS_PER_RUN) and polls those clusters concurrently.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    schedule,
)
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from kq_pipeline.defs.assets import MAX_CLUSTERS_PER_RUN, group_specs
from kq_pipeline.defs.partitions import CLUSTERS_PARTITIONS_NAME

REFRESH_CRON = os.environ.get("KQ_REFRESH_CRON", "*/15 * * * *")

refresh_job = define_asset_job(
    "refresh_clusters",
    selection=[s.key for s in group_specs],
    description="Refresh every selected cluster's snapshot of all kubequery tables.",
)


def contiguous_ranges(keys: Sequence[str], order: Sequence[str], max_len: int) -> list[tuple[str, str]]:
    """Split the wanted keys into runs of neighbours in partition order, each at most max_len long."""
    wanted = set(keys)
    ranges: list[tuple[str, str]] = []
    current: list[str] = []
    for key in order:
        if key in wanted and len(current) < max_len:
            current.append(key)
            continue
        if current:
            ranges.append((current[0], current[-1]))
        current = [key] if key in wanted else []
    if current:
        ranges.append((current[0], current[-1]))
    return ranges


def range_run_requests(
    keys: Sequence[str],
    order: Sequence[str],
    *,
    reason: str,
    max_len: int = MAX_CLUSTERS_PER_RUN,
    keyed: bool = False,
) -> list[RunRequest]:
    """One run request per range. `keyed` gives each a run_key, which a schedule needs to return several
    (Dagster scopes a schedule's run keys to its tick); a sensor's must stay unkeyed, since a sensor's
    run keys are remembered forever and would drop the first load of a re-added cluster."""
    return [
        RunRequest(
            job_name=refresh_job.name,
            run_key=f"{start}..{end}" if keyed else None,
            tags={
                ASSET_PARTITION_RANGE_START_TAG: start,
                ASSET_PARTITION_RANGE_END_TAG: end,
                "kq/reason": reason,
            },
        )
        for start, end in contiguous_ranges(keys, order, max_len)
    ]


@schedule(
    name="fleet_refresh",
    cron_schedule=REFRESH_CRON,
    job=refresh_job,
    default_status=DefaultScheduleStatus.RUNNING,
    description=f"Refresh every cluster ({REFRESH_CRON}, KQ_REFRESH_CRON), {MAX_CLUSTERS_PER_RUN} per run.",
)
def fleet_refresh(context: ScheduleEvaluationContext) -> list[RunRequest] | SkipReason:
    keys = context.instance.get_dynamic_partitions(CLUSTERS_PARTITIONS_NAME)
    if not keys:
        return SkipReason("no clusters in the inventory yet")
    return range_run_requests(keys, keys, reason="scheduled refresh", keyed=True)
