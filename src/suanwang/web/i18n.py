"""Languages of the console: gettext catalogues (Babel) and per-locale numbers, money and dates.

English is the source language; ``locale/zh_CN/LC_MESSAGES/messages.po`` holds the Chinese, compiled to the
``.mo`` shipped beside it (``pybabel compile -d src/suanwang/web/locale``; a test holds the two equal).
The locale comes from the language switch's cookie, else the browser's Accept-Language, else zh-CN.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path

from babel import Locale
from babel.dates import format_datetime
from babel.numbers import format_currency, format_decimal
from babel.support import NullTranslations, Translations

LOCALES = ("zh_CN", "en")
DEFAULT = "zh_CN"
_DIR = Path(__file__).parent / "locale"


@cache
def translations(locale: str) -> NullTranslations:
    if locale == "en":
        return NullTranslations()
    return Translations.load(str(_DIR), [locale], domain="messages")


def choose(cookie: str | None, accept_language: str | None) -> str:
    """The cookie's choice when it names a known locale, else the best of Accept-Language, else zh_CN."""
    if cookie in LOCALES:
        return cookie  # type: ignore[return-value]
    ranked: list[tuple[float, str]] = []
    for part in (accept_language or "")[:500].split(","):
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            continue
        lang = tag.strip().lower()
        if lang.startswith("zh"):
            ranked.append((weight, "zh_CN"))
        elif lang.startswith("en"):
            ranked.append((weight, "en"))
    return max(ranked, key=lambda r: r[0])[1] if ranked else DEFAULT


def html_lang(locale: str) -> str:
    return "zh-CN" if locale == "zh_CN" else "en"


def yuan(fen: int | str | Decimal | None, locale: str) -> str:
    """Integer fen shown as yuan with the locale's currency form (¥1,234.56)."""
    if fen is None or fen == "":
        return "—"
    amount = Decimal(str(fen)) / 100
    return format_currency(amount, "CNY", locale=Locale.parse(locale), currency_digits=True)


def fen(value: int | str | Decimal | None, locale: str) -> str:
    """A price in fen (分), to as many places as it has."""
    if value is None or value == "":
        return "—"
    return format_decimal(Decimal(str(value)), locale=Locale.parse(locale), decimal_quantization=False)


def number(value: float | int | str | Decimal, locale: str) -> str:
    return format_decimal(Decimal(str(value)), locale=Locale.parse(locale), decimal_quantization=False)


def when(at: float | str | datetime | None, locale: str) -> str:
    """A date and time in UTC, in the locale's medium form."""
    if at is None or at == "":
        return "—"
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    elif not isinstance(at, datetime):
        at = datetime.fromtimestamp(float(at), UTC)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return format_datetime(at, "medium", tzinfo=UTC, locale=Locale.parse(locale)) + " UTC"
