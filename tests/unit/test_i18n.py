"""Every language says everything: the same sections and keys, the same placeholders, the plural
forms its locale needs; and the rest of the product takes its list of languages from i18n."""

from __future__ import annotations

import importlib
import string
from pathlib import Path

import duckdb
import pytest

from loyalty_engine import i18n
from loyalty_engine.config import DigestSettings
from loyalty_engine.errors import ConfigError
from loyalty_engine.extracts.schemas import accounts_schema
from loyalty_engine.i18n import LANGUAGES, SECTIONS, Language
from loyalty_engine.lifecycle.routing import RouteReason, route_reason_sql
from loyalty_engine.rules import loader
from tests.support.builders import NIGHT


def sections(code: str) -> dict[str, dict]:
    module = importlib.import_module(f"loyalty_engine.i18n.{code}")
    return {name: getattr(module, name) for name in SECTIONS}


def placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}


def test_the_languages_are_the_modules_of_the_package():
    folder = Path(i18n.__file__).parent
    assert LANGUAGES == tuple(sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_")))
    assert set(LANGUAGES) >= {"de", "en"}


@pytest.mark.parametrize("code", LANGUAGES)
def test_every_language_has_every_key_of_every_other(code):
    mine = sections(code)
    for other in LANGUAGES:
        theirs = sections(other)
        for section in SECTIONS:
            missing = sorted(set(theirs[section]) - set(mine[section]))
            assert not missing, f"i18n/{code}.py: {section} lacks {missing} (i18n/{other}.py has them)"


@pytest.mark.parametrize("code", LANGUAGES)
def test_texts_keep_their_placeholders_and_plurals_have_the_locales_forms(code):
    words = i18n.language(code)
    needed = words.plural_categories()
    reference = sections(LANGUAGES[0])
    for section, texts in sections(code).items():
        for key, text in texts.items():
            where = f"i18n/{code}.py: {section}[{key!r}]"
            if isinstance(text, dict):
                assert set(text) == needed, f"{where}: plural forms {sorted(text)}, the locale needs {sorted(needed)}"
                # {count} and the placeholders the reference language's forms have, nothing else.
                allowed = {"count"} | set().union(*(placeholders(form) for form in reference[section][key].values()))
                assert all(placeholders(form) <= allowed for form in text.values()), where
            else:
                assert placeholders(text) == placeholders(reference[section][key]), where


def test_route_reasons_are_the_codes_routing_stores():
    for code in LANGUAGES:
        assert set(i18n.language(code).route_reasons) == set(RouteReason), code


@pytest.mark.parametrize("code", LANGUAGES)
def test_route_reasons_read_the_same_in_sql_and_in_python(code):
    """`loyalty alerts` says them in SQL, the digest in Python; a reason stored before codes
    (English prose) is shown as written by both."""
    stored = [(reason.value, "a@x.de, b@y.de") for reason in RouteReason]
    stored += [(RouteReason.OWNER_NAME_INVALID.value, None), ("owner address 'x' is not valid", None)]
    with duckdb.connect() as con:
        con.execute("CREATE TABLE w (route_reason VARCHAR, route_value VARCHAR)")
        con.executemany("INSERT INTO w VALUES (?, ?)", stored)
        said = [row[0] for row in con.execute(f"SELECT {route_reason_sql(code)} FROM w").fetchall()]
    assert said == [i18n.language(code).route_reason(reason, value) for reason, value in stored]
    assert said[-1] == "owner address 'x' is not valid"


def test_the_english_route_reasons_are_those_loyalty_alerts_always_printed():
    words = i18n.language("en")
    assert words.route_reason("no_owner_address", None) == "account has no owner address"
    assert words.route_reason("owner_address_invalid", "a(at)b") == "owner address 'a(at)b' is not valid"
    assert words.route_reason("owner_name_invalid", "Bernd\\r\\n") == "owner name 'Bernd\\r\\n' is not valid"


def test_config_schemas_and_rule_files_take_the_languages_from_i18n():
    assert loader.LANGUAGES is LANGUAGES
    for code in LANGUAGES:
        assert DigestSettings(language=code).language == code
    assert accounts_schema(NIGHT).columns["language"].checks[0].statistics["allowed_values"] == list(LANGUAGES)
    with pytest.raises(ConfigError, match=r"^digest\.language: must be one of \['de', 'en'\], got 'fr'$"):
        i18n.language("fr")


def test_plural_forms_follow_the_locales_rules():
    """A language with more plural forms than German or English only writes more of them."""
    polish = Language("pl", "pl_PL", {}, {}, {}, {}, {})
    forms = {"one": "{count} ostrzeżenie", "few": "{count} ostrzeżenia", "many": "{count} ostrzeżeń", "other": "{count} ostrzeżenia"}
    assert polish.plural_categories() == set(forms)
    assert [polish.plural(forms, n) for n in (1, 2, 5, 22)] == ["1 ostrzeżenie", "2 ostrzeżenia", "5 ostrzeżeń", "22 ostrzeżenia"]


def test_locale_formats():
    de, en = i18n.language("de"), i18n.language("en")
    assert (de.money(1234567.5, "EUR"), en.money(1234567.5, "EUR")) == ("1.234.568\xa0€", "€1,234,568")
    assert (de.percent(0.9251, 1), en.percent(0.9251)) == ("92,5\xa0%", "93%")
    assert (de.number(1234.5), en.number(1234.5)) == ("1.234,5", "1,234.5")
    assert (de.csv_delimiter, en.csv_delimiter) == (";", ",")
