"""Target tokens with a lifetime: `register` requests a bounded token (TokenRequest), `rotate` renews it,
and the target refuses a token once it has expired or its ServiceAccount is gone.

The simulated API server answers over HTTPS as kube-apiserver does; its clock is moved forward instead
of waiting out a lifetime (kube-apiserver's minimum is 10 minutes).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import os
import re
import ssl
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from kq_pipeline.inventory import Cluster
from kq_pipeline.register import (
    LEGACY_TOKEN_SECRET,
    READER,
    RegisterError,
    format_duration,
    parse_duration,
    register_cluster,
    rotate_token,
)
from kq_pipeline.simulator import Fleet, SimulatedCluster
from kq_pipeline_tests.deploy.targets import fresh_target

READER_USER = f"system:serviceaccount:{READER}:{READER}"
EXPIRY = re.compile(r"expires at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in ([^);]+)")


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with Fleet() as f:
        f.add("prod-eu", fresh_target("prod-eu", pods=5))
        yield f


@pytest.fixture
def sim(fleet: Fleet) -> SimulatedCluster:
    return fleet.clusters["prod-eu"]


@pytest.fixture
def admin(fleet: Fleet, tmp_path: Path) -> Path:
    return fleet.write_kubeconfig(tmp_path / "admin.yaml")


def _http(fleet: Fleet, token: str) -> httpx.Client:
    sim = fleet.clusters["prod-eu"]
    ctx = ssl.create_default_context(cadata=fleet.ca_pem)
    return httpx.Client(base_url=sim.url, verify=ctx, headers={"Authorization": f"Bearer {token}"})


def _reads(fleet: Fleet, token: str) -> int:
    """HTTP status of the reader's first request (kube-system's uid) with `token`."""
    with _http(fleet, token) as c:
        return c.get("/api/v1/namespaces/kube-system").status_code


def _later(sim: SimulatedCluster, seconds: float) -> None:
    """The target's clock, `seconds` from now."""
    sim.tokens.clock = lambda: time.time() + seconds


def _register(admin: Path, tmp_path: Path, out: io.StringIO | None = None, **kw: object) -> Cluster:
    out = out or io.StringIO()
    cluster = register_cluster(
        admin, "prod-eu", name=None, dry_run=False, token_dir=tmp_path / "tokens", out=out, **kw
    )
    assert cluster is not None and cluster.token_file
    return cluster


def _expiry(out: io.StringIO) -> str:
    """How long the printed expiry is away ("30d"); the line also names the date and time in UTC."""
    found = EXPIRY.search(out.getvalue())
    assert found is not None, out.getvalue()
    return found.group(1)


def _token(cluster: Cluster) -> str:
    return Path(cluster.token_file or "").read_text().strip()


def _rotate(
    admin: Path, tmp_path: Path, cluster: Cluster, out: io.StringIO | None = None, **kw: object
) -> str:
    issued = rotate_token(
        admin, "prod-eu", cluster=cluster, token_dir=tmp_path / "tokens", out=out or io.StringIO(), **kw
    )
    return issued.token


# --- register ---------------------------------------------------------------------------------------
def test_register_issues_a_token_that_the_target_refuses_after_its_ttl(
    fleet: Fleet, sim: SimulatedCluster, admin: Path, tmp_path: Path
) -> None:
    out = io.StringIO()
    token = _token(_register(admin, tmp_path, out, token_ttl="1h"))
    assert _expiry(out) == "1h"
    assert token not in out.getvalue()
    assert sim.tokens.authenticate(token).name == READER_USER  # type: ignore[union-attr]
    assert _reads(fleet, token) == 200
    _later(sim, 3600 - 30)
    assert _reads(fleet, token) == 200
    _later(sim, 3600 + 1)
    assert _reads(fleet, token) == 401


def test_the_default_lifetime_is_30_days_and_a_server_cap_is_reported(
    sim: SimulatedCluster, admin: Path, tmp_path: Path
) -> None:
    out = io.StringIO()
    _register(admin, tmp_path, out)
    assert _expiry(out) == "30d"
    sim.tokens.max_expiration_s = 7200  # kube-apiserver --service-account-max-token-expiration=2h
    out = io.StringIO()
    _register(admin, tmp_path, out)
    assert "(in 2h); 30d was asked: the server caps token lifetimes" in out.getvalue()


def test_a_lifetime_under_ten_minutes_is_refused_before_anything_changes(
    sim: SimulatedCluster, admin: Path, tmp_path: Path
) -> None:
    with pytest.raises(RegisterError, match=r"--token-ttl: at least 10m"):
        _register(admin, tmp_path, token_ttl="5m")
    namespaces = sim.catalog.lookup("", "v1", "namespaces")
    assert namespaces is not None and sim.store.get(namespaces, "", READER) is None


