"""Row workers: pages built in other processes give exactly the inline rows, in order; Secrets stay home."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from kq_pipeline.extract import native, row_workers
from kq_pipeline.extract.native import extract_cluster
from kq_pipeline.extract.row_workers import PageResult, PageRows, build_page, worker_count
from kq_pipeline.kube.kubeconfig import access_from_kubeconfig
from kq_pipeline.kube.list_meta import MalformedList
from kq_pipeline.registry import TABLES
from kq_pipeline.rows import rows_for_tables
from kq_pipeline.simulator import serve_fleet
from kq_pipeline.simulator.objects import ClusterSpec

POD_TABLES = ("kubernetes_pods", "kubernetes_pod_containers", "kubernetes_pod_volumes")
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def fleet() -> Iterator[Any]:
    with serve_fleet([ClusterSpec("rw", seed=5, pods=120)]) as f:
        yield f


@pytest.fixture
def pods(fleet: Any) -> list[dict[str, Any]]:
    return list(fleet.clusters["rw"].objects["v1/pods"])


def bodies(objects: list[dict[str, Any]], per_page: int) -> list[bytes]:
    pages = [objects[k : k + per_page] for k in range(0, len(objects), per_page)]
    return [
        orjson.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": {"continue": "x"}, "items": p})
        for p in pages
    ]


def inline(body: bytes) -> PageResult:
    return build_page(body, POD_TABLES, "rw", "uid-1", NOW)


def run_pages(rows: PageRows, pages: list[bytes]) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {t: [] for t in POD_TABLES}
    objects = 0
    results = [r for body in pages for r in rows.add(body)] + list(rows.finish())
    for count, built in results:
        objects += count
        for table, table_rows in built.items():
            out[table].extend(table_rows)
    assert objects == sum(len(orjson.loads(b)["items"]) for b in pages)
    return out


@pytest.fixture
def one_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(row_workers.WORKERS_ENV, "1")


def spool_files() -> list[Path]:
    spool = row_workers._SPOOL
    return [] if spool is None else list(spool.iterdir())


def test_available_cpus_follow_affinity_and_a_container_cpu_limit(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    assert row_workers.available_cpus(tmp_path) == affinity  # no cgroup file: the affinity
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert row_workers.available_cpus(tmp_path) == affinity
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # a 1.5 CPU limit
    assert row_workers.available_cpus(tmp_path) == min(affinity, 2)
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU: still one
    assert row_workers.available_cpus(tmp_path) == 1


def test_worker_count_comes_from_the_environment_or_the_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(row_workers.WORKERS_ENV, raising=False)
    assert worker_count() == max(0, min(4, row_workers.available_cpus() - 1))
    monkeypatch.setenv(row_workers.WORKERS_ENV, "3")
    assert worker_count() == 3
    monkeypatch.setenv(row_workers.WORKERS_ENV, "0")
    assert worker_count() == 0
    monkeypatch.setenv(row_workers.WORKERS_ENV, "many")
    assert worker_count() == 0  # a bad value builds inline (and says so in the log)


def test_pages_built_by_workers_equal_one_inline_pass_in_list_order(
    one_worker: None, pods: list[dict[str, Any]]
) -> None:
    rows = PageRows(POD_TABLES, "rw", "uid-1", NOW, inline, parallel=True)
    got = run_pages(rows, bodies(pods, 7))
    expected = rows_for_tables(POD_TABLES, pods, cluster_name="rw", cluster_uid="uid-1", now=NOW)
    assert got == expected
    assert rows.pages_by_workers > 0
    assert spool_files() == []  # every page and result file was removed once read


def test_without_parallel_every_page_is_built_inline(one_worker: None, pods: list[dict[str, Any]]) -> None:
    rows = PageRows(POD_TABLES, "rw", "uid-1", NOW, inline, parallel=False)
    got = run_pages(rows, bodies(pods, 7))
    assert (
        got["kubernetes_pods"]
        == rows_for_tables(["kubernetes_pods"], pods, cluster_name="rw", cluster_uid="uid-1", now=NOW)[
            "kubernetes_pods"
        ]
    )
    assert rows.pages_by_workers == 0


def test_a_malformed_page_fails_the_list_wherever_it_was_parsed(
    one_worker: None, pods: list[dict[str, Any]]
) -> None:
    pages = bodies(pods, 10)
    pages[3] = b'{"kind":"PodList","metadata":{},"items":[{"oops"'
    rows = PageRows(POD_TABLES, "rw", "uid-1", NOW, inline, parallel=True)
    with pytest.raises(MalformedList, match="malformed JSON"):
        run_pages(rows, pages)
    rows.discard()


def test_discarded_pages_leave_no_files(one_worker: None, pods: list[dict[str, Any]]) -> None:
    rows = PageRows(POD_TABLES, "rw", "uid-1", NOW, inline, parallel=True)
    for body in bodies(pods, 5):
        for _ in rows.add(body):
            pass
    rows.discard()
    row_workers.shutdown()  # waits for whatever a worker was still building
    assert spool_files() == []


def test_a_killed_worker_never_gives_wrong_rows_and_the_next_list_gets_a_new_pool(
    one_worker: None, pods: list[dict[str, Any]]
) -> None:
    expected = rows_for_tables(POD_TABLES, pods, cluster_name="rw", cluster_uid="uid-1", now=NOW)
    first = PageRows(POD_TABLES, "rw", "uid-1", NOW, inline, parallel=True)
    assert run_pages(first, bodies(pods, 7)) == expected
    pool = row_workers._POOL
    assert pool is not None
    for process in list(pool._processes.values()):
        os.kill(process.pid, signal.SIGKILL)
        process.join(10)
    # The pool is now broken: the list either falls back inline or fails as a whole, never half-built.
    try:
        got = run_pages(PageRows(POD_TABLES, "rw", "uid-1", NOW, inline, parallel=True), bodies(pods, 7))
    except row_workers.BrokenProcessPool:
        pass
    else:
        assert got == expected
    again = PageRows(POD_TABLES, "rw", "uid-1", NOW, inline, parallel=True)
    assert run_pages(again, bodies(pods, 7)) == expected
    assert row_workers._POOL is not pool
    # The new worker may still be starting during that list (the caller then builds every page
    # itself, as designed); within a few more lists it must take pages.
    by_workers = again.pages_by_workers
    for _ in range(10):
        if by_workers:
            break
        later = PageRows(POD_TABLES, "rw", "uid-1", NOW, inline, parallel=True)
        assert run_pages(later, bodies(pods, 7)) == expected
        by_workers = later.pages_by_workers
    assert by_workers > 0


def test_extraction_with_workers_equals_inline_on_every_table_and_secrets_stay_home(
    fleet: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    access = access_from_kubeconfig(fleet.write_kubeconfig(tmp_path / "config"), "rw")
    seen: list[tuple[tuple[str, ...], bool, PageRows]] = []

    class Recording(PageRows):
        def __init__(self, tables: tuple[str, ...], *args: Any, parallel: bool, **kw: Any) -> None:
            super().__init__(tables, *args, parallel=parallel, **kw)
            seen.append((tables, parallel, self))

    monkeypatch.setattr(native, "PageRows", Recording)
    monkeypatch.setenv(row_workers.WORKERS_ENV, "0")
    alone = extract_cluster(access, "rw", list(TABLES), page_limit=7)
    monkeypatch.setenv(row_workers.WORKERS_ENV, "1")
    seen.clear()
    helped = extract_cluster(access, "rw", list(TABLES), page_limit=7)

    assert alone.failed_tables == [] and helped.failed_tables == []
    for table in TABLES:
        if table in ("kubernetes_events",):  # rows carry the poll time when an event has none
            assert len(helped.tables[table].rows or []) == len(alone.tables[table].rows or [])
            continue
        assert helped.tables[table].rows == alone.tables[table].rows, table
    by_tables = {tables: (parallel, rows) for tables, parallel, rows in seen}
    assert by_tables[("kubernetes_secrets",)][0] is False
    assert by_tables[("kubernetes_secrets",)][1].pages_by_workers == 0
    assert by_tables[POD_TABLES][1].pages_by_workers > 0


CHILD = """
import os, sys, time
from datetime import UTC, datetime
import orjson
from kq_pipeline.extract import row_workers
from kq_pipeline.extract.row_workers import PageRows, build_page

