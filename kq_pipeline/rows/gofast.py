"""When orjson's bytes are Go's bytes: a checked fast path for Go JSON rendering.

Rendering Go JSON field by field in Python is the costliest part of row building, and most values
(statuses, conditions, mounts) are already what Go would write: known fields in Go declaration
order, no empty value in an omitempty field, canonical times and quantities, sorted map keys. For
such a value `orjson.dumps` (in C) gives Go's bytes; `escape_html` then applies Go's escapes to both
paths alike (orjson escapes strings exactly as `json.encoder.encode_basestring`, tested).

Each Go type compiles (once) into a checker `C(v) -> bool` that is True only when the two renderings
are provably identical; anything it does not understand (floats, raw JSON, unknown keys, a missing
always-written field, an empty omitempty value, a non-canonical time) answers False and the value goes
through the general encoder from `gojson`. Checkers read every leaf but allocate nothing, which costs
a fraction of rendering.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import orjson

from kq_pipeline.rows import gojson
from kq_pipeline.rows.gotime import micro_time_json, time_json
from kq_pipeline.rows.quantity import canonical_quantity

Checker = Callable[[Any], bool]

_MISSING = object()
# custom_json types whose Go output equals orjson's for the values the expression accepts
_CUSTOM_CHECKS = {
    "meta/v1.Time": "({x} is None or {x} in TOK or TIME_OK({x}))",
    "meta/v1.MicroTime": "({x} is None or (type({x}) is str and MTJ({x}) == '\"' + {x} + '\"'))",
    "api/resource.Quantity": "(type({x}) is str and Q({x}) == {x})",
    "util/intstr.IntOrString": "(type({x}) is int or type({x}) is str)",
}
# Go writes float64 integers below 1e21 as plain integers; other floats format differently.
_FLOAT_CHECK = "(type({x}) is int and -{lim} < {x} < {lim})".replace("{lim}", str(10**15))


_CANONICAL_TIMES: set[str] = set()


def _time_ok(value: Any) -> bool:
    """A metav1.Time string Go writes back unchanged (remembered: replicas share timestamps)."""
    if type(value) is str and time_json(value) == '"' + value + '"':
        if len(_CANONICAL_TIMES) < 200_000:
            _CANONICAL_TIMES.add(value)
        return True
    return False


class _CheckCompiler:
    def __init__(self, types: gojson.TypeCompiler) -> None:
        self.types = types
        self.ns: dict[str, Any] = {
            "TOK": _CANONICAL_TIMES,
            "TIME_OK": _time_ok,
            "MTJ": micro_time_json,
            "Q": canonical_quantity,
            "M": _MISSING,
            "STR": frozenset({str}),
            "INT": frozenset({int}),
            "BOOL": frozenset({bool}),
            "set": set,
            "map": map,
            "sorted": sorted,
            "all": all,
            "list": list,
            "tuple": tuple,
            "dict": dict,
            "str": str,
            "int": int,
            "bool": bool,
            "type": type,
        }
        self.by_type: dict[str, str] = {}
        self.sources: dict[str, str] = {}

    def name_of(self, type_name: str) -> str:
        known = self.by_type.get(type_name)
        if known is not None:
            return known
        name = f"C{len(self.by_type)}"
        self.by_type[type_name] = name
        source = self._function(type_name, name)
        self.sources[name] = source
        exec(compile(source, f"<gofast {name}>", "exec"), self.ns)  # noqa: S102 - our own generated code
        return name

    def _function(self, type_name: str, name: str) -> str:
        t = self.types.resolve(type_name)
        if self.types.kind(t) != "struct" or t in _CUSTOM_CHECKS or t in gojson.CUSTOM:
            return f"def {name}(x):\n    return {self.expr(t, 'x', 0)}\n"
        return self._struct(t, name)

    def expr(self, type_name: str, x: str, depth: int) -> str:
        """A Python expression: True when `x`, as a (non-omitted) value of the type, renders alike."""
        t = self.types.resolve(type_name)
        kind = self.types.kind(t)
        if kind == "string":
            return f"type({x}) is str"
        if kind == "int":
            return f"type({x}) is int"
        if kind == "bool":
            return f"type({x}) is bool"
        if kind == "float":
            return _FLOAT_CHECK.replace("{x}", x)
        if kind in ("bytes", "raw"):
            return "False"
        if kind == "ptr":
            return f"({x} is None or {self.expr(t[1:], x, depth)})"
        if kind == "slice":
            return f"({x} is None or (type({x}) is list and {self._all(t[2:], x, depth)}))"
        if kind == "map":
            key_type, value_type = gojson.split_map(t)
            if self.types.kind(key_type) != "string":
                return "False"
            values = self._all(value_type, f"{x}.values()", depth)
            return f"({x} is None or (type({x}) is dict and list({x}) == sorted({x}) and {values}))"
        if t in _CUSTOM_CHECKS:
            return _CUSTOM_CHECKS[t].replace("{x}", x)
        if self._custom(t):
            return "False"
        return f"{self.name_of(t)}({x})"

    def _custom(self, t: str) -> bool:
        return t in _CUSTOM_CHECKS or t in gojson.CUSTOM or "custom_json" in self.types.types.get(t, {})

    def _all(self, type_name: str, items: str, depth: int) -> str:
        """Every item passes: scalar types by one C-level set of types, structs through map()."""
        t = self.types.resolve(type_name)
        scalar = {"string": "STR", "int": "INT", "bool": "BOOL"}.get(self.types.kind(t))
        if scalar is not None:
            return f"set(map(type, {items})) <= {scalar}"
        if self.types.kind(t) == "struct" and not self._custom(t):
            return f"all(map({self.name_of(t)}, {items}))"
        inner = self.expr(t, f"y{depth}", depth + 1)
        return f"all([{inner} for y{depth} in {items}])"

    def _nonempty(self, type_name: str, x: str) -> str:
        """Check for a present omitempty field: Go omits empty values, orjson would write them."""
        t = self.types.resolve(type_name)
        kind = self.types.kind(t)
        if kind == "string":
            return f"(type({x}) is str and {x} != '')"
        if kind == "int":
            return f"(type({x}) is int and {x} != 0)"
        if kind == "bool":
            return f"{x} is True"
        if kind == "float":
            return f"({_FLOAT_CHECK.replace('{x}', x)} and {x} != 0)"
        if kind == "ptr":
            return f"({x} is not None and {self.expr(t[1:], x, 0)})"
        if kind in ("slice", "map"):
            return f"({x} and {self.expr(t, x, 0)})"
        if kind in ("bytes", "raw"):
            return "False"
        return self.expr(t, x, 0)  # structs are never omitted

    def _struct(self, type_name: str, name: str) -> str:
        fields = self.types._fields(type_name)
        keys = [f["json"] or f["go"] for f in fields]
        if len(set(keys)) != len(keys):  # Go's field dominance rules: leave to the general encoder
            return f"def {name}(x):\n    return False\n"
        order = {k: n for n, k in enumerate(keys)}
        required = frozenset(
            k for k, f in zip(keys, fields, strict=True) if not f.get("omitempty") or self._always(f["type"])
        )
        self.ns[f"O_{name}"] = order
        self.ns[f"R_{name}"] = required
        self.ns[f"S_{name}"] = {}
        lines = [
            f"def {name}(x):",
            "    if type(x) is not dict:",
            "        return False",
            "    shape = tuple(x)",
            f"    ok = S_{name}.get(shape)",
            "    if ok is None:",
            f"        ok = S_{name}[shape] = SHAPE(shape, O_{name}, R_{name})",
            "    if not ok:",
            "        return False",
        ]
        for key, field in zip(keys, fields, strict=True):
            if key in required:
                lines.append(f"    v = x[{key!r}]")
                lines.append(f"    if not ({self.expr(field['type'], 'v', 0)}): return False")
            else:
                lines.append(f"    v = x.get({key!r}, M)")
                check = self._nonempty(field["type"], "v")
                lines.append(f"    if v is not M and not ({check}): return False")
        lines.append("    return True")
        return "\n".join(lines) + "\n"

    def _always(self, type_name: str) -> bool:
        """Go writes struct-kind fields even with omitempty."""
        return self.types.kind(type_name) == "struct"


def _shape_ok(shape: tuple[str, ...], order: dict[str, int], required: frozenset[str]) -> bool:
    """Keys all known, in Go field order, and every field Go always writes present."""
    last = -1
    for key in shape:
        pos = order.get(key)
        if pos is None or pos <= last:
            return False
        last = pos
    return required.issubset(shape)


_COMPILER: _CheckCompiler | None = None
_LOCK = threading.Lock()


def checker(go_type: str) -> Checker:
    """True for a value whose `orjson.dumps` equals Go's `json.Marshal` (before HTML escaping)."""
    global _COMPILER
    with gojson.COMPILE_LOCK, _LOCK:
        if _COMPILER is None:
            _COMPILER = _CheckCompiler(gojson.compiler())
            _COMPILER.ns["SHAPE"] = _shape_ok
        return _COMPILER.ns[_COMPILER.name_of(go_type)]


def checker_source(go_type: str) -> str:
    """The generated checker source of a type (for debugging)."""
    checker(go_type)
    with _LOCK:
        assert _COMPILER is not None
        return _COMPILER.sources[_COMPILER.by_type[go_type]]


def exact_encoder(go_type: str) -> Callable[[Any], str]:
    """Go JSON of a `go_type` value with HTML escaping: orjson when `checker` allows, else general."""
    check = checker(go_type)
    raw = gojson.value_encoder(go_type)
    escape = gojson.escape_html
    dumps = orjson.dumps

    def render(value: Any) -> str:
        try:
            if check(value):
                return escape(dumps(value).decode())
        except Exception:  # noqa: BLE001, S110 - whatever the checker or orjson rejects goes the general way
            pass
        return escape(raw(value))

    return render
