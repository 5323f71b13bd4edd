"""Shared fixtures: the kubequery data set, kept in the repository (kq_pipeline_tests/data/README.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["kq_pipeline_tests.postgres_fixtures"]

REPO = Path(__file__).resolve().parents[1]
KUBEQUERY_DATA = Path(__file__).resolve().parent / "data" / "kubequery"
"""kubequery's schema, test inputs and expected rows, copied unchanged into the repository."""


TEST_INVENTORY_KEY = "kq-test-inventory-key-not-a-secret-0123456789"


@pytest.fixture(autouse=True, scope="session")
def inventory_key() -> None:
    """Every test, and every kq process a test starts, signs inventory rows with one known key (as a
    deployment's processes share KQ_INVENTORY_KEY), instead of making ~/.kq/inventory.key."""
    os.environ.setdefault("KQ_INVENTORY_KEY", TEST_INVENTORY_KEY)


@pytest.fixture(scope="session")
def kubequery_data() -> Path:
    if not (KUBEQUERY_DATA / "cases_index.json").is_file():
        pytest.fail(
            f"kubequery data set not found at {KUBEQUERY_DATA} (see kq_pipeline_tests/data/README.md)"
        )
    return KUBEQUERY_DATA


@pytest.fixture
def kq_env(tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """What a user's shell has for `kq` commands: the fleet database, a private KQ_HOME and DAGSTER_HOME."""
    monkeypatch.setenv("KQ_DATABASE_URL", pg_dsn)
    monkeypatch.setenv("KQ_HOME", str(tmp_path / "kq"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    return pg_dsn


def write_inventory_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: str = "https://10.0.0.2:6443"
) -> Path:
    """A YAML inventory listing prod-eu and prod-us (at `server`), named by KQ_INVENTORY_FILE."""
    inventory_file = tmp_path / "clusters.yaml"
    inventory_file.write_text(
        "clusters:\n"
        "  - {name: prod-eu, server: 'https://10.0.0.1:6443', token_env: PROD_EU_TOKEN}\n"
        f"  - {{name: prod-us, server: '{server}', token_env: PROD_US_TOKEN}}\n"
    )
    monkeypatch.setenv("KQ_INVENTORY_FILE", str(inventory_file))
    return inventory_file
