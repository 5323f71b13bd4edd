"""The one generic flattener: compiles schema.json's column sources into a row-building function.

Every kubequery column carries `from`: alternatives `{json | const | special, when?, loop?, call?}`
that Go assigns in order (the last whose `when` holds wins; none -> the Go zero value). This module
turns a set of tables over one object list into Python source, compiled once and cached:

* paths are read with chained `dict.get` into locals, each prefix read once per object (`o`),
  row-loop element (`e`) or same-index status element (`[i]`);
* a column is rendered by its Go type (`render` in schema.json) into a local that is None when
  kubequery omits the key; object-level columns are rendered once per object and shared by every
  table and loop row that uses them (pods, pod containers and pod volumes share labels, ...);
* one row per object, or per element of each `row_loops` list in order;
* in a row loop, columns read under one element key that are omitted when it is absent are emitted
  inside `if e[key]:` (a volume has one of 29 sources), and `when X != nil` alternatives read `X.f`
  only in the branch taken. Loop rows may therefore list their keys in a different order than the
  schema; rows are mappings, compared and consumed by column name.

Schema conventions interpreted here (documented in kq_pipeline_tests/data/kubequery/README.md):
`&field` in `go` means the address of a plain field, so a missing value is the pointee's zero value
and not nil; `ServerResources()[*]` is the listed APIResourceList itself; specials are the cluster
name/uid, the event type ("add": a snapshot sees every current event as added) and the poll time.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from kq_pipeline.registry import Column, Table, table
from kq_pipeline.rows import gojson
from kq_pipeline.rows.gotime import is_zero_time, unix_seconds
from kq_pipeline.rows.memo import memo_encoder
from kq_pipeline.rows.quantity import quantity_string

RowBuilder = Callable[[Sequence[dict[str, Any]], list[list[dict[str, str]]], str, str, str], None]

_DISCOVERY_PREFIX = "ServerResources()[*]"
_SPECIALS = {
    "cluster_name": "CN",
    "cluster_uid": "CU",
    "current_time": "NOW",
    "event_type(add|update|delete)": "'add'",
}
_IS_ZERO = re.compile(r"^(.+)\.IsZero\(\)$")
_NOT = re.compile(r"^not \((.*)\)$")
_NIL = re.compile(r"^(.+) != nil$")
_ZERO_OF_KIND = {"bool": "False", "string": "''", "int": "0", "float": "0.0"}

Ref = tuple[str, tuple[str, ...], tuple[str, ...]]
"""(root, index-list keys, keys): root 'o' = object, 'e' = loop element, 'i' = same-index element."""


class SchemaError(ValueError):
    """schema.json holds a `from` entry this flattener does not understand."""


def _strip_discovery(path: str) -> str:
    if path == _DISCOVERY_PREFIX:
        return ""
    if path.startswith(_DISCOVERY_PREFIX + "."):
        return path[len(_DISCOVERY_PREFIX) + 1 :]
    return path


def _keys(path: str) -> tuple[str, ...]:
    return tuple(path.split(".")) if path else ()


def _ref(path: str, loop: str | None) -> Ref | None:
    """Resolve a schema JSON path for one row loop; None when it belongs to another loop."""
    path = _strip_discovery(path)
    if loop is not None:
        if path == loop:
            return ("e", (), ())
        if path.startswith(loop + "."):
            return ("e", (), _keys(path[len(loop) + 1 :]))
    if "[i]" in path:
        before, after = path.split("[i]", 1)
        return ("i", _keys(before), _keys(after.lstrip(".")))
    if "[*]" in path:
        return None
    return ("o", (), _keys(path))


@dataclass(frozen=True)
class _Alt:
    conds: tuple[tuple[str, Ref], ...]  # (op, ref): op in 'nil', '!nil', 'zero', '!zero'
    value: tuple[str, Any]  # ('ref', Ref) | ('lit', python source) | ('call', Ref)
    address_of: bool


def _parse_when(when: str, loop: str | None) -> tuple[tuple[str, Ref], ...] | None:
    conds: list[tuple[str, Ref]] = []
    for part in when.split(" && "):
        part = part.strip()
        negate = False
        match = _NOT.match(part)
        if match:
            negate, part = True, match.group(1).strip()
        if (match := _NIL.match(part)) is not None:
            op = "nil" if negate else "!nil"
        elif (match := _IS_ZERO.match(part)) is not None:
            op = "!zero" if negate else "zero"
        else:
            raise SchemaError(f"unsupported when clause {when!r}")
        ref = _ref(match.group(1), loop)
        if ref is None:
            return None
        conds.append((op, ref))
    return tuple(conds)


def _alternatives(column: Column, loop: str | None) -> tuple[_Alt, ...]:
    out: list[_Alt] = []
    for src in column.sources:
        src_loop = src.get("loop")
        if src_loop is not None and _strip_discovery(src_loop) != loop:
            continue
        conds: tuple[tuple[str, Ref], ...] = ()
        if "when" in src:
            parsed = _parse_when(src["when"], loop)
            if parsed is None:
                continue
            conds = parsed
        if "const" in src:
            value: tuple[str, Any] = ("lit", repr(src["const"]))
        elif "special" in src:
            if src["special"] not in _SPECIALS:
                raise SchemaError(f"unknown special {src['special']!r} in {column.name}")
            value = ("lit", _SPECIALS[src["special"]])
        elif "json" in src:
            ref = _ref(src["json"], loop)
            if ref is None:
                continue
            if src.get("call") not in (None, ".String()"):
                raise SchemaError(f"unsupported call {src['call']!r} in {column.name}")
            value = ("call" if src.get("call") else "ref", ref)
        else:
            raise SchemaError(f"column {column.name}: `from` entry without a value: {src}")
        out.append(_Alt(conds, value, str(src.get("go", "")).startswith("&")))
    return tuple(out)


def _guards_are_implied(alt: _Alt) -> bool:
    """`if X != nil { v = X.a.b }` equals `v = X.a.b` on JSON: a nil parent reads as None anyway."""
    if not alt.conds:
        return True
    kind, ref = alt.value
    if kind != "ref" or alt.address_of:
        return False
    root, list_keys, keys = ref
    return all(
        op == "!nil" and (g[0], g[1]) == (root, list_keys) and keys[: len(g[2])] == g[2] != keys
        for op, g in alt.conds
    )


class _Scope:
    """Locals of one nesting level; each distinct path prefix or rendered value is computed once."""

    def __init__(self, gen: _Codegen, indent: int, parent: _Scope | None) -> None:
        self.gen, self.indent, self.parent = gen, indent, parent
        self.lines: list[str] = []
        self.cache: dict[Any, str] = {}

    def emit(self, line: str) -> None:
        self.lines.append(" " * self.indent + line)


class _Codegen:
    def __init__(self, general_json: bool = False) -> None:
        self.general_json = general_json
        self.counter = 0
        self.ns: dict[str, Any] = {
            "UNIX": unix_seconds,
            "QS": quantity_string,
            "ISZERO": is_zero_time,
            "enumerate": enumerate,
        }
        self.encoders: dict[str, str] = {}  # renderer name -> Go type

    def var(self, prefix: str = "v") -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def json_encoder(self, go_type: str) -> str:
        """A renderer per column, so each column's memo judges its own hit rate."""
        name = f"J{len(self.encoders)}"
        self.encoders[name] = go_type
        if self.general_json:
            raw, escape = gojson.value_encoder(go_type), gojson.escape_html
            self.ns[name] = lambda value: escape(raw(value))
        else:
            self.ns[name] = memo_encoder(go_type, on_disable=lambda plain: self.ns.__setitem__(name, plain))
        return name

    # -- paths ------------------------------------------------------------------------------------
    def path(self, ref: Ref, obj: _Scope, elem: _Scope | None) -> str:
        root, list_keys, keys = ref
        if root == "o":
            return self._chain(obj, "o", ("o",), keys)
        if elem is None:
            raise SchemaError(f"element path {ref} outside a row loop")
        if root == "e":
            return self._chain(elem, "e", ("e",), keys)
        lst = self._chain(obj, "o", ("o",), list_keys)
        key = ("i", list_keys)
        item = elem.cache.get(key)
        if item is None:
            item = elem.cache[key] = self.var("s")
            elem.emit(f"{item} = {lst}[i] if {lst} is not None and i < len({lst}) else None")
        return self._chain(elem, item, key, keys)

    def _chain(self, scope: _Scope, base: str, base_key: tuple[Any, ...], keys: tuple[str, ...]) -> str:
        current = base
        for n in range(len(keys)):
            cache_key = (base_key, keys[: n + 1])
            known = scope.cache.get(cache_key)
            if known is None:
                known = scope.cache[cache_key] = self.var("p")
                scope.emit(f"{known} = {current}.get({keys[n]!r}) if {current} else None")
            current = known
        return current

    # -- columns ----------------------------------------------------------------------------------
    def column(
        self, column: Column, alts: tuple[_Alt, ...], obj: _Scope, elem: _Scope | None
    ) -> tuple[str, bool, bool]:
        """Emit the column's rendering; returns (local name, always present, element-level)."""
        uses_elem = any(
            ref[0] != "o"
            for alt in alts
            for ref in [c[1] for c in alt.conds] + ([alt.value[1]] if alt.value[0] != "lit" else [])
        )
        scope = elem if uses_elem and elem is not None else obj
        render, go_type = column.render, column.go_type
        nilable, always = _presence(column)
        cache_key = ("col", render, go_type, alts)
        if scope is obj and cache_key in obj.cache:
            return obj.cache[cache_key], always, False
        value = self._value(column, alts, scope, obj, elem)
        out = self.var("c")
        if render == "string":
            scope.emit(f"{out} = {value} or None")
        elif render == "integer":
            scope.emit(f"{out} = str({value}) if {value} is not None else {'None' if nilable else repr('0')}")
        elif render == "bool_0_1":
            if nilable:
                scope.emit(f"{out} = None if {value} is None else ('1' if {value} else '0')")
            else:
                scope.emit(f"{out} = '1' if {value} else '0'")
        elif render == "unix_seconds":
            scope.emit(
                f"{out} = None if {value} is None else UNIX({value})" if nilable else f"{out} = UNIX({value})"
            )
        elif render == "json":
            enc = self.json_encoder(go_type)
            scope.emit(
                f"{out} = None if {value} is None else {enc}({value})"
                if nilable
                else f"{out} = {enc}({value})"
            )
        else:
            raise SchemaError(f"unknown render {render!r} for {column.name}")
        if scope is obj:
            obj.cache[cache_key] = out
        return out, always, scope is not obj

    def _value(
        self, column: Column, alts: tuple[_Alt, ...], scope: _Scope, obj: _Scope, elem: _Scope | None
    ) -> str:
        """An expression (a local or literal) holding the selected raw value, None when nil/unset."""
        zero = "None"
        if any(alt.address_of for alt in alts):
            pointee = gojson.compiler().kind(column.go_type.lstrip("*"))
            zero = _ZERO_OF_KIND.get(pointee, "None")

        def expr(alt: _Alt, in_branch: bool = False) -> str:
            kind, payload = alt.value
            if kind == "lit":
                return payload
            root, list_keys, keys = payload
            if in_branch and kind == "ref" and keys and ("!nil", (root, list_keys, keys[:-1])) in alt.conds:
                # `if X != nil { v = X.f }`: read X.f only in the branch taken, not for every alternative
                parent = self.path((root, list_keys, keys[:-1]), obj, elem)
                got = f"({parent}.get({keys[-1]!r}) if {parent} else None)"
                if alt.address_of and zero != "None":
                    return f"(_t if (_t := {got}) is not None else {zero})"
                return got
            got = self.path(payload, obj, elem)
            if kind == "call":
                return f"QS({got})"
            if alt.address_of and zero != "None":
                return f"({got} if {got} is not None else {zero})"
            return got

        def cond(alt: _Alt) -> str:
            parts = []
            for op, ref in alt.conds:
                got = self.path(ref, obj, elem)
                parts.append(
                    {
                        "!nil": f"{got} is not None",
                        "nil": f"{got} is None",
                        "zero": f"ISZERO({got})",
                        "!zero": f"not ISZERO({got})",
                    }[op]
                )
            return " and ".join(parts)

        if not alts:
            return "None"
        if len(alts) == 1 and _guards_are_implied(alts[0]):
            return expr(alts[0])
        chain: list[tuple[str | None, str]] = []
        for alt in reversed(alts):
            chain.append((cond(alt) if alt.conds else None, expr(alt, in_branch=True)))
            if not alt.conds:
                break
        out = self.var("w")
        keyword = "if"
        for test, value in chain:
            if test is None:
                scope.emit(f"else: {out} = {value}" if keyword == "elif" else f"{out} = {value}")
                return out
            scope.emit(f"{keyword} {test}: {out} = {value}")
            keyword = "elif"
        scope.emit(f"else: {out} = None")
        return out


