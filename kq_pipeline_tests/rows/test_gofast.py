"""The orjson fast path renders exactly what the general Go encoder renders, or declines."""

from __future__ import annotations

import pytest

from kq_pipeline.rows.gofast import checker, exact_encoder
from kq_pipeline.rows.gojson import escape_html, value_encoder

CONDITION = {
    "type": "Ready",
    "status": "True",
    "lastProbeTime": None,
    "lastTransitionTime": "2021-01-21T01:08:25Z",
}
TOLERATION = {"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
NOT_UTC = "2021-01-20T20:08:52-05:00"
ZERO = "0001-01-01T00:00:00Z"


def _general(go_type: str, value: object) -> str:
    return escape_html(value_encoder(go_type)(value))


def test_go_ordered_values_take_the_fast_path_and_match() -> None:
    for go_type, value in [
        ("[]core/v1.PodCondition", [CONDITION, {**CONDITION, "reason": "R<&>", "message": "line\n\u2028\b"}]),
        ("map[string]string", {"a": "1", "b": "<x>"}),
        ("core/v1.ResourceList", {"cpu": "500m", "memory": "1Gi"}),
        ("[]core/v1.Toleration", [TOLERATION]),
        ("*util/intstr.IntOrString", "50%"),
    ]:
        assert checker(go_type)(value), (go_type, value)
        assert exact_encoder(go_type)(value) == _general(go_type, value)


@pytest.mark.parametrize(
    ("go_type", "value", "why"),
    [
        ("core/v1.PodCondition", {**CONDITION, "extra": 1}, "unknown keys vanish in Go"),
        ("core/v1.PodCondition", {"status": "True", **CONDITION}, "keys out of Go field order"),
        ("core/v1.PodCondition", {"type": "Ready", "lastProbeTime": None}, 'no status: Go writes ""'),
        ("core/v1.PodCondition", {**CONDITION, "reason": ""}, "omitempty drops an empty reason"),
        ("core/v1.PodCondition", {**CONDITION, "lastTransitionTime": NOT_UTC}, "Go writes UTC"),
        ("core/v1.PodCondition", {**CONDITION, "lastTransitionTime": ZERO}, "zero time is null"),
        ("core/v1.ResourceList", {"memory": "1024Mi"}, "quantities are canonicalised"),
        ("map[string]string", {"b": "1", "a": "2"}, "Go sorts map keys"),
        ("map[string]string", {"a": None}, 'a nil string is "" in Go'),
        ("[]string", [1], "a number is no string"),
        ("core/v1.ContainerState", None, "a nil struct renders all its fields"),
        ("[]core/v1.PodCondition", [None], "a null element is a zero struct in Go"),
        ("core/v1.ContainerStatus", {"name": "a", "ready": 1}, "1 is not a bool"),
        ("meta/v1.ManagedFieldsEntry", {"fieldsV1": {"f:a": {}}}, "raw JSON is re-sorted by Go"),
    ],
)
def test_values_go_renders_differently_are_declined(go_type: str, value: object, why: str) -> None:
    assert not checker(go_type)(value), why
    assert exact_encoder(go_type)(value) == _general(go_type, value)


def test_values_orjson_cannot_encode_fall_back_to_the_general_encoder() -> None:
    assert exact_encoder("[]int64")([2**70]) == "[" + str(2**70) + "]"
    assert exact_encoder("[]string")(["\ud800"]) == _general("[]string", ["\ud800"])
