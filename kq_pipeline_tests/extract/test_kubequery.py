"""kubequery extraction mode, run against a stand-in basequery (fake_basequery/basequery.py).

No real kubequery binary runs here (kubequery/README.md, "Not built here"). The stand-in plays
basequery + the remote-access kubequery extension at the process boundary (command line, stdin
query, environment, HTTPS to a simulated cluster, JSON on stdout, exit codes). What that proves:

- kubequery's own rows load unchanged: `test_kubequerys_recorded_rows_reach_postgresql_row_for_row`
  has the stand-in answer with the rows kubequery itself produced in its Go tests
  (kq_pipeline_tests/data/kubequery/cases), and checks that exactly those rows end up in PostgreSQL
  through the runner, the parser and the loader;
- everything else is plumbing: the stand-in's rows there come from the project's own row builders,
  so those tests prove the runner script, process handling (timeouts, aborts, clean-up), the
  child's environment, error reporting and the output contract, not that kubequery's Go code
  gives the native extractor's rows (that is kq_pipeline_tests/rows/test_conformance.py's job,
  against kubequery's recorded rows).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from kq_pipeline import inventory
from kq_pipeline.extract import kubequery as kq
from kq_pipeline.extract import native
from kq_pipeline.extract.kubequery_runner import DEFAULT_RUNNER, KubequeryRunError, Target
from kq_pipeline.extract.result import ClusterExtract
from kq_pipeline.extract.secrets import LAST_APPLIED
from kq_pipeline.kube.access import ClusterAccess, TokenSource
from kq_pipeline.refresh import RefreshSettings, refresh_clusters
from kq_pipeline.registry import KUBEQUERY_TABLES
from kq_pipeline.simulator import Fleet, serve_fleet
from kq_pipeline.simulator.objects import ClusterSpec, secret_values
from kq_pipeline_tests.conftest import KUBEQUERY_DATA

FAKE = Path(__file__).resolve().parent / "fake_basequery" / "basequery.py"
CASES = KUBEQUERY_DATA / "cases"
CLUSTER = "kq-a"
REMOVED_BY_125 = {
    "kubernetes_cron_jobs",
    "kubernetes_pod_disruption_budgets",
    "kubernetes_pod_security_policies",
}
SMALL = ["kubernetes_info", "kubernetes_namespaces", "kubernetes_pods", "kubernetes_ingresses"]


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with serve_fleet([ClusterSpec(CLUSTER, pods=40, namespaces=4)]) as f:
        yield f


def access_for(fleet: Fleet, token: str | None = None) -> ClusterAccess:
    c = fleet.clusters[CLUSTER]
    return ClusterAccess(
        name=CLUSTER, server=c.url, ca_data=fleet.ca_pem, token=TokenSource(literal=token or c.token)
    )


Install = Callable[..., Path]


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Install:
    """Install the stand-in as $KQ_BASEQUERY (with test hooks baked into a wrapper) and a private
    temp root; returns a function(mode=..., fault_table=..., recorded=...) -> the call log path.
    `recorded`: a kubequery cases directory to answer from (kubequery's own rows) instead of the
    project's row builders."""
    tmp_root = tmp_path / "tmp"
    tmp_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_root))

    def install(mode: str = "ok", fault_table: str = "", recorded: Path | None = None) -> Path:
        log = tmp_path / "calls.jsonl"
        wrapper = tmp_path / "bin" / "basequery"
        wrapper.parent.mkdir(exist_ok=True)
        wrapper.write_text(
            "#!/bin/sh\n"
            f"FAKE_BASEQUERY_LOG='{log}' FAKE_BASEQUERY_MODE='{mode}' "
            f"FAKE_BASEQUERY_FAULT_TABLE='{fault_table}' FAKE_BASEQUERY_RECORDED='{recorded or ''}' "
            f"exec '{sys.executable}' '{FAKE}' \"$@\"\n"
        )
        wrapper.chmod(0o755)
        monkeypatch.setenv("KQ_BASEQUERY", str(wrapper))
        return log

    return install


def calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture(scope="module")
def native_run(fleet: Fleet) -> ClusterExtract:
    """The reference: the native extractor (API lists + the project's row builders), same cluster."""
    # concurrency=1: kq_pipeline.rows.gojson compiles encoders lazily and is not thread-safe on first use
    return native.extract_cluster(
        access_for(fleet), CLUSTER, list(KUBEQUERY_TABLES), concurrency=1, deadline_s=60
    )


@pytest.fixture(scope="module")
def full_run(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """All 51 tables through runquery.sh + the stand-in, once; its log and temp root kept for inspection."""
    base = tmp_path_factory.mktemp("full")
    tmp_root = base / "tmp"
    tmp_root.mkdir()
    log = base / "calls.jsonl"
    wrapper = base / "basequery"
    wrapper.write_text(f"#!/bin/sh\nFAKE_BASEQUERY_LOG='{log}' exec '{sys.executable}' '{FAKE}' \"$@\"\n")
    wrapper.chmod(0o755)
    mp = pytest.MonkeyPatch()
    mp.setattr(tempfile, "tempdir", str(tmp_root))
    mp.setenv("KQ_BASEQUERY", str(wrapper))
    try:
        t0 = time.time()
        result = kq.extract_cluster(
            access_for(fleet), CLUSTER, list(KUBEQUERY_TABLES), concurrency=4, deadline_s=120
        )
        t1 = time.time()
    finally:
        mp.undo()
    return {"result": result, "log": log, "tmp_root": tmp_root, "window": (t0, t1)}


def _recorded_cases() -> dict[str, dict[str, Any]]:
    """kubequery's cases whose expected rows are published (13 of 43 are withheld)."""
    cases = {p.stem: json.loads(p.read_text()) for p in sorted(CASES.glob("*.json"))}
    return {t: c for t, c in cases.items() if "expected_rows" in c}


def _stored(table: str, row: dict[str, str]) -> dict[str, Any]:
    """A kubequery row as PostgreSQL returns it: ints for INTEGER/BIGINT, parsed JSON, None if absent."""
    out: dict[str, Any] = {}
    for col in KUBEQUERY_TABLES[table].columns:
        value = row.get(col.name)
        if value is not None and col.kq_type != "TEXT":
            value = int(value)
        elif value is not None and col.is_json:
            value = json.loads(value)
        out[col.name] = value
    return out


def _canonical(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True) for r in rows)


def test_kubequerys_recorded_rows_reach_postgresql_row_for_row(
    fleet: Fleet, stand_in: Install, pg_dsn: str, tmp_path: Path
):
    """Rows kubequery itself produced (its Go tests' expected rows) go through runquery.sh, the
    stand-in basequery's JSON, the kubequery extractor and the loader, and come out of PostgreSQL
    unchanged: no row or column lost, added, renamed, retyped or altered."""
    cases = _recorded_cases()
    info = cases["kubernetes_info"]["expected_rows"][0]
    version = {"minor": info["minor"], "gitVersion": info["git_version"]}
    # kubequery's own info row says Kubernetes 1.46, so the extractor does not ask for the kinds
    # kubequery reads at API versions removed in 1.25: their rows are not part of this check.
    skipped = {t for t in cases if kq.unserved_note(t, version)}
    assert skipped == {"kubernetes_pod_security_policies"}
    tables = [t for t in KUBEQUERY_TABLES if t in cases and t not in skipped]
    assert len(tables) >= 25 and sum(len(cases[t]["expected_rows"]) for t in tables) >= 50
    stand_in(recorded=CASES)
    name = "kq-recorded"
    (cluster,) = inventory.clusters_from_kubeconfig(
        fleet.write_kubeconfig(tmp_path / "k.yaml"), [CLUSTER], [name]
    )
    with psycopg.connect(pg_dsn) as conn:
        inventory.upsert_clusters(conn, [replace(cluster, extractor="kubequery")])

    (outcome,) = refresh_clusters(pg_dsn, [name], tables, run_id="recorded", settings=RefreshSettings())

    assert outcome.ok, (outcome.error, outcome.failed_tables)
    # The remote-access patch names the cluster: KUBEQUERY_CLUSTER_NAME, and kube-system's uid.
    ks = next(
        n for n in fleet.clusters[CLUSTER].objects["v1/namespaces"] if n["metadata"]["name"] == "kube-system"
    )
    identity = {"cluster_name": name, "cluster_uid": ks["metadata"]["uid"]}
    with psycopg.connect(pg_dsn) as conn:
        for table in tables:
            columns = [c.name for c in KUBEQUERY_TABLES[table].columns]
            query = sql.SQL("SELECT {} FROM {} WHERE cluster_name = %s").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table)
            )
            loaded = [dict(zip(columns, r, strict=True)) for r in conn.execute(query, (name,)).fetchall()]
            want = [_stored(table, {**row, **identity}) for row in cases[table]["expected_rows"]]
            assert _canonical(loaded) == _canonical(want), table
            assert outcome.tables[table].rows_loaded == len(want), table


