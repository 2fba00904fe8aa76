"""Rendering digests: one multipart email per owner, most severe account first, de and en."""

from __future__ import annotations

import email
import email.policy
import hashlib
import random
import re
from dataclasses import replace
from datetime import date
from email.message import EmailMessage

import pytest

from loyalty_engine.mail.digest import AccountWarning, Digest, Portfolio, render_digests
from loyalty_engine.errors import ConfigError

NIGHT = date(2026, 11, 23)
SENDER = "Loyalty Frühwarnung <loyalty@example.com>"


def warning(
    account_id: str,
    name: str,
    severity: str,
    rule_id: str = "rule",
    owner_email: str = "juergen@example.com",
    owner_name: str = "Jürgen Groß",
) -> AccountWarning:
    return AccountWarning(
        account_id=account_id,
        account_name=name,
        owner_email=owner_email,
        owner_name=owner_name,
        rule_id=rule_id,
        severity=severity,
        title=f"Titel {rule_id}",
        message=f"Befund {rule_id} für {account_id}",
        action=f"Tun {rule_id}",
    )


WARNINGS = [
    warning("K-3", "Zimmerei Öztürk", "medium", "fewer_visits"),
    warning("K-1", "Bäckerei Kühn", "low", "shorter_terms"),
    warning("K-1", "Bäckerei Kühn", "critical", "falling_order_frequency"),
    warning("K-2", "Autohaus Adler", "medium", "silent_complaints"),
    warning("K-4", "Druckerei Weiß", "info", "new_contact"),
    warning("K-9", "Other Ltd", "high", "escalation", owner_email="mia@example.com", owner_name="Mia Wong"),
]


def parse(digest: Digest) -> EmailMessage:
    """The digest as a mail client sees it: parsed back from the bytes on the wire."""
    parsed = email.message_from_bytes(digest.message.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def text_of(digest: Digest) -> str:
    return parse(digest).get_body(("plain",)).get_content()


def html_of(digest: Digest) -> str:
    return parse(digest).get_body(("html",)).get_content()


def test_one_digest_per_owner_sorted_by_recipient() -> None:
    digests = render_digests(WARNINGS, NIGHT, SENDER, "de")

    assert [d.recipient for d in digests] == ["juergen@example.com", "mia@example.com"]
    assert all(d.night == NIGHT for d in digests)
    assert "Other Ltd" not in text_of(digests[0])
    assert "Other Ltd" in text_of(digests[1])
    assert "Bäckerei Kühn" not in text_of(digests[1])


def test_owner_address_is_grouped_case_insensitively() -> None:
    mixed = [
        warning("K-1", "Bäckerei Kühn", "high", owner_email="Juergen@Example.com"),
        warning("K-2", "Autohaus Adler", "low", owner_email=" juergen@example.com"),
    ]

    [digest] = render_digests(mixed, NIGHT, SENDER, "de")

    assert digest.recipient == "juergen@example.com"
    assert "2 Kunden" in digest.message["Subject"]


def test_no_warnings_no_digest() -> None:
    assert render_digests([], NIGHT, SENDER, "de") == []


def test_accounts_ordered_by_most_severe_warning_then_name() -> None:
    text = text_of(render_digests(WARNINGS, NIGHT, SENDER, "de")[0])

    names = ["Bäckerei Kühn", "Autohaus Adler", "Zimmerei Öztürk", "Druckerei Weiß"]
    positions = [text.index(name) for name in names]
    assert positions == sorted(positions), text
    # Within an account, the critical warning comes before the low one.
    assert text.index("[KRITISCH] Titel falling_order_frequency") < text.index("[NIEDRIG] Titel shorter_terms")


def test_each_warning_shows_account_id_evidence_and_action() -> None:
    [digest, _] = render_digests(WARNINGS, NIGHT, SENDER, "de")

    for body in (text_of(digest), html_of(digest)):
        assert "Kundennummer K-1" in body
        assert "Befund falling_order_frequency für K-1" in body
        assert "Tun falling_order_frequency" in body


def test_german_digest() -> None:
    [digest, _] = render_digests(WARNINGS, NIGHT, SENDER, "de")

    assert digest.message["Subject"] == "Frühwarnung 23.11.2026: 5 neue Warnsignale bei 4 Kunden"
    assert digest.message["Content-Language"] == "de"
    text = text_of(digest)
    assert "Hallo Jürgen Groß," in text
    assert "Empfehlung: Tun falling_order_frequency" in text
    assert "23.11.2026" in text
    html = html_of(digest)
    assert 'lang="de"' in html
    assert ">kritisch<" in html
    assert "Suggested action" not in text + html


def test_english_digest() -> None:
    [digest, _] = render_digests(WARNINGS, NIGHT, SENDER, "en")

    assert digest.message["Subject"] == "Early warning 23 Nov 2026: 5 new warning signs at 4 accounts"
    text = text_of(digest)
    assert "Hello Jürgen Groß," in text
    assert "Suggested action: Tun falling_order_frequency" in text
    assert "[CRITICAL]" in text
    assert "Account ID K-1" in text
    assert ">critical<" in html_of(digest)
    assert "Empfehlung" not in text + html_of(digest)


@pytest.mark.parametrize(
    ("language", "subject"),
    [
        ("de", "Frühwarnung 23.11.2026: 1 neues Warnsignal bei einem Kunden"),
        ("en", "Early warning 23 Nov 2026: 1 new warning sign at one account"),
    ],
)
def test_subject_for_a_single_account(language: str, subject: str) -> None:
    [digest] = render_digests([WARNINGS[-1]], NIGHT, SENDER, language)

    assert digest.message["Subject"] == subject


def test_multipart_alternative_with_text_then_html() -> None:
    [digest, _] = render_digests(WARNINGS, NIGHT, SENDER, "de")

    message = parse(digest)
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)