def _presence(column: Column) -> tuple[bool, bool]:
    """(nilable, always present): whether a missing value is omitted, and whether the key is never omitted."""
    render, go_type = column.render, column.go_type
    nilable = go_type.startswith("*") or (render == "json" and gojson.is_nilable(go_type))
    return nilable, not nilable and render in ("integer", "bool_0_1", "unix_seconds", "json")


def _guard_key(column: Column, alts: tuple[_Alt, ...]) -> str | None:
    """The loop element's key that a column reads under, when an absent key means the column is omitted.

    Such columns are emitted inside `if e[key]:`, so elements skip whole absent branches (a volume
    has one of 29 sources; a container rarely has a securityContext) instead of reading each path.
    """
    if len(alts) != 1 or not _guards_are_implied(alts[0]) or _presence(column)[1]:
        return None
    kind, ref = alts[0].value
    if kind != "ref" or ref[0] != "e" or len(ref[2]) < 2:
        return None
    return str(ref[2][0])


def _row_dict(scope: _Scope, target: str, cols: list[tuple[str, str, bool]], base: str | None = None) -> None:
    always = ", ".join(f"{name!r}: {local}" for name, local, present in cols if present)
    if base is None:
        scope.emit(f"{target} = {{{always}}}")
    else:
        scope.emit(f"{target} = {base}.copy()")
        for name, local, present in cols:
            if present:
                scope.emit(f"{target}[{name!r}] = {local}")
    for name, local, present in cols:
        if not present:
            scope.emit(f"if {local} is not None: {target}[{name!r}] = {local}")


