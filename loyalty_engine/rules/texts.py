"""Rule texts (title, message, action): Jinja templates filled with the account's values, in the
reader's language, through a sandboxed environment with a few filters and nothing else.

A placeholder prints a value as the reader's locale writes it (`{{ orders_recent }}`: 1.234,5 in
German, 1,234.5 in English; a missing value as "–"). The filters (RULE_FILTERS) say more:

- `{{ n | plural('Bestellung', 'Bestellungen') }}`: the number and the word in the form the
  language's plural rules (CLDR, through Babel) choose: "1 Bestellung", "3 Bestellungen". The
  positional forms are CLDR's `one` and `other`; a language with more forms names them:
  `plural(one='zamówienie', few='zamówienia', many='zamówień', other='zamówienia')`. A `#` in a
  form stands for the number where it goes: `plural('# Gespräch', '# Gespräche')`.
- `{{ amount | money }}`: currency in the reader's locale, whole units (12.346 €, €12,346); the
  currency is config.yaml's `digest.currency` (default EUR).
- `{{ rate | rate }}`: a small rate rounded so it reads sensibly: two significant digits below
  10 (0,3; 0,04; 1,3), whole numbers above (12, 240).
- `{{ share | percent }}`: 0.38 as 38 %.
- `{{ day | date }}`: a date (a value such as a survey's answer date) as the locale writes it.

The rule loader allows exactly these: names, these filters, and constant arguments.
"""

from __future__ import annotations

import datetime as dt
import math

from jinja2 import pass_context
from jinja2.sandbox import SandboxedEnvironment

from loyalty_engine import i18n

LANGUAGE = "_language"  # context names the renderer sets; rule names start with a letter
CURRENCY = "_currency"


def _words(context) -> i18n.Language:
    return i18n.language(context.get(LANGUAGE) or "en")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pass_context
def _shown(context, value):
    """Every {{ … }} output: numbers in the reader's locale, nothing as '–'."""
    if value is None:
        return "–"
    if _is_number(value):
        return _words(context).number(value, "#,##0.#")
    if isinstance(value, dt.date):
        return _words(context).date(value)
    return value


@pass_context
def plural(context, value, one: str | None = None, other: str | None = None, **forms: str) -> str:
    words = _words(context)
    if not _is_number(value):
        return "–" if value is None else str(value)
    given = {k: v for k, v in {"one": one, "other": other, **forms}.items() if v is not None}
    category = words._babel.plural_form(abs(value)) if value == int(value) else "other"
    form = given.get(category) or given.get("other") or next(iter(given.values()), "")
    number = words.number(value, "#,##0.#")
    return form.replace("#", number) if "#" in form else f"{number} {form}"


@pass_context
def money(context, value) -> str:
    if not _is_number(value):
        return "–"
    return _words(context).money(value, context.get(CURRENCY) or "EUR")


@pass_context
def rate(context, value) -> str:
    if not _is_number(value):
        return "–"
    if value == 0 or abs(value) >= 10:
        return _words(context).number(round(value), "#,##0")
    digits = max(0, 1 - math.floor(math.log10(abs(value))))  # two significant digits
    return _words(context).number(round(value, digits), "#,##0." + "#" * digits)


@pass_context
def percent(context, value) -> str:
    return _words(context).percent(value) if _is_number(value) else "–"


@pass_context
def date(context, value) -> str:
    if isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value[:10])
        except ValueError:
            return value
    return _words(context).date(value) if isinstance(value, dt.date) else "–"


RULE_FILTERS = {"plural": plural, "money": money, "rate": rate, "percent": percent, "date": date}

TEXT_ENV = SandboxedEnvironment(autoescape=False, finalize=_shown)
TEXT_ENV.filters.update(RULE_FILTERS)


def render_text(template, language: str, values: dict, currency: str = "EUR") -> str:
    """A compiled rule text filled with the account's raw values, in the reader's language."""
    return template.render({**values, LANGUAGE: language, CURRENCY: currency})