def test_html_is_inlined_and_labels_coloured() -> None:
    html = html_of(render_digests(WARNINGS, NIGHT, SENDER, "de")[0])

    assert "<style" not in html
    label = re.search(r'<span class="label label-critical" style="([^"]*)">kritisch</span>', html)
    assert label is not None, html
    assert "background-color: #b71c1c" in label.group(1)


def test_html_escapes_account_names_text_keeps_them() -> None:
    nasty = warning("K-6", "<script>alert(1)</script>", "high")

    [digest] = render_digests([nasty], NIGHT, SENDER, "de")

    html = html_of(digest)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)</script> (Kundennummer K-6)" in text_of(digest)


def test_headers() -> None:
    [digest, _] = render_digests(WARNINGS, NIGHT, SENDER, "de")

    message = parse(digest)
    assert message["From"] == SENDER
    [to] = message["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Jürgen Groß", "juergen@example.com")
    assert message["Date"] == "Mon, 23 Nov 2026 00:00:00 +0000"
    assert message["X-Loyalty-Night"] == "2026-11-23"
    assert message["Auto-Submitted"] == "auto-generated"
    expected_hash = hashlib.sha256(b"juergen@example.com").hexdigest()[:16]
    assert message["Message-ID"] == f"<digest.2026-11-23.{expected_hash}@example.com>"


def test_umlauts_are_encoded_on_the_wire_and_survive() -> None:
    [digest, _] = render_digests(WARNINGS, NIGHT, SENDER, "de")

    raw = digest.message.as_bytes()
    raw.decode("ascii")  # 7-bit clean: encoded words and quoted-printable, no raw UTF-8
    assert b"\r\n" in raw
    text, html = text_of(digest), html_of(digest)
    for name in ("Bäckerei Kühn", "Zimmerei Öztürk", "Druckerei Weiß", "Jürgen Groß"):
        assert name in text
        assert name in html
    assert parse(digest)["Subject"].startswith("Frühwarnung")


def test_same_inputs_give_identical_bytes_whatever_the_order() -> None:
    first = render_digests(WARNINGS, NIGHT, SENDER, "de")
    shuffled = list(WARNINGS)
    random.Random(7).shuffle(shuffled)
    second = render_digests(shuffled, NIGHT, SENDER, "de")

    assert [d.message.as_bytes() for d in first] == [d.message.as_bytes() for d in second]


def test_message_id_depends_on_night_and_recipient_only() -> None:
    one = render_digests(WARNINGS, NIGHT, SENDER, "de")[0].message["Message-ID"]
    other_content = render_digests(WARNINGS[:2], NIGHT, SENDER, "en")[0].message["Message-ID"]
    next_night = render_digests(WARNINGS, date(2026, 11, 24), SENDER, "de")[0].message["Message-ID"]

    assert one == other_content
    assert one != next_night


