"""metav1.Time values: unix seconds in rows, RFC3339 UTC in JSON, Go's zero time special."""

from __future__ import annotations

import pytest

from kq_pipeline.rows.gotime import InvalidTimeError, is_zero_time, time_json, unix_seconds


def test_offsets_are_honoured_and_fractions_dropped() -> None:
    assert unix_seconds("2021-01-20T20:08:52-05:00") == "1611191332"
    assert unix_seconds("2021-01-21T01:08:52.999Z") == "1611191332"
    assert time_json("2021-01-20T20:08:52-05:00") == '"2021-01-21T01:08:52Z"'


def test_zero_time_is_zero_in_rows_and_null_in_json() -> None:
    assert unix_seconds("0001-01-01T00:00:00Z") == "0"
    assert unix_seconds(None) == "0"
    assert time_json("0001-01-01T00:00:00Z") == "null"
    assert is_zero_time(None) and is_zero_time("0001-01-01T00:00:00Z")
    assert not is_zero_time("1970-01-01T00:00:00Z")


def test_not_rfc3339_is_rejected() -> None:
    with pytest.raises(InvalidTimeError):
        unix_seconds("yesterday")