T = ("kubernetes_namespaces",)
now = datetime.now(UTC)
pages = [orjson.dumps({"metadata": {}, "items": [{"metadata": {"name": f"n{k}"}}]}) for k in range(6)]
rows = PageRows(T, "c", "u", now, lambda b: build_page(b, T, "c", "u", now), parallel=True)
done = [r for b in pages for r in rows.add(b)] + list(rows.finish())
assert rows.pages_by_workers > 0
print(row_workers._SPOOL, *[p.pid for p in row_workers._POOL._processes.values()], flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is gone for our purpose
        return stat.read().split(") ")[1][0] != "Z"


def test_workers_of_a_killed_process_exit_and_remove_its_spool(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    env = {**os.environ, row_workers.WORKERS_ENV: "1"}
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout is not None
        spool, *pids = child.stdout.readline().split()
        assert Path(spool).is_dir() and pids
        child.kill()
        child.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (Path(spool).exists() or any(_alive(int(p)) for p in pids)):
            time.sleep(0.1)
        assert not Path(spool).exists()
        assert not any(_alive(int(p)) for p in pids)
    finally:
        child.kill()


def test_building_rows_makes_no_reference_cycles_so_workers_may_run_without_the_collector(
    pods: list[dict[str, Any]],
) -> None:
    import gc

    pages = bodies(pods, 20)
    build_page(pages[0], POD_TABLES, "rw", "uid-1", NOW)  # compile and warm the encoders first
    gc.collect()
    gc.disable()
    try:
        for body in pages[1:]:
            result = build_page(body, POD_TABLES, "rw", "uid-1", NOW)
            assert result[0] > 0
            del result
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_a_pool_shut_down_while_a_list_is_in_flight_leaves_its_pages_to_be_built_inline(
    pods: list[dict[str, Any]], one_worker: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Ctrl-C (or exit) shuts the pool down while other threads are still listing: their next pages
    must not fail with "cannot schedule new futures after shutdown"."""
    from concurrent.futures import ProcessPoolExecutor

    closed = ProcessPoolExecutor(max_workers=1)
    closed.shutdown()
    monkeypatch.setattr(row_workers, "_pool", lambda workers: closed)
    monkeypatch.setattr(row_workers, "_SPOOL", tmp_path)
    pages = bodies(pods, 20)
    rows = PageRows(POD_TABLES, "rw", "uid-1", NOW, inline, parallel=True)
    assert run_pages(rows, pages) == run_pages(
        PageRows(POD_TABLES, "rw", "uid-1", NOW, inline, parallel=False), pages
    )
    assert rows.pages_by_workers == 0 and list(tmp_path.iterdir()) == []  # no page file left behind
