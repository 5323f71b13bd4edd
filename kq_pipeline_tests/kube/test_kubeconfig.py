"""Kubeconfig files become ClusterAccess values the way kubectl reads them; bad files fail clearly."""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from kq_pipeline.kube.kubeconfig import KubeconfigError, access_from_kubeconfig, list_contexts

TOKEN = "s3cr3t-token-value"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def write(path: Path, doc: dict[str, Any] | str) -> Path:
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


def config(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "prod",
        "clusters": [
            {
                "name": "prod-cluster",
                "cluster": {"server": "https://prod:6443/", "certificate-authority-data": _b64("PEM-CA")},
            },
            {
                "name": "dev-cluster",
                "cluster": {"server": "https://dev:6443", "certificate-authority": "ca/dev.crt"},
            },
        ],
        "users": [
            {"name": "prod-user", "user": {"token": TOKEN}},
            {
                "name": "dev-user",
                "user": {"tokenFile": "tokens/dev", "client-certificate": "c.crt", "client-key": "c.key"},
            },
        ],
        "contexts": [
            {"name": "prod", "context": {"cluster": "prod-cluster", "user": "prod-user"}},
            {"name": "dev", "context": {"cluster": "dev-cluster", "user": "dev-user"}},
        ],
    }
    doc.update(overrides)
    return doc


def test_current_context_is_the_default_and_data_fields_are_base64(tmp_path: Path) -> None:
    access = access_from_kubeconfig(write(tmp_path / "config", config()))
    assert access.name == "prod"
    assert access.server == "https://prod:6443"
    assert access.ca_data == b"PEM-CA"
    assert access.bearer_token() == TOKEN


def test_relative_paths_resolve_against_the_kubeconfig_folder(tmp_path: Path) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "tokens").mkdir()
    (folder / "tokens" / "dev").write_text("file-token\n")
    access = access_from_kubeconfig(write(folder / "config", config()), "dev")
    assert access.ca_file == str(folder / "ca" / "dev.crt")
    assert access.client_cert_file == str(folder / "c.crt")
    assert access.client_key_file == str(folder / "c.key")
    assert access.bearer_token() == "file-token"


def test_token_file_is_reread_on_every_use(tmp_path: Path) -> None:
    (tmp_path / "tokens").mkdir()
    token_file = tmp_path / "tokens" / "dev"
    token_file.write_text("first")
    access = access_from_kubeconfig(write(tmp_path / "config", config()), "dev")
    assert access.bearer_token() == "first"
    token_file.write_text("rotated")
    assert access.bearer_token() == "rotated"


def test_repr_never_shows_the_token(tmp_path: Path) -> None:
    access = access_from_kubeconfig(write(tmp_path / "config", config()), "prod")
    assert TOKEN not in repr(access)
    assert TOKEN not in str(access)
    assert "redacted" in repr(access)


def test_list_contexts_gives_names_and_servers(tmp_path: Path) -> None:
    assert list_contexts(write(tmp_path / "config", config())) == [
        ("prod", "https://prod:6443/"),
        ("dev", "https://dev:6443"),
    ]


def test_insecure_skip_tls_verify_is_honoured_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    doc = config()
    doc["clusters"][0]["cluster"] = {"server": "https://prod:6443", "insecure-skip-tls-verify": True}
    with caplog.at_level(logging.WARNING):
        access = access_from_kubeconfig(write(tmp_path / "config", doc), "prod")
    assert access.insecure_skip_tls_verify is True
    assert any("prod" in r.getMessage() and "insecure" in r.getMessage() for r in caplog.records)
    assert TOKEN not in caplog.text


def test_tls_is_verified_unless_the_kubeconfig_says_otherwise(tmp_path: Path) -> None:
    access = access_from_kubeconfig(write(tmp_path / "config", config()), "prod")
    assert access.insecure_skip_tls_verify is False


