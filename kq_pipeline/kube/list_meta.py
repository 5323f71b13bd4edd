"""A list page's `metadata` (the continue token) read without parsing its items.

Paging needs the continue token before the next request, but parsing a 500-pod page just for it
costs as much as the rest of the pipeline's work on the page. The API server writes a built-in
list as `{"kind":..,"apiVersion":..,"metadata":{..},"items":[..]}`; a custom resource's list as a
map with sorted keys, so `metadata` comes last. ListMeta is flat (strings and one integer), so the
object ends at the first `}`. Both layouts are checked strictly (the pieces must parse as JSON and
sit where the layout says); anything else answers None and the caller parses the whole body.
"""

from __future__ import annotations

from typing import Any

import orjson

from kq_pipeline.gcpause import gc_paused

_META = b'"metadata":{'
_ITEMS = b',"items":'


def _object_at(body: bytes, start: int) -> tuple[dict[str, Any], int] | None:
    """The flat JSON object starting at body[start] ('{') and the index just after it."""
    end = body.find(b"}", start)
    if end < 0:
        return None
    try:
        value = orjson.loads(body[start : end + 1])
    except orjson.JSONDecodeError:
        return None
    return (value, end + 1) if isinstance(value, dict) else None


def list_metadata(body: bytes) -> dict[str, Any] | None:
    """The list's `metadata` object, or None when the body is not laid out as the API server writes it."""
    items = body.find(_ITEMS)
    head = body.find(_META, 0, items if items >= 0 else len(body))
    if head >= 0 and items >= 0:
        found = _object_at(body, head + len(_META) - 1)
        if found is not None and found[1] == items:
            try:  # the head must itself be a JSON object: `{"kind":..,"metadata":{..}` + `}`
                prefix = orjson.loads(body[:items] + b"}")
            except orjson.JSONDecodeError:
                return None
            return found[0] if isinstance(prefix, dict) and prefix.get("metadata") == found[0] else None
    tail = body.rfind(b"," + _META)
    if tail >= 0:
        found = _object_at(body, tail + len(_META))
        if found is not None and body[found[1] :].strip() == b"}":
            return found[0]
    return None


def continue_token(body: bytes) -> str | None:
    """The continue token of a list page (None on the last page); parses the body only if it must."""
    meta = list_metadata(body)
    if meta is None:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None  # the consumer's parse reports the malformed body
        meta = doc.get("metadata") if isinstance(doc, dict) else None
        if not isinstance(meta, dict):
            return None
    token = meta.get("continue")
    return token if isinstance(token, str) and token else None


class MalformedList(ValueError):
    """A list page body that is not a JSON object with an `items` array (one message argument)."""


def list_items(body: bytes) -> list[dict[str, Any]]:
    """The `items` of a list page body, parsed with the GC paused (see `gcpause`)."""
    try:
        with gc_paused():
            doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedList(f"malformed JSON ({exc.msg} at byte {exc.pos})") from None
    if not isinstance(doc, dict):
        raise MalformedList("list response is not a JSON object")
    items = doc.get("items")
    if items is None:
        return []
    if not isinstance(items, list):
        raise MalformedList("list response has no items array")
    return items
