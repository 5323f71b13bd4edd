"""Go encoding/json rendering of decoded Kubernetes values (README "JSON strings")."""

from __future__ import annotations

from kq_pipeline.rows.gojson import escape_html, value_encoder
from kq_pipeline.rows.memo import encoder


def test_html_characters_and_line_separators_are_escaped_like_go() -> None:
    render = encoder("map[string]string")
    assert render({"a": "<b>&\u2028\u2029"}) == '{"a":"\\u003cb\\u003e\\u0026\\u2028\\u2029"}'


def test_control_characters_use_go_escapes_and_non_ascii_stays_utf8() -> None:
    render = encoder("[]string")
    assert render(["\b\f\n\r\t\x01", "é✓"]) == '["\\u0008\\u000c\\n\\r\\t\\u0001","é✓"]'
    # an escaped backslash followed by "b" is not a control character
    assert render(["\\b"]) == '["\\\\b"]'
    assert escape_html('"\\\\\\b"') == '"\\\\\\u0008"'


def test_map_keys_are_sorted_and_output_is_compact() -> None:
    assert encoder("map[string]string")({"z": "1", "a": "2", "B": "3"}) == '{"B":"3","a":"2","z":"1"}'


def test_struct_fields_follow_go_declaration_order_and_omitempty_drops_empty_values() -> None:
    toleration = {
        "tolerationSeconds": 300,
        "effect": "NoExecute",
        "operator": "Exists",
        "value": "",
        "key": "node.kubernetes.io/not-ready",
    }
    assert encoder("[]core/v1.Toleration")([toleration]) == (
        '[{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}]'
    )


def test_struct_fields_are_never_omitted_and_zero_time_is_null() -> None:
    condition = {"type": "Ready", "status": "True", "lastTransitionTime": "2021-01-21T01:08:25Z"}
    assert encoder("core/v1.PodCondition")(condition) == (
        '{"type":"Ready","status":"True","lastProbeTime":null,"lastTransitionTime":"2021-01-21T01:08:25Z"}'
    )


def test_fields_without_omitempty_are_written_when_empty_or_nil() -> None:
    assert (
        encoder("autoscaling/v1.CrossVersionObjectReference")({"name": "blah"}) == '{"kind":"","name":"blah"}'
    )
    assert encoder("core/v1.ContainerImage")({"sizeBytes": 5}) == '{"names":null,"sizeBytes":5}'


def test_unknown_keys_are_dropped_and_empty_struct_is_braces() -> None:
    assert encoder("core/v1.ContainerState")({"futureField": 1}) == "{}"
    assert encoder("core/v1.ContainerState")(None) == "{}"


def test_inline_embedded_struct_fields_are_spliced_in() -> None:
    probe = {"periodSeconds": 10, "httpGet": {"port": 8080, "path": "/healthz"}}
    assert (
        encoder("*core/v1.Probe")(probe) == '{"httpGet":{"path":"/healthz","port":8080},"periodSeconds":10}'
    )


def test_int_or_string_keeps_its_json_kind() -> None:
    assert value_encoder("*util/intstr.IntOrString")(1) == "1"
    assert value_encoder("*util/intstr.IntOrString")("50%") == '"50%"'


def test_times_are_utc_whole_seconds_and_quantities_canonical() -> None:
    assert value_encoder("meta/v1.Time")("2021-01-20T20:08:52.75-05:00") == '"2021-01-21T01:08:52Z"'
    assert (
        value_encoder("meta/v1.MicroTime")("2021-01-21T01:08:52.123456Z") == '"2021-01-21T01:08:52.123456Z"'
    )
    assert (
        value_encoder("core/v1.ResourceList")({"memory": "1024Mi", "cpu": "1000m"})
        == '{"cpu":"1","memory":"1Gi"}'
    )


def test_nil_and_empty_collections_differ() -> None:
    assert value_encoder("[]string")(None) == "null"
    assert value_encoder("[]string")([]) == "[]"
    assert value_encoder("map[string]string")({}) == "{}"


def test_memoised_renderer_gives_identical_output_on_repeat() -> None:
    render = encoder("[]core/v1.EnvVar")
    env = [{"name": "A", "value": "<x>"}]
    assert (
        render(env) == render([{"name": "A", "value": "<x>"}]) == '[{"name":"A","value":"\\u003cx\\u003e"}]'
    )