def test_the_dry_run_says_which_token_it_would_request(admin: Path, tmp_path: Path) -> None:
    out = io.StringIO()
    register_cluster(admin, "prod-eu", name=None, dry_run=True, token_dir=tmp_path, out=out, token_ttl="7d")
    assert f"# then a token of {READER}/{READER} valid for 7d (TokenRequest)" in out.getvalue()
    kinds = [d["kind"] for d in yaml.safe_load_all(out.getvalue()) if d]
    assert "Secret" not in kinds  # no never-expiring token Secret any more


def test_a_context_that_skips_tls_verification_is_refused(
    fleet: Fleet, sim: SimulatedCluster, tmp_path: Path
) -> None:
    config = fleet.kubeconfig()
    server = config["clusters"][0]["cluster"]
    del server["certificate-authority-data"]
    server["insecure-skip-tls-verify"] = True
    admin = tmp_path / "insecure.yaml"
    admin.write_text(yaml.safe_dump(config))
    with pytest.raises(RegisterError, match="skips TLS verification"):
        _register(admin, tmp_path)
    namespaces = sim.catalog.lookup("", "v1", "namespaces")
    assert namespaces is not None and sim.store.get(namespaces, "", READER) is None


def test_registering_again_deletes_the_legacy_token_secret_that_never_expired(
    fleet: Fleet, admin: Path, tmp_path: Path
) -> None:
    cluster = _register(admin, tmp_path)
    legacy = _legacy_token(fleet, labelled=True)  # what registrations before bounded tokens made
    assert _reads(fleet, legacy) == 200
    out = io.StringIO()
    _register(admin, tmp_path, out)
    assert f"deleted   Secret {READER}/{LEGACY_TOKEN_SECRET}" in out.getvalue()
    assert _reads(fleet, legacy) == 401
    assert _reads(fleet, _token(cluster)) == 200


def test_a_legacy_named_secret_that_is_not_ours_is_reported_and_left_alone(
    fleet: Fleet, admin: Path, tmp_path: Path
) -> None:
    _register(admin, tmp_path)
    foreign = _legacy_token(fleet, labelled=False)
    out = io.StringIO()
    _register(admin, tmp_path, out)
    assert f"warning: Secret {READER}/{LEGACY_TOKEN_SECRET} exists and is not labelled" in out.getvalue()
    assert _reads(fleet, foreign) == 200


def _legacy_token(fleet: Fleet, *, labelled: bool) -> str:
    """Create the kubernetes.io/service-account-token Secret of kq-reader and wait for its token."""
    sim = fleet.clusters["prod-eu"]
    labels = {"app.kubernetes.io/name": "kq-pipeline", "app.kubernetes.io/component": "target-reader"}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/service-account-token",
        "metadata": {
            "name": LEGACY_TOKEN_SECRET,
            "labels": labels if labelled else {},
            "annotations": {"kubernetes.io/service-account.name": READER},
        },
    }
    with _http(fleet, sim.token) as admin:
        admin.post(f"/api/v1/namespaces/{READER}/secrets", json=secret).raise_for_status()
        for _ in range(200):
            data = admin.get(f"/api/v1/namespaces/{READER}/secrets/{LEGACY_TOKEN_SECRET}").json().get("data")
            if data and "token" in data:
                return base64.b64decode(data["token"]).decode()
            time.sleep(0.01)
    raise AssertionError("the token controller did not fill the legacy Secret")