def test_the_basequery_round_trip_changes_no_row_of_the_51_tables(
    full_run: dict[str, Any], native_run: ClusterExtract, fleet: Fleet
):
    """Plumbing, all 51 tables: the stand-in builds its rows with the project's own row builders, so
    equal rows here prove that runquery.sh, basequery's JSON (every column, "" for none), the
    parser, the Secret redaction and the identity checks lose or change nothing, and that kubequery
    mode's API versions and events note are right. Not that kubequery's Go code gives these rows."""
    result = full_run["result"]
    namespaces = fleet.clusters[CLUSTER].objects["v1/namespaces"]
    ks = next(n for n in namespaces if n["metadata"]["name"] == "kube-system")
    assert result.cluster_uid == native_run.cluster_uid == ks["metadata"]["uid"]
    assert result.server_version == native_run.server_version
    assert list(result.tables) == list(KUBEQUERY_TABLES)
    assert {t: e.error for t, e in result.tables.items() if e.rows is None} == {}
    assert native_run.failed_tables == []
    lo, hi = full_run["window"]
    for name in KUBEQUERY_TABLES:
        got, want = result.tables[name].rows, native_run.tables[name].rows
        assert got is not None and want is not None
        if name in REMOVED_BY_125:
            # kubequery 1.1.1 asks for the v1beta1 kind, gone since 1.25: empty table and a note.
            assert got == [] and "removed in 1.25" in result.tables[name].note
            continue
        if name == "kubernetes_events":
            # kubequery stamps "now" on events without an eventTime; the two runs differ in "now".
            assert len(got) == len(want)
            for g, w in zip(got, want, strict=True):
                if g.get("time") != w.get("time"):
                    assert lo - 1 <= int(g["time"]) <= hi + 1
                    g = {**g, "time": w["time"]}
                assert g == w
            assert result.tables[name].note == kq.EVENTS_NOTE
            continue
        assert got == want, name
    assert sum(len(e.rows or []) for e in result.tables.values()) > 500


def test_on_a_1_24_cluster_the_tables_kubequery_reads_at_v1beta1_are_run_not_skipped(
    stand_in: Install, tmp_path: Path
):
    """Plumbing: below 1.25 the three v1beta1 tables are queried (no note), and the stand-in's rows
    from the v1beta1 lists equal the native extractor's from the versions it reads."""
    with serve_fleet([ClusterSpec(CLUSTER, pods=20, namespaces=3, k8s_minor=24)]) as old:
        stand_in()
        tables = ["kubernetes_info", *sorted(REMOVED_BY_125)]
        got = kq.extract_cluster(access_for(old), CLUSTER, tables)
        want = native.extract_cluster(access_for(old), CLUSTER, tables, concurrency=1)
    assert got.failed_tables == [] == want.failed_tables
    assert got.tables["kubernetes_cron_jobs"].rows and got.tables["kubernetes_pod_disruption_budgets"].rows
    for name in tables:
        assert got.tables[name].rows == want.tables[name].rows, name
        assert got.tables[name].note is None


