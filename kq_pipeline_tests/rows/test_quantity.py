"""resource.Quantity after a decode/encode round trip in apimachinery v0.21."""

from __future__ import annotations

import pytest

from kq_pipeline.rows.quantity import InvalidQuantityError, canonical_quantity, quantity_string


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("1000m", "1"),
        ("0.5", "500m"),
        ("1.5", "1500m"),
        ("250m", "250m"),
        ("1000", "1k"),
        ("1024Mi", "1Gi"),
        ("1536Mi", "1536Mi"),
        ("1.5Gi", "1536Mi"),
        ("0.5Ki", "512"),
        ("2048Ki", "2Mi"),
        ("32411744Ki", "32411744Ki"),
        ("128974848", "128974848"),
        ("129e6", "129e6"),
        ("1e3", "1e3"),
        ("0", "0"),
        ("0Mi", "0"),
        ("1n", "1n"),
        ("0.1n", "1n"),  # rounded up to nano precision
        ("-1000m", "-1"),
        (2, "2"),
    ],
)
def test_canonical_form(given: object, canonical: str) -> None:
    assert canonical_quantity(given) == canonical


def test_nil_quantity_string_is_go_nil() -> None:
    assert quantity_string(None) == "<nil>"
    assert quantity_string("1Gi") == "1Gi"


def test_invalid_quantity_is_rejected() -> None:
    with pytest.raises(InvalidQuantityError):
        canonical_quantity("12zz")
