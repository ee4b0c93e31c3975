from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shm import fixedpoint as fp
from shm.fixedpoint import format_decimal, parse


def parse_code(text: str, decimals: int, signed: bool = False) -> tuple[int, int]:
    buf = np.frombuffer(text.encode(), np.uint8)
    value, err = fp.parse_decimal(buf, 0, len(buf), decimals, signed)
    return int(value), int(err)


def test_parses_decimal_text_to_mantissa_at_instrument_decimals():
    assert parse("45285.2", 1) == 452852
    assert parse("0.00100000", 8) == 100000
    assert parse("12", 2) == 1200


def test_accepts_leading_zeros_missing_fraction_and_extra_zero_digits():
    assert parse("0012.3400", 2) == 1234
    assert parse("5.", 3) == 5000
    assert parse(".5", 1) == 5
    assert parse("1.50000000000", 2) == 150


def test_rejects_nonzero_digits_beyond_the_allowed_decimals():
    assert parse_code("1.2345", 3) == (0, fp.ERR_PRECISION)


@pytest.mark.parametrize("text", ["-1.5", "+1.5"])
def test_rejects_a_sign_where_none_is_allowed(text):
    assert parse_code(text, 2) == (0, fp.ERR_SIGN)


def test_accepts_a_sign_when_signed():
    assert parse("-1.5", 2, signed=True) == -150
    assert parse("+1.5", 2, signed=True) == 150


@pytest.mark.parametrize("text, code", [
    ("1e-05", fp.ERR_EXPONENT), ("8.75E+3", fp.ERR_EXPONENT), ("NaN", fp.ERR_NOT_FINITE),
    ("inf", fp.ERR_NOT_FINITE), ("-Infinity", fp.ERR_NOT_FINITE), ("", fp.ERR_EMPTY), (".", fp.ERR_EMPTY),
    ("1.2.3", fp.ERR_CHAR), ("12a", fp.ERR_CHAR), (" 1", fp.ERR_CHAR), ("1-2", fp.ERR_CHAR),
    ("null", fp.ERR_CHAR), ("0x10", fp.ERR_CHAR),
])
def test_reports_malformed_numbers_with_an_error_code(text, code):
    assert parse_code(text, 4, signed=True) == (0, code)


def test_reports_overflow_instead_of_wrapping():
    assert parse_code("9223372036854775807", 0) == (9223372036854775807, fp.OK)
    assert parse_code("9223372036854775808", 0) == (0, fp.ERR_OVERFLOW)
    assert parse_code("92233720368547758.08", 2) == (0, fp.ERR_OVERFLOW)
    assert parse_code("100000000000", 9) == (0, fp.ERR_OVERFLOW)


def test_rejects_decimals_outside_0_to_18():
    assert parse_code("1", 19) == (0, fp.ERR_DECIMALS)


def test_parses_a_slice_of_a_larger_frame():
    frame = np.frombuffer(b'{"p":"123.45","q":"0.5"}', np.uint8)
    assert tuple(fp.parse_decimal(frame, 6, 12, 2, False)) == (12345, fp.OK)


def test_python_parse_raises_naming_the_problem():
    with pytest.raises(ValueError, match="exponent"):
        parse("1e5", 2)


def test_formats_exact_text_with_all_decimals():
    assert format_decimal(452852, 1) == "45285.2"
    assert format_decimal(100000, 8) == "0.00100000"
    assert format_decimal(-5, 2) == "-0.05"
    assert format_decimal(0, 0) == "0"
    assert format_decimal(-9223372036854775808, 4) == "-922337203685477.5808"


decimals = st.integers(min_value=0, max_value=18)


@given(st.decimals(allow_nan=False, allow_infinity=False, min_value=Decimal("-1e19"), max_value=Decimal("1e19")),
       decimals)
def test_parse_agrees_with_decimal(value: Decimal, places: int):
    mantissa = value.scaleb(places)
    integral = mantissa == mantissa.to_integral_value()
    in_range = -(2**63) < mantissa < 2**63
    got, err = parse_code(format(value, "f"), places, signed=True)
    if integral and in_range:
        assert (got, err) == (int(mantissa), fp.OK)
    else:
        expected = {fp.ERR_PRECISION} if not integral else set()
        expected |= {fp.ERR_OVERFLOW} if not in_range else set()
        assert err in expected


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1), decimals)
def test_format_agrees_with_decimal_and_parses_back(value: int, places: int):
    text = format_decimal(value, places)
    assert Decimal(text) == Decimal(value).scaleb(-places)
    assert len(text.partition(".")[2]) == places
    if value != -(2**63):
        assert parse(text, places, signed=True) == value
