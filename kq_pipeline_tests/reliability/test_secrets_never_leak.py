"""Secret values and bearer tokens never leave the process that reads them: not into PostgreSQL, the
Dagster instance, process arguments or logs. TLS is verified by default."""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import ssl
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml
from psycopg import sql

from kq_pipeline.cli import main
from kq_pipeline.registry import TABLES
from kq_pipeline.simulator import FleetProcess, serve_fleet_process
from kq_pipeline.simulator.objects import ClusterSpec, generate_objects, secret_values
from kq_pipeline_tests.reliability.conftest import FleetDb, failed_tables, snapshot
from kq_pipeline_tests.test_refresh import FAKE_BASEQUERY

SPECS = [ClusterSpec(name="sec-a", seed=21, pods=30), ClusterSpec(name="sec-b", seed=22, pods=30)]


@pytest.fixture(scope="module")
def fleet_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetProcess]:
    """The fleet in a child process: its tokens exist only in the child and the kubeconfig it wrote."""
    kubeconfig = tmp_path_factory.mktemp("secrets") / "fleet.yaml"
    with serve_fleet_process(SPECS, kubeconfig) as fleet:
        yield fleet


def _needles(fleet: FleetProcess) -> set[str]:
    tokens = {u["user"]["token"] for u in yaml.safe_load(fleet.kubeconfig.read_text())["users"]}
    seeded: set[str] = set()
    for spec in SPECS:  # the generator is deterministic: these are the child's objects
        seeded |= secret_values(generate_objects(spec))
    assert len(tokens) == 2 and len(seeded) > 20
    return tokens | seeded


class ProcSampler:
    """Reads /proc/*/cmdline of every process every 20 ms while a command runs."""

    def __init__(self) -> None:
        self.cmdlines: set[bytes] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                with contextlib.suppress(OSError):  # the process ended meanwhile
                    self.cmdlines.add(Path(f"/proc/{pid}/cmdline").read_bytes())

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(0.02)

    def __enter__(self) -> ProcSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def _database_dump(dsn: str) -> bytes:
    """Every row of every table in the database, as PostgreSQL's text form."""
    out = []
    with psycopg.connect(dsn) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE'"
        ).fetchall()
        for schema, table in tables:
            query = sql.SQL("COPY {}.{} TO STDOUT").format(sql.Identifier(schema), sql.Identifier(table))
            with conn.cursor().copy(query) as copy:
                out.extend(bytes(chunk) for chunk in copy)
    assert len(tables) >= len(TABLES) + 2  # every kubernetes_* fleet table, kq_meta.clusters, kq_meta.loads
    return b"".join(out)


def _files_under(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def _leaks(haystack: bytes, needles: set[str]) -> list[str]:
    return sorted(n[:12] + "..." for n in needles if n.encode() in haystack)


def test_no_secret_or_token_reaches_postgres_dagster_process_arguments_or_logs(
    fleet_process: FleetProcess,
    pg_dsn: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    needles = _needles(fleet_process)
    dagster_home, kq_home = tmp_path / "dagster", tmp_path / "kq"
    monkeypatch.setenv("KQ_DATABASE_URL", pg_dsn)
    monkeypatch.setenv("KQ_HOME", str(kq_home))
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    caplog.set_level(logging.DEBUG)

    wrapper = tmp_path / "basequery"  # kubequery's basequery is not installable here: its stand-in
    wrapper.write_text(f"#!/bin/sh\nexec '{sys.executable}' '{FAKE_BASEQUERY}' \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("KQ_BASEQUERY", str(wrapper))
    kubeconfig = str(fleet_process.kubeconfig)

    with ProcSampler() as procs:
        assert main(["clusters", "add", "--kubeconfig", kubeconfig, "--context", "sec-a"]) == 0
        assert (
            main(
                [
                    "clusters",
                    "add",
                    "--kubeconfig",
                    kubeconfig,
                    "--context",
                    "sec-b",
                    "--extractor",
                    "kubequery",
                ]
            )
            == 0
        )
        assert main(["load"]) == 0
    captured = capsys.readouterr()

    # Positive controls: the secrets were really served and their tables really loaded.
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM kubernetes_secrets").fetchone()[0] > 10
    served = _served_secrets(fleet_process, "sec-a")
    assert any(n.encode() in served for n in needles)

    assert _leaks(_database_dump(pg_dsn), needles) == []
    assert _leaks(_files_under(dagster_home), needles) == []
    assert _leaks(_files_under(kq_home), needles) == []
    assert list(dagster_home.rglob("*.db")), "the Dagster instance recorded nothing"
    assert _leaks(b"\n".join(procs.cmdlines), needles) == []
    assert any(b"fake_basequery" in c for c in procs.cmdlines)  # it saw the kubequery children
    logs = (captured.out + captured.err + caplog.text).encode()
    assert b"sec-a" in logs and b"sec-b" in logs
    assert _leaks(logs, needles) == []


def _served_secrets(fleet: FleetProcess, cluster: str) -> bytes:
    cfg = yaml.safe_load(fleet.kubeconfig.read_text())
    token = next(u["user"]["token"] for u in cfg["users"] if u["name"] == cluster)
    ca = next(c["cluster"] for c in cfg["clusters"] if c["name"] == cluster)["certificate-authority-data"]
    verify = ssl.create_default_context(cadata=base64.b64decode(ca).decode())
    resp = httpx.get(
        f"{fleet.urls[cluster]}/api/v1/secrets", headers={"Authorization": f"Bearer {token}"}, verify=verify
    )
    resp.raise_for_status()
    return resp.content


def test_tls_is_verified_by_default_a_kubeconfig_without_ca_fails_with_a_tls_error(fleet_db: FleetDb) -> None:
    config = yaml.safe_load(fleet_db.kubeconfig.read_text())
    for entry in config["clusters"]:
        if entry["name"] == "bravo":
            del entry["cluster"]["certificate-authority-data"]  # no CA, no skip flag: system roots only
    fleet_db.kubeconfig.write_text(yaml.safe_dump(config))
    fleet_db.load("clean", names=["alpha"])
    before = snapshot(fleet_db.dsn, "bravo")

    outcomes = fleet_db.load("no-ca", names=["alpha", "bravo"])

    assert outcomes["alpha"].ok
    errors = failed_tables(fleet_db.dsn, "no-ca", "bravo")
    assert errors and all("TLS error" in e and "CERTIFICATE_VERIFY_FAILED" in e for e in errors.values())
    assert snapshot(fleet_db.dsn, "bravo") == before