def test_unknown_severity_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown severity 'urgent'"):
        warning("K-1", "Bäckerei Kühn", "urgent")


def test_sender_without_address_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="email.sender"):
        render_digests(WARNINGS, NIGHT, "Loyalty Engine", "de")


def test_owner_without_a_valid_address_is_named() -> None:
    with pytest.raises(ValueError, match="an address of account K-1 is not an address"):
        render_digests([warning("K-1", "Bäckerei Kühn", "high", owner_email="nobody")], NIGHT, SENDER, "de")


def test_a_long_digest_shows_the_most_urgent_accounts_in_full_the_rest_in_a_line_and_all_in_a_csv():
    warnings = [
        AccountWarning(f"K-{i:03}", f"Kunde {i:03}", "anna@example.com", "Anna", "r", "high" if i < 2 else "low", f"Titel {i}", f"Befund {i}", "A")
        for i in range(5)
    ]
    [digest] = render_digests(warnings, date(2026, 11, 23), "a@example.com", "de", max_accounts=3)
    text = text_of(digest)
    assert "Befund 000" not in text and all(f"Befund {i}" in text for i in range(3)) and "Befund 4" not in text
    assert "- Kunde 004 (K-004): Titel 4" in text
    assert "Die vollständige Liste hängt als CSV-Datei an." in text
    assert digest.message["Subject"] == "Frühwarnung 23.11.2026: 5 neue Warnsignale bei 5 Kunden"
    [attachment] = parse(digest).iter_attachments()
    assert attachment.get_filename() == "fruehwarnung-2026-11-23.csv"
    rows = attachment.get_content().lstrip("\ufeff").splitlines()
    assert rows[0].startswith("account_id;account_name;segment;group") and len(rows) == 6


def test_sections_for_new_still_open_and_resolved_and_the_portfolio_header():
    warnings = [
        warning("K-1", "Bäckerei Kühn", "high", "falling_order_frequency"),
        replace(warning("K-2", "Autohaus Adler", "medium", "silent_complaints"), notice="repeat", since=date(2026, 11, 2)),
        replace(warning("K-3", "Zimmerei Öztürk", "low", "fewer_visits"), notice="resolved"),
    ]
    portfolios = {"juergen@example.com": Portfolio(watched=42, warned=7, retention=0.913)}
    [digest] = render_digests(warnings, NIGHT, SENDER, "de", portfolios=portfolios)
    assert digest.message["Subject"] == "Frühwarnung 23.11.2026: 1 neues Warnsignal bei einem Kunden, 1 weiterhin offen, 1 behoben"
    text = text_of(digest)
    assert "Ihr Portfolio: 42 Kunden beobachtet, 7 mit offenen Warnsignalen. Kundenbindungsrate der letzten 12 Monate: 91\xa0%." in text
    assert text.index("== Neue Warnsignale ==") < text.index("== Weiterhin offen ==") < text.index("== Behoben ==")
    assert "- Autohaus Adler (K-2): [MITTEL] Titel silent_complaints (seit 02.11.2026)" in text
    assert "- Zimmerei Öztürk (K-3): Titel fewer_visits" in text
    [english] = render_digests(warnings, NIGHT, SENDER, "en", portfolios=portfolios)
    assert english.message["Subject"] == "Early warning 23 Nov 2026: 1 new warning sign at one account, 1 still open, 1 resolved"
    assert "Retention rate over the last 12 months: 91%." in text_of(english)


def test_severity_then_revenue_then_stake_then_care_order():
    """Issue 15: severity first; at the same severity an account with revenue in 12 months before
    one without; then the stake (chance x revenue); the order of care only breaks ties."""
    warnings = [
        replace(warning("K-1", "Hostage", "critical"), group="hostage"),
        replace(warning("K-2", "Loyal small", "high"), group="loyal", revenue_12m=1_000.0),
        replace(warning("K-3", "Loyal big", "high"), group="loyal", revenue_12m=90_000.0),
        replace(warning("K-4", "Loyal critical", "critical"), group="loyal", revenue_12m=10.0),
        replace(warning("K-5", "Defector", "low"), group="defector"),
        replace(warning("K-6", "Apostle", "info"), group="apostle"),
        warning("K-7", "Unknown", "critical"),
    ]
    text = text_of(render_digests(warnings, NIGHT, SENDER, "en")[0])
    order = ["Loyal critical", "Hostage", "Unknown", "Loyal big", "Loyal small", "Defector", "Apostle"]
    positions = [text.index(f"{name} (Account ID") for name in order]
    assert positions == sorted(positions), text


