"""Label and field selectors match the way kube-apiserver's do."""

from __future__ import annotations

import pytest

from kq_pipeline.simulator.selectors import SelectorError, field_selector, label_selector

POD = {
    "metadata": {"name": "web-1", "namespace": "prod", "labels": {"app": "web", "tier": "front"}},
    "spec": {"nodeName": "node-3"},
    "status": {"phase": "Running"},
}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("app=web", True),
        ("app==web", True),
        ("app!=web", False),
        ("app in (web, api)", True),
        ("app notin (web)", False),
        ("tier", True),
        ("!tier", False),
        ("app=web,tier=back", False),
        ("missing!=x", True),
    ],
)
def test_label_selector(selector: str, matches: bool):
    pred = label_selector(selector)
    assert pred is not None and pred(POD) is matches


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("metadata.name=web-1", True),
        ("metadata.namespace==prod,metadata.name=web-1", True),
        ("spec.nodeName=node-2", False),
        ("status.phase!=Pending", True),
    ],
)
def test_field_selector(selector: str, matches: bool):
    pred = field_selector(selector)
    assert pred is not None and pred(POD) is matches


def test_empty_and_invalid_selectors():
    assert label_selector("") is None and field_selector("") is None
    with pytest.raises(SelectorError):
        field_selector("metadata.name")
    with pytest.raises(SelectorError):
        label_selector("a b c")
