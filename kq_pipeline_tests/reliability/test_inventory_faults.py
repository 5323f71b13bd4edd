"""Inventory faults: a cluster removed while its run is queued, a duplicate name, an unusable
kubeconfig. Each is a clear, one-line error naming what is wrong; the other clusters are unaffected."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import yaml

from kq_pipeline import inventory
from kq_pipeline.cli import main
from kq_pipeline_tests.reliability.conftest import (
    FAULTY,
    FLEET,
    FleetDb,
    assert_others_loaded,
    loads,
    snapshot,
)


@pytest.fixture
def kq_env(pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("KQ_DATABASE_URL", pg_dsn)
    monkeypatch.setenv("KQ_HOME", str(tmp_path / "kq"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    return pg_dsn


def test_a_cluster_removed_while_its_run_is_queued_fails_by_name_and_the_others_load(
    fleet_db: FleetDb,
) -> None:
    fleet_db.load("clean")
    before = snapshot(fleet_db.dsn, FAULTY)
    with psycopg.connect(fleet_db.dsn) as conn:
        assert inventory.retire_cluster(conn, FAULTY)

    outcomes = fleet_db.load("queued")  # the run was planned with all three names

    assert_others_loaded(fleet_db, outcomes, "queued")
    assert outcomes[FAULTY].error == f"cluster {FAULTY} is not in the inventory (removed or never added)"
    assert loads(fleet_db.dsn, "queued", FAULTY) == []  # nothing was attempted for it
    assert snapshot(fleet_db.dsn, FAULTY) == before  # retiring keeps rows until the retire policy runs


def test_a_duplicate_cluster_name_in_an_inventory_file_is_a_clear_error(
    kq_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inv = tmp_path / "clusters.yaml"
    entry = {"name": "prod-1", "server": "https://127.0.0.1:6443", "token_env": "PROD_TOKEN"}
    inv.write_text(yaml.safe_dump({"clusters": [entry, {**entry, "server": "https://127.0.0.1:6444"}]}))

    assert main(["clusters", "add", "--file", str(inv)]) == 2

    err = capsys.readouterr().err
    assert err == f"kq: error: inventory file {inv}: duplicate cluster name 'prod-1'\n"
    with psycopg.connect(kq_env) as conn:  # nothing half-added
        assert conn.execute("SELECT count(*) FROM kq_meta.clusters").fetchone() == (0,)


def test_a_kubeconfig_that_is_not_yaml_is_a_one_line_error_naming_the_file(
    kq_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("apiVersion: v1\nclusters:\n  - name: a\n   cluster: {server: [\n")
    assert main(["clusters", "add", "--kubeconfig", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kq: error: kubeconfig {bad} is not valid YAML at line ")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_an_unknown_context_is_a_one_line_error_naming_file_and_context(
    kq_env: str, fleet_db: FleetDb, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["clusters", "add", "--kubeconfig", str(fleet_db.kubeconfig), "--context", "nope"]) == 2
    err = capsys.readouterr().err
    where = fleet_db.kubeconfig.resolve()
    assert err == f"kq: error: kubeconfig {where} has no context 'nope' (it has: {', '.join(FLEET)})\n"


def test_a_context_whose_user_entry_is_missing_fails_that_cluster_naming_file_and_context(
    fleet_db: FleetDb,
) -> None:
    config = yaml.safe_load(fleet_db.kubeconfig.read_text())
    for ctx in config["contexts"]:
        if ctx["name"] == FAULTY:
            ctx["context"]["user"] = "ghost"
    fleet_db.kubeconfig.write_text(yaml.safe_dump(config))

    outcomes = fleet_db.load("bad-context")

    assert_others_loaded(fleet_db, outcomes, "bad-context")
    expected = f"kubeconfig {fleet_db.kubeconfig.resolve()}, context '{FAULTY}': user entry 'ghost' not found"
    assert outcomes[FAULTY].error == f"cluster {FAULTY}: {expected}"
    errors = {e for _, _, status, e in loads(fleet_db.dsn, "bad-context", FAULTY) if status == "failed"}
    assert errors == {outcomes[FAULTY].error}
