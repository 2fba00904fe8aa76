"""Hostile input: YAML files that try to build objects or exhaust the reader, names and texts that
carry markup, Jinja or control characters, owner fields that try to add mail headers. Each ends
as a one-line error or as plain text in the digest; nothing reaches a header it should not."""

from __future__ import annotations

import csv
import email
import email.policy
import io
import os
import re
import subprocess
import sys
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path

import pytest
import yaml

from loyalty_engine import store
from loyalty_engine.config import load_settings
from loyalty_engine.mail.digest import AccountWarning, Digest, render_digests
from loyalty_engine.errors import ConfigError, RuleError, UserError
from loyalty_engine.extracts.staging import stage_extracts
from loyalty_engine.mail.mailing import night_mailing
from loyalty_engine.rules.loader import check_rule_files, load_rules
from loyalty_engine.rules.testing import run_rule_tests
from loyalty_engine.lifecycle.snoozes import load_snoozes
from loyalty_engine.extracts.validate import validate_night
from loyalty_engine.yaml_files import MAX_BYTES, MAX_DEPTH
from tests.support.builders import COLUMNS, NIGHT, ROOT, run_nights, write_config, write_table

LOYALTY = str(Path(sys.executable).with_name("loyalty"))

# --- YAML files --------------------------------------------------------------------------------

CONFIG = """\
extracts: {path: extracts}
database: data/loyalty.duckdb
rules: rules
email: {sender: a@example.com}
"""
RULES = (ROOT / "rules" / "orders.yaml").read_text(encoding="utf-8")
SNOOZES = "snoozes:\n  - {id: 1, account: A1, until: 2026-12-31, reason: Werksferien}\n"
RULE_TEST = "tests:\n  - name: quiet\n    night: 2026-11-23\n    expect: []\n"


def _read_rules(folder: Path, text: str) -> None:
    (folder / "rules").mkdir(parents=True, exist_ok=True)
    (folder / "rules" / "orders.yaml").write_text(text, encoding="utf-8")
    load_rules(folder / "rules")