def test_several_files_merge_first_definition_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = write(tmp_path / "a", config())
    other = config(**{"current-context": "dev"})
    other["contexts"].append({"name": "extra", "context": {"cluster": "prod-cluster", "user": "prod-user"}})
    other["clusters"][0]["cluster"]["server"] = "https://shadowed:1"
    second = write(tmp_path / "b", other)
    monkeypatch.setenv("KUBECONFIG", f"{first}:{second}")
    assert [c for c, _ in list_contexts(None)] == ["prod", "dev", "extra"]
    access = access_from_kubeconfig(None)
    assert (access.name, access.server) == ("prod", "https://prod:6443")


@pytest.mark.parametrize(
    ("doc", "context", "expected"),
    [
        (config(), "nope", "unknown context 'nope'"),
        (
            config(contexts=[{"name": "prod", "context": {"cluster": "gone", "user": "prod-user"}}]),
            "prod",
            "cluster entry 'gone' not found",
        ),
        (
            config(contexts=[{"name": "prod", "context": {"cluster": "prod-cluster", "user": "ghost"}}]),
            "prod",
            "user entry 'ghost' not found",
        ),
        (config(clusters=[{"name": "prod-cluster", "cluster": {}}]), "prod", "has no server"),
        (config(**{"current-context": ""}), None, "no current-context"),
    ],
)
def test_errors_name_the_file_and_context(
    tmp_path: Path, doc: dict[str, Any], context: str | None, expected: str
) -> None:
    path = write(tmp_path / "config", doc)
    with pytest.raises(KubeconfigError) as err:
        access_from_kubeconfig(path, context)
    assert expected in str(err.value)
    assert str(path) in str(err.value)
    if context and "unknown" not in expected:
        assert f"context {context!r}" in str(err.value)
    assert TOKEN not in str(err.value)


def test_missing_file_and_bad_yaml_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(KubeconfigError, match=r"kubeconfig .*missing.* not found"):
        access_from_kubeconfig(tmp_path / "missing")
    bad = write(tmp_path / "bad", "clusters: [\n  - name: x\n   bad indent: {")
    with pytest.raises(KubeconfigError, match=r"kubeconfig .*bad is not valid YAML at line"):
        list_contexts(bad)


def test_certificate_without_key_is_rejected(tmp_path: Path) -> None:
    doc = config()
    doc["users"][0]["user"] = {"client-certificate-data": _b64("CERT")}
    with pytest.raises(KubeconfigError, match="client certificate and client key must be given together"):
        access_from_kubeconfig(write(tmp_path / "config", doc), "prod")


def test_exec_plugin_is_read_with_args_and_env(tmp_path: Path) -> None:
    doc = config()
    doc["users"][0]["user"] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "./bin/get-token",
            "args": ["--cluster", "prod"],
            "env": [{"name": "PROFILE", "value": "ops"}],
        }
    }
    access = access_from_kubeconfig(write(tmp_path / "config", doc), "prod")
    plugin = access.exec_plugin
    assert plugin is not None
    assert plugin.command == str(tmp_path / "bin" / "get-token")  # has a separator: relative to the file
    assert plugin.args == ("--cluster", "prod")
    assert plugin.env == (("PROFILE", "ops"),)
    assert plugin.api_version == "client.authentication.k8s.io/v1beta1"


def test_a_fleet_kubeconfig_is_parsed_once_and_again_only_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kq_pipeline.kube import kubeconfig

    parses: list[Path] = []
    real_parse = kubeconfig._parse
    monkeypatch.setattr(kubeconfig, "_parse", lambda p: parses.append(p) or real_parse(p))
    path = write(tmp_path / "config", config())
    for _ in range(5):  # one poll per cluster of the fleet
        assert access_from_kubeconfig(path, "prod").server == "https://prod:6443"
    assert len(parses) == 1

    # rewritten in place to the same size with its old mtime put back: still noticed (ctime changes)
    before = path.stat()
    text = path.read_text()
    path.write_text(text.replace("https://prod:6443/", "https://prd2:6443/"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size
    assert access_from_kubeconfig(path, "prod").server == "https://prd2:6443"
    assert len(parses) == 2
