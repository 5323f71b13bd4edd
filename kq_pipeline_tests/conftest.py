"""Shared fixtures: the kubequery data set, kept in the repository (kq_pipeline_tests/data/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["kq_pipeline_tests.postgres_fixtures"]

REPO = Path(__file__).resolve().parents[1]
KUBEQUERY_DATA = Path(__file__).resolve().parent / "data" / "kubequery"
"""kubequery's schema, test inputs and expected rows, copied unchanged into the repository."""


@pytest.fixture(scope="session")
def kubequery_data() -> Path:
    if not (KUBEQUERY_DATA / "cases_index.json").is_file():
        pytest.fail(
            f"kubequery data set not found at {KUBEQUERY_DATA} (see kq_pipeline_tests/data/README.md)"
        )
    return KUBEQUERY_DATA