def _loops(tbl: Table) -> list[str | None]:
    loops = [_strip_discovery(loop["json"]) for loop in tbl.spec.get("row_loops", [])]
    for loop in loops:
        if not loop.endswith("[*]") or "[*]" in loop[:-3]:
            raise SchemaError(f"{tbl.name}: unsupported row loop {loop!r}")
    return loops or [None]


_COMPILE_LOCK = threading.Lock()


def compile_tables(names: tuple[str, ...], *, general_json: bool = False) -> RowBuilder:
    """A function(objects, outs, cluster_name, cluster_uid, now_rfc3339) filling outs[k] for names[k].

    `general_json` renders JSON columns with the general Go encoders only (no memo): the reference
    the memoising renderers are tested against.

    Compiled once per table set; extraction lists tables from several threads, hence the lock."""
    with _COMPILE_LOCK:
        return _compile_tables(names, general_json)


@cache
def _compile_tables(names: tuple[str, ...], general_json: bool) -> RowBuilder:
    gen = _Codegen(general_json)
    obj = _Scope(gen, 8, None)
    bodies: list[_Scope] = []
    header = ["def build(objs, outs, CN, CU, NOW):"]
    for k, name in enumerate(names):
        tbl = table(name)
        header.append(f"    A{k} = outs[{k}].append")
        for loop in _loops(tbl):
            body = _Scope(gen, 8, None)
            bodies.append(body)
            if loop is None:
                cols = [(c.name, *gen.column(c, _alternatives(c, None), obj, None)[:2]) for c in tbl.columns]
                _row_dict(body, "r", cols)
                body.emit(f"A{k}(r)")
                continue
            lst = gen.path(("o", (), _keys(loop[:-3])), obj, None)
            body.emit(f"if {lst}:")
            elem = _Scope(gen, 16, obj)
            obj_cols: list[tuple[str, str, bool]] = []
            elem_cols: list[tuple[str, str, bool]] = []
            guarded: dict[str, list[tuple[Column, tuple[_Alt, ...]]]] = {}
            for c in tbl.columns:
                alts = _alternatives(c, loop)
                if (key := _guard_key(c, alts)) is not None:
                    guarded.setdefault(key, []).append((c, alts))
                    continue
                local, present, per_elem = gen.column(c, alts, obj, elem)
                (elem_cols if per_elem else obj_cols).append((c.name, local, present))
            base = gen.var("b")
            inner = _Scope(gen, 12, None)
            _row_dict(inner, base, obj_cols)
            body.lines.extend(inner.lines)
            body.emit(f"    for i, e in enumerate({lst}):")
            body.lines.extend(elem.lines)
            tail = _Scope(gen, 16, None)
            _row_dict(tail, "r", elem_cols, base=base)
            for key, group in guarded.items():
                sub = _Scope(gen, 20, elem)
                sub.cache = dict(elem.cache)  # the block sees the element's locals; its own stay inside
                parent = elem.cache.get((("e",), (key,)))
                if parent is None:  # elem's lines are already placed: read the key here
                    parent = sub.cache[(("e",), (key,))] = gen.var("p")
                    tail.emit(f"{parent} = e.get({key!r}) if e else None")
                for c, alts in group:
                    local = gen.column(c, alts, obj, sub)[0]
                    sub.emit(f"if {local} is not None: r[{c.name!r}] = {local}")
                tail.emit(f"if {parent}:")
                tail.lines.extend(sub.lines)
            tail.emit(f"A{k}(r)")
            body.lines.extend(tail.lines)
    source = (
        "\n".join(header + ["    for o in objs:"] + obj.lines + [ln for b in bodies for ln in b.lines]) + "\n"
    )
    if not obj.lines and not any(b.lines for b in bodies):  # pragma: no cover - every table has columns
        source += "        pass\n"
    ns = gen.ns  # the builder's globals: a column whose memo gives up rebinds its renderer here
    exec(compile(source, f"<rows {','.join(names)}>", "exec"), ns)  # noqa: S102 - our own generated code
    builder: RowBuilder = ns["build"]
    builder.__doc__ = source  # the generated code, for debugging
    builder.json_types = dict(gen.encoders)  # type: ignore[attr-defined]  # renderer name -> Go type
    return builder
