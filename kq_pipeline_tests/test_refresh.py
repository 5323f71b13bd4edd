"""One cluster refresh end to end: the extractor named in the inventory, typed frames, the swap."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from kq_pipeline import inventory
from kq_pipeline.refresh import RefreshSettings, refresh_clusters
from kq_pipeline.registry import PROJECT_TABLES, TABLES
from kq_pipeline.simulator import serve_fleet
from kq_pipeline.simulator.objects import ClusterSpec

FAKE_BASEQUERY = Path(__file__).resolve().parent / "extract" / "fake_basequery" / "basequery.py"


@pytest.fixture
def stand_in_basequery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """kubequery's basequery is not installable here: a stand-in that behaves like it at the process
    boundary (see kq_pipeline_tests/extract/test_kubequery.py)."""
    wrapper = tmp_path / "basequery"
    wrapper.write_text(f"#!/bin/sh\nexec '{sys.executable}' '{FAKE_BASEQUERY}' \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("KQ_BASEQUERY", str(wrapper))
    return wrapper


@pytest.fixture
def one_cluster() -> Iterator:
    # 1.24 still serves batch/v1beta1 and policy/v1beta1, the versions kubequery itself reads.
    with serve_fleet([ClusterSpec(name="twin", seed=7, pods=60, namespaces=4, k8s_minor=24)]) as fleet:
        yield fleet


def _snapshot(conn: psycopg.Connection, table: str, cluster: str) -> list[tuple]:
    columns = [c.name for c in TABLES[table].columns if c.name != "cluster_name"]
    if table == "kubernetes_events":
        columns.remove("time")  # "now" when an event has no eventTime: differs between two polls
    query = sql.SQL("SELECT {} FROM {} WHERE cluster_name = %s").format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in columns),
        sql.Identifier(table),
    )
    return sorted(conn.execute(query, (cluster,)).fetchall(), key=repr)


def test_a_kubequery_mode_cluster_goes_through_the_same_load_path_as_a_native_one(
    one_cluster, stand_in_basequery: Path, pg_dsn: str, tmp_path: Path
) -> None:
    """Plumbing, not row equality: the stand-in basequery builds its rows with our own row builders,
    so equal snapshots prove the runner, the JSON hand-over and the load path lose nothing. That
    kubequery's own rows reach PostgreSQL unchanged is proved in extract/test_kubequery.py."""
    kubeconfig = one_cluster.write_kubeconfig(tmp_path / "k.yaml")
    (native,) = inventory.clusters_from_kubeconfig(kubeconfig, ["twin"], ["twin-native"])
    kq = replace(native, name="twin-kubequery", extractor="kubequery")
    with psycopg.connect(pg_dsn) as conn:
        inventory.upsert_clusters(conn, [native, kq])

    outcomes = refresh_clusters(
        pg_dsn, ["twin-native", "twin-kubequery"], list(TABLES), run_id="r1", settings=RefreshSettings()
    )

    assert [o.ok for o in outcomes] == [True, True], [(o.cluster, o.error, o.failed_tables) for o in outcomes]
    with psycopg.connect(pg_dsn) as conn:
        for table in TABLES:
            native_rows = _snapshot(conn, table, "twin-native")
            assert native_rows == _snapshot(conn, table, "twin-kubequery"), table
        pods = conn.execute(
            "SELECT count(*) FROM kubernetes_pods WHERE cluster_name = 'twin-kubequery'"
        ).fetchone()
        statuses = conn.execute(
            "SELECT table_name, status, note FROM kq_meta.loads WHERE cluster_name = 'twin-kubequery'"
            " AND status <> 'success'"
        ).fetchall()
    assert pods == (60,)
    # kubequery has no custom-resource tables: not collected for that cluster, said so, not failed
    assert {(t, s) for t, s, _ in statuses} == {(t, "excluded") for t in PROJECT_TABLES}
    assert all("not available with the kubequery extractor" in note for _, _, note in statuses)


def test_a_cluster_removed_from_the_inventory_before_its_refresh_fails_by_name(pg_dsn: str) -> None:
    (outcome,) = refresh_clusters(pg_dsn, ["gone"], list(TABLES), run_id="r2", settings=RefreshSettings())
    assert not outcome.ok
    assert outcome.error == "cluster gone is not in the inventory (removed or never added)"


def test_frames_are_built_one_ahead_in_order_and_inline_once_no_thread_may_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The lookahead keeps the tables' order; at interpreter shutdown (Ctrl-C with a cluster in flight)
    a new thread cannot start, and the frames are built inline instead of failing the cluster."""
    from concurrent.futures import ThreadPoolExecutor

    from kq_pipeline import refresh

    built: list[str] = []

    def job(name: str):
        return lambda: built.append(name) or refresh.Framed(len(name), None, None, None, 0.0)

    jobs = [(t, job(t)) for t in ("a", "bb", "ccc")]
    assert [(t, f.rows) for t, f in refresh.frames_ahead(jobs)] == [("a", 1), ("bb", 2), ("ccc", 3)]

    def refuse(self, fn, *args, **kwargs):
        raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    monkeypatch.setattr(ThreadPoolExecutor, "submit", refuse)
    built.clear()
    assert [t for t, _ in refresh.frames_ahead(jobs)] == ["a", "bb", "ccc"]
    assert built == ["a", "bb", "ccc"]
