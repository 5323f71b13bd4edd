"""Credentials are read at use time from where they live, exec plugins are cached, nothing leaks in reprs."""

from __future__ import annotations

import json
import stat
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kq_pipeline.kube.access import ClusterAccess, ExecPlugin, TokenSource
from kq_pipeline.kube.errors import KubeConfigError

PLUGIN = """#!PYTHON
import json, os, pathlib
c = pathlib.Path(COUNTER)
c.write_text(str(int(c.read_text()) + 1) if c.exists() else "1")
status = json.loads(pathlib.Path(STATUS).read_text())
status.setdefault("token", os.environ.get("PREFIX", "") + status.pop("token_suffix", ""))
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
print(json.dumps({"apiVersion": info["apiVersion"], "kind": "ExecCredential", "status": status}))
"""


def plugin_script(tmp_path: Path, status: dict[str, object]) -> Path:
    """A credential plugin that counts its runs and prints an ExecCredential."""
    script = tmp_path / "plugin.py"
    counter = tmp_path / "runs"
    script.write_text(
        PLUGIN.replace("PYTHON", sys.executable)
        .replace("COUNTER", repr(str(counter)))
        .replace("STATUS", repr(str(tmp_path / "status.json")))
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "status.json").write_text(json.dumps(status))
    return script


def runs(tmp_path: Path) -> int:
    return int((tmp_path / "runs").read_text())


def test_token_env_is_read_per_use(monkeypatch: pytest.MonkeyPatch) -> None:
    access = ClusterAccess(name="c", server="https://x", token=TokenSource(env="KQ_TEST_TOKEN"))
    monkeypatch.setenv("KQ_TEST_TOKEN", "one")
    assert access.bearer_token() == "one"
    monkeypatch.setenv("KQ_TEST_TOKEN", "two")
    assert access.bearer_token() == "two"
    monkeypatch.delenv("KQ_TEST_TOKEN")
    with pytest.raises(
        KubeConfigError, match="cluster c: token environment variable KQ_TEST_TOKEN is not set"
    ):
        access.bearer_token()


def test_missing_token_file_names_cluster_and_file(tmp_path: Path) -> None:
    access = ClusterAccess(name="c", server="https://x", token=TokenSource(file=str(tmp_path / "none")))
    with pytest.raises(KubeConfigError, match=f"cluster c: cannot read token file {tmp_path / 'none'}"):
        access.bearer_token()


def test_exec_plugin_token_is_cached_until_expiry(tmp_path: Path) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    script = plugin_script(tmp_path, {"token_suffix": "-tok", "expirationTimestamp": later})
    plugin = ExecPlugin(command=str(script), env=(("PREFIX", "exec"),))
    access = ClusterAccess(name="c", server="https://x", exec_plugin=plugin)
    assert access.bearer_token() == "exec-tok"
    assert access.bearer_token() == "exec-tok"
    assert runs(tmp_path) == 1
    access.invalidate_credentials()  # what the client does after a 401
    assert access.bearer_token() == "exec-tok"
    assert runs(tmp_path) == 2
    assert "exec-tok" not in repr(access) and "exec-tok" not in repr(plugin)


def test_expired_exec_credential_runs_the_plugin_again(tmp_path: Path) -> None:
    past = (datetime.now(UTC) - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    script = plugin_script(tmp_path, {"token": "short-lived", "expirationTimestamp": past})
    access = ClusterAccess(
        name="c",
        server="https://x",
        exec_plugin=ExecPlugin(str(script), api_version="client.authentication.k8s.io/v1beta1"),
    )
    assert access.bearer_token() == "short-lived"
    assert access.bearer_token() == "short-lived"
    assert runs(tmp_path) == 2


def test_exec_plugin_client_certificate(tmp_path: Path) -> None:
    script = plugin_script(tmp_path, {"clientCertificateData": "CERT-PEM", "clientKeyData": "KEY-PEM"})
    access = ClusterAccess(name="c", server="https://x", exec_plugin=ExecPlugin(str(script)))
    assert access.client_cert_pair() == (b"CERT-PEM", b"KEY-PEM")
    assert access.bearer_token() is None


def test_failing_exec_plugin_names_cluster_and_command_not_its_output(tmp_path: Path) -> None:
    script = tmp_path / "fail.sh"
    script.write_text("#!/bin/sh\necho leaked-secret >&2\nexit 3\n")
    script.chmod(0o755)
    access = ClusterAccess(name="c", server="https://x", exec_plugin=ExecPlugin(str(script)))
    with pytest.raises(KubeConfigError) as err:
        access.bearer_token()
    assert str(err.value) == f"cluster c: exec plugin {script} exited with code 3"
    with pytest.raises(KubeConfigError, match="not found"):
        ClusterAccess(
            name="c", server="https://x", exec_plugin=ExecPlugin(str(tmp_path / "nope"))
        ).bearer_token()


def test_exec_plugin_output_must_be_an_exec_credential(tmp_path: Path) -> None:
    script = tmp_path / "bad.sh"
    script.write_text('#!/bin/sh\necho \'{"kind": "Other"}\'\n')
    script.chmod(0o755)
    with pytest.raises(KubeConfigError, match="is not an ExecCredential"):
        ClusterAccess(name="c", server="https://x", exec_plugin=ExecPlugin(str(script))).bearer_token()


def test_repr_shows_where_credentials_live_but_no_secret() -> None:
    access = ClusterAccess(
        name="c",
        server="https://x",
        token=TokenSource(literal="abc123"),
        client_cert_data=b"CERT",
        client_key_data=b"PRIVATE-KEY",
    )
    text = repr(access)
    assert "abc123" not in text and "PRIVATE-KEY" not in text
    assert "literal=<redacted>" in text
    env_access = ClusterAccess(name="c", server="https://x", token=TokenSource(env="MY_TOKEN"))
    assert "MY_TOKEN" in repr(env_access)


def test_exec_expiry_margin_refreshes_before_the_deadline(tmp_path: Path) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    script = plugin_script(tmp_path, {"token": "t", "expirationTimestamp": soon})
    access = ClusterAccess(name="c", server="https://x", exec_plugin=ExecPlugin(str(script)))
    access.bearer_token()
    time.sleep(0.01)
    access.bearer_token()
    assert runs(tmp_path) == 2  # within the 30 s margin: never reused
