"""`kq` end to end, as a new user runs it: simulated clusters over HTTPS, a real PostgreSQL."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml

from kq_pipeline.cli import main
from kq_pipeline.load_output import LoadConsole
from kq_pipeline.registry import TABLES
from kq_pipeline.report import (
    ClusterResult,
    TableLoad,
    cluster_line,
    cluster_result,
    summary_line,
    table_report,
)
from kq_pipeline.simulator import serve_fleet
from kq_pipeline.simulator.objects import ClusterSpec

KQ = [sys.executable, "-m", "kq_pipeline.cli"]


def _query(dsn: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


def _lines(captured: pytest.CaptureResult[str]) -> list[str]:
    return (captured.out + captured.err).splitlines()


def test_load_prints_one_line_per_cluster_replaces_and_survives_one_failing(
    kq_env: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    names = [f"sim-{i}" for i in range(5)]
    specs = [ClusterSpec(name=n, seed=i, pods=200) for i, n in enumerate(names)]
    with serve_fleet(specs) as fleet:
        kubeconfig = fleet.write_kubeconfig(tmp_path / "k.yaml")
        assert main(["clusters", "add", "--kubeconfig", str(kubeconfig)]) == 0
        capfd.readouterr()
        sigterm = signal.getsignal(signal.SIGTERM)

        assert main(["load"]) == 0
        lines = _lines(capfd.readouterr())  # stdout and stderr, this process's and its children's
        assert len(lines) <= 12, lines
        for name in names:
            (line,) = [line for line in lines if line.split()[0] == name]
            assert re.fullmatch(rf"{name} +[\d,]+ rows +\d+\.\ds  ok", line)
        assert re.fullmatch(r"5 cluster\(s\) loaded, 0 failed in \d+\.\ds", lines[-1])
        assert signal.getsignal(signal.SIGTERM) == sigterm  # Dagster's run leaves signals as they were
        per_cluster = "SELECT cluster_name, count(*) FROM kubernetes_pods GROUP BY 1 ORDER BY 1"
        assert _query(kq_env, per_cluster) == [(n, 200) for n in names]
        timed = "SELECT count(*) FROM kq_meta.loads WHERE status = 'success' AND duration_ms >= 0"
        assert _query(kq_env, timed) == [(5 * len(TABLES),)]

        assert main(["load", "--tables"]) == 0  # replace, not append; and every table's line
        out = capfd.readouterr().out
        assert "Cluster REPORT sim-0 - https://127.0.0.1:" in out
        assert re.search(r"^  sim-0 kubernetes_pods Rows=200, Duration=\d+\.\dms$", out, re.M)
        assert len(re.findall(r"^  sim-\d kubernetes_\w+ Rows=\d+", out, re.M)) == 5 * len(TABLES)
        assert _query(kq_env, per_cluster) == [(n, 200) for n in names]

        before = _query(kq_env, "SELECT * FROM kubernetes_pods WHERE cluster_name = 'sim-1' ORDER BY uid")
        fleet.clusters["sim-1"].stop()
        assert main(["load"]) == 1
        lines = _lines(capfd.readouterr())
        assert len(lines) <= 12, lines
        (line,) = [line for line in lines if "sim-1" in line and "failed:" in line]
        assert line.startswith("sim-1 ") and "Connection refused" in line
        assert re.fullmatch(r"4 cluster\(s\) loaded, 1 failed in \d+\.\ds: sim-1", lines[-1])
        assert (
            _query(kq_env, "SELECT * FROM kubernetes_pods WHERE cluster_name = 'sim-1' ORDER BY uid")
            == before
        )
        failures = _query(
            kq_env,
            "SELECT DISTINCT table_name FROM kq_meta.loads"
            " WHERE cluster_name = 'sim-1' AND status = 'failed'",
        )
        assert len(failures) == len(TABLES)


def test_an_unreachable_cluster_is_named_with_its_reason_and_no_traceback(
    kq_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEAD_TOKEN", "x")
    dead = ["dead", "--server", "https://127.0.0.1:1", "--token-env", "DEAD_TOKEN"]  # nothing listens there
    assert main(["clusters", "add", *dead]) == 0

    # a real process, so whatever Dagster or a worker writes to the file descriptors counts too
    result = subprocess.run(
        [*KQ, "load", "--cluster", "dead"], capture_output=True, text=True, timeout=300, env=os.environ
    )

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output and "Stack Trace" not in output
    line, summary = output.splitlines()
    assert re.fullmatch(r"dead +0 rows +\d+\.\ds  failed: .*Connection refused", line)
    assert re.fullmatch(r"0 cluster\(s\) loaded, 1 failed in \d+\.\ds: dead", summary)


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
    (token_file,) = _query(kq_env, "SELECT token_file FROM kq_meta.clusters WHERE name = 'prod-1'")[0]
    assert Path(token_file).parent == tmp_path / "tokens"
    assert _query(kq_env, "SELECT count(*) FROM kubernetes_pods WHERE cluster_name = 'prod-1'") == [(20,)]


def test_register_with_a_selection_grants_what_it_collects_and_registering_again_keeps_it(
    kq_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = ClusterSpec(name="ops", seed=4, pods=10, operators=("cert-manager", "argocd"), custom_objects=20)
    with serve_fleet([spec]) as fleet:
        admin = fleet.write_kubeconfig(tmp_path / "admin.yaml")
        args = ["clusters", "register", "--kubeconfig", str(admin), "--context", "ops"]
        selection = ["--tables", "!kubernetes_secrets", "--custom-kinds", "cert-manager.io/*"]
        assert main([*args, *selection, "--token-dir", str(tmp_path / "t")]) == 0
        out = capsys.readouterr().out
        assert "collect: -secrets; custom: cert-manager.io/*" in out
        assert main(["load", "--cluster", "ops"]) == 0
        capsys.readouterr()
        assert main([*args, "--dry-run"]) == 0  # no options: the stored selection
        (role,) = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d and d["kind"] == "ClusterRole"]
    granted = {r for rule in role["rules"] for r in rule.get("resources", ())}
    assert "secrets" not in granted and {"certificates", "issuers", "clusterissuers"} <= granted
    assert "applications" not in granted
    assert _query(kq_env, "SELECT collect FROM kq_meta.clusters WHERE name = 'ops'") == [
        ({"tables": ["!kubernetes_secrets"], "custom_kinds": ["cert-manager.io/*"]},)
    ]
    loaded = "SELECT DISTINCT api_group FROM kubernetes_custom_resources WHERE cluster_name = 'ops'"
    assert _query(kq_env, loaded) == [("cert-manager.io",)]
    status = (
        "SELECT status FROM kq_latest_loads WHERE cluster_name = 'ops' AND table_name = 'kubernetes_secrets'"
    )
    assert _query(kq_env, status) == [("excluded",)]


def test_ctrl_c_during_a_load_is_one_line_and_exit_130(kq_env: str, tmp_path: Path) -> None:
    specs = [ClusterSpec(name=f"big-{i}", seed=i, pods=1500) for i in range(4)]
    with serve_fleet(specs) as fleet:
        kubeconfig = fleet.write_kubeconfig(tmp_path / "k.yaml")
        assert main(["clusters", "add", "--kubeconfig", str(kubeconfig)]) == 0
        # a terminal's foreground job: Ctrl-C reaches kq and every process it started
        proc = subprocess.Popen(
            [*KQ, "load", "--concurrency", "1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env=os.environ,
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()  # one cluster is done: the others are in flight or queued
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=300)

    assert first.startswith("big-") and proc.returncode == 130
    assert err.strip().splitlines()[-1] == "kq: interrupted"
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err


def _load(table: str, status: str = "success", error: str | None = None, rows: int = 3) -> TableLoad:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    end = start + timedelta(seconds=2)
    return TableLoad(1, "c1", "https://c1", table, status, rows, 0, 10.0, error, start, end)


def test_a_cluster_failing_the_same_way_on_every_table_gives_that_one_reason() -> None:
    cause = "GET /api/v1/namespaces/kube-system: connection failed: [Errno 111] Connection refused"
    loads = [_load(t, "failed", f"cluster c1: table {t}: {cause}", None) for t in ("t1", "t2", "t3")]
    result = cluster_result("c1", loads)
    assert not result.ok and result.reason == cause and result.duration_s == 2.0
    forbidden = _load("t2", "failed", "cluster c1: table t2: 403\nForbidden")
    partial = cluster_result("c1", [_load("t1"), forbidden])
    assert partial.reason == "t2: 403 Forbidden" and partial.rows == 3


def test_a_long_reason_is_cut_to_one_terminal_line() -> None:
    result = ClusterResult("c1", ok=False, reason="no route to host " * 40)
    line = cluster_line(result, name_width=10, columns=100)
    assert len(line) == 100 and line.endswith("...") and "\n" not in line


def test_the_summary_of_200_clusters_stays_one_line() -> None:
    failed = [f"cluster-{i:03d}" for i in range(60)]
    line = summary_line(140, failed, 75.0, columns=120)
    assert len(line) <= 120
    assert line.startswith("140 cluster(s) loaded, 60 failed in 75.0s: cluster-000, cluster-001, ")
    assert re.search(r", \.\.\. and \d+ more$", line)
    assert summary_line(2, ["a", "b"], 1.0, columns=120) == "2 cluster(s) loaded, 2 failed in 1.0s: a, b"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _screen(text: str) -> list[str]:
    """What a terminal shows: a carriage return rewrites the line, ESC[K clears the rest of it."""
    lines = []
    for raw in text.split("\n"):
        lines.append(raw.replace("\033[K", "").split("\r")[-1])
    return lines


def test_a_terminal_sees_a_progress_line_that_the_results_replace() -> None:
    term = _Terminal()
    console = LoadConsole(["a", "b"], stream=term)
    console.tick()
    assert re.fullmatch(r"0/2 clusters done, \d+s", _screen(term.getvalue())[-1])
    console.cluster_done(ClusterResult("a", ok=True, rows=5, duration_s=1.0))
    assert re.fullmatch(r"1/2 clusters done, \d+s", _screen(term.getvalue())[-1])
    console.cluster_done(ClusterResult("b", ok=False, reason="boom"))
    console.finish()
    a, b, summary, after = _screen(term.getvalue())
    assert (a, b) == ("a          5 rows     1.0s  ok", "b          0 rows     0.0s  failed: boom")
    assert re.fullmatch(r"1 cluster\(s\) loaded, 1 failed in \d+\.\ds: b", summary) and after == ""


def test_a_pipe_gets_plain_lines_only() -> None:
    pipe = io.StringIO()
    console = LoadConsole(["a"], stream=pipe)
    console.tick()
    console.cluster_done(ClusterResult("a", ok=True, rows=5, duration_s=1.0))
    console.finish()
    assert "\r" not in pipe.getvalue() and "\033" not in pipe.getvalue()
    assert pipe.getvalue().splitlines()[0] == "a          5 rows     1.0s  ok"


def test_a_selection_given_to_clusters_add_is_listed_applied_and_in_the_load_report(
    kq_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = ClusterSpec(name="sel", seed=5, pods=20, operators=("cert-manager", "istio"), custom_objects=30)
    with serve_fleet([spec]) as fleet:
        kubeconfig = str(fleet.write_kubeconfig(tmp_path / "k.yaml"))
        add = ["clusters", "add", "--kubeconfig", kubeconfig]
        assert main([*add, "--tables", "!kubernetes_secrets", "--custom-kinds", "cert-manager.io/*"]) == 0
        capsys.readouterr()
        assert main(["clusters", "list"]) == 0
        (line,) = capsys.readouterr().out.splitlines()
        assert line.startswith("sel ") and line.endswith("  collect: -secrets; custom: cert-manager.io/*")

        assert main(["load", "--tables"]) == 0
        out = capsys.readouterr().out
        assert (
            "  sel kubernetes_secrets EXCLUDED (excluded by the cluster's selection (collect.tables))" in out
        )
        not_selected = "(1 custom kind(s) not selected (collect.custom_kinds))"  # istio's VirtualService
        assert re.search(
            rf"^  sel kubernetes_custom_resources Rows=\d+, Duration=\S+ {re.escape(not_selected)}$",
            out,
            re.M,
        )
        assert re.search(r"^sel +[\d,]+ rows +\d+\.\ds  ok$", out, re.M)
        kinds = _query(kq_env, "SELECT DISTINCT api_group FROM kubernetes_custom_resources")
        assert kinds == [("cert-manager.io",)]

        assert main(["clusters", "add", "--kubeconfig", kubeconfig]) == 0  # no options: the file's (none)
        capsys.readouterr()
        assert main(["clusters", "list"]) == 0
        assert capsys.readouterr().out.rstrip().endswith("  collect: all")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--tables", "kubernetes_podz"],
            "'kubernetes_podz' matches no table (did you mean kubernetes_pods?)",
        ),
        (["--custom-kinds", "certificates"], "'certificates' is not group/Kind or group/plural"),
        (["--exclude-namespaces", "Kube System"], "is not a namespace name or glob"),
        (["--max-objects-per-kind", "0"], "must be a positive integer, got 0"),
    ],
)
def test_a_bad_selection_option_is_a_one_line_error_with_exit_2(
    kq_env: str, capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    args = ["clusters", "add", "solo", "--server", "https://10.0.0.3:6443", "--token-env", "T", *options]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("kq: error: cluster solo: collect.")
    assert message in captured.err and len(captured.err.splitlines()) == 1


def test_the_table_report_shows_excluded_tables_and_notes() -> None:
    loads = [
        _load("kubernetes_pods"),
        replace(_load("kubernetes_secrets", "excluded", rows=0), note="excluded by the cluster's selection"),
        replace(
            _load("kubernetes_custom_resources", rows=4), note="a.io/X: 403 Forbidden: previous rows kept (2)"
        ),
    ]
    result = cluster_result("c1", loads)
    assert result.ok and result.rows == 7
    lines = table_report(result)[3:]
    assert lines == [
        "  c1 kubernetes_pods Rows=3, Duration=10.0ms",
        "  c1 kubernetes_secrets EXCLUDED (excluded by the cluster's selection)",
        "  c1 kubernetes_custom_resources Rows=4, Duration=10.0ms"
        " (a.io/X: 403 Forbidden: previous rows kept (2))",
    ]


def test_an_unreachable_cluster_with_excluded_tables_still_has_one_reason() -> None:
    cause = "GET /version: connection failed"
    loads = [_load(t, "failed", f"cluster c1: table {t}: {cause}", None) for t in ("t1", "t2")]
    loads.append(_load("t3", "excluded", rows=0))
    result = cluster_result("c1", loads)
    assert not result.ok and result.reason == cause
    assert table_report(result)[3:] == [
        f"  c1 FAILED (all 2 tables): cluster c1: table t1: {cause}",
        "  c1 t3 EXCLUDED",
    ]
