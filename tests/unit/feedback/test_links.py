"""Verdict links: signed, bound to night, account, rule, owner and verdict, expiring, ids only."""

from __future__ import annotations

import base64
import json
from datetime import date, timedelta
from pathlib import Path

import pytest

from loyalty_engine.config import FeedbackSettings, load_settings
from loyalty_engine.errors import ConfigError
from loyalty_engine.feedback.links import BadToken, Expired, Verdict, owner_tag, read, sign, verdict_links, with_links
from loyalty_engine.mail.digest import AccountWarning, render_digests

SECRET = b"s" * 40
NIGHT = date(2026, 11, 23)


def token(**changes) -> str:
    args = {"night": NIGHT, "account_id": "K-1", "rule_id": "falling_order_frequency", "owner": "anna@example.com",
            "verdict": Verdict.USEFUL, "link_days": 30, "language": "de"} | changes
    return sign(SECRET, **args)


def test_a_token_reads_back_what_it_binds():
    ticket = read(SECRET, token(), NIGHT + timedelta(days=30))
    assert (ticket.night, ticket.account_id, ticket.rule_id, ticket.verdict, ticket.expires, ticket.language) == (
        NIGHT, "K-1", "falling_order_frequency", Verdict.USEFUL, NIGHT + timedelta(days=30), "de")
    assert ticket.owner_tag == owner_tag(SECRET, "Anna@Example.com ")  # the address compared in lower case


def test_a_token_is_the_same_on_every_rendering():
    assert token() == token() and token() != token(verdict=Verdict.FALSE_ALARM) != token(owner="bernd@example.com")


def test_a_token_past_its_last_day_is_expired():
    with pytest.raises(Expired):
        read(SECRET, token(), NIGHT + timedelta(days=31))


@pytest.mark.parametrize("bad", [
    "", ".", "abc", "a.b.c", "é.é", "A" * 700 + ".x", "%%%.%%%",
    token()[:-2] + "AA", token().replace(".", ".A", 1), token()[1:],
])
def test_a_malformed_or_altered_token_is_refused(bad):
    with pytest.raises(BadToken):
        read(SECRET, bad, NIGHT)


def test_a_token_signed_with_another_secret_is_refused():
    with pytest.raises(BadToken):
        read(b"t" * 40, token(), NIGHT)


def test_a_changed_field_under_the_old_signature_is_refused():
    payload, mac = token().split(".")
    said = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    said[5] = "false_alarm"
    forged = base64.urlsafe_b64encode(json.dumps(said, separators=(",", ":")).encode()).rstrip(b"=").decode()
    with pytest.raises(BadToken):
        read(SECRET, f"{forged}.{mac}", NIGHT)


def test_a_link_holds_ids_and_dates_only():
    links = verdict_links("https://fw.example.com", SECRET, NIGHT, "K-1", "falling_order_frequency", "anna@example.com", 30, "de")
    assert list(links) == ["useful", "false_alarm", "already_known"]
    for link in links.values():
        assert link.startswith("https://fw.example.com/v/")
        payload = link.rsplit("/", 1)[1].split(".")[0]
        text = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
        assert "anna" not in text and "@" not in text


def warning(**changes) -> AccountWarning:
    args = dict(account_id="K-1", account_name="Bäckerei Kühn", owner_email="anna@example.com", owner_name="Anna Groß",
                rule_id="falling_order_frequency", severity="high", title="Bestellfrequenz sinkt", message="0 Bestellungen",
                action="Anrufen.", language="de") | changes
    return AccountWarning(**args)


def test_links_go_under_the_owners_current_warnings_only(monkeypatch):
    monkeypatch.setenv("LOYALTY_FEEDBACK_SECRET", "x" * 40)
    settings = FeedbackSettings(base_url="https://fw.example.com")
    warnings = [
        warning(),
        warning(account_id="K-2", notice="repeat"),
        warning(account_id="K-3", notice="resolved"),
        warning(account_id="K-4", recipient="ops@example.com", route_reason="owner_address_invalid"),
    ]
    linked = with_links(warnings, NIGHT, settings)
    assert [len(w.verdicts) for w in linked] == [3, 3, 0, 0]
    assert with_links(warnings, NIGHT, FeedbackSettings()) == warnings  # no base_url: no links
    [digest] = render_digests(linked[:3], NIGHT, "fw@example.com", "de")
    text = digest.message.get_body(("plain",)).get_content()
    assert text.count("https://fw.example.com/v/") == 6 and "Schon bekannt: 30 Tage ruhen lassen: https://" in text


def test_without_the_secret_there_are_no_links_but_one_line(monkeypatch):
    monkeypatch.delenv("LOYALTY_FEEDBACK_SECRET", raising=False)
    with pytest.raises(ConfigError, match=r"^feedback\.secret_env: the environment variable LOYALTY_FEEDBACK_SECRET is not set;"):
        with_links([warning()], NIGHT, FeedbackSettings(base_url="https://fw.example.com"))
    monkeypatch.setenv("LOYALTY_FEEDBACK_SECRET", "short")
    with pytest.raises(ConfigError, match="holds fewer than 32 bytes"):
        FeedbackSettings(base_url="https://fw.example.com").secret()


def test_feedback_settings_errors_name_line_and_key(tmp_path: Path):
    path = tmp_path / "config.yaml"
    path.write_text(
        "extracts: {path: x}\ndatabase: db\nrules: r\nemail: {sender: a@b.c}\n"
        "feedback:\n  base_url: javascript:alert(1)\n  secret_env: 'NOT A NAME'\n  link_days: 0\n  linkdays: 3\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    lines = [str(p) for p in caught.value.problems]
    assert lines == [
        f"{path}:6: feedback.base_url: not a web address such as 'https://fruehwarnung.example.com', got 'javascript:alert(1)'",
        f"{path}:7: feedback.secret_env: not the name of an environment variable such as LOYALTY_FEEDBACK_SECRET, got 'NOT A NAME'",
        f"{path}:8: feedback.link_days: input should be greater than or equal to 1, got 0",
        f"{path}:9: feedback.linkdays: unknown key (did you mean 'feedback.link_days'?)",
    ]


def test_the_base_url_loses_a_trailing_slash():
    assert FeedbackSettings(base_url="https://fw.example.com/verdicts/").base_url == "https://fw.example.com/verdicts"
