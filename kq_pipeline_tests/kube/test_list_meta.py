"""A list page's continue token is read from its metadata alone, and only layouts proven safe are trusted."""

from __future__ import annotations

import json

import orjson
import pytest

from kq_pipeline.kube.list_meta import MalformedList, continue_token, list_items, list_metadata

ITEMS = [{"metadata": {"name": "a", "labels": {"x": "}"}}}, {"metadata": {"name": "b"}}]


def test_built_in_list_layout_metadata_first() -> None:
    body = orjson.dumps(
        {
            "kind": "PodList",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": "7", "continue": "tok", "remainingItemCount": 3},
            "items": ITEMS,
        }
    )
    assert list_metadata(body) == {"resourceVersion": "7", "continue": "tok", "remainingItemCount": 3}
    assert continue_token(body) == "tok"


def test_custom_resource_layout_sorted_keys_metadata_last() -> None:
    body = orjson.dumps(
        {"apiVersion": "x/v1", "items": ITEMS, "kind": "FooList", "metadata": {"continue": "t2"}},
        option=orjson.OPT_SORT_KEYS,
    )
    assert body.index(b'"items"') < body.index(b'"kind"')
    assert continue_token(body) == "t2"


def test_last_page_has_no_token() -> None:
    body = orjson.dumps({"kind": "PodList", "metadata": {"resourceVersion": "7"}, "items": ITEMS})
    assert list_metadata(body) == {"resourceVersion": "7"}
    assert continue_token(body) is None
    empty_token = orjson.dumps({"kind": "PodList", "metadata": {"continue": ""}, "items": []})
    assert continue_token(empty_token) is None


@pytest.mark.parametrize(
    "doc",
    [
        # metadata neither first nor last; then metadata that is not flat
        {"items": ITEMS, "metadata": {"continue": "t3"}, "kind": "PodList"},
        {"kind": "PodList", "metadata": {"continue": "t3", "odd": {"nested": 1}}, "items": ITEMS},
    ],
)
def test_unusual_layouts_fall_back_to_a_full_parse(doc: dict[str, object]) -> None:
    body = orjson.dumps(doc)
    assert list_metadata(body) is None
    assert continue_token(body) == "t3"


def test_pretty_printed_bodies_still_page() -> None:
    body = json.dumps({"kind": "PodList", "metadata": {"continue": "t4"}, "items": ITEMS}, indent=2).encode()
    assert continue_token(body) == "t4"


def test_a_tail_metadata_inside_the_last_item_is_not_taken_for_the_lists() -> None:
    body = orjson.dumps({"kind": "PodList", "items": [{"metadata": {"continue": "not-mine"}}], "x": 1})
    assert list_metadata(body) is None
    assert continue_token(body) is None


def test_items_are_parsed_and_bad_bodies_are_malformed_lists() -> None:
    assert list_items(orjson.dumps({"kind": "PodList", "items": ITEMS})) == ITEMS
    assert list_items(orjson.dumps({"kind": "PodList", "items": None})) == []
    with pytest.raises(MalformedList, match="malformed JSON"):
        list_items(b'{"items": [')
    with pytest.raises(MalformedList, match="not a JSON object"):
        list_items(b"[1, 2]")
    with pytest.raises(MalformedList, match="no items array"):
        list_items(b'{"items": 3}')
    assert continue_token(b'{"items": [') is None  # the consumer's parse reports it
