"""Every word a reader sees, one module per language, and how each language writes dates and numbers.

A reader is an account owner reading a digest, ops reading a notice, management reading the
portfolio report or a backtest page. Their words live in ``<code>.py`` (``de.py``, ``en.py``):
the sections DIGEST, ROUTE_REASONS, NOTICES, REPORT, BACKTEST and FEEDBACK, and the module's Babel LOCALE.
`LANGUAGES` is the modules present, so config.yaml (`digest.language`), the extract contract
(`accounts.language`) and rule files (`title: {de: …, en: …}`) accept exactly these, and
`language(code)` gives one language's words with its locale's formats (Babel, CLDR data).

A text with a count maps CLDR plural categories to texts, {"one": "1 neues Warnsignal",
"other": "{count} neue Warnsignale"}; `Language.plural` picks the form by the locale's rules, so
a language with more forms (Polish: one, few, many, other) only writes more of them.

To add a digest language: copy en.py to ``<code>.py`` (ISO 639-1), set LOCALE, translate every
text keeping its {placeholders} (tests/unit/test_i18n.py fails on a missing or extra key, a lost
placeholder, or a plural category the locale needs), and give the rules' title, message and
action a text in the language. Nothing else names the languages.
"""

from __future__ import annotations

import datetime as dt
import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal, format_percent

from loyalty_engine.errors import ConfigError

# Modules with a leading underscore are helpers, not languages.
LANGUAGES: tuple[str, ...] = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")))

# The sections every language module defines, each a mapping of key to text (or to plural forms).
SECTIONS = ("DIGEST", "ROUTE_REASONS", "NOTICES", "REPORT", "BACKTEST", "FEEDBACK")

Texts = Mapping[str, "str | Mapping[str, str]"]


@dataclass(frozen=True, eq=False)
class Language:
    """One language: its words by section, and its locale's way of writing dates and numbers.

    >>> de = language("de")
    >>> de.date(dt.date(2026, 11, 23)), de.number(1234.5), de.money(12345.6, "EUR"), de.percent(0.925, 1)
    ('23.11.2026', '1.234,5', '12.346\\xa0€', '92,5\\xa0%')
    >>> de.plural(de.digest["new"], 1), de.plural(de.digest["new"], 3)
    ('1 neues Warnsignal', '3 neue Warnsignale')
    """

    code: str  # de, en: as config.yaml and the accounts extract name it
    locale: str  # Babel's: de_DE, en_GB
    digest: Texts
    route_reasons: Texts
    notices: Texts
    report: Texts
    backtest: Texts
    feedback: Texts = field(default_factory=dict)  # the verdict pages (feedback/pages.py)

    @cached_property
    def _babel(self) -> Locale:
        return Locale.parse(self.locale)

    def date(self, value: dt.date, format: str = "medium") -> str:
        """A date as the locale writes it: 23.11.2026, 23 Nov 2026; or in a CLDR pattern ("MMM yyyy")."""
        return format_date(value, format, locale=self.locale)

    def datetime(self, value: dt.datetime, format: str = "medium") -> str:
        return format_datetime(value, format, locale=self.locale)

    def number(self, value: float, format: str | None = None) -> str:
        """1.234,5 in German, 1,234.5 in English; `format` a CLDR pattern such as "#,##0.#"."""
        return format_decimal(value, format=format, locale=self.locale)

    def percent(self, value: float, digits: int = 0) -> str:
        """A share as a percentage with `digits` decimals: 92,5 % in German, 92.5% in English."""
        pattern = self._babel.percent_formats[None].pattern.split(";")[0]
        if digits:
            pattern = pattern.replace("#,##0", "#,##0." + "0" * digits)
        return format_percent(value, format=pattern, locale=self.locale)

    def money(self, value: float, currency: str) -> str:
        """Whole currency units: 12.346 € in German, €12,346 in English."""
        pattern = self._babel.currency_formats["standard"].pattern.split(";")[0].replace(".00", "")
        return format_currency(round(value), currency, format=pattern, locale=self.locale, currency_digits=False)

    def plural(self, forms: Mapping[str, str], count: int, **values) -> str:
        """The form of a text for `count` by the locale's plural rules, with {count} (and any
        other placeholders given as `values`) filled in."""
        return forms[self._babel.plural_form(count)].format(count=self.number(count), **values)

    def plural_categories(self) -> set[str]:
        """The CLDR plural categories the locale tells apart: a text with a count needs each."""
        return set(self._babel.plural_form.tags) | {"other"}

    @property
    def csv_delimiter(self) -> str:
        """Spreadsheets of locales with a decimal comma split CSV columns at ';', others at ','."""
        return ";" if self._babel.number_symbols["latn"]["decimal"] == "," else ","

    def route_reason(self, code: str, value: str | None) -> str:
        """Why a warning went to ops, in words (lifecycle.routing.RouteReason). A reason stored
        before reasons were codes is English prose; it is shown as it was written."""
        if code not in self.route_reasons:
            return code
        return self.route_reasons[code].format(value="" if value is None else value)


def in_language(texts: Mapping[str, str], code: str) -> str:
    """A rule's text ({de: …, en: …}) in the reader's language; one the rule file does not give
    falls back to English, then to whichever it has.

    >>> in_language({"en": "Order frequency is falling"}, "de")
    'Order frequency is falling'
    """
    return texts.get(code) or texts.get("en") or next(iter(texts.values()), "")


@cache
def language(code: str) -> Language:
    """The language of `code` (one of LANGUAGES); anything else is a configuration error."""
    if code not in LANGUAGES:
        raise ConfigError(f"digest.language: must be one of {sorted(LANGUAGES)}, got {code!r}")
    module = importlib.import_module(f"{__name__}.{code}")
    sections = {name.lower(): getattr(module, name) for name in SECTIONS}
    return Language(code, module.LOCALE, **sections)
