"""Where kq-pipeline keeps local state: KQ_HOME (default ~/.kq) holds the embedded PostgreSQL and,
unless DAGSTER_HOME is set, the Dagster instance used by `kq load` and `kq demo`."""

from __future__ import annotations

import os
from pathlib import Path


def kq_home() -> Path:
    return Path(os.environ.get("KQ_HOME", "~/.kq")).expanduser()


def dagster_home() -> Path:
    value = os.environ.get("DAGSTER_HOME")
    return Path(value).expanduser() if value else kq_home() / "dagster"
