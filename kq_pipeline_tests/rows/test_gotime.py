"""metav1.Time values: unix seconds in rows, RFC3339 UTC in JSON, Go's zero time special."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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


@pytest.mark.parametrize(
    "text",
    [
        "2024-02-29T23:59:59Z",  # leap day
        "1970-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",  # before the epoch
        "0999-06-01T12:00:00Z",  # three-digit year, written with four digits
        "0001-01-01T00:00:01Z",  # a second after the zero time
        "9999-12-31T23:59:59Z",
    ],
)
def test_times_already_in_gos_form_render_like_the_general_path(text: str) -> None:
    instant = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    assert time_json(text) == '"' + instant.strftime("%Y-%m-%dT%H:%M:%SZ").rjust(20, "0") + '"' == f'"{text}"'
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert unix_seconds(text) == str((instant - epoch) // timedelta(seconds=1))


@pytest.mark.parametrize("text", ["2023-02-29T00:00:00Z", "2024-01-01T24:00:00Z", "2024-01-01T00:00:60Z"])
def test_go_shaped_but_impossible_times_are_rejected(text: str) -> None:
    with pytest.raises(InvalidTimeError):
        time_json(text)
    with pytest.raises(InvalidTimeError):
        unix_seconds(text)
