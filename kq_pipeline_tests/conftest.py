"""Shared fixtures: paths to the kubequery data set in ../shared."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["kq_pipeline_tests.postgres_fixtures"]

REPO = Path(__file__).resolve().parents[1]
SHARED_KUBEQUERY = REPO.parent / "shared" / "kubequery"


@pytest.fixture(scope="session")
def shared_kubequery() -> Path:
    if not SHARED_KUBEQUERY.is_dir():
        pytest.fail(f"kubequery data set not found at {SHARED_KUBEQUERY}")
    return SHARED_KUBEQUERY
