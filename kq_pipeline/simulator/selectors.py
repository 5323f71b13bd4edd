"""labelSelector and fieldSelector, parsed once per request into a predicate over objects."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Predicate = Callable[[dict[str, Any]], bool]


class SelectorError(ValueError):
    """The selector does not parse; the server answers 400 BadRequest."""


_SET_RE = re.compile(r"^\s*([^\s!=()]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _label_requirement(req: str) -> Predicate:
    if m := _SET_RE.match(req):
        key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    for op in ("!=", "==", "="):
        if op in req:
            key, value = (s.strip() for s in req.split(op, 1))
            if not key:
                raise SelectorError(f"invalid label selector requirement {req!r}")
            if op == "!=":
                return lambda labels: labels.get(key) != value
            return lambda labels: labels.get(key) == value
    if req.startswith("!"):
        key = req[1:].strip()
        return lambda labels: key not in labels
    if not re.fullmatch(r"[A-Za-z0-9._/-]+", req):
        raise SelectorError(f"invalid label selector requirement {req!r}")
    return lambda labels: req in labels


def label_selector(text: str) -> Predicate | None:
    reqs = [_label_requirement(r) for r in _split_top(text)]
    if not reqs:
        return None

    def match(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(r(labels) for r in reqs)

    return match


def _field_value(obj: dict[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def field_selector(text: str) -> Predicate | None:
    """Any dotted path (metadata.name, spec.nodeName, status.phase, ...) with =, ==, !=."""
    reqs: list[tuple[str, bool, str]] = []
    for req in _split_top(text):
        for op in ("!=", "==", "="):
            if op in req:
                path, value = (s.strip() for s in req.split(op, 1))
                reqs.append((path, op != "!=", value))
                break
        else:
            raise SelectorError(f"invalid field selector requirement {req!r}")
    if not reqs:
        return None
    return lambda obj: all((_field_value(obj, p) == v) == eq for p, eq, v in reqs)


def combine(*predicates: Predicate | None) -> Predicate | None:
    active = [p for p in predicates if p is not None]
    if not active:
        return None
    if len(active) == 1:
        return active[0]
    return lambda obj: all(p(obj) for p in active)