def test_secret_values_in_last_applied_annotations_are_redacted_by_the_extractor(
    full_run: dict[str, Any], fleet: Fleet
):
    """The stand-in, like kubequery, prints last-applied-configuration as stored; the extractor redacts."""
    rows = full_run["result"].tables["kubernetes_secrets"].rows
    values = secret_values(fleet.clusters[CLUSTER].objects)
    assert values, "the simulated cluster must have secret values for this test to mean anything"
    text = json.dumps(rows)
    assert not [v for v in values if v in text]
    assert any(LAST_APPLIED in r.get("annotations", "") for r in rows)


def test_token_only_in_the_childs_environment_never_on_a_command_line_nor_left_in_files(
    full_run: dict[str, Any], fleet: Fleet
):
    token = fleet.clusters[CLUSTER].token
    entries = calls(full_run["log"])
    assert len(entries) == 51 - len(REMOVED_BY_125)  # kinds the cluster cannot serve are not run
    for e in entries:
        assert e["token_in_env"] is True
        for argv in (e["argv"], e["cmdline"], e["parent_cmdline"]):
            assert argv, "the stand-in must have read /proc/<pid>/cmdline"
            assert not any(token in a for a in argv)
        # the runner (the stand-in's parent) got the table etc. as arguments, never the token
        assert e["table"] in e["parent_cmdline"]
        # a minimal environment: nothing but what kubequery and the runner need
        assert {n for n in e["env_names"] if "TOKEN" in n or "PASSWORD" in n} == {"KUBEQUERY_TOKEN"}
    sockets = {e["socket"] for e in entries}
    assert len(sockets) == len(entries)  # one extension socket per call
    tmp_root: Path = full_run["tmp_root"]
    assert all(not Path(s).parent.exists() for s in sockets)
    assert list(tmp_root.iterdir()) == []  # private dirs (sockets, CA file) all removed


def test_a_basequery_exiting_non_zero_fails_the_whole_cluster_naming_cluster_and_table(
    fleet: Fleet, stand_in: Install
):
    stand_in(mode="exit", fault_table="kubernetes_pods")
    result = kq.extract_cluster(access_for(fleet), CLUSTER, SMALL, concurrency=2)
    assert set(result.tables) == set(SMALL)
    for extract in result.tables.values():
        assert extract.rows is None
        assert f"cluster {CLUSTER}" in extract.error
        assert "kubernetes_pods" in extract.error and "code 3" in extract.error
        assert "extension kubequery crashed" in extract.error  # basequery's stderr is kept
        assert "nothing loaded" in extract.error


@pytest.mark.parametrize(
    ("mode", "fault_table", "message"),
    [
        ("malformed", "kubernetes_pods", "output is not JSON"),
        ("nothing", "kubernetes_pods", "no output"),
        ("empty", "kubernetes_namespaces", "no rows, but every cluster has some"),
        ("extra_column", "kubernetes_pods", "not columns of kubernetes_pods"),
    ],
)
def test_output_that_is_not_a_list_of_rows_fails_the_cluster(
    fleet: Fleet, stand_in: Install, mode: str, fault_table: str, message: str
):
    stand_in(mode=mode, fault_table=fault_table)
    result = kq.extract_cluster(access_for(fleet), CLUSTER, SMALL, concurrency=2)
    errors = {e.error for e in result.tables.values()}
    assert all(e.rows is None for e in result.tables.values())
    assert len(errors) == 1
    (error,) = errors
    assert f"cluster {CLUSTER}" in error and fault_table in error and message in error


def test_an_empty_table_that_may_be_empty_loads_as_no_rows(fleet: Fleet, stand_in: Install):
    stand_in(mode="empty", fault_table="kubernetes_ingresses")
    result = kq.extract_cluster(access_for(fleet), CLUSTER, SMALL, concurrency=2)
    assert result.tables["kubernetes_ingresses"].rows == []
    assert result.tables["kubernetes_pods"].rows


