"""`kq` end to end, as a new user runs it: simulated clusters over HTTPS, a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from kq_pipeline.cli import main
from kq_pipeline.simulator import serve_fleet
from kq_pipeline.simulator.objects import ClusterSpec


@pytest.fixture
def kq_env(tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("KQ_DATABASE_URL", pg_dsn)
    monkeypatch.setenv("KQ_HOME", str(tmp_path / "kq"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    yield pg_dsn


def _query(dsn: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


def test_three_clusters_load_replace_and_survive_one_failing(
    kq_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    specs = [ClusterSpec(name=f"sim-{i}", seed=i, pods=200) for i in range(3)]
    with serve_fleet(specs) as fleet:
        kubeconfig = fleet.write_kubeconfig(tmp_path / "k.yaml")
        assert main(["clusters", "add", "--kubeconfig", str(kubeconfig)]) == 0
        assert main(["load"]) == 0
        per_cluster = "SELECT cluster_name, count(*) FROM kubernetes_pods GROUP BY 1 ORDER BY 1"
        assert _query(kq_env, per_cluster) == [("sim-0", 200), ("sim-1", 200), ("sim-2", 200)]
        report = capsys.readouterr().out
        assert "sim-0 kubernetes_pods Rows=200" in report
        assert "3 cluster(s) loaded, 0 failed" in report
        timed = "SELECT count(*) FROM kq_loads WHERE status = 'success' AND duration_ms >= 0"
        assert _query(kq_env, timed) == [(3 * 51,)]

        assert main(["load"]) == 0  # replace, not append
        assert _query(kq_env, per_cluster) == [("sim-0", 200), ("sim-1", 200), ("sim-2", 200)]

        before = _query(kq_env, "SELECT * FROM kubernetes_pods WHERE cluster_name = 'sim-1' ORDER BY uid")
        fleet.clusters["sim-1"].stop()
        capsys.readouterr()
        assert main(["load"]) == 1
        report = capsys.readouterr().out
        assert "2 cluster(s) loaded, 1 failed: sim-1" in report
        assert (
            _query(kq_env, "SELECT * FROM kubernetes_pods WHERE cluster_name = 'sim-1' ORDER BY uid")
            == before
        )
        failures = _query(
            kq_env,
            "SELECT DISTINCT table_name FROM kq_loads WHERE cluster_name = 'sim-1' AND status = 'failed'",
        )
        assert len(failures) == 51


def test_loading_an_unknown_cluster_is_a_one_line_error(
    kq_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["load", "--cluster", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kq: error:") and "Traceback" not in err


def test_adding_from_a_missing_kubeconfig_names_the_file(
    kq_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["clusters", "add", "--kubeconfig", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err


def test_register_a_target_then_load_it_with_the_reader_token(
    kq_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve_fleet([ClusterSpec(name="target", seed=3, pods=20)]) as fleet:
        admin = fleet.write_kubeconfig(tmp_path / "admin.yaml")
        args = ["clusters", "register", "--kubeconfig", str(admin), "--context", "target"]
        assert main([*args, "--dry-run"]) == 0
        assert "kind: ClusterRole" in capsys.readouterr().out
        assert main([*args, "--name", "prod-1", "--token-dir", str(tmp_path / "tokens")]) == 0
        assert "registered prod-1" in capsys.readouterr().out
        assert main(["load", "--cluster", "prod-1"]) == 0
    (token_file,) = _query(kq_env, "SELECT token_file FROM kq_clusters WHERE name = 'prod-1'")[0]
    assert Path(token_file).parent == tmp_path / "tokens"
    assert _query(kq_env, "SELECT count(*) FROM kubernetes_pods WHERE cluster_name = 'prod-1'") == [(20,)]