def test_stake_is_the_chance_of_a_loss_times_revenue_and_dead_accounts_never_outrank_live_ones():
    warnings = [
        replace(warning("K-1", "Dead defector", "high", "r1"), group="defector", revenue_12m=0.0, chance=0.9),
        replace(warning("K-2", "Big, unlikely", "high", "r2"), group="hostage", revenue_12m=100_000.0, chance=0.05),  # 5,000 at stake
        replace(warning("K-3", "Small, likely", "high", "r3"), group="loyal", revenue_12m=20_000.0, chance=0.5),  # 10,000 at stake
    ]
    text = text_of(render_digests(warnings, NIGHT, SENDER, "en")[0])
    positions = [text.index(f"{name} (Account ID") for name in ("Small, likely", "Big, unlikely", "Dead defector")]
    assert positions == sorted(positions), text


def test_held_back_warnings_are_counted_and_listed_in_the_attachment():
    warnings = [
        warning("K-1", "Bäckerei Kühn", "high", "falling_order_frequency"),
        replace(warning("K-2", "Autohaus Adler", "medium", "silent_complaints"), notice="waiting"),
        replace(warning("K-3", "Zimmerei Öztürk", "low", "fewer_visits"), notice="waiting"),
    ]
    [digest] = render_digests(warnings, NIGHT, SENDER, "de")
    text = text_of(digest)
    assert "2 weitere neue Warnsignale folgen in den nächsten Frühwarnungen" in text
    assert "Autohaus Adler" not in text  # not in the body: only in the attachment
    assert digest.message["Subject"] == "Frühwarnung 23.11.2026: 1 neues Warnsignal bei einem Kunden"
    [attachment] = parse(digest).iter_attachments()
    rows = attachment.get_content().lstrip("\ufeff").splitlines()
    assert len(rows) == 4 and sum(";waiting;" in row for row in rows) == 2
    first = [warning("K-1", "Bäckerei Kühn", "high", "falling_order_frequency"), replace(warning("K-2", "Autohaus Adler", "medium", "x"), notice="intro")]
    [english] = render_digests(first, NIGHT, SENDER, "en")
    assert "Your first early-warning digest" in text_of(english)
    assert "1 further open warning sign is listed in the attached CSV file." in text_of(english)


def test_revenue_chart_has_a_bar_per_month_in_cells_and_the_text_part_a_sparkline():
    months = tuple(float(m) for m in (0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1200))
    [digest] = render_digests([replace(warning("K-1", "Bäckerei Kühn", "high"), revenue_12m=6700.0, monthly_revenue=months)], NIGHT, SENDER, "de")
    html = html_of(digest)
    heights = [int(h) for h in re.findall(r'class="bar[^"]*" style="[^"]*" height="(\d+)"', html)]
    assert len(heights) == 12 and heights[-1] == 36 and heights[0] == 1 and heights == sorted(heights)
    assert "<script" not in html and "<img" not in html
    assert "Umsatz der letzten 12 Monate: 6.700&nbsp;€" in html
    assert "Umsatz der letzten 12 Monate: 6.700\xa0€  [ ▁▂▃▃▄▅▅▆▇▇█]" in text_of(digest)


def test_critical_warnings_copy_the_supervisor_and_ops_digests_say_why():
    critical = replace(warning("K-1", "Bäckerei Kühn", "critical"), cc="Chefin@Example.com")
    routed = replace(warning("K-2", "Autohaus Adler", "high", owner_email=""), recipient="ops@example.com",
                     route_reason="owner_address_invalid", route_value="anna(at)example")
    owner_digest, ops_digest = render_digests([critical, routed], NIGHT, SENDER, "de")
    assert owner_digest.envelope == ["juergen@example.com", "chefin@example.com"]
    assert ops_digest.recipient == "ops@example.com" and ops_digest.envelope == ["ops@example.com"]
    text = text_of(ops_digest)
    assert "Diese Warnsignale konnten keinem Betreuer zugestellt werden." in text
    assert "Weitergeleitet: Betreuer-Adresse 'anna(at)example' ist ungültig" in text
