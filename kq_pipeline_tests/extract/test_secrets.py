"""No Secret value survives redaction; last-applied-configuration keeps its keys and stays JSON."""

from __future__ import annotations

import json

from kq_pipeline.extract.secrets import LAST_APPLIED, REDACTED, UNPARSABLE, redact_last_applied, redact_secret


def applied_secret() -> dict:
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "prod"},
        "data": {"password": "aHVudGVyMg=="},
        "stringData": {"user": "admin-plain"},
        "type": "Opaque",
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": "db",
            "namespace": "prod",
            "annotations": {LAST_APPLIED: json.dumps(manifest, separators=(",", ":")) + "\n", "team": "a"},
        },
        "data": {"password": "aHVudGVyMg=="},
        "stringData": {"user": "admin-plain"},
    }


def test_data_and_string_data_are_dropped_and_last_applied_is_redacted() -> None:
    secret = redact_secret(applied_secret())
    text = json.dumps(secret)
    assert "aHVudGVyMg==" not in text and "admin-plain" not in text
    assert "data" not in secret and "stringData" not in secret
    ann = secret["metadata"]["annotations"]
    assert ann["team"] == "a"
    assert ann[LAST_APPLIED].endswith("\n")
    applied = json.loads(ann[LAST_APPLIED])
    assert applied["data"] == {"password": REDACTED}
    assert applied["stringData"] == {"user": REDACTED}
    assert applied["metadata"] == {"name": "db", "namespace": "prod"}
    assert list(applied) == ["apiVersion", "kind", "metadata", "data", "stringData", "type"]


def test_unparsable_last_applied_is_replaced_whole() -> None:
    assert redact_last_applied('{"data": {"k": "c2VjcmV0"') == UNPARSABLE
    assert redact_last_applied("[1, 2]") == UNPARSABLE
    assert redact_last_applied(None) == UNPARSABLE


def test_non_mapping_data_is_redacted_too() -> None:
    assert json.loads(redact_last_applied('{"data": "c2VjcmV0", "stringData": null}')) == {
        "data": REDACTED,
        "stringData": None,
    }


def test_secret_without_annotations_is_fine() -> None:
    assert redact_secret({"metadata": {"name": "x"}, "data": {"a": "b"}}) == {"metadata": {"name": "x"}}
