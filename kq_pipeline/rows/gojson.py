"""Go `encoding/json` of a decoded Kubernetes value, byte for byte, from go_types.json.

kubequery decodes API objects into typed Go structs and marshals struct/map/slice fields back to
JSON. The bytes differ from the input: struct fields come in declaration order, unknown keys vanish,
omitempty drops empty values but never structs, non-omitempty nil values are written as null,
quantities and times are canonical, and <, >, &, U+2028, U+2029 are escaped.

Each Go type compiles (once) into a Python function built from generated source, so rendering is
straight-line code with no per-value type dispatch. `encoder(go_type)` gives the final column
renderer (with the HTML escaping); `value_encoder(go_type)` gives the raw nested one.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from functools import cache
from json.encoder import encode_basestring
from typing import Any

from kq_pipeline.registry import go_types
from kq_pipeline.rows.gotime import micro_time_json, time_json
from kq_pipeline.rows.quantity import canonical_quantity

Encoder = Callable[[Any], str]

_INTS = frozenset({"int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64"})
_FLOATS = frozenset({"float32", "float64"})
_EMPTY: dict[str, Any] = {}
_INF = float("inf")
_BACKSLASH_RUN = re.compile(r"(\\+)([bf])")


def go_string(value: Any) -> str:
    """A JSON string literal, before HTML escaping (see `escape_html`)."""
    if value is None:
        return '""'
    return encode_basestring(value if isinstance(value, str) else str(value))


def _go_control(match: re.Match[str]) -> str:
    slashes, letter = match.groups()
    if len(slashes) % 2 == 0:
        return match.group(0)
    return slashes[:-1] + ("\\u0008" if letter == "b" else "\\u000c")


def escape_html(text: str) -> str:
    """Go's escapes on top of Python's: <, >, &, U+2028/9 as \\u00XX, and \\b/\\f as \\u0008/\\u000c.

    These characters only occur inside JSON strings, so replacing them in the whole document is exact.
    """
    if "<" in text:
        text = text.replace("<", "\\u003c")
    if ">" in text:
        text = text.replace(">", "\\u003e")
    if "&" in text:
        text = text.replace("&", "\\u0026")
    if "\u2028" in text:
        text = text.replace("\u2028", "\\u2028")
    if "\u2029" in text:
        text = text.replace("\u2029", "\\u2029")
    if "\\b" in text or "\\f" in text:
        text = _BACKSLASH_RUN.sub(_go_control, text)
    return text


def _int_json(value: Any) -> str:
    if value is None:
        return "0"
    return str(value) if type(value) is int else str(int(value))


def go_float(value: float) -> str:
    """A float64 as Go's encoding/json writes it (its floatEncoder): the shortest digits that read
    back to the same float (Python's repr finds the same digits), in plain notation unless
    abs < 1e-6 or abs >= 1e21, where it is strconv's 'e' form with a one-digit negative exponent
    ("1e-7", "1.5e+21"). So `1.0` is `1`, `1e16` is `10000000000000000`, `-0.0` is `-0`.
    NaN and infinities have no JSON form (Go's Marshal fails): ValueError."""
    if value != value or value in (_INF, -_INF):
        raise ValueError(f"{value!r} has no JSON representation")
    text = repr(float(value))  # "123.45", "1e-07", "1.5e+21"
    sign = "-" if text[0] == "-" else ""
    mantissa, _, exp = text.lstrip("-").partition("e")
    whole, _, frac = mantissa.partition(".")
    every = whole + frac
    significant = every.lstrip("0")
    if not significant:
        return sign + "0"
    point = len(whole) + int(exp or 0) - (len(every) - len(significant))  # value = 0.<digits> x 10**point
    digits = significant.rstrip("0")
    magnitude = abs(value)
    if magnitude < 1e-6 or magnitude >= 1e21:
        e = point - 1
        head = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{head}e{'-' if e < 0 else '+'}{abs(e) if e < 0 else f'{e:02d}'}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _float_json(value: Any) -> str:
    return "0" if value is None else go_float(value)


def _bool_json(value: Any) -> str:
    return "true" if value else "false"


def _int_or_string_json(value: Any) -> str:
    if value is None:
        return "0"
    if isinstance(value, str):
        return encode_basestring(value)
    return str(value)


def _quantity_json(value: Any) -> str:
    return '"' + canonical_quantity(value) + '"'


def _raw_json(value: Any) -> str:
    return "null" if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _bytes_json(value: Any) -> str:
    return "null" if value is None else go_string(value)


# Types with their own MarshalJSON (MicroTime is not in go_types.json but appears in events).
CUSTOM: dict[str, Encoder] = {
    "meta/v1.Time": time_json,
    "meta/v1.MicroTime": micro_time_json,
    "api/resource.Quantity": _quantity_json,
    "util/intstr.IntOrString": _int_or_string_json,
    "meta/v1.FieldsV1": _raw_json,
}


def split_map(type_name: str) -> tuple[str, str]:
    depth = 0
    for pos in range(4, len(type_name)):
        ch = type_name[pos]
        if ch == "[":
            depth += 1
        elif ch == "]":
            if depth == 0:
                return type_name[4:pos], type_name[pos + 1 :]
            depth -= 1
    raise ValueError(f"bad Go map type {type_name!r}")


class TypeCompiler:
    """Turns Go type names into encoder functions; generated functions share one namespace."""

    def __init__(self, types: dict[str, Any]) -> None:
        self.types = types
        self.ns: dict[str, Any] = {
            "S": go_string,
            "EMPTY": _EMPTY,
            "sorted": sorted,
        }
        self.by_type: dict[str, str] = {}
        self.sources: dict[str, str] = {}

    # -- classification -------------------------------------------------------------------------
    def resolve(self, type_name: str) -> str:
        """Follow named non-struct types to their underlying type."""
        while True:
            spec = self.types.get(type_name)
            if spec is None or "underlying" not in spec:
                return type_name
            type_name = spec["underlying"]

    def kind(self, type_name: str) -> str:
        t = self.resolve(type_name)
        if t.startswith("*"):
            return "ptr"
        if t == "[]byte":
            return "bytes"
        if t.startswith("[]"):
            return "slice"
        if t.startswith("map["):
            return "map"
        if t == "string":
            return "string"
        if t == "bool":
            return "bool"
        if t in _INTS:
            return "int"
        if t in _FLOATS:
            return "float"
        if t in ("interface{}", "json.RawMessage", "runtime.RawExtension"):
            return "raw"
        spec = self.types.get(t)
        if spec is None and t not in CUSTOM:
            raise KeyError(f"Go type {type_name!r} is not described in go_types.json")
        return "struct"  # includes custom_json types, which Go never omits

    # -- encoders ---------------------------------------------------------------------------------
    def name_of(self, type_name: str) -> str:
        """The namespace name of the value encoder for a type (compiled on first use)."""
        known = self.by_type.get(type_name)
        if known is not None:
            return known
        name = f"E{len(self.by_type)}"
        self.by_type[type_name] = name
        self.ns[name] = self._build(type_name, name)
        return name

    def _build(self, type_name: str, name: str) -> Encoder:
        t = self.resolve(type_name)
        kind = self.kind(t)
        if kind == "string":
            return go_string
        if kind == "int":
            return _int_json
        if kind == "float":
            return _float_json
        if kind == "bool":
            return _bool_json
        if kind == "bytes":
            return _bytes_json
        if kind == "raw":
            return _raw_json
        if kind == "ptr":
            inner = self.name_of(t[1:])
            return self._exec(name, f"def {name}(v):\n    return 'null' if v is None else {inner}(v)\n")
        if kind == "slice":
            elem = t[2:]
            if self.kind(elem) == "string":
                body = "    return '[' + ','.join([S(x) for x in v]) + ']'\n"
            else:
                body = f"    f = {self.name_of(elem)}\n    return '[' + ','.join([f(x) for x in v]) + ']'\n"
            return self._exec(name, f"def {name}(v):\n    if v is None:\n        return 'null'\n{body}")
        if kind == "map":
            key_type, value_type = split_map(t)
            if self.kind(key_type) != "string":
                raise KeyError(f"map key type {key_type!r} is not supported")
            if self.kind(value_type) == "string":
                value = "S(x)"
                prelude = ""
            else:
                value = "f(x)"
                prelude = f"    f = {self.name_of(value_type)}\n"
            return self._exec(
                name,
                f"def {name}(v):\n    if v is None:\n        return 'null'\n{prelude}"
                f"    return '{{' + ','.join([S(k) + ':' + {value} for k, x in sorted(v.items())]) + '}}'\n",
            )
        if t in CUSTOM:
            return CUSTOM[t]
        if "custom_json" in self.types[t]:
            raise KeyError(f"no encoder for custom JSON type {t!r}")
        return self._struct(t, name)

    def _fields(self, type_name: str) -> list[dict[str, Any]]:
        """Struct fields in encoding order, with inline embedded structs spliced in."""
        out: list[dict[str, Any]] = []
        for field in self.types[type_name]["fields"]:
            if field.get("inline") or (field.get("embedded") and not field.get("json")):
                out.extend(self._fields(self.resolve(field["type"])))
            elif field.get("json") != "-":
                out.append(field)
        return out

    def _struct(self, type_name: str, name: str) -> Encoder:
        lines = [
            f"def {name}(d):",
            "    if d is None:",
            "        d = EMPTY",
            "    p = []",
            "    a = p.append",
        ]
        for field in self._fields(type_name):
            key = field["json"] or field["go"]
            head = repr(encode_basestring(key) + ":")
            kind = self.kind(field["type"])
            omit = bool(field.get("omitempty"))
            lines.append(f"    v = d.get({key!r})")
            if kind == "string":
                lines.append(
                    f"    if v: a({head} + S(v))" if omit else f"    a({head} + (S(v) if v else '\"\"'))"
                )
            elif kind == "int":
                lines.append(
                    f"    if v: a({head} + str(v))" if omit else f"    a({head} + (str(v) if v else '0'))"
                )
            elif kind == "bool":
                lines.append(
                    f"    if v: a({head} + 'true')" if omit else f"    a({head} + ('true' if v else 'false'))"
                )
            elif kind in ("float", "raw", "bytes"):
                enc = self.name_of(field["type"])
                cond = "v" if omit and kind != "raw" else "v is not None" if omit else None
                lines.append(f"    if {cond}: a({head} + {enc}(v))" if cond else f"    a({head} + {enc}(v))")
            elif kind == "ptr":
                inner = self.name_of(self.resolve(field["type"])[1:])
                if omit:
                    lines.append(f"    if v is not None: a({head} + {inner}(v))")
                else:
                    lines.append(f"    a({head} + ({inner}(v) if v is not None else 'null'))")
            elif kind in ("slice", "map"):
                enc = self.name_of(field["type"])
                lines.append(f"    if v: a({head} + {enc}(v))" if omit else f"    a({head} + {enc}(v))")
            else:  # struct or custom struct: never omitted
                lines.append(f"    a({head} + {self.name_of(field['type'])}(v))")
        lines.append("    return '{' + ','.join(p) + '}'")
        return self._exec(name, "\n".join(lines) + "\n")

    def _exec(self, name: str, source: str) -> Encoder:
        self.sources[name] = source
        exec(compile(source, f"<gojson {name}>", "exec"), self.ns)  # noqa: S102 - our own generated code
        return self.ns[name]


# Compiling registers an encoder's name before its body exists (types refer to each other), so a
# second thread must not look names up mid-compilation: all compiler access goes through this lock.
COMPILE_LOCK = threading.RLock()


@cache
def compiler() -> TypeCompiler:
    """The process's compiler of Go types (hold COMPILE_LOCK while using it)."""
    return TypeCompiler(go_types())


def value_encoder(go_type: str) -> Encoder:
    """Raw Go JSON of a value of `go_type` (no HTML escaping; nil pointers/maps/slices give null)."""
    with COMPILE_LOCK:
        types = compiler()
        return types.ns[types.name_of(go_type)]


def is_nilable(go_type: str) -> bool:
    """Whether a column of this type is nil (hence omitted) when the input lacks it."""
    with COMPILE_LOCK:
        return compiler().kind(go_type) in ("ptr", "slice", "map", "bytes", "raw")


def generated_source(go_type: str) -> str:
    """The Python source compiled for a struct type (for debugging)."""
    with COMPILE_LOCK:
        types = compiler()
        return types.sources.get(types.name_of(go_type), "")
