"""A database writer without the inventory key cannot redirect a cluster's credentials.

Acting as someone who can write `kq_meta.clusters` (the pipeline's own database role) but has no
access to the key: each redirection is tried on a cluster that loads fine, and each is refused before
any credential is opened or any request is sent, with a message that says what to do.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from kq_pipeline import inventory, signing
from kq_pipeline.refresh import RefreshSettings, refresh_clusters
from kq_pipeline.simulator import Fleet, serve_fleet
from kq_pipeline.simulator.objects import ClusterSpec

TABLES = ["kubernetes_namespaces"]
SETTINGS = RefreshSettings(deadline_s=10)


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    """prod: the real target; evil: a server of the attacker's, which must never be contacted."""
    with serve_fleet([ClusterSpec("prod", seed=1, pods=4), ClusterSpec("evil", seed=2, pods=1)]) as f:
        yield f


@pytest.fixture
def dsn(fleet: Fleet, pg_dsn: str, tmp_path: Path) -> str:
    prod = fleet.clusters["prod"]
    token_file = tmp_path / "prod.token"
    token_file.write_text(prod.token)
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(fleet.ca_pem)
    kubeconfig = fleet.write_kubeconfig(tmp_path / "k.yaml")
    with psycopg.connect(pg_dsn) as conn:
        inventory.upsert_clusters(
            conn,
            [
                inventory.Cluster(
                    name="prod", server=prod.url, token_file=str(token_file), ca_file=str(ca_file)
                ),
                *inventory.clusters_from_kubeconfig(kubeconfig, ["prod"], ["prod-kc"]),
            ],
        )
    return pg_dsn


def _refresh(dsn: str, name: str) -> str | None:
    (outcome,) = refresh_clusters(dsn, [name], TABLES, run_id=None, settings=SETTINGS)
    return outcome.error


def _write(dsn: str, statement: str, *params: object) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(statement, params)


@pytest.mark.parametrize(
    ("cluster", "edit", "params"),
    [
        ("prod", "UPDATE kq_meta.clusters SET server = %s WHERE name = 'prod'", ("evil",)),
        (
            "prod",
            "UPDATE kq_meta.clusters SET insecure_skip_tls_verify = true, ca_file = NULL WHERE name = 'prod'",
            (),
        ),
        ("prod", "UPDATE kq_meta.clusters SET token_file = %s WHERE name = 'prod'", ("other-token",)),
        (
            "prod",
            "UPDATE kq_meta.clusters SET token_file = NULL, token_env = 'KQ_DATABASE_URL'"
            " WHERE name = 'prod'",
            (),
        ),
        ("prod", "UPDATE kq_meta.clusters SET ca_data = 'forged', ca_file = NULL WHERE name = 'prod'", ()),
        ("prod", "UPDATE kq_meta.clusters SET extractor = 'kubequery' WHERE name = 'prod'", ()),
        (
            "prod-kc",
            "UPDATE kq_meta.clusters SET kubeconfig = %s WHERE name = 'prod-kc'",
            ("other-kubeconfig",),
        ),
        ("prod-kc", "UPDATE kq_meta.clusters SET context = 'evil' WHERE name = 'prod-kc'", ()),
        (
            "prod",
            "UPDATE kq_meta.clusters"
            " SET signature = (SELECT signature FROM kq_meta.clusters WHERE name = 'prod-kc')"
            " WHERE name = 'prod'",
            (),
        ),
    ],
    ids=[
        "server",
        "tls-skip",
        "token-file",
        "token-env",
        "ca",
        "extractor",
        "kubeconfig",
        "context",
        "signature-of-another-row",
    ],
)
def test_each_redirection_written_in_the_database_is_refused_before_any_request(
    fleet: Fleet, dsn: str, tmp_path: Path, cluster: str, edit: str, params: tuple[str, ...]
) -> None:
    assert _refresh(dsn, cluster) is None  # as registered: loads
    evil = fleet.clusters["evil"]
    other_token = tmp_path / "other.token"  # a credential the attacker wants sent to their server
    other_token.write_text(evil.token)
    other_kubeconfig = fleet.write_kubeconfig(tmp_path / "other.yaml")
    values = {"evil": evil.url, "other-token": str(other_token), "other-kubeconfig": str(other_kubeconfig)}
    _write(dsn, edit, *(values[p] for p in params))
    evil.request_log.clear()
    prod_requests = len(fleet.clusters["prod"].request_log)

    error = _refresh(dsn, cluster)

    assert error and error.startswith(f"cluster {cluster}: its inventory row was changed outside kq"), error
    assert f"kq clusters trust {cluster}" in error
    assert list(evil.request_log) == [] and len(fleet.clusters["prod"].request_log) == prod_requests
    with psycopg.connect(dsn) as conn:
        status = conn.execute(
            "SELECT status FROM kq_latest_loads WHERE cluster_name = %s", (cluster,)
        ).fetchone()
    assert status == ("failed",)


def test_a_row_inserted_in_the_database_or_with_its_signature_removed_is_refused(
    fleet: Fleet, dsn: str
) -> None:
    evil = fleet.clusters["evil"]
    _write(
        dsn,
        "INSERT INTO kq_meta.clusters (name, server, token_env, source, signature)"
        " VALUES ('planted', %s, 'KQ_DATABASE_URL', 'cli', repeat('0', 64))",
        evil.url,
    )
    assert "changed outside kq" in (_refresh(dsn, "planted") or "")
    _write(dsn, "UPDATE kq_meta.clusters SET signature = NULL WHERE name = 'prod'")
    error = _refresh(dsn, "prod") or ""
    assert error.startswith("cluster prod: its inventory row is not signed"), error
    assert list(evil.request_log) == []


def test_changes_made_through_kq_are_signed_and_load(fleet: Fleet, dsn: str) -> None:
    _write(dsn, "UPDATE kq_meta.clusters SET extractor = 'native' WHERE name = 'prod'")  # same value: fine
    assert _refresh(dsn, "prod") is None
    _write(dsn, "UPDATE kq_meta.clusters SET signature = NULL WHERE name = 'prod'")  # an older release's row
    with psycopg.connect(dsn) as conn:
        assert inventory.trust_clusters(conn, ["prod"]) == ["prod"]  # `kq clusters trust prod`
    assert _refresh(dsn, "prod") is None


def test_without_the_same_key_every_row_looks_tampered_with(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(signing.KEY_ENV, "another-key-of-another-deployment-0123456789")
    assert "is KQ_INVENTORY_KEY the same in every process?" in (_refresh(dsn, "prod") or "")


def test_the_key_comes_from_the_environment_or_a_private_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(signing.KEY_ENV, "short")
    with pytest.raises(signing.SigningError, match="at least 32 characters"):
        signing.inventory_key()
    monkeypatch.delenv(signing.KEY_ENV)
    monkeypatch.setenv("KQ_EMBEDDED_POSTGRES", "0")
    with pytest.raises(signing.SigningError, match="a deployment gives every kq process the same"):
        signing.inventory_key()
    monkeypatch.delenv("KQ_EMBEDDED_POSTGRES")
    monkeypatch.setenv("KQ_HOME", str(tmp_path / "home"))
    old = os.umask(0o000)  # however permissive the umask, the file is private from its creation
    try:
        key = signing.inventory_key()
    finally:
        os.umask(old)
    path = tmp_path / "home" / signing.KEY_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert signing.inventory_key() == key == path.read_text().strip().encode()
