"""Money: integer fen, fixed-scale unit prices, and the one declared rounding rule.

Why this module exists: every money path in suanwang goes through these few
helpers, so that no float, unknown currency or silent rounding can slip in.

Invariants owned here
- An amount of money is an ``int`` number of fen (分, 1/100 yuan).  ``bool`` and
  ``float`` are rejected everywhere, ``Decimal`` only if it is integral.
- A unit price (fen per unit) is a ``Decimal`` with exactly ``PRICE_PLACES`` (4)
  decimal places of fen; finer input is rejected rather than rounded.
- Exact intermediate amounts are ``Decimal``; they become fen only through
  :func:`round_fen`, which uses ``ROUNDING`` (banker's rounding, ROUND_HALF_EVEN)
  and returns the residue so that callers account for it (:func:`round_ratio` is
  the same rule on a numerator and denominator, for hot paths in integers).
- Only ``CNY`` is supported; anything else raises :class:`InvalidSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from fractions import Fraction
from typing import overload

from suanwang.errors import InvalidSpec

Fen = int
Exact = Decimal | Fraction  # an exact, not yet rounded amount of fen
CURRENCY = "CNY"
SUPPORTED_CURRENCIES = frozenset({CURRENCY})
PRICE_PLACES = 4
PRICE_QUANTUM = Decimal(1).scaleb(-PRICE_PLACES)  # 0.0001 fen
ROUNDING = ROUND_HALF_EVEN  # the declared rounding mode of every fen amount
FEN_PER_YUAN = 100
# No single amount or unit price beyond ¥10 trillion: thousands of them still sum inside a signed 64-bit
# balance, which is what every store keeps.
MAX_FEN = 10**15


def check_currency(currency: str) -> str:
    """Return ``currency`` if supported, else raise InvalidSpec naming it."""
    if currency not in SUPPORTED_CURRENCIES:
        raise InvalidSpec(f"unknown currency {currency!r}: only CNY is supported", currency=currency)
    return currency


def check_fen(value: object, what: str = "amount") -> Fen:
    """Return ``value`` if it is an ``int`` (not bool), else raise InvalidSpec."""
    if type(value) is int:  # the common case, decided at once
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSpec(f"{what} must be an integer number of fen, got {type(value).__name__}", value=repr(value))
    return value


def _to_decimal(value: object, what: str) -> Decimal:
    if isinstance(value, bool | float):
        raise InvalidSpec(f"{what} must not be a float or bool (money is exact): {value!r}")
    if isinstance(value, Decimal | int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation as exc:
            raise InvalidSpec(f"{what} is not a number: {value!r}") from exc
    else:
        raise InvalidSpec(f"{what} must be str, int or Decimal, got {type(value).__name__}")
    if not result.is_finite():
        raise InvalidSpec(f"{what} must be finite: {value!r}")
    return result


def _within_bounds(number: Decimal, what: str) -> Decimal:
    if abs(number) > MAX_FEN:
        raise InvalidSpec(f"{what} is beyond {MAX_FEN:,} fen (¥10 trillion), the most one amount may be")
    return number


def parse_fen(value: object, *, currency: str = CURRENCY, what: str = "amount") -> Fen:
    """Parse an amount of fen from ``int``, integral ``Decimal`` or a string like ``"1234"``.

    Raises InvalidSpec for float, bool, fractional fen or an unknown currency.
    """
    check_currency(currency)
    number = _within_bounds(_to_decimal(value, what), what)
    if number != number.to_integral_value():
        raise InvalidSpec(f"{what} must be a whole number of fen: {value!r}")
    return int(number)


def parse_yuan(value: object, *, currency: str = CURRENCY, what: str = "amount") -> Fen:
    """Parse yuan (``"12.34"``) into fen (1234); more than two decimals is rejected."""
    check_currency(currency)
    number = _within_bounds(_to_decimal(value, what) * FEN_PER_YUAN, what)
    if number != number.to_integral_value():
        raise InvalidSpec(f"{what} has more than two decimal places of yuan: {value!r}")
    return int(number)


def parse_price(value: object, *, what: str = "unit price") -> Decimal:
    """Parse a unit price in fen with at most 4 decimal places; returns it at scale 4."""
    number = _within_bounds(_to_decimal(value, what), what)
    quantized = number.quantize(PRICE_QUANTUM)
    if quantized != number:
        raise InvalidSpec(f"{what} has more than {PRICE_PLACES} decimal places of fen: {value!r}")
    if quantized < 0:
        raise InvalidSpec(f"{what} must not be negative: {value!r}")
    return quantized


def parse_bounded(value: object, *, what: str, low: Decimal | int, high: Decimal | int, places: int = PRICE_PLACES,
                  low_open: bool = False) -> Decimal:
    """An exact number within ``[low, high]`` (``(low, high]`` with ``low_open``) with at most ``places``
    decimal places, else InvalidSpec naming ``what``.

    Checked on the Decimal's exponent and by comparison only, so ``1e999999`` or ``1e-999999`` is refused
    without building the integer or fraction it stands for (what a multiplier or percentage later becomes).
    """
    number = _to_decimal(value, what)
    shown = str(value)[:40]
    if number < low or number > high or (low_open and number == low):
        bound = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
        raise InvalidSpec(f"{what} must lie within {bound}: {shown}", value=shown)
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite: _to_decimal refused the rest
    zeros = 0
    for d in reversed(digits):  # 1.2500 has 2 places, not 4
        if d:
            break
        zeros += 1
    if number and exponent + zeros < -places:
        raise InvalidSpec(f"{what} has more than {places} decimal places: {shown}", value=shown)
    return number


def parse_quantity(value: object, *, what: str = "quantity") -> Decimal:
    """Parse a non-negative exact quantity (units, hours, percent)."""
    number = _to_decimal(value, what)
    if number < 0:
        raise InvalidSpec(f"{what} must not be negative: {value!r}")
    return number


@overload
def round_fen(exact: Decimal) -> tuple[Fen, Decimal]: ...
@overload
def round_fen(exact: Fraction) -> tuple[Fen, Fraction]: ...
def round_fen(exact: Exact) -> tuple[Fen, Exact]:
    """Round an exact fen amount (``Decimal`` or ``Fraction``) to whole fen, half to even.

    This (with :func:`round_ratio`, the same rule in integers) is the only place
    fen are rounded.  Returns ``(fen, residue)`` with
    ``fen + residue == exact`` exactly, so the caller can account for the
    sub-fen residue (|residue| <= 0.5).
    """
    if isinstance(exact, Decimal):
        fen = int(exact.quantize(Decimal(1), rounding=ROUNDING))
        return fen, exact - fen
    if isinstance(exact, Fraction):
        fen = round_ratio(exact.numerator, exact.denominator)
        return fen, exact - fen
    raise TypeError(f"round_fen takes a Decimal or Fraction, got {type(exact).__name__}")


def round_ratio(numerator: int, denominator: int) -> Fen:
    """``numerator / denominator`` fen (denominator > 0) rounded half to even, in integers:
    :func:`round_fen`'s rule (and ``Fraction.__round__``'s) without building a Fraction."""
    if denominator <= 0:
        raise ValueError(f"round_ratio needs a positive denominator, got {denominator}")
    fen, remainder = divmod(numerator, denominator)
    twice = remainder * 2
    if twice > denominator or (twice == denominator and fen % 2):
        fen += 1
    return fen


def apply_bps(amount: Fen, bps: int) -> Fen:
    """``amount * bps / 10000`` rounded half-even: a fee or share in basis points."""
    check_fen(amount)
    if isinstance(bps, bool) or not isinstance(bps, int) or not 0 <= bps <= 10_000:
        raise InvalidSpec(f"basis points must be an int within 0..10000, got {bps!r}")
    return round_fen(Fraction(amount * bps, 10_000))[0]


def format_yuan(fen: Fen) -> str:
    """``1234`` -> ``"12.34"`` (for statements and CSV)."""
    check_fen(fen)
    sign = "-" if fen < 0 else ""
    whole, part = divmod(abs(fen), FEN_PER_YUAN)
    return f"{sign}{whole}.{part:02d}"


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in fen with its currency; the shape the API edge exchanges."""

    fen: Fen
    currency: str = CURRENCY

    def __post_init__(self) -> None:
        check_fen(self.fen)
        check_currency(self.currency)

    @classmethod
    def parse(cls, value: object, currency: str = CURRENCY) -> Money:
        return cls(parse_fen(value, currency=currency), currency)

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.fen + other.fen, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.fen - other.fen, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.fen, self.currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise InvalidSpec(f"cannot combine {self.currency} with {other.currency}")

    def __str__(self) -> str:
        return f"{format_yuan(self.fen)} {self.currency}"
