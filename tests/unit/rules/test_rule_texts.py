"""Rule texts with plurals, money, rates and dates in the reader's language (rules/texts.py), from
a real rule file through the loader, and the loader's refusals."""

from __future__ import annotations

import pytest

from loyalty_engine.errors import RuleError
from loyalty_engine.mail.mailing import _text
from loyalty_engine.rules.loader import load_rules

RULES = """
metrics:
  orders_recent: {count: orders, window: 90d}
  revenue_recent: {sum: orders.amount, window: 90d}
rules:
  - id: quiet
    severity: high
    when: orders_recent < 2
    params: {usual: 0.3}
    title: {de: "Wenig bestellt", en: "Few orders"}
    message:
      de: "{{ orders_recent | plural('Bestellung', 'Bestellungen') }} in 90 Tagen, Umsatz {{ revenue_recent | money }}, sonst etwa {{ usual | rate }} im Monat; {{ calls | plural('# Gespräch', '# Gespräche') }}, Umfrage vom {{ answered | date }}"
      en: "{{ orders_recent | plural('order', 'orders') }} in 90 days, revenue {{ revenue_recent | money }}, usually about {{ usual | rate }} a month; {{ share | percent }} fewer"
    action: "{{ orders_recent }}"
"""


@pytest.fixture
def rule(tmp_path):
    (tmp_path / "r.yaml").write_text(RULES, encoding="utf-8")
    return load_rules(tmp_path).rules[0]


@pytest.mark.parametrize(("values", "language", "expected"), [
    ({"orders_recent": 1, "revenue_recent": 14840.4, "usual": 0.3, "calls": 1, "answered": "2026-10-02"}, "de",
     "1 Bestellung in 90 Tagen, Umsatz 14.840\u00a0€, sonst etwa 0,3 im Monat; 1 Gespräch, Umfrage vom 02.10.2026"),
    ({"orders_recent": 0, "revenue_recent": 5200, "usual": 0.04, "calls": 3, "answered": None}, "de",
     "0 Bestellungen in 90 Tagen, Umsatz 5.200\u00a0€, sonst etwa 0,04 im Monat; 3 Gespräche, Umfrage vom –"),
    ({"orders_recent": 1, "revenue_recent": 27356.6, "usual": 12.34, "share": 0.381}, "en",
     "1 order in 90 days, revenue €27,357, usually about 12 a month; 38% fewer"),
    ({"orders_recent": 1234, "revenue_recent": None, "usual": 1.25, "share": None}, "en",
     "1,234 orders in 90 days, revenue –, usually about 1.2 a month; – fewer"),
])  # fmt: skip
def test_plurals_money_rates_and_dates_in_the_readers_language(rule, values, language, expected):
    assert _text(rule.message, language, values, "EUR") == expected


def test_the_currency_comes_from_the_config(rule):
    assert _text(rule.message, "en", {"orders_recent": 2, "revenue_recent": 900, "usual": 2, "share": 0.5}, "CHF").startswith("2 orders in 90 days, revenue CHF900")


def test_plain_placeholders_read_as_before(rule):
    assert _text(rule.action, "de", {"orders_recent": 1234.5}) == "1.234,5"


@pytest.mark.parametrize(("text", "error"), [
    ("'{{ orders_recent | upper }}'", "uses an unknown filter 'upper' (known: plural, money, rate, percent, date)"),
    ("'{{ orders_recent | plural(orders_recent) }}'", "filter 'plural' takes constant arguments only"),
    ("'{{ orders_recent | money(*x) }}'", "filter 'money' takes constant arguments only"),
    ("'{{ orders_recent.real }}'", "may only hold placeholders"),
])  # fmt: skip
def test_the_loader_allows_only_the_text_filters_with_constant_arguments(tmp_path, text, error):
    (tmp_path / "r.yaml").write_text(RULES.replace('action: "{{ orders_recent }}"', f"action: {text}"), encoding="utf-8")
    with pytest.raises(RuleError, match=r"r\.yaml:\d+:\d+: .*") as raised:
        load_rules(tmp_path)
    assert error in str(raised.value)
