"""An exec credential plugin sees none of the loader's secrets: only the allow-list of access.py (PATH,
HOME, locale, proxies, the cloud SDKs' conventions), the kubeconfig's `exec.env`, and
KUBERNETES_EXEC_INFO. Proved with a real plugin that dumps its environment, used for a real request."""

from __future__ import annotations

import json
import os
import secrets
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kq_pipeline.kube.access import EXEC_ENV_EXTRA, exec_passes, exec_plugin_env
from kq_pipeline.kube.client import KubeClient
from kq_pipeline.kube.kubeconfig import access_from_kubeconfig
from kq_pipeline.simulator import Fleet
from kq_pipeline_tests.simulator.conftest import generated_objects

DUMP_PLUGIN = """#!{python}
import json, os
with open({dump!r}, "w") as fh:
    json.dump(dict(os.environ), fh)
doc = {{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential"}}
print(json.dumps({{**doc, "status": {{"token": {token!r}}}}}))
"""
EXEC_ENV = {"CLUSTER_NAME": "prod-eu", "AWS_REGION": "eu-west-1"}


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with Fleet() as f:
        f.add("prod-eu", generated_objects("prod-eu", pods=3))
        yield f


@pytest.fixture
def loader_secrets(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The loader's environment as in a deployment: database and Dagster secrets, and one unknown one."""
    values = {
        "KQ_DATABASE_URL": f"postgresql://kq:{secrets.token_hex(8)}@db.internal/kq",
        "DAGSTER_PG_PASSWORD": secrets.token_hex(8),
        "PGPASSWORD": secrets.token_hex(8),
        "SECRET": secrets.token_hex(8),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_PROFILE", "fleet-reader")
    monkeypatch.setenv("HOME", "/home/loader")
    return values


def _kubeconfig_with_dump_plugin(fleet: Fleet, tmp_path: Path) -> tuple[Path, Path]:
    sim = fleet.clusters["prod-eu"]
    dump = tmp_path / "env.json"
    plugin = tmp_path / "dump-env-plugin"
    plugin.write_text(DUMP_PLUGIN.format(python=sys.executable, dump=str(dump), token=sim.token))
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    config = fleet.kubeconfig()
    config["users"][0]["user"] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": str(plugin),
            "env": [{"name": k, "value": v} for k, v in EXEC_ENV.items()],
        }
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path, dump


def _plugin_env(fleet: Fleet, tmp_path: Path) -> dict[str, str]:
    """Run the plugin as a poll does (a real request authenticated with its credential); its env."""
    kubeconfig, dump = _kubeconfig_with_dump_plugin(fleet, tmp_path)
    with KubeClient(access_from_kubeconfig(kubeconfig, "prod-eu")) as client:
        assert client.get_json("/api/v1/namespaces/kube-system")["metadata"]["name"] == "kube-system"
    return dict(json.loads(dump.read_text()))


def test_an_exec_plugin_sees_no_database_or_dagster_secret(
    fleet: Fleet, tmp_path: Path, loader_secrets: dict[str, str]
) -> None:
    env = _plugin_env(fleet, tmp_path)
    assert not set(loader_secrets) & set(env)
    dumped = json.dumps(env)
    assert not [name for name, value in loader_secrets.items() if value in dumped]  # not under another name
    assert env["PATH"] == os.environ["PATH"] and env["HOME"] == "/home/loader"
    assert env["AWS_PROFILE"] == "fleet-reader"  # the AWS CLI's convention
    assert {k: env[k] for k in EXEC_ENV} == EXEC_ENV  # the kubeconfig's exec.env
    assert json.loads(env["KUBERNETES_EXEC_INFO"])["spec"] == {"interactive": False}
    unexplained = [k for k in env if not (exec_passes(k) or k in EXEC_ENV or k == "KUBERNETES_EXEC_INFO")]
    assert unexplained == []


def test_an_operator_can_name_more_variables_but_never_the_pipelines_own(
    fleet: Fleet, tmp_path: Path, loader_secrets: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAULT_ADDR", "https://vault.internal:8200")
    monkeypatch.setenv(EXEC_ENV_EXTRA, "VAULT_ADDR, KQ_DATABASE_URL PGPASSWORD")
    env = _plugin_env(fleet, tmp_path)
    assert env["VAULT_ADDR"] == "https://vault.internal:8200"
    assert not set(loader_secrets) & set(env)


def test_the_allow_list_follows_the_credential_plugins_documented_conventions() -> None:
    base = {
        # passed: programs, locale, proxies, CA bundles, and each cloud plugin's configuration
        "PATH": "/usr/bin", "HOME": "/root", "USER": "kq", "TMPDIR": "/tmp", "KUBECONFIG": "/k",
        "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC",
        "HTTPS_PROXY": "http://p:3128", "https_proxy": "http://p:3128", "NO_PROXY": ".internal",
        "no_proxy": ".internal", "SSL_CERT_FILE": "/ca.pem", "SSL_CERT_DIR": "/certs",
        "AWS_PROFILE": "p", "AWS_REGION": "eu-west-1", "AWS_CONFIG_FILE": "/aws/config",
        "AWS_SHARED_CREDENTIALS_FILE": "/aws/credentials", "AWS_ROLE_ARN": "arn:aws:iam::1:role/r",
        "AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/secrets/eks/token",
        "CLOUDSDK_CONFIG": "/gcloud", "CLOUDSDK_CORE_PROJECT": "p",
        "GOOGLE_APPLICATION_CREDENTIALS": "/adc.json",
        "AZURE_CLIENT_ID": "c", "AZURE_TENANT_ID": "t", "AZURE_FEDERATED_TOKEN_FILE": "/azure/token",
        "AAD_LOGIN_METHOD": "workloadidentity", "AAD_SERVICE_PRINCIPAL_CLIENT_ID": "c",
        # withheld: the pipeline's settings and secrets, and anything not named
        "KQ_DATABASE_URL": "x", "KQ_HOME": "x", "DAGSTER_PG_PASSWORD": "x", "DAGSTER_HOME": "x",
        "PGPASSWORD": "x", "PGPASSFILE": "x", "SECRET": "x", "DATABASE_URL": "x", "GITHUB_TOKEN": "x",
        "SSH_AUTH_SOCK": "x",
    }  # fmt: skip
    env = exec_plugin_env([("AWS_PROFILE", "from-kubeconfig")], "client.authentication.k8s.io/v1", base)
    withheld = {"KQ_DATABASE_URL", "KQ_HOME", "DAGSTER_PG_PASSWORD", "DAGSTER_HOME", "PGPASSWORD"}
    withheld |= {"PGPASSFILE", "SECRET", "DATABASE_URL", "GITHUB_TOKEN", "SSH_AUTH_SOCK"}
    assert set(env) == (set(base) - withheld) | {"KUBERNETES_EXEC_INFO"}
    assert env["AWS_PROFILE"] == "from-kubeconfig"  # exec.env is set last, as client-go does
    assert exec_plugin_env([], "client.authentication.k8s.io/v1", {})["PATH"] == os.defpath
