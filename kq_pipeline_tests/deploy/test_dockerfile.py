"""deploy/Dockerfile, checked statically (no Docker engine here): pins, sources, non-root."""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "deploy" / "Dockerfile").read_text()
LOCK = REPO / "deploy" / "requirements.lock"


def _instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_base_image_is_a_pinned_python_3_11_slim() -> None:
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+$", DOCKERFILE, re.M)


def test_every_stage_ends_as_a_non_root_user() -> None:
    users = [rest for word, rest in _instructions() if word == "USER"]
    assert users and all(u.split(":")[0] not in ("0", "root") for u in users)
    for target in ("AS runtime", "AS with-kubequery", "AS native"):
        stage = DOCKERFILE.split(target, 1)[1].split("\nFROM ", 1)[0]
        assert "\nUSER 10001:10001" in stage, target
    assert _instructions()[-1] == ("USER", "10001:10001")  # the default target


def test_copy_sources_exist_in_the_repository() -> None:
    for word, rest in _instructions():
        if word == "COPY" and not rest.startswith("--from"):
            *sources, _dest = rest.split()
            for src in sources:
                assert (REPO / src).exists(), src


def test_dependencies_are_pinned_and_match_the_tested_venv() -> None:
    pins = [ln for ln in LOCK.read_text().splitlines() if ln and not ln.startswith("#")]
    assert pins and all(re.fullmatch(r"[a-z0-9-]+==[\w.+-]+", p) for p in pins), pins
    names = dict(p.split("==") for p in pins)
    for must in ("dagster", "dagster-postgres", "psycopg", "psycopg-binary", "pandas", "orjson"):
        assert names[must] == version(must), must
    # dagster-k8s (the K8sRunLauncher) ships on dagster-postgres' release train
    assert names["dagster-k8s"] == names["dagster-postgres"]
    assert not {"pytest", "ruff", "pytest-timeout"} & set(names)
    assert "--no-deps -r deploy/requirements.lock" in DOCKERFILE


def test_the_default_command_serves_our_code_location_over_grpc() -> None:
    assert '"--module-name", "kq_pipeline.definitions"' in DOCKERFILE
    assert "AS with-kubequery" in DOCKERFILE and "ARG KUBEQUERY_IMAGE=" in DOCKERFILE


def test_the_image_never_starts_the_embedded_postgres() -> None:
    runtime = DOCKERFILE.split("AS runtime", 1)[1].split("\nFROM ", 1)[0]
    env = [rest for word, rest in _instructions() if word == "ENV" and "KQ_HOME" in rest]
    assert "KQ_EMBEDDED_POSTGRES=0" in runtime and env and "KQ_EMBEDDED_POSTGRES=0" in env[0]