def _read_config(folder: Path, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(text, encoding="utf-8")
    load_settings(folder / "config.yaml")


def _read_snoozes(folder: Path, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "snoozes.yaml").write_text(text, encoding="utf-8")
    load_snoozes(folder / "snoozes.yaml")


def _read_rule_test(folder: Path, text: str) -> None:
    (folder / "rules").mkdir(parents=True, exist_ok=True)
    (folder / "rules" / "orders.yaml").write_text(RULES, encoding="utf-8")
    (folder / "rules" / "orders.test.yaml").write_text(text, encoding="utf-8")
    run_rule_tests(folder / "rules" / "orders.test.yaml")


# Each reader: how to read, the file it reads, a good file (which must load), the error it raises.
READERS = {
    "rule file": (_read_rules, "rules/orders.yaml", RULES, RuleError),
    "config.yaml": (_read_config, "config.yaml", CONFIG, ConfigError),
    "snoozes.yaml": (_read_snoozes, "snoozes.yaml", SNOOZES, RuleError),
    "rule test": (_read_rule_test, "rules/orders.test.yaml", RULE_TEST, RuleError),
}


def _laughs() -> str:
    """Nine lines, a billion values once the aliases are expanded."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


# Appended to a good file: the hostile text, how many lines below its start the problem is
# (None: the message names no line), and the rest of the one line it must give.
HOSTILE_YAML = {
    "python tag": ("evil: !!python/object/apply:os.system [echo pwned]\n", 0,
                   ":7: the tag !!python/object/apply:os.system is not allowed: only plain text, numbers, dates, lists and mappings"),
    "python name tag": ("evil: !!python/name:os.system\n", 0,
                        ":7: the tag !!python/name:os.system is not allowed: only plain text, numbers, dates, lists and mappings"),
    # The root mapping is level 1, so the 50th bracket is level 51.
    "10,000 deep flow list": ("evil: " + "[" * 10_000 + "]" * 10_000 + "\n", 0, ":56: nested deeper than 50 levels"),
    "60 deep block mapping": ("evil:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(60)) + "  " * 61 + "x\n", 50,
                              ":101: nested deeper than 50 levels"),
    "billion laughs": (_laughs(), 5, ":5: stands for more than 1,000,000 values once its aliases (*name) are expanded"),
    "alias inside itself": ("evil: &e [*e]\n", 0, ":11: an alias refers to a list or mapping that contains it"),
    "impossible date": ("evil: 2026-02-30\n", 0, ":7: '2026-02-30' cannot be read as a date (day is out of range for month)"),
    "NUL character": ("evil: a\x00\n", 0, ":8: not valid YAML (character #x0000 is not allowed)"),
    "over 1 MB": ("evil: " + "x" * MAX_BYTES + "\n", None, ": {what} is larger than 1 MB"),
}


@pytest.mark.parametrize("hostile", HOSTILE_YAML, ids=list(HOSTILE_YAML))
@pytest.mark.parametrize("reader", READERS, ids=list(READERS))
def test_hostile_yaml_is_one_line_naming_the_file(tmp_path, reader, hostile):
    read, name, good, error = READERS[reader]
    read(tmp_path / "good", good)
    text, below, rest = HOSTILE_YAML[hostile]
    with pytest.raises(error) as raised:
        read(tmp_path / "bad", good + text)
    line = "" if below is None else f":{good.count(chr(10)) + 1 + below}"
    what = "config file" if error is ConfigError else "file"
    assert str(raised.value) == f"{tmp_path / 'bad' / name}{line}{rest.format(what=what)}"


def test_pyyaml_alone_overflows_the_stack_on_deep_nesting_which_is_why_depth_is_counted():
    deep = "[" * 1_000 + "]" * 1_000  # 1,000 levels are enough; in a file, 2 KB
    with pytest.raises(RecursionError):
        yaml.safe_load(deep)
    list(yaml.parse(deep))  # the parser is iterative (and slow past that: 10,000 levels take 20 s); composing recurses


def _config_nested(levels: int) -> str:
    """The config with a key holding lists nested so that the file has `levels` levels (the top mapping is one)."""
    return CONFIG + "extra: " + "[" * (levels - 1) + "]" * (levels - 1) + "\n"


def test_fifty_levels_are_fine_fifty_one_are_not(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(_config_nested(MAX_DEPTH))
    with pytest.raises(ConfigError, match=r"config.yaml:5: extra: unknown key \(did you mean 'extracts'\?\)$"):  # read, then checked
        load_settings(path)
    path.write_text(_config_nested(MAX_DEPTH + 1))
    with pytest.raises(ConfigError, match=r"config.yaml:5:57: nested deeper than 50 levels$"):
        load_settings(path)


def test_size_is_checked_before_the_whole_file_is_read():
    # /dev/zero never ends: reading it whole would never return.
    with pytest.raises(ConfigError, match=r"^/dev/zero: config file is larger than 1 MB$"):
        load_settings(Path("/dev/zero"))


def test_a_config_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(CONFIG.replace("a@example.com", "M\xfcller <a@example.com>").encode("latin-1"))
    with pytest.raises(ConfigError, match=r"config.yaml: cannot read config file \(not UTF-8 text: byte \d+ is 0xfc\)$"):
        load_settings(path)


def test_control_characters_in_what_an_error_quotes_are_escaped(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "x.yaml").write_text('"rules\\n\\u001b[2J\\u202e": []\n', encoding="utf-8")
    _, [problem] = check_rule_files([tmp_path / "rules"])
    assert str(problem) == f"{tmp_path}/rules/x.yaml:1:27: unknown key 'rules\\n\\x1b[2J\\u202e' (allowed: metrics, rules)"
    assert isinstance(problem, UserError)


def _loyalty(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LOYALTY_CONFIG"}
    return subprocess.run([LOYALTY, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def test_cli_prints_one_line_for_a_hostile_rule_file_and_a_too_deep_config(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "evil.yaml").write_text("metrics: !!python/object/apply:os.system [touch pwned]\n", encoding="utf-8")
    checked = _loyalty("rules", "check", str(rules), cwd=tmp_path)
    assert (checked.returncode, checked.stdout) == (1, "")
    assert checked.stderr.splitlines() == [
        f"{rules}/evil.yaml:1:10: the tag !!python/object/apply:os.system is not allowed: only plain text, numbers, dates, lists and mappings",
        "1 problem in 1 rule file",
    ]
    assert not (tmp_path / "pwned").exists()

    config = tmp_path / "config.yaml"
    config.write_text(CONFIG + "extra: " + "[" * 10_000 + "]" * 10_000 + "\n", encoding="utf-8")
    result = _loyalty("alerts", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == f"error: {config}:5:57: nested deeper than 50 levels\n"


def test_cli_prints_one_line_for_an_impossible_date_in_the_snoozes_file(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    (tmp_path / "snoozes.yaml").write_text(SNOOZES.replace("2026-12-31", "2026-02-30"), encoding="utf-8")
    result = _loyalty("snooze", "--list", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 4
    assert result.stderr == f"error: {tmp_path}/snoozes.yaml:2:33: '2026-02-30' cannot be read as a date (day is out of range for month)\n"


# --- Digest texts and headers ------------------------------------------------------------------


SENDER = "Frühwarnsystem <fruehwarnung@example.com>"
# What must never reach a reader: C0 controls but tab and line feed, DEL, C1, the line and
# paragraph separators, bidi embeddings, overrides and isolates.
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
JINJA = "{{ 7*7 }}{% if true %}yes{% endif %}{# hidden #}"
HOSTILE_NAME = f"<script>alert('x')</script> <b>Müller</b> & Co {JINJA} \x00\x1b[2J\x07\x7f\x85\u2028\u202eGmbH"
HEADERS = ["From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "X-Loyalty-Night", "MIME-Version", "Content-Type", "Content-Language"]


def hostile_warning(**changes) -> AccountWarning:
    base = AccountWarning(
        account_id="K-1\x1b",
        account_name=HOSTILE_NAME,
        owner_email="anna@example.com",
        owner_name="Anna\x00 <b>Groß</b>\u202e",
        rule_id="hostile",
        severity="high",
        title=f"<i>Titel</i> {JINJA}\x1b[31m",
        message=f"Kontakt <img src=x onerror=alert(1)> {JINJA}\x00\r\nzweite Zeile\u2029",
        action="=HYPERLINK(\"http://evil.example\")\x08",
        segment=f"<u>A</u>{JINJA}\x07",
    )
    return replace(base, **changes)


def parsed(digest: Digest) -> tuple[EmailMessage, str, str]:
    """The message as a mail client reads it from the bytes, with its text and HTML parts."""
    message = email.message_from_bytes(digest.message.as_bytes(), policy=email.policy.default)
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = message.get_body(("html",)).get_content().replace("\r\n", "\n")
    return message, text, html


def header_lines(raw: bytes) -> list[str]:
    """The names of the header lines as written on the wire (continuations belong to the line above)."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    return [line.split(":", 1)[0] for line in head.split("\r\n") if not line[:1].isspace()]


def test_names_markup_jinja_and_control_characters_render_as_text_in_both_parts():
    [digest] = render_digests([hostile_warning()], NIGHT, SENDER, "de")
    message, text, html = parsed(digest)
    for part in (text, html):
        assert not CONTROL.search(part), CONTROL.findall(part)
        assert part.count(JINJA) == 4 and "49" not in part  # name, segment, title, message: printed, never evaluated
        assert "\ufffd" in part  # control characters show as the replacement character
    # HTML: every tag the extract or the rule brought is escaped; nothing runs.
    assert "<script" not in html and "<img" not in html and "<b>M" not in html and "<u>" not in html and "<i>" not in html
    assert "&lt;script&gt;alert('x')&lt;/script&gt; &lt;b&gt;Müller&lt;/b&gt; &amp; Co {{ 7*7 }}" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "&lt;i&gt;Titel&lt;/i&gt;" in html
    # Text: the same characters as written, control characters replaced.
    assert f"<script>alert('x')</script> <b>Müller</b> & Co {JINJA} \ufffd\ufffd[2J\ufffd\ufffd \ufffdGmbH (Kundennummer K-1\ufffd" in text
    assert f"Befund: Kontakt <img src=x onerror=alert(1)> {JINJA}\ufffd\nzweite Zeile\ufffd" in text
    assert f"[HOCH] <i>Titel</i> {JINJA}\ufffd[31m" in text
    # The To header's display name: one line, no control characters, one address.
    [to] = message["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Anna\ufffd <b>Groß</b>\ufffd", "anna@example.com")
    assert header_lines(digest.message.as_bytes()) == HEADERS
    assert re.fullmatch(r"Frühwarnung 23\.11\.2026: 1 neues Warnsignal bei einem Kunden", message["Subject"])


def test_the_csv_attachment_keeps_formulas_and_control_characters_out():
    second = hostile_warning(account_id="K-2", account_name="@SUM(1+1)*cmd|' /C calc'!A0")
    [digest] = render_digests([hostile_warning(), second], NIGHT, SENDER, "de", max_accounts=1)
    message = email.message_from_bytes(digest.message.as_bytes(), policy=email.policy.default)
    [attachment] = message.iter_attachments()
    content = attachment.get_content()
    assert not CONTROL.search(content.replace("\r\n", "\n"))
    rows = list(csv.DictReader(io.StringIO(content.removeprefix("\ufeff")), delimiter=";"))
    assert [row["account_name"][:5] for row in rows] == ["<scri", "'@SUM"]
    assert [row["action"][:11] for row in rows] == ["'=HYPERLINK"] * 2


@pytest.mark.parametrize(
    "owner_email",
    ["anna@example.com, evil@example.com", "anna@example.com;evil@example.com", "anna@example.com\r\nBcc: evil@example.com",
     "Anna <anna@example.com>", "anna@example.com evil@example.com"],
)
def test_an_address_that_is_not_one_plain_address_never_reaches_a_header(owner_email):
    # Validation clears such addresses (see below); were one to slip through, rendering refuses it.
    with pytest.raises(ValueError, match="an address of account K-1 is not an address"):
        render_digests([hostile_warning(account_id="K-1", owner_email=owner_email)], NIGHT, SENDER, "de")
    with pytest.raises(ValueError, match="an address of account K-1 is not an address"):
        render_digests([hostile_warning(account_id="K-1", severity="critical", cc=owner_email)], NIGHT, SENDER, "de")


@pytest.mark.parametrize(
    "sender",
    ["Früh <fruehwarnung@example.com>\r\nBcc: evil@example.com", "fruehwarnung@example.com, evil@example.com",
     "Früh\x00 <fruehwarnung@example.com>", "fruehwarnung@example.com evil@example.com"],
)
def test_a_sender_that_is_not_one_address_is_a_config_error(sender):
    with pytest.raises(ConfigError, match=r"^email\.sender: "):
        render_digests([hostile_warning()], NIGHT, sender, "de")


# --- Owners that try to add headers, and hostile rule texts, through a real night ---------------


LONG = "Sehr lange Empfehlung. " * 500  # 11,500 characters
HOSTILE_RULES = r"""
metrics:
  orders_recent: {count: orders, window: 90d}
  segment:       {attribute: segment}
  contact_now:   {latest: interactions.contact_person, window: 90d}
rules:
  - id: hostile_texts
    severity: high
    when: orders_recent >= 0      # every account, every night
    title: "<script>alert('title')</script> {% raw %}{{ 7*7 }}{% endraw %} \x1b[31mrot\u202eEnde\u2028"
    message:
      de: "Segment {{ segment }}, Kontakt {{ contact_now }}; {% raw %}{{ orders_recent }}{% endraw %}\0 <b>fett</b>"
      en: "Segment {{ segment }}, contact {{ contact_now }}"
    action: "<a href='javascript:alert(1)'>hier</a> \x85\x9b31m LONG"
"""
# The accounts: one good owner with hostile account values, and owners who try to add headers.
ACCOUNTS = [
    {"account_id": "G1", "name": "<script>alert('name')</script> {{ 7*7 }} Müller & Co\x1b[2J\u202eGmbH",
     "owner_email": "anna@example.com", "owner_name": "Anna Groß", "segment": "<u>A</u>{{ 7*7 }}\x07"},
    {"account_id": "N1", "name": "Kunde N1", "owner_email": "bernd@example.com", "owner_name": "Bernd\r\nBcc: evil@example.com"},
    {"account_id": "Z1", "name": "Kunde Z1", "owner_email": "zoe@example.com", "owner_name": "Zoe\x1b]0;pwned\x07"},
    {"account_id": "M1", "name": "Kunde M1", "owner_email": "carla@example.com, evil@example.com", "owner_name": "Carla"},
    {"account_id": "S1", "name": "Kunde S1", "owner_email": "dora@example.com;evil@example.com", "owner_name": "Dora"},
    {"account_id": "L1", "name": "Kunde L1", "owner_email": "erik@example.com\r\nBcc: evil@example.com", "owner_name": "Erik"},
]
CONTACT = "{{ 7*7 }} <img src=x onerror=alert(1)> Hans\x1b]0;pwned\x07"
# Why each bad owner went to ops, as the German ops digest says it.
OPS_REASONS = [
    "  Weitergeleitet: Betreuer-Adresse 'erik@example.com\\r\\nBcc: evil@example.com' ist ungültig",
    "  Weitergeleitet: Betreuer-Adresse 'carla@example.com, evil@example.com' ist ungültig",
    "  Weitergeleitet: Betreuer-Name 'Bernd\\r\\nBcc: evil@example.com' ist ungültig",
    "  Weitergeleitet: Betreuer-Adresse 'dora@example.com;evil@example.com' ist ungültig",
    "  Weitergeleitet: Betreuer-Name 'Zoe\\x1b]0;pwned\\x07' ist ungültig",
]


def hostile_project(folder: Path) -> Path:
    """Rules with hostile texts, an extract with hostile names and owners, a config routing to ops."""
    (folder / "rules").mkdir(parents=True)
    (folder / "rules" / "hostile.yaml").write_text(HOSTILE_RULES.replace("LONG", LONG), encoding="utf-8")
    night = folder / "extracts" / NIGHT.isoformat()
    write_table(night, "accounts", ACCOUNTS, columns=COLUMNS["accounts"] + ["segment"])
    for table in ("orders", "complaints", "contracts"):
        write_table(night, table, [])
    write_table(night, "interactions", [{"interaction_id": "I1", "account_id": "G1", "occurred_at": "2026-11-20", "kind": "call", "contact_person": CONTACT}],
                columns=["interaction_id", "account_id", "occurred_at", "kind", "contact_person"])
    config = write_config(folder)
    text = config.read_text(encoding="utf-8").replace(f"rules: {ROOT / 'rules'}", "rules: rules")
    config.write_text(text.replace("  retries: 0", "  retries: 0\n  ops_recipients: [ops@example.com]"), encoding="utf-8")
    return config


def check_digest(raw: bytes, recipient: str, display_name: str) -> tuple[str, str]:
    """Exactly the expected headers, one recipient, a subject of counts and dates, and both
    parts free of control characters, live markup and evaluated Jinja; returns the parts."""
    assert header_lines(raw) == HEADERS
    message = email.message_from_bytes(raw, policy=email.policy.default)
    [to] = message["To"].addresses
    assert (to.display_name, to.addr_spec) == (display_name, recipient)
    assert message["From"] == "Frühwarnsystem <fruehwarnung@example.com>"
    assert re.fullmatch(r"Frühwarnung 23\.11\.2026: (1 neues Warnsignal|\d+ neue Warnsignale) bei (einem|\d+) Kunden", message["Subject"])
    assert "evil" not in raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = message.get_body(("html",)).get_content().replace("\r\n", "\n")
    for part in (text, html):
        assert not CONTROL.search(part), CONTROL.findall(part)
        assert "49" not in part
    for tag in ("<script", "<img", "<a ", "<b>", "<u>"):
        assert tag not in html
    return text, html


def test_owners_with_line_breaks_or_several_addresses_go_to_ops_with_the_reason(tmp_path):
    """The night's stages in process (no Prefect): validation clears the bad owner fields,
    routing sends those accounts' warnings to ops, and no header carries what they held."""
    config = hostile_project(tmp_path)
    ruleset = load_rules(tmp_path / "rules")
    with store.connect(tmp_path / "loyalty.duckdb") as con:
        validate_night(con, stage_extracts(con, tmp_path / "extracts", NIGHT), NIGHT)
        run_nights(con, ruleset, NIGHT)
        quarantined = con.execute("SELECT row_key, column_name, check_name, row_kept_out FROM quarantine ORDER BY 1").fetchall()
        mailing = night_mailing(con, ruleset, NIGHT, "de", load_settings(config).email.ops_recipients)
    assert quarantined == [
        ("L1", "owner_email", "is_email", False), ("M1", "owner_email", "is_email", False),
        ("N1", "owner_name", "is_one_line_text", False), ("S1", "owner_email", "is_email", False),
        ("Z1", "owner_name", "is_one_line_text", False),
    ]  # fmt: skip
    anna, ops = render_digests(mailing.warnings, NIGHT, SENDER, "de", portfolios=mailing.portfolios)
    assert (anna.envelope, ops.envelope) == (["anna@example.com"], ["ops@example.com"])
    check_digest(anna.message.as_bytes(), "anna@example.com", "Anna Groß")
    text, html = check_digest(ops.message.as_bytes(), "ops@example.com", "")
    for reason in OPS_REASONS:
        assert reason in text
    assert "Weitergeleitet: Betreuer-Name 'Bernd\\r\\nBcc: evil@example.com' ist ungültig" in html


@pytest.mark.usefixtures("prefect_harness")
def test_a_nightly_flow_run_writes_hostile_rule_texts_and_names_as_text(tmp_path):
    """One real flow run (Prefect, DuckDB, outbox): the .eml files it writes show the rule's
    hostile title, message and action, and the extract's names and contact, as text."""
    from flows.nightly import nightly

    config = hostile_project(tmp_path)
    nightly(config_path=str(config), night=NIGHT)
    outbox = tmp_path / "outbox" / NIGHT.isoformat()
    assert sorted(p.name for p in outbox.glob("*.eml")) == ["anna@example.com.eml", "ops@example.com.eml"]

    text, html = check_digest((outbox / "anna@example.com.eml").read_bytes(), "anna@example.com", "Anna Groß")
    literal = "{{ 7*7 }}"
    assert "<script>alert('name')</script> {{ 7*7 }} Müller & Co\ufffd[2J\ufffdGmbH (Kundennummer G1, Segment: <u>A</u>{{ 7*7 }}\ufffd" in text
    assert "[HOCH] <script>alert('title')</script> {{ 7*7 }} \ufffd[31mrot\ufffdEnde\n" in text
    # The contact person and segment came from the extract into the rule's placeholders; what
    # they hold is printed, not evaluated, and {{ orders_recent }} written in {% raw %} stays text.
    assert f"Befund: Segment <u>A</u>{literal}\ufffd, Kontakt {literal} <img src=x onerror=alert(1)> Hans\ufffd]0;pwned\ufffd; {{{{ orders_recent }}}}\ufffd <b>fett</b>\n" in text
    assert f"Empfehlung: <a href='javascript:alert(1)'>hier</a> \ufffd\ufffd31m {LONG.strip()}" in text  # all 11,500 characters
    assert "&lt;script&gt;alert('name')&lt;/script&gt; {{ 7*7 }} Müller &amp; Co\ufffd[2J\ufffdGmbH" in html
    assert "&lt;script&gt;alert('title')&lt;/script&gt; {{ 7*7 }} \ufffd[31mrot\ufffdEnde" in html
    assert "Kontakt {{ 7*7 }} &lt;img src=x onerror=alert(1)&gt; Hans\ufffd]0;pwned\ufffd; {{ orders_recent }}\ufffd &lt;b&gt;fett&lt;/b&gt;" in html
    assert "&lt;a href='javascript:alert(1)'&gt;hier&lt;/a&gt;" in html and LONG.strip() in html

    text, _ = check_digest((outbox / "ops@example.com.eml").read_bytes(), "ops@example.com", "")
    for reason in OPS_REASONS:
        assert reason in text
