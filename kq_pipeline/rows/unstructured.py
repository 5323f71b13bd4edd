"""JSON of unstructured values (custom objects) as Go's json.Marshal writes a map[string]interface{}.

Custom resources have no Go struct kubequery could declare, so their values are rendered as Kubernetes
clients render unstructured objects: map keys sorted, no whitespace, Go's float64 formatting and Go's
HTML escaping (the same `escape_html` the struct renderer uses), so a custom resource's labels read
exactly like a pod's.

orjson does the work. Its text equals Go's but for some floats: orjson writes an integral float as
`1.0` (Go: `1`), from 1e16 to 1e21 in exponent form (`1e+16`; Go: `10000000000000000`), and from 1e-6
to 1e-5 in exponent form (`5e-6`; Go: `0.000005`); every other float reads the same in both (checked
against `gojson.go_float` over random bit patterns). So a text is written again by `_encode`, a plain
recursive encoder with Go's float formatting, only when it holds such a number: substring checks pick
the few candidate texts, a regex confirms. A string that merely looks like one (`"x:1.0,y"`) costs
time, never correctness. Values orjson refuses (integers beyond 64 bits, lone surrogates) take
`_encode` too.
"""

from __future__ import annotations

import re
from json.encoder import encode_basestring
from typing import Any

import orjson

from kq_pipeline.rows.gojson import escape_html, go_float

_SORTED = orjson.OPT_SORT_KEYS
# A number in a value position of orjson's compact output that Go writes otherwise (see above).
_NOT_GO_FLOAT = re.compile(r"(?:^|[:,\[])-?\d+(?:\.0|(?:\.\d+)?(?:e\+(?:1[6-9]|20)|e-6))(?=[,\]}]|$)")


def _maybe_not_go(text: str) -> bool:
    """Cheap (substring searches): could `text` hold a float Go writes otherwise? Rarely true."""
    if ".0" in text and (".0," in text or ".0]" in text or ".0}" in text or text.endswith(".0")):
        return True
    return "e+" in text or "e-6" in text


def _first(item: tuple[str, Any]) -> str:
    return item[0]


def _encode(value: Any) -> str:
    """Go's json.Marshal of a decoded JSON value, before HTML escaping (the slow, exact path)."""
    if isinstance(value, str):
        return encode_basestring(value)
    if isinstance(value, dict):
        items = sorted(((str(k), v) for k, v in value.items()), key=_first)
        return "{" + ",".join(encode_basestring(k) + ":" + _encode(v) for k, v in items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def go_json(value: Any) -> str:
    """The Go json.Marshal text of a decoded JSON value."""
    try:
        text = orjson.dumps(value, option=_SORTED).decode()
    except (TypeError, orjson.JSONEncodeError):
        text = _encode(value)
    else:
        if _maybe_not_go(text) and _NOT_GO_FLOAT.search(text):
            text = _encode(value)
    return escape_html(text)
