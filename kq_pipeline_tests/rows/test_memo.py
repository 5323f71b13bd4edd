"""Memoising column renderers: same bytes as the general encoder, hit or miss, on or off."""

from __future__ import annotations

from kq_pipeline.rows import memo
from kq_pipeline.rows.gojson import escape_html, value_encoder


def _general(go_type: str, value: object) -> str:
    return escape_html(value_encoder(go_type)(value))


def test_repeated_and_distinct_values_render_like_the_general_encoder() -> None:
    render = memo.memo_encoder("map[string]string")
    values = [{"a": "1"}, {"b": "<2>"}, {"a": "1"}, {"z": "1", "a": "2"}, {}, {"a": "1"}]
    assert [render(v) for v in values] == [_general("map[string]string", v) for v in values]


def test_keys_tell_json_values_apart() -> None:
    """1, 1.0 and true must not share a memo entry (repr and orjson both distinguish them)."""
    render = memo.memo_encoder("[]int64")
    assert render([1]) == "[1]"
    assert render([True]) == _general("[]int64", [True])
    assert render([1.0]) == _general("[]int64", [1.0])


def test_values_orjson_cannot_key_are_keyed_by_repr() -> None:
    render = memo.memo_encoder("[]string")
    for value in (["\ud800"], ["\ud800"]):
        assert render(value) == _general("[]string", value)
    assert memo.memo_encoder("[]int64")([2**70]) == f"[{2**70}]"


def test_a_column_of_unique_values_stops_memoising_after_the_trial() -> None:
    plains: list[object] = []
    render = memo.memo_encoder("map[string]string", on_disable=plains.append)
    for n in range(memo.TRIAL):
        assert render({"id": str(n)}) == f'{{"id":"{n}"}}'
    assert len(plains) == 1
    assert render({"id": "x"}) == plains[0]({"id": "x"}) == '{"id":"x"}'  # type: ignore[operator]


def test_memo_keys_are_right_sized() -> None:
    """orjson's `dumps` result keeps its ~4 KB growth buffer; a memo must not keep that buffer alive."""
    import gc
    import tracemalloc

    render = memo.memo_encoder("map[string]string")
    values = [{"k": str(n)} for n in range(500)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for v in values:
            render(v)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 500 * 400  # ~200 bytes an entry; with orjson's buffers as keys it was > 4,000


def test_the_memos_together_hold_at_most_max_bytes(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(memo, "MAX_BYTES", 50_000)
    monkeypatch.setattr(memo, "TRIAL", 10**9)  # unique values: keep memoising, to fill the memos
    memo.clear_all()
    renders = [memo.memo_encoder("map[string]string") for _ in range(3)]
    for n in range(3000):
        value = {"id": str(n % 900), "pad": "x" * 40}
        for render in renders:
            assert render(value) == _general("map[string]string", value)
            assert memo.held_bytes() <= memo.MAX_BYTES
    assert memo.held_bytes() > 0
    memo.clear_all()
    assert memo.held_bytes() == 0
