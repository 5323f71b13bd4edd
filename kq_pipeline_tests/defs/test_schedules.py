"""The schedule batches clusters: contiguous partition ranges, never longer than the batch size."""

from __future__ import annotations

from kq_pipeline.defs.schedules import contiguous_ranges, range_run_requests

ORDER = [f"c{i}" for i in range(10)]


def test_all_keys_split_into_batches_of_at_most_n() -> None:
    assert contiguous_ranges(ORDER, ORDER, 4) == [("c0", "c3"), ("c4", "c7"), ("c8", "c9")]


def test_gaps_in_the_wanted_keys_start_a_new_range() -> None:
    assert contiguous_ranges(["c1", "c2", "c5", "c9"], ORDER, 25) == [
        ("c1", "c2"),
        ("c5", "c5"),
        ("c9", "c9"),
    ]


def test_no_wanted_keys_means_no_ranges() -> None:
    assert contiguous_ranges([], ORDER, 25) == []


def test_every_wanted_key_is_covered_exactly_once() -> None:
    wanted = ORDER[::3] + ORDER[4:6]
    ranges = contiguous_ranges(wanted, ORDER, 2)
    covered = [k for a, b in ranges for k in ORDER[ORDER.index(a) : ORDER.index(b) + 1]]
    assert sorted(covered) == sorted(set(wanted))


def test_run_requests_carry_the_range_as_partition_range_tags() -> None:
    requests = range_run_requests(ORDER, ORDER, reason="scheduled refresh", max_len=5)
    assert [
        (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
        for r in requests
    ] == [
        ("c0", "c4"),
        ("c5", "c9"),
    ]
    assert {r.job_name for r in requests} == {"refresh_clusters"}
