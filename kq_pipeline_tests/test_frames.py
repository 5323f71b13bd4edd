"""to_frame: kubequery's string rows become one typed frame per table, and nothing unstorable
passes silently (it is made safe and counted, or its row is rejected with a reason)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from kq_pipeline.frames import Rejection, to_frame
from kq_pipeline.registry import TABLES, UnknownTableError


def pod(i: int, **extra: str) -> dict[str, str]:
    row = {
        "uid": f"uid-{i}",
        "cluster_uid": "cuid",
        "name": f"pod-{i}",
        "namespace": "default",
        "creation_timestamp": "1611191305",
        "labels": json.dumps({"app": "web"}),
        "host_network": "0",
        "priority": "0",
        "node_name": "node-1",
    }
    row.update(extra)
    return row


def test_frame_has_exactly_the_registry_columns_in_order_with_nullable_types():
    typed = to_frame("kubernetes_pods", [pod(0), pod(1)], cluster_name="c1")
    frame = typed.frame
    table = TABLES["kubernetes_pods"]
    assert tuple(frame.columns) == table.column_names
    for col in table.columns:
        expected = "Int64" if col.kq_type in ("INTEGER", "BIGINT") else "object"
        assert str(frame[col.name].dtype) == expected, col.name
    assert frame["creation_timestamp"].tolist() == [1611191305, 1611191305]
    assert frame["labels"].tolist() == ['{"app": "web"}'] * 2  # JSON stays text, untouched
    assert frame["pod_ip"].isna().all()  # omitted key -> missing
    assert frame["start_time"].isna().all()
    assert typed.rejected == [] and typed.sanitized == 0


def test_cluster_name_is_set_on_every_row_whatever_the_rows_said():
    rows = [pod(0, cluster_name="other"), pod(1)]
    frame = to_frame("kubernetes_pods", rows, cluster_name="c1").frame
    assert frame["cluster_name"].tolist() == ["c1", "c1"]


def test_empty_input_gives_an_empty_frame_with_all_columns():
    typed = to_frame("kubernetes_namespaces", [], cluster_name="c1")
    assert len(typed.frame) == 0
    assert tuple(typed.frame.columns) == TABLES["kubernetes_namespaces"].column_names
    assert str(typed.frame["creation_timestamp"].dtype) == "Int64"


def test_nul_bytes_are_stripped_from_text_and_counted():
    rows = [pod(0, name="bad\x00name"), pod(1, phase="Run\x00\x00ning")]
    typed = to_frame("kubernetes_pods", rows, cluster_name="c1")
    assert typed.frame["name"].tolist() == ["badname", "pod-1"]
    assert typed.frame["phase"].tolist() == [None, "Running"]
    assert typed.sanitized == 2
    assert typed.rows_rejected == 0


def test_nul_escapes_are_removed_from_json_but_an_escaped_backslash_is_kept():
    labels = json.dumps({"a": "x\x00y", "b": "\\u0000"})  # NUL escape, and a literal backslash-u0000
    typed = to_frame("kubernetes_pods", [pod(0, labels=labels)], cluster_name="c1")
    assert json.loads(typed.frame["labels"][0]) == {"a": "xy", "b": "\\u0000"}
    assert typed.sanitized == 1


def test_lone_surrogates_are_replaced():
    typed = to_frame("kubernetes_pods", [pod(0, name="caf\udce9")], cluster_name="c1")
    assert typed.frame["name"][0] == "caf\ufffd"
    assert typed.sanitized == 1


def test_int32_overflow_rejects_the_row_with_a_reason():
    rows = [pod(0), pod(1, priority=str(2**31)), pod(2, priority=str(-(2**31)))]
    typed = to_frame("kubernetes_pods", rows, cluster_name="c1")
    assert typed.frame["name"].tolist() == ["pod-0", "pod-2"]
    assert typed.frame["priority"].tolist() == [0, -(2**31)]
    assert typed.rejected == [Rejection(1, "priority", "2147483648 is out of range for integer")]
    assert typed.rows_rejected == 1


def test_bigint_holds_what_integer_cannot_but_rejects_beyond_int64():
    rows = [pod(0, creation_timestamp=str(2**40)), pod(1, creation_timestamp=str(2**63))]
    typed = to_frame("kubernetes_pods", rows, cluster_name="c1")
    assert typed.frame["creation_timestamp"].tolist() == [2**40]
    assert [r.row_index for r in typed.rejected] == [1]


def test_unparsable_integers_and_invalid_json_reject_their_rows():
    rows = [pod(0, priority="ten"), pod(1, labels="{not json"), pod(2)]
    typed = to_frame("kubernetes_pods", rows, cluster_name="c1")
    assert typed.frame["name"].tolist() == ["pod-2"]
    by_row = {r.row_index: r for r in typed.rejected}
    assert by_row[0].column == "priority" and "not an integer" in by_row[0].reason
    assert by_row[1].column == "labels" and "not valid JSON" in by_row[1].reason
    assert typed.rows_rejected == 2


def test_one_row_with_two_bad_values_counts_once():
    typed = to_frame("kubernetes_pods", [pod(0, priority="x", host_network="y")], cluster_name="c1")
    assert len(typed.rejected) == 2
    assert typed.rows_rejected == 1
    assert len(typed.frame) == 0


def test_keys_the_table_lacks_are_reported_not_loaded():
    typed = to_frame("kubernetes_pods", [pod(0, surprise="1")], cluster_name="c1")
    assert typed.dropped_columns == ("surprise",)
    assert "surprise" not in typed.frame.columns


def test_unknown_table_is_refused():
    with pytest.raises(UnknownTableError):
        to_frame("pods; DROP TABLE x", [], cluster_name="c1")


def test_every_table_builds_from_the_conformance_cases(kubequery_data):
    for path in sorted((kubequery_data / "cases").glob("*.json")):
        case = json.loads(path.read_text())
        rows = case.get("expected_rows") or []
        typed = to_frame(case["table"], rows, cluster_name="c1")
        assert len(typed.frame) == len(rows), path.name
        assert typed.rejected == [] and typed.dropped_columns == (), path.name
        assert isinstance(typed.frame, pd.DataFrame)


def test_json_the_project_rendered_itself_is_not_parsed_again_but_any_other_is():
    """The native extractor renders JSON from parsed objects, so re-parsing it cannot fail; rows from
    kubequery's output are still checked."""
    rows = [pod(0, labels="{not json")]
    assert to_frame("kubernetes_pods", rows, cluster_name="c").rows_rejected == 1
    trusted = to_frame("kubernetes_pods", rows, cluster_name="c", validate_json=False)
    assert trusted.rows_rejected == 0 and trusted.frame["labels"].tolist() == ["{not json"]
