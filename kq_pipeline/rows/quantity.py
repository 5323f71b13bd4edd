"""`resource.Quantity` as apimachinery v0.21 prints it after a JSON round trip.

kubequery decodes every quantity (`ParseQuantity`) and marshals it again, so "1000m" comes out as "1"
and "0.5" as "500m". ParseQuantity keeps the input string when its fast path finds it canonical
(the `s` cache), which is why "+1" or "1E3" survive verbatim; that rule is reproduced too.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX = {v: k for k, v in _DECIMAL.items()}
_BINARY_SUFFIX = {v // 10: k for k, v in _BINARY.items()} | {0: ""}
_MAX_INT64 = (1 << 63) - 1
_NUMBER = re.compile(r"([+-]?)(0*)([0-9]*)(?:\.([0-9]*))?(.*)\Z", re.S)
_EXPONENT = re.compile(r"[eE][+-]?[0-9]+\Z")

_cache: dict[str, str] = {}


class InvalidQuantityError(ValueError):
    """A string that `resource.ParseQuantity` rejects (Go's decoder would fail the whole list)."""


def _interpret(suffix: str) -> tuple[int, int, str]:
    """(base, exponent, format) like apimachinery's suffixer.interpret."""
    if suffix in _DECIMAL:
        return 10, _DECIMAL[suffix], "DecimalSI"
    if suffix in _BINARY:
        return 2, _BINARY[suffix], "BinarySI"
    if _EXPONENT.match(suffix):
        return 10, int(suffix[1:]), "DecimalExponent"
    raise InvalidQuantityError(f"invalid quantity suffix {suffix!r}")


def _cached_input(positive: bool, num: str, denom: str, base: int, exponent: int, fmt: str) -> bool:
    """Whether ParseQuantity's int64 fast path keeps the input string as the canonical form."""
    if fmt == "BinarySI":
        if not (exponent >= 0 and not denom):
            return False
        precision = 15 - len(num) - int(exponent * 3 / 10) - 1
        scale = 0
        mantissa = 1 << exponent
    else:
        precision = 18 - (len(num) + len(denom))
        scale = exponent
        mantissa = 1
    if precision < 0:
        return False
    scale -= len(denom)
    if scale < -9:
        return False
    shifted = num + denom
    value = int(shifted)
    if value * mantissa > _MAX_INT64:
        return False
    if fmt == "BinarySI":
        return exponent % 10 == 0 and (value & 0x07) != 0
    return scale % 3 == 0 and not shifted.endswith("000") and shifted[0] != "0"


def _canonical(text: str) -> str:
    match = _NUMBER.match(text)
    if match is None:  # pragma: no cover - the regex matches every string
        raise InvalidQuantityError(f"invalid quantity {text!r}")
    sign, _zeros, num, denom, suffix = match.groups()
    if not text or text in "+-" or (not num and not _zeros and not denom):
        raise InvalidQuantityError(f"invalid quantity {text!r}")
    num = num or "0"
    denom = denom or ""
    base, exponent, fmt = _interpret(suffix)
    positive = sign != "-"
    if _cached_input(positive, num, denom, base, exponent, fmt):
        return text

    amount = Fraction(int(num + denom), 10 ** len(denom)) * Fraction(base) ** exponent
    # Round the magnitude up to nano precision (inf.RoundUp), as ParseQuantity does.
    nanos = amount * 1_000_000_000
    if nanos.denominator != 1:
        amount = Fraction(-(-nanos.numerator // nanos.denominator), 1_000_000_000)
    if fmt == "BinarySI" and amount > _MAX_INT64:
        amount = Fraction(_MAX_INT64)
    if fmt == "BinarySI" and 0 < amount < 1:
        fmt = "DecimalSI"
    if amount == 0:
        return "0"
    signed = amount if positive else -amount

    if fmt == "BinarySI":
        if -1024 < signed < 1024 or amount.denominator != 1:
            fmt = "DecimalSI"
        else:
            mantissa, times = int(amount), 0
            while mantissa >= 1024 and mantissa % 1024 == 0:
                mantissa //= 1024
                times += 1
            return f"{'' if positive else '-'}{mantissa}{_BINARY_SUFFIX[times]}"

    # Decimal: mantissa * 10**exp with no factor of ten left, exp floored to a multiple of 3.
    exp = 0
    while amount.denominator != 1:
        amount *= 10
        exp -= 1
    mantissa = int(amount)
    while mantissa >= 10 and mantissa % 10 == 0:
        mantissa //= 10
        exp += 1
    shift = exp % 3
    mantissa *= 10**shift
    exp -= shift
    if fmt == "DecimalExponent":
        suffix_out = f"e{exp}" if exp else ""
    else:
        while exp > 18:  # beyond "E": apimachinery has no suffix; keep the value exact
            mantissa *= 1000
            exp -= 3
        suffix_out = _DECIMAL_SUFFIX[exp]
    return f"{'' if positive else '-'}{mantissa}{suffix_out}"


def canonical_quantity(value: Any) -> str:
    """The string Go writes for a decoded Quantity (JSON numbers are accepted as Go does)."""
    if value is None:
        return "0"
    text = value if isinstance(value, str) else str(value)
    out = _cache.get(text)
    if out is None:
        out = _canonical(text.strip())
        if len(_cache) < 65536:
            _cache[text] = out
    return out


def quantity_string(value: Any) -> str:
    """`(*Quantity).String()`: "<nil>" for a nil pointer (empty_dir_size_limit)."""
    return "<nil>" if value is None else canonical_quantity(value)