def test_a_hanging_table_times_out_and_its_processes_are_ended(
    fleet: Fleet, stand_in: Install, monkeypatch: pytest.MonkeyPatch
):
    log = stand_in(mode="sleep", fault_table="kubernetes_pods")
    monkeypatch.setenv("KQ_KUBEQUERY_TABLE_TIMEOUT_S", "1.5")
    t0 = time.monotonic()
    result = kq.extract_cluster(access_for(fleet), CLUSTER, SMALL, concurrency=4)
    assert time.monotonic() - t0 < 10
    error = result.tables["kubernetes_info"].error
    assert all(e.rows is None for e in result.tables.values())
    assert f"cluster {CLUSTER}: kubequery table kubernetes_pods: timed out" in error
    hung = [e for e in calls(log) if e["table"] == "kubernetes_pods"]
    assert hung
    assert Path(f"/proc/{os.getpid()}").exists()  # /proc is there to look at
    assert not Path(f"/proc/{hung[0]['pid']}").exists()  # the hanging basequery was ended
    # The stand-in's socket dir is gone: the runner's trap or the extractor's cleanup removed it.
    assert not Path(hung[0]["socket"]).parent.exists()


def test_the_cluster_deadline_bounds_every_call(fleet: Fleet, stand_in: Install):
    stand_in(mode="sleep", fault_table="kubernetes_pods")
    t0 = time.monotonic()
    result = kq.extract_cluster(access_for(fleet), CLUSTER, SMALL, concurrency=4, deadline_s=2)
    assert time.monotonic() - t0 < 10
    assert "timed out" in result.tables["kubernetes_pods"].error


def test_missing_basequery_fails_the_cluster(
    fleet: Fleet, stand_in: Install, monkeypatch: pytest.MonkeyPatch
):
    stand_in()
    monkeypatch.setenv("KQ_BASEQUERY", "/nonexistent/basequery")
    result = kq.extract_cluster(access_for(fleet), CLUSTER, SMALL)
    error = result.tables["kubernetes_pods"].error
    assert result.tables["kubernetes_pods"].rows is None
    assert f"cluster {CLUSTER}" in error and "basequery not found" in error


def test_missing_runner_fails_the_cluster(fleet: Fleet, stand_in: Install, tmp_path: Path):
    stand_in()
    result = kq.extract_cluster(access_for(fleet), CLUSTER, SMALL, runner=tmp_path / "no-such-runquery.sh")
    error = result.tables["kubernetes_namespaces"].error
    assert result.tables["kubernetes_namespaces"].rows is None
    assert f"cluster {CLUSTER}" in error and "not found" in error


def test_a_rejected_token_fails_the_cluster_without_showing_the_token(fleet: Fleet, stand_in: Install):
    log = stand_in()
    bad = "not-the-token-" + "x" * 20
    result = kq.extract_cluster(access_for(fleet, token=bad), CLUSTER, SMALL)
    error = result.tables["kubernetes_pods"].error
    assert all(e.rows is None for e in result.tables.values())
    assert f"cluster {CLUSTER}" in error and "Unauthorized" in error
    assert bad not in error and fleet.clusters[CLUSTER].token not in error
    assert len(calls(log)) == 1  # the probe failed; no other process was started


def runquery(table: str, env_extra: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], **env_extra}
    argv = [str(DEFAULT_RUNNER), table, *(args or ("https://127.0.0.1:1", CLUSTER, "", "1"))]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("table", ["kubernetes_podz", "kubernetes_pods; drop table x", "", "KUBERNETES_PODS"])
