"""Where partitions come from: one dynamic partition per cluster, keyed by the cluster's name.

Keys are added and retired by the inventory sensor (and by `kq clusters add|remove`), never by hand
in the UI, so that the partition set and `kq_meta.clusters` agree.
"""

from __future__ import annotations

from collections.abc import Iterable

from dagster import DagsterInstance, DynamicPartitionsDefinition

CLUSTERS_PARTITIONS_NAME = "clusters"

clusters_partitions = DynamicPartitionsDefinition(name=CLUSTERS_PARTITIONS_NAME)


def sync_partitions(instance: DagsterInstance, active: Iterable[str]) -> tuple[list[str], list[str]]:
    """Make the partition set equal the active clusters; returns (added, removed)."""
    wanted = list(dict.fromkeys(active))
    existing = set(instance.get_dynamic_partitions(CLUSTERS_PARTITIONS_NAME))
    added = [n for n in wanted if n not in existing]
    removed = sorted(existing - set(wanted))
    if added:
        instance.add_dynamic_partitions(CLUSTERS_PARTITIONS_NAME, added)
    for name in removed:
        instance.delete_dynamic_partition(CLUSTERS_PARTITIONS_NAME, name)
    return added, removed
