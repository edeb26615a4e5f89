from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanwang.domain.money import (
    MAX_FEN,
    Money,
    apply_bps,
    format_yuan,
    parse_fen,
    parse_price,
    parse_yuan,
    round_fen,
)
from suanwang.errors import InvalidSpec


def test_parse_fen_accepts_int_string_and_integral_decimal() -> None:
    assert parse_fen(1234) == 1234
    assert parse_fen(" -5 ") == -5
    assert parse_fen(Decimal("12.00")) == 12
    assert type(parse_fen(Decimal("12.00"))) is int


@pytest.mark.parametrize("value", [1.0, 0.1, True, float("nan")])
def test_parse_fen_rejects_float_and_bool(value: object) -> None:
    with pytest.raises(InvalidSpec, match="float"):
        parse_fen(value)


def test_parse_fen_rejects_fractional_fen() -> None:
    with pytest.raises(InvalidSpec, match="whole number of fen"):
        parse_fen("12.5")


@pytest.mark.parametrize("currency", ["USD", "cny", "RMB", ""])
def test_unknown_currency_is_rejected_by_name(currency: str) -> None:
    with pytest.raises(InvalidSpec, match="unknown currency") as info:
        parse_fen(1, currency=currency)
    assert repr(currency) in str(info.value)
    with pytest.raises(InvalidSpec, match="only CNY"):
        Money(1, currency)


def test_parse_yuan_converts_to_fen_and_rejects_sub_fen() -> None:
    assert parse_yuan("12.34") == 1234
    assert parse_yuan("-0.01") == -1
    with pytest.raises(InvalidSpec, match="two decimal places"):
        parse_yuan("12.345")


def test_unit_prices_keep_four_places_and_refuse_finer_or_negative() -> None:
    price = parse_price("1.5")
    assert price == Decimal("1.5000") and price.as_tuple().exponent == -4
    with pytest.raises(InvalidSpec, match="4 decimal places"):
        parse_price("0.00001")
    with pytest.raises(InvalidSpec, match="negative"):
        parse_price("-1")
    with pytest.raises(InvalidSpec, match="float"):
        parse_price(1.5)


def test_round_fen_is_half_even_for_decimal_and_fraction() -> None:
    assert round_fen(Decimal("2.5")) == (2, Decimal("0.5"))
    assert round_fen(Decimal("3.5")) == (4, Decimal("-0.5"))
    assert round_fen(Fraction(5, 2))[0] == 2
    assert round_fen(Fraction(-7, 2))[0] == -4
    with pytest.raises(TypeError):
        round_fen(2.5)  # type: ignore[call-overload]


@given(st.fractions(min_value=-(10**9), max_value=10**9))
def test_round_fen_accounts_for_its_residue(exact: Fraction) -> None:
    fen, residue = round_fen(exact)
    assert type(fen) is int
    assert fen + residue == exact
    assert abs(residue) <= Fraction(1, 2)


@given(st.integers(0, 10**12), st.integers(0, 10_000))
def test_fee_in_basis_points_never_exceeds_the_amount(amount: int, bps: int) -> None:
    fee = apply_bps(amount, bps)
    assert 0 <= fee <= amount
    assert abs(Fraction(fee) - Fraction(amount * bps, 10_000)) <= Fraction(1, 2)


def test_apply_bps_rejects_out_of_range_basis_points() -> None:
    with pytest.raises(InvalidSpec, match=r"0\.\.10000"):
        apply_bps(100, 10_001)


def test_money_adds_within_one_currency_and_formats_as_yuan() -> None:
    total = Money(150) + Money.parse("25") - Money(1)
    assert total == Money(174)
    assert str(-total) == "-1.74 CNY"
    assert format_yuan(5) == "0.05"
    with pytest.raises(InvalidSpec, match="integer number of fen"):
        Money(1.5)  # type: ignore[arg-type]


@given(st.integers(min_value=-(2**80), max_value=2**80))
def test_an_amount_parses_only_within_what_a_balance_can_hold(fen: int) -> None:
    # Thousands of the largest amounts still sum inside a signed 64-bit balance.
    assert MAX_FEN * 9_000 < 2**63
    if abs(fen) <= MAX_FEN:
        assert parse_fen(fen) == fen and parse_price(abs(fen)) == abs(fen)
    else:
        for parse in (parse_fen, parse_price, lambda v: parse_yuan(Decimal(v) / 100)):
            with pytest.raises(InvalidSpec, match="beyond"):
                parse(fen)