def test_runner_rejects_a_table_not_in_its_list(stand_in: Install, table: str):
    log = stand_in()
    proc = runquery(table, {"KUBEQUERY_TOKEN": "t", "KQ_BASEQUERY": os.environ["KQ_BASEQUERY"]})
    assert proc.returncode == 2
    assert "is not one of kubequery's 51 tables" in proc.stderr
    assert calls(log) == []  # basequery never started


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ftp://h", CLUSTER, "", "1"), "http(s) URL"),
        (("https://h/$(id)", CLUSTER, "", "1"), "cannot have"),
        (("https://h", "Bad_Name", "", "1"), "cluster name"),
        (("https://h", CLUSTER, "x;y", "1"), "cluster uid"),
        (("https://h", CLUSTER, "", "1a"), "index"),
    ],
)
def test_runner_rejects_bad_arguments(stand_in: Install, args: tuple[str, ...], message: str):
    log = stand_in()
    proc = runquery(
        "kubernetes_pods", {"KUBEQUERY_TOKEN": "t", "KQ_BASEQUERY": os.environ["KQ_BASEQUERY"]}, *args
    )
    assert proc.returncode == 2 and message in proc.stderr
    assert calls(log) == []


def test_runner_requires_the_token_in_its_environment(stand_in: Install):
    stand_in()
    proc = runquery("kubernetes_pods", {"KQ_BASEQUERY": os.environ["KQ_BASEQUERY"]})
    assert proc.returncode == 2 and "KUBEQUERY_TOKEN is not set" in proc.stderr


def test_runner_allow_list_is_exactly_the_registrys_51_tables():
    script = DEFAULT_RUNNER.read_text()
    block = re.search(r"^TABLES='\n(.*?)^'", script, re.S | re.M)
    assert block is not None
    assert block.group(1).split() == list(KUBEQUERY_TABLES)


def test_parse_rows_reads_basequery_nulls_as_absent_keys_and_accepts_integer_numbers():
    out = json.dumps([{"name": "a", "uid": "", "cluster_name": "c", "phase": None}]).encode()
    assert kq.parse_rows("c", "kubernetes_namespaces", out) == [{"name": "a", "cluster_name": "c"}]
    out = json.dumps([{"name": "p", "restart_count": 3}]).encode()
    assert kq.parse_rows("c", "kubernetes_pod_containers", out) == [{"name": "p", "restart_count": "3"}]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"name": "a"}, "not a list of rows"),
        (["a"], "row 0 is a JSON str"),
        ([{"name": True}], "row 0 column name is a JSON bool"),
        ([{"name": 3}], "row 0 column name is a JSON int"),  # TEXT column: kubequery prints strings
        ([{"name": {"x": 1}}], "is a JSON dict"),
    ],
)
def test_parse_rows_rejects_what_kubequery_never_prints(doc: Any, message: str):
    with pytest.raises(KubequeryRunError, match=re.escape(message)) as err:
        kq.parse_rows("c", "kubernetes_pods", json.dumps(doc).encode())
    assert "cluster c: kubequery table kubernetes_pods" in str(err.value)


def test_rows_of_another_cluster_name_fail():
    """An unpatched kubequery names the cluster after the host it runs on."""
    rows = [{"cluster_name": "aggregator-pod-7d9f", "cluster_uid": "u"}]
    with pytest.raises(KubequeryRunError, match="remote-access patch"):
        kq._check_identity("kq-a", "kubernetes_info", rows, None)


def test_target_repr_hides_the_token():
    t = Target(cluster_name="a", address="https://h", token="s3cr3t-token")
    assert "s3cr3t-token" not in repr(t)


def test_unknown_table_is_refused_before_any_process_starts(fleet: Fleet, stand_in: Install):
    log = stand_in()
    with pytest.raises(KeyError):
        kq.extract_cluster(access_for(fleet), CLUSTER, ["kubernetes_podz"])
    assert calls(log) == []


def test_dockerfile_copies_only_files_that_exist_in_the_kubequery_folder():
    folder = DEFAULT_RUNNER.parent
    copied = []
    for line in (folder / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            copied += line.split()[1:-1]
    assert copied and all((folder / name).is_file() for name in copied)
    assert "/opt/uptycs/bin/kubequery.ext" in (folder / "autoload.exts").read_text()
