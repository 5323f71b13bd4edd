"""JSON of unstructured values (custom objects) as Go's json.Marshal writes a map[string]interface{}.

Custom resources have no Go struct kubequery could declare, so their values are rendered as Kubernetes
clients render unstructured objects: map keys sorted, no whitespace, and Go's HTML escaping (the same
`escape_html` the struct renderer uses), so a custom resource's labels read exactly like a pod's.
orjson does the work; values it refuses (integers beyond 64 bits, lone surrogates) go through the
standard library instead. One known difference: a float written as `1.0` stays `1.0` (Go writes `1`);
Kubernetes decodes integers as int64, so only values that were floats in the object show it.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from kq_pipeline.rows.gojson import escape_html

_SORTED = orjson.OPT_SORT_KEYS


def go_json(value: Any) -> str:
    """The Go json.Marshal text of a decoded JSON value."""
    try:
        text = orjson.dumps(value, option=_SORTED).decode()
    except (TypeError, orjson.JSONEncodeError):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return escape_html(text)
