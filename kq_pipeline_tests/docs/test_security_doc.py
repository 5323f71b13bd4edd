"""docs/SECURITY.md names, for each threat, the tests that cover it: every one of them must exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_test_the_security_document_names_exists() -> None:
    text = (REPO / "docs" / "SECURITY.md").read_text()
    files = list((REPO / "kq_pipeline_tests").rglob("test_*.py"))
    named = set(re.findall(r"\b(test_[a-z0-9_]+)\b", text)) - {p.stem for p in files}  # modules named too
    defined = {m for p in files for m in re.findall(r"def (test_\w+)", p.read_text())}
    assert len(named) >= 25
    assert named <= defined, sorted(named - defined)
