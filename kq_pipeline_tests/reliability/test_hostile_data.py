"""Hostile data served by a real (simulated) API server: stored safely or rejected with a count, never
crashing the fleet, never executed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from kq_pipeline import inventory
from kq_pipeline.cli import main
from kq_pipeline.db.snapshot import replace_snapshot
from kq_pipeline.frames import to_frame
from kq_pipeline.refresh import RefreshSettings, refresh_clusters
from kq_pipeline.simulator import Fleet
from kq_pipeline.simulator.objects import ClusterSpec, generate_objects
from kq_pipeline_tests.reliability.conftest import FleetDb, assert_all_ok, loads, register, snapshot

INJECTION = "x'); DROP TABLE kubernetes_pods; --"
UNICODE_NAME = "pöd-ünïcödé-名前-🚀"
BIG = 1_000_000
MANY_LABELS = 5000
PODS = 12
TABLES = ("kubernetes_pods", "kubernetes_pod_containers", "kubernetes_namespaces")
SETTINGS = RefreshSettings(deadline_s=20.0, page_limit=5)


def _hostile_objects() -> dict[str, Any]:
    objs = generate_objects(ClusterSpec(name="hostile", seed=11, pods=PODS, namespaces=3))
    pods = objs["v1/pods"]
    meta = pods[0]["metadata"]
    meta["labels"].update({"nul": "a\x00b", "inj": INJECTION, "emoji": "🚀✓"})
    meta["annotations"] = {**(meta.get("annotations") or {}), "big": "x" * BIG}
    pods[1]["metadata"]["name"] = UNICODE_NAME
    pods[2]["metadata"]["labels"] = {f"l{i:05d}": f"v{i}" for i in range(MANY_LABELS)}
    pods[3]["spec"]["priority"] = 2**40  # INTEGER column: out of range
    pods[4]["spec"].setdefault("securityContext", {})["runAsUser"] = 2**63  # BIGINT column: out of range
    return objs


@pytest.fixture
def hostile(pg_dsn: str, tmp_path: Path) -> Iterator[FleetDb]:
    with Fleet() as fleet:
        fleet.add("hostile", _hostile_objects())
        fleet.add("alpha", generate_objects(ClusterSpec(name="alpha", seed=1, pods=PODS, namespaces=3)))
        register(pg_dsn, fleet, tmp_path / "k.yaml")
        yield FleetDb(fleet, pg_dsn, tmp_path / "k.yaml")


def _one(dsn: str, query: str, *params: object) -> Any:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchone()


def test_hostile_values_are_stored_literally_or_their_rows_rejected_and_counted(hostile: FleetDb) -> None:
    outcomes = hostile.load("hostile", names=["hostile", "alpha"], tables=TABLES, settings=SETTINGS)

    assert_all_ok(outcomes, ["hostile", "alpha"])
    pods = outcomes["hostile"].tables["kubernetes_pods"]
    assert (pods.rows_extracted, pods.rows_loaded, pods.rows_rejected) == (PODS, PODS - 2, 2)
    assert outcomes["alpha"].tables["kubernetes_pods"].rows_loaded == PODS
    assert _one(
        hostile.dsn,
        "SELECT rows_extracted, rows_loaded, rows_rejected FROM kq_meta.loads "
        "WHERE cluster_name = 'hostile' AND table_name = 'kubernetes_pods'",
    ) == (PODS, PODS - 2, 2)

    labels = "SELECT labels->>%s FROM kubernetes_pods WHERE cluster_name = 'hostile' AND labels ? %s"
    assert _one(hostile.dsn, labels, "inj", "inj") == (INJECTION,)  # stored as data, not run
    assert _one(hostile.dsn, labels, "nul", "nul") == ("ab",)  # NUL removed (text cannot hold it)
    assert _one(hostile.dsn, labels, "emoji", "emoji") == ("🚀✓",)
    assert _one(hostile.dsn, "SELECT count(*) FROM kubernetes_pods WHERE name = %s", UNICODE_NAME) == (1,)
    assert _one(
        hostile.dsn, "SELECT length(annotations->>'big') FROM kubernetes_pods WHERE annotations ? 'big'"
    ) == (BIG,)
    assert _one(
        hostile.dsn,
        "SELECT max((SELECT count(*) FROM jsonb_object_keys(labels))) FROM kubernetes_pods "
        "WHERE cluster_name = 'hostile'",
    ) == (MANY_LABELS,)
    assert _one(hostile.dsn, "SELECT to_regclass('kubernetes_pods') IS NOT NULL") == (True,)


def test_the_reason_a_row_was_rejected_reaches_the_operator(hostile: FleetDb) -> None:
    outcomes = hostile.load("hostile", names=["hostile"], tables=["kubernetes_pods"], settings=SETTINGS)
    shown = repr(outcomes["hostile"].tables["kubernetes_pods"]) + repr(loads(hostile.dsn, "hostile"))
    assert "out of range for integer" in shown and "out of range for bigint" in shown


def test_the_frames_rejection_report_names_row_column_and_reason() -> None:
    from kq_pipeline.rows import kubequery_rows

    pods = _hostile_objects()["v1/pods"]
    rows = kubequery_rows("kubernetes_pods", pods, cluster_name="hostile", cluster_uid="u")
    typed = to_frame("kubernetes_pods", rows, cluster_name="hostile")
    reasons = {(r.row_index, r.column, r.reason) for r in typed.rejected}
    assert reasons == {
        (3, "priority", f"{2**40} is out of range for integer"),
        (4, "run_as_user", f"{2**63} is out of range for bigint"),
    }
    assert typed.sanitized == 1  # the NUL label


def test_lone_surrogates_are_replaced_and_counted_and_the_row_is_stored(pg_dsn: str) -> None:
    rows = [{"name": "bad\ud800name", "namespace": "ns", "uid": "u1", "labels": '{"k": "v\ud800"}'}]
    typed = to_frame("kubernetes_config_maps", rows, cluster_name="c1")
    assert typed.sanitized == 2 and typed.rows_rejected == 0
    with psycopg.connect(pg_dsn) as conn:
        replace_snapshot(
            conn,
            "kubernetes_config_maps",
            "c1",
            typed,
            run_id="r",
            started_at=datetime.now(UTC),
            rows_extracted=1,
        )
        stored = conn.execute("SELECT name, labels->>'k' FROM kubernetes_config_maps").fetchone()
    assert stored == ("bad\ufffdname", "v\ufffd")


def test_invalid_utf8_on_the_wire_fails_that_list_cleanly_and_keeps_the_previous_rows(
    hostile: FleetDb,
) -> None:
    """A real API server never sends it (Go's encoder writes U+FFFD); a broken proxy might. The list
    is rejected as malformed JSON, naming cluster and path; the other tables and clusters load."""
    tables = ("kubernetes_pods", "kubernetes_namespaces")
    assert_all_ok(hostile.load("clean", names=["alpha"], tables=tables, settings=SETTINGS), ["alpha"])
    before = snapshot(hostile.dsn, "alpha", tables)
    cluster = hostile.cluster("alpha")
    cluster.store.warmed.wait(10)
    entry = cluster.store.history(cluster.catalog.lookup("", "v1", "pods")).current.entries[0]
    entry._item = entry.item.replace(b'"labels":{', b'"labels":{"bad":"\xff\xfe",', 1)  # served as is

    outcomes = hostile.load("bad-utf8", names=["alpha", "hostile"], tables=tables, settings=SETTINGS)

    assert_all_ok(outcomes, ["hostile"])
    alpha = outcomes["alpha"]
    assert alpha.failed_tables == ["kubernetes_pods"]
    assert "malformed JSON" in (alpha.tables["kubernetes_pods"].error or "")
    assert snapshot(hostile.dsn, "alpha", tables) == before
    (error,) = [e for c, t, s, e in loads(hostile.dsn, "bad-utf8", "alpha") if s == "failed"]
    assert error.startswith("cluster alpha: table kubernetes_pods: GET /api/v1/pods: malformed JSON")

    entry._item = None  # the object is serialized afresh: the next run recovers
    assert_all_ok(hostile.load("recovered", names=["alpha"], tables=tables, settings=SETTINGS), ["alpha"])


def test_a_cluster_name_crafted_as_sql_is_rejected_everywhere(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    evil = "x'; DROP TABLE kq_meta.loads; --"
    with pytest.raises(inventory.InventoryError, match="invalid cluster name"):
        inventory.validate_name(evil)
    with pytest.raises(inventory.InventoryError, match="invalid cluster name"):
        inventory.Cluster(name=evil, server="https://127.0.0.1:1", token_env="T")

    monkeypatch.setenv("KQ_DATABASE_URL", pg_dsn)
    monkeypatch.setenv("KQ_HOME", str(tmp_path / "kq"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    assert main(["clusters", "add", evil, "--server", "https://127.0.0.1:1", "--token-env", "T"]) == 2
    err = capsys.readouterr().err
    assert "invalid cluster name" in err and "Traceback" not in err
    inv = tmp_path / "clusters.yaml"
    inv.write_text(f'clusters:\n  - name: "{evil}"\n    server: https://127.0.0.1:1\n    token_env: T\n')
    assert main(["clusters", "add", "--file", str(inv)]) == 2
    assert "invalid cluster name" in capsys.readouterr().err

    (outcome,) = refresh_clusters(pg_dsn, [evil], ["kubernetes_pods"], run_id="evil", settings=SETTINGS)
    assert not outcome.ok and "not in the inventory" in (outcome.error or "")
    assert _one(
        pg_dsn, "SELECT to_regclass('kq_meta.loads') IS NOT NULL, count(*) FROM kq_meta.clusters"
    ) == (True, 0)