# --- the token file -------------------------------------------------------------------------------
def test_the_token_file_is_private_from_its_creation_even_under_umask_0(admin: Path, tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        cluster = _register(admin, tmp_path)
    finally:
        os.umask(old)
    path = Path(cluster.token_file or "")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == ["prod-eu.token"]  # no temporary file left


def test_a_symlink_planted_at_the_token_path_is_replaced_never_written_through(
    admin: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "tokens").mkdir(mode=0o700)
    (tmp_path / "tokens" / "prod-eu.token").symlink_to(victim)
    cluster = _register(admin, tmp_path)
    path = Path(cluster.token_file or "")
    assert not path.is_symlink() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert victim.read_text() == "precious\n"


# --- rotate ---------------------------------------------------------------------------------------
def test_rotate_replaces_the_file_and_the_old_token_works_until_its_own_expiry(
    fleet: Fleet, sim: SimulatedCluster, admin: Path, tmp_path: Path
) -> None:
    cluster = _register(admin, tmp_path, token_ttl="1h")
    old = _token(cluster)
    out = io.StringIO()
    new = _rotate(admin, tmp_path, cluster, out, token_ttl="2h")
    assert new != old and _token(cluster) == new
    assert _expiry(out) == "2h"
    assert new not in out.getvalue() and "note:" not in out.getvalue()
    path = Path(cluster.token_file or "")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["prod-eu.token"]
    assert (_reads(fleet, old), _reads(fleet, new)) == (200, 200)
    _later(sim, 3600 + 1)
    assert (_reads(fleet, old), _reads(fleet, new)) == (401, 200)
    _later(sim, 7200 + 1)
    assert _reads(fleet, new) == 401


def test_deleting_the_service_account_revokes_every_token_it_was_issued(
    fleet: Fleet, sim: SimulatedCluster, admin: Path, tmp_path: Path
) -> None:
    cluster = _register(admin, tmp_path)
    first = _token(cluster)
    second = _rotate(admin, tmp_path, cluster)
    with _http(fleet, sim.token) as c:  # kubectl -n kq-reader delete serviceaccount kq-reader
        assert c.delete(f"/api/v1/namespaces/{READER}/serviceaccounts/{READER}").status_code == 200
    assert (_reads(fleet, first), _reads(fleet, second)) == (401, 401)
    with pytest.raises(RegisterError, match=r"the ServiceAccount is missing .*`kq clusters register`"):
        _rotate(admin, tmp_path, cluster)
    third = _token(_register(admin, tmp_path))  # re-creates the account: a new uid
    assert (_reads(fleet, first), _reads(fleet, second), _reads(fleet, third)) == (401, 401, 200)


def test_rotation_needs_only_create_on_the_readers_tokens_and_the_reader_cannot_mint_its_own(
    fleet: Fleet, sim: SimulatedCluster, admin: Path, tmp_path: Path
) -> None:
    cluster = _register(admin, tmp_path)
    as_reader = _kubeconfig_with_token(fleet, tmp_path / "reader.yaml", _token(cluster))
    with pytest.raises(RegisterError, match=r"HTTP 403: .*cannot create resource \"serviceaccounts/token\""):
        _rotate(as_reader, tmp_path, cluster)

    rotator = _rotator_token(fleet)  # a Role: create serviceaccounts/token, resourceNames [kq-reader]
    new = _rotate(_kubeconfig_with_token(fleet, tmp_path / "rotator.yaml", rotator), tmp_path, cluster)
    assert _reads(fleet, new) == 200 and _token(cluster) == new
    with _http(fleet, rotator) as c:
        own = c.post(
            f"/api/v1/namespaces/{READER}/serviceaccounts/kq-rotator/token",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
        )
        assert own.status_code == 403  # cannot renew itself
        assert c.get("/api/v1/pods").status_code == 403  # and reads nothing


def _kubeconfig_with_token(fleet: Fleet, path: Path, token: str) -> Path:
    config = fleet.kubeconfig()
    config["users"][0]["user"] = {"token": token}
    path.write_text(yaml.safe_dump(config))
    return path


def _rotator_token(fleet: Fleet) -> str:
    rbac = "rbac.authorization.k8s.io/v1"
    role = {
        "apiVersion": rbac,
        "kind": "Role",
        "metadata": {"name": "kq-rotator", "namespace": READER},
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["serviceaccounts/token"],
                "resourceNames": [READER],
                "verbs": ["create"],
            }
        ],
    }
    binding = {
        "apiVersion": rbac,
        "kind": "RoleBinding",
        "metadata": {"name": "kq-rotator", "namespace": READER},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kq-rotator"},
        "subjects": [{"kind": "ServiceAccount", "name": "kq-rotator", "namespace": READER}],
    }
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "kq-rotator"}}
    with _http(fleet, fleet.clusters["prod-eu"].token) as c:
        c.post(f"/api/v1/namespaces/{READER}/serviceaccounts", json=account).raise_for_status()
        c.post(f"/apis/{rbac}/namespaces/{READER}/roles", json=role).raise_for_status()
        c.post(f"/apis/{rbac}/namespaces/{READER}/rolebindings", json=binding).raise_for_status()
        issued = c.post(
            f"/api/v1/namespaces/{READER}/serviceaccounts/kq-rotator/token",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
        )
        issued.raise_for_status()
        return str(issued.json()["status"]["token"])


def test_rotate_refuses_a_context_that_reaches_another_server(admin: Path, tmp_path: Path) -> None:
    cluster = _register(admin, tmp_path)
    before = _token(cluster)
    elsewhere = dataclasses.replace(cluster, server="https://10.9.9.9:6443")
    with pytest.raises(RegisterError, match=r"points at https://127\.0\.0\.1:\d+, but the inventory"):
        _rotate(admin, tmp_path, elsewhere)
    assert _token(cluster) == before


def test_rotate_writes_under_its_token_dir_never_where_the_database_row_says(
    admin: Path, tmp_path: Path
) -> None:
    cluster = _register(admin, tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    tampered = dataclasses.replace(cluster, token_file=str(victim))  # a row edited by a database writer
    out = io.StringIO()
    new = _rotate(admin, tmp_path, tampered, out)
    assert victim.read_text() == "precious\n" and _token(cluster) == new
    assert f"note: the inventory reads this cluster's token from {victim}" in out.getvalue()


def test_durations_read_and_print_like_kubectl_flags() -> None:
    assert [parse_duration(t) for t in ("30d", "720h", "1h30m", "900s", "900")] == [
        2592000,
        2592000,
        5400,
        900,
        900,
    ]
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("30 days")
    shown = [format_duration(s) for s in (2592000, 3599, 5400, 45, -1)]
    assert shown == ["30d", "1h", "2h", "45s", "expired"]
