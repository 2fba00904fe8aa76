"""Stored warnings -> AccountWarning items for the digest: account, owner, and texts with the numbers."""

from __future__ import annotations

import json
from datetime import date
from functools import lru_cache

import duckdb
from babel.numbers import format_decimal
from jinja2 import Template

from loyalty_engine.digest import LOCALES, AccountWarning
from loyalty_engine.rules.loader import TEXT_ENV, RuleSet



def warnings_for_digest(
    con: duckdb.DuckDBPyConnection, ruleset: RuleSet, night: date, language: str
) -> list[AccountWarning]:
    """The night's warnings with each rule's title, message and action rendered in the language."""
    rules = {rule.id: rule for rule in ruleset.rules}
    rows = con.execute(
        """
        SELECT w.account_id, a.name, a.owner_email, a.owner_name, w.rule_id, w.severity, w.evidence
        FROM warnings w JOIN accounts a USING (account_id)
        WHERE w.night = ?
        ORDER BY a.owner_email, w.account_id, w.rule_id
        """,
        [night],
    ).fetchall()
    items = []
    for account_id, name, owner_email, owner_name, rule_id, severity, evidence in rows:
        rule = rules.get(rule_id)
        if rule is None:  # the rule was removed since the night was evaluated
            continue
        numbers = {key: _number(value, language) for key, value in json.loads(evidence).items()}
        items.append(
            AccountWarning(
                account_id=account_id,
                # A quoted cell may hold line breaks; a header or a digest line may not.
                account_name=" ".join(name.split()),
                owner_email=owner_email,
                owner_name=" ".join(owner_name.split()),
                rule_id=rule_id,
                severity=severity,
                title=_text(rule.title, language, numbers),
                message=_text(rule.message, language, numbers),
                action=_text(rule.action, language, numbers),
            )
        )
    return items


def _text(texts: dict[str, str], language: str, numbers: dict[str, str]) -> str:
    template = texts.get(language) or texts.get("en") or next(iter(texts.values()))
    return _compiled(template).render(numbers)


@lru_cache(maxsize=1024)
def _compiled(template: str) -> Template:
    """Compiling a text costs a millisecond; a night renders the same few texts thousands of times."""
    return TEXT_ENV.from_string(template)


def _number(value, language: str) -> str:
    """Numbers as a reader of the language writes them: 1.234,5 in German, 1,234.5 in English."""
    if value is None:
        return "–"
    if isinstance(value, str):  # a text metric: a contact person, a segment, the account's group
        return value
    return format_decimal(value, format="#,##0.#", locale=LOCALES[language])
