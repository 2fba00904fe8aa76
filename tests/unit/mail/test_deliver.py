"""Delivering digests through the ledger: outbox files and real SMTP servers on loopback.

The SMTP fixtures come from tests/conftest_smtp.py (imported by tests/conftest.py).
"""

from __future__ import annotations

import email
import email.policy
import os
import signal
import ssl
import subprocess
import sys
import textwrap
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from loyalty_engine import store
from loyalty_engine.config import EmailSettings, SmtpSettings
from loyalty_engine.mail.delivery import deliver_digests, undelivered_earlier
from loyalty_engine.mail.digest import AccountWarning, Digest, render_digests

NIGHT = date(2026, 11, 23)
SENDER = "Loyalty Engine <loyalty@example.com>"
PASSWORD_ENV = "TEST_LOYALTY_SMTP_PASSWORD"
OWNERS = ["anna@example.com", "bernd@example.com", "cem@example.com"]


def digests(night: date = NIGHT, title: str = "Bestellfrequenz sinkt") -> list[Digest]:
    warnings = [
        AccountWarning(
            account_id=f"K-{i}",
            account_name=f"Kunde Nr. {i} GmbH & Söhne",
            owner_email=owner,
            owner_name=owner.split("@")[0].title(),
            rule_id="falling_order_frequency",
            severity="high",
            title=title,
            message="0 Bestellungen in 90 Tagen, etwa 6 erwartet",
            action="Entscheider anrufen; fragen, was sich geändert hat.",
        )
        for i, owner in enumerate(OWNERS)
    ]
    return render_digests(warnings, night, SENDER, "de")


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    connection = store.connect(tmp_path / "loyalty.duckdb")
    yield connection
    connection.close()


def ledger(con: duckdb.DuckDBPyConnection) -> dict[str, tuple]:
    rows = con.execute(
        "SELECT recipient, status, attempts, last_error, mode, message_id FROM deliveries ORDER BY recipient"
    ).fetchall()
    return {row[0]: row[1:] for row in rows}


def outbox_settings(tmp_path: Path) -> EmailSettings:
    return EmailSettings(mode="outbox", outbox_dir=tmp_path / "outbox", sender=SENDER)


def smtp_settings(server, security: str = "none", username: str | None = None) -> EmailSettings:
    return EmailSettings(
        mode="smtp",
        sender=SENDER,
        smtp=SmtpSettings(
            host=server.host,
            port=server.port,
            security=security,
            username=username,
            password_env=PASSWORD_ENV,
            timeout_seconds=5,
        ),
    )


# --- outbox -------------------------------------------------------------------------------


def test_outbox_writes_one_parseable_eml_per_recipient(con, tmp_path: Path) -> None:
    rendered = digests()

    report = deliver_digests(con, rendered, outbox_settings(tmp_path))

    assert report.sent == OWNERS
    assert (report.skipped, report.failed) == ([], {})
    folder = tmp_path / "outbox" / "2026-11-23"
    assert sorted(p.name for p in folder.iterdir()) == [f"{owner}.eml" for owner in OWNERS]
    for digest in rendered:
        data = (folder / f"{digest.recipient}.eml").read_bytes()
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        assert parsed["Message-ID"] == digest.message["Message-ID"]
        assert parsed.get_content_type() == "multipart/alternative"
        assert "Kunde Nr." in parsed.get_body(("plain",)).get_content()
    stored = con.execute("SELECT message FROM deliveries WHERE recipient = ?", [OWNERS[0]]).fetchone()[0]
    assert stored == (folder / f"{OWNERS[0]}.eml").read_bytes()
    assert ledger(con)[OWNERS[0]] == ("sent", 1, None, "outbox", rendered[0].message["Message-ID"])


def test_outbox_rerun_skips_what_was_delivered(con, tmp_path: Path) -> None:
    settings = outbox_settings(tmp_path)
    deliver_digests(con, digests(), settings)
    written = {p: p.read_bytes() for p in (tmp_path / "outbox" / "2026-11-23").iterdir()}

    # Even with different content (a re-run on corrected data), a delivered night stays delivered.
    report = deliver_digests(con, digests(title="Geänderter Titel"), settings)

    assert report.sent == []
    assert report.skipped == OWNERS
    assert {p: p.read_bytes() for p in written} == written
    assert all(row[:2] == ("sent", 1) for row in ledger(con).values())


def test_outbox_ledger_survives_reopening_the_database(tmp_path: Path) -> None:
    path = tmp_path / "loyalty.duckdb"
    with store.connect(path) as first:
        deliver_digests(first, digests(), outbox_settings(tmp_path))

    with store.connect(path) as second:
        report = deliver_digests(second, digests(), outbox_settings(tmp_path))

    assert report.skipped == OWNERS


def test_a_new_night_is_delivered_again(con, tmp_path: Path) -> None:
    settings = outbox_settings(tmp_path)
    deliver_digests(con, digests(), settings)

    report = deliver_digests(con, digests(night=date(2026, 11, 24)), settings)

    assert report.sent == OWNERS
    assert (tmp_path / "outbox" / "2026-11-24" / f"{OWNERS[0]}.eml").exists()


def test_prepared_row_from_a_crash_is_delivered_with_the_new_render(con, tmp_path: Path) -> None:
    # A run that died after committing 'prepared' and before sending left this behind.
    deliver_digests(con, [], outbox_settings(tmp_path))  # creates the ledger
    con.execute(
        "INSERT INTO deliveries VALUES (?, ?, '<old@example.com>', 'outbox', 'prepared', 1, NULL, ?, ?)",
        [NIGHT, OWNERS[0], b"stale bytes", datetime(2026, 11, 23, 6, 0)],
    )

    report = deliver_digests(con, digests()[:1], outbox_settings(tmp_path))

    assert report.sent == [OWNERS[0]]
    status, attempts, _, _, message_id = ledger(con)[OWNERS[0]]
    assert (status, attempts) == ("sent", 2)
    assert message_id.startswith("<digest.2026-11-23.")
    data = (tmp_path / "outbox" / "2026-11-23" / f"{OWNERS[0]}.eml").read_bytes()
    assert b"stale bytes" not in data


def test_open_transaction_of_the_caller_is_refused(con, tmp_path: Path) -> None:
    con.begin()

    with pytest.raises(duckdb.TransactionException):
        deliver_digests(con, digests(), outbox_settings(tmp_path))


def test_outbox_that_cannot_be_written_fails_without_raising(con, tmp_path: Path) -> None:
    blocked = tmp_path / "outbox"
    blocked.write_text("a file where the folder should be")

    report = deliver_digests(con, digests(), outbox_settings(tmp_path))

    assert report.sent == []
    assert set(report.failed) == set(OWNERS)
    assert "cannot write" in report.failed[OWNERS[0]]
    assert {row[0] for row in ledger(con).values()} == {"failed"}


def test_outbox_leaves_no_temporary_files(con, tmp_path: Path) -> None:
    deliver_digests(con, digests(), outbox_settings(tmp_path))

    leftovers = [p.name for p in (tmp_path / "outbox").rglob("*") if p.name.startswith(".")]
    assert leftovers == []


# --- SMTP ---------------------------------------------------------------------------------


def test_smtp_plain_sends_one_message_per_recipient(con, smtp_server) -> None:
    rendered = digests()

    report = deliver_digests(con, rendered, smtp_settings(smtp_server))

    assert report.sent == OWNERS
    assert smtp_server.recipients() == OWNERS
    assert {m.mail_from for m in smtp_server.messages} == {"loyalty@example.com"}
    stored = dict(con.execute("SELECT recipient, message FROM deliveries").fetchall())
    for received in smtp_server.messages:
        [recipient] = received.rcpt_tos
        # The server got exactly the bytes the ledger holds.
        assert received.content.rstrip(b"\r\n") == stored[recipient].rstrip(b"\r\n")
        parsed = email.message_from_bytes(received.content, policy=email.policy.default)
        assert parsed["To"].addresses[0].addr_spec == recipient
    assert {row[0] for row in ledger(con).values()} == {"sent"}
    assert {row[3] for row in ledger(con).values()} == {"smtp"}


def test_smtp_rerun_sends_nothing_new(con, smtp_server) -> None:
    settings = smtp_settings(smtp_server)
    deliver_digests(con, digests(), settings)

    report = deliver_digests(con, digests(), settings)

    assert report.sent == []
    assert report.skipped == OWNERS
    assert len(smtp_server.messages) == len(OWNERS)


def test_smtp_refused_recipient_fails_alone(con, smtp_server) -> None:
    smtp_server.refused_recipients.add(OWNERS[1])

    report = deliver_digests(con, digests(), smtp_settings(smtp_server))

    assert report.sent == [OWNERS[0], OWNERS[2]]
    assert list(report.failed) == [OWNERS[1]]
    assert report.failed[OWNERS[1]] == "recipient refused: 550 5.1.1 Mailbox unavailable"
    assert ledger(con)[OWNERS[1]][:3] == ("failed", 1, "recipient refused: 550 5.1.1 Mailbox unavailable")

    smtp_server.refused_recipients.clear()
    retry = deliver_digests(con, digests(), smtp_settings(smtp_server))

    assert (retry.sent, retry.skipped) == ([OWNERS[1]], [OWNERS[0], OWNERS[2]])
    assert ledger(con)[OWNERS[1]][:3] == ("sent", 2, None)
    assert smtp_server.recipients() == [OWNERS[0], OWNERS[2], OWNERS[1]]


def test_smtp_reconnects_after_the_server_hung_up(con, smtp_server) -> None:
    smtp_server.data_replies.append("421 4.3.2 Shutting down")

    report = deliver_digests(con, digests(), smtp_settings(smtp_server))

    # smtplib closes its end on a 421; the next digest notices and opens a new session.
    assert report.failed == {OWNERS[0]: "message refused: 421 4.3.2 Shutting down"}
    assert report.sent == OWNERS[1:]
    assert smtp_server.recipients() == OWNERS[1:]


def test_smtp_connection_lost_mid_message_fails_that_digest_only(con, smtp_server) -> None:
    smtp_server.data_replies.extend(["250 OK", ""])

    report = deliver_digests(con, digests(), smtp_settings(smtp_server))

    # Whether the message arrived is unknown, so it is not sent again in this run.
    assert report.failed == {OWNERS[1]: "SMTP connection lost while sending; the message may not have arrived"}
    assert report.sent == [OWNERS[0], OWNERS[2]]
    assert ledger(con)[OWNERS[1]][0] == "failed"


@pytest.mark.parametrize("security, server_fixture", [("starttls", "smtp_starttls_server"), ("ssl", "smtp_ssl_server")])
def test_smtp_tls_with_login(con, security, server_fixture, request, monkeypatch) -> None:
    server = request.getfixturevalue(server_fixture)
    monkeypatch.setenv(PASSWORD_ENV, server.password)
    settings = smtp_settings(server, security, server.username)

    report = deliver_digests(con, digests(), settings, ssl_context=server.client_context)

    assert report.sent == OWNERS
    assert server.recipients() == OWNERS


def test_smtp_wrong_password_fails_then_succeeds_with_the_right_one(con, smtp_starttls_server, monkeypatch) -> None:
    wrong = "hunter2-not-it"
    monkeypatch.setenv(PASSWORD_ENV, wrong)
    settings = smtp_settings(smtp_starttls_server, "starttls", smtp_starttls_server.username)
    context = smtp_starttls_server.client_context

    report = deliver_digests(con, digests(), settings, ssl_context=context)

    assert report.sent == []
    assert set(report.failed) == set(OWNERS)
    reason = report.failed[OWNERS[0]]
    assert "rejected login as 'digest-bot'" in reason
    assert "535" in reason
    assert wrong not in reason
    assert "\n" not in reason
    status, attempts, last_error, *_ = ledger(con)[OWNERS[0]]
    assert (status, attempts, last_error) == ("failed", 1, reason)
    assert smtp_starttls_server.messages == []

    monkeypatch.setenv(PASSWORD_ENV, smtp_starttls_server.password)
    retry = deliver_digests(con, digests(), settings, ssl_context=context)

    assert retry.sent == OWNERS
    assert ledger(con)[OWNERS[0]][:3] == ("sent", 2, None)
    assert smtp_starttls_server.recipients() == OWNERS


def test_smtp_missing_password_variable_is_named(con, smtp_starttls_server, monkeypatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    settings = smtp_settings(smtp_starttls_server, "starttls", smtp_starttls_server.username)

    report = deliver_digests(con, digests(), settings, ssl_context=smtp_starttls_server.client_context)

    assert set(report.failed) == set(OWNERS)
    assert PASSWORD_ENV in report.failed[OWNERS[0]]
    assert "is not set" in report.failed[OWNERS[0]]


def test_smtp_untrusted_certificate_fails(con, smtp_starttls_server, monkeypatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, smtp_starttls_server.password)
    settings = smtp_settings(smtp_starttls_server, "starttls", smtp_starttls_server.username)

    # The default context trusts the system's CAs, not the test CA.
    report = deliver_digests(con, digests(), settings, ssl_context=ssl.create_default_context())

    assert set(report.failed) == set(OWNERS)
    assert "TLS with SMTP server" in report.failed[OWNERS[0]]
    assert "certificate" in report.failed[OWNERS[0]]
    assert smtp_starttls_server.messages == []


def test_smtp_starttls_required_but_not_used_fails(con, smtp_starttls_server) -> None:
    report = deliver_digests(con, digests(), smtp_settings(smtp_starttls_server))

    assert set(report.failed) == set(OWNERS)
    assert "530" in report.failed[OWNERS[0]]


def test_smtp_server_down_fails_every_digest_quickly(con, unused_port: int) -> None:
    class Down:
        host, port = "127.0.0.1", unused_port

    started = time.monotonic()
    report = deliver_digests(con, digests(), smtp_settings(Down))

    assert time.monotonic() - started < 5
    assert report.sent == []
    assert list(report.failed) == OWNERS
    assert report.failed[OWNERS[0]] == f"cannot connect to SMTP server 127.0.0.1:{unused_port}: Connection refused"
    assert all(row[:2] == ("failed", 1) for row in ledger(con).values())


CRASHING_RUN = textwrap.dedent(
    """
    import sys
    from datetime import date
    from pathlib import Path
    from loyalty_engine import store
    from loyalty_engine.config import EmailSettings, SmtpSettings
    from loyalty_engine.mail.delivery import deliver_digests
    from loyalty_engine.mail.digest import AccountWarning, render_digests

    db, port = sys.argv[1], int(sys.argv[2])
    warning = AccountWarning("K-1", "Bäckerei Kühn", "anna@example.com", "Anna", "r", "high", "t", "m", "a")
    settings = EmailSettings(mode="smtp", sender="loyalty@example.com",
                             smtp=SmtpSettings(host="127.0.0.1", port=port, timeout_seconds=60))
    with store.connect(Path(db)) as con:
        deliver_digests(con, render_digests([warning], date(2026, 11, 23), "loyalty@example.com", "de"), settings)
    """
)


def test_crash_while_sending_leaves_prepared_and_the_next_run_delivers(tmp_path: Path, smtp_server) -> None:
    db = tmp_path / "loyalty.duckdb"
    smtp_server.data_replies.append("hang")
    child = subprocess.Popen([sys.executable, "-c", CRASHING_RUN, str(db), str(smtp_server.port)])
    try:
        assert smtp_server.data_received.wait(30), "the child never reached DATA"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(30)

    with duckdb.connect(str(db)) as con:
        assert ledger(con)["anna@example.com"][:2] == ("prepared", 1)

        report = deliver_digests(con, digests()[:1], smtp_settings(smtp_server))

        assert report.sent == ["anna@example.com"]
        assert ledger(con)["anna@example.com"][:2] == ("sent", 2)


def test_a_digest_an_earlier_night_never_sent_goes_out_with_the_next_run(con, smtp_server, unused_port) -> None:
    settings = EmailSettings(mode="smtp", sender="loyalty@example.com", smtp=SmtpSettings(host=smtp_server.host, port=unused_port))
    yesterday = digests()[0]
    report = deliver_digests(con, [yesterday], settings)  # the server is not there: failed
    assert list(report.failed) == [yesterday.recipient]
    today = yesterday.night + timedelta(days=1)
    earlier = undelivered_earlier(con, today, 7)
    assert [(d.night, d.recipient, d.message["Message-ID"]) for d in earlier] == [(yesterday.night, yesterday.recipient, yesterday.message["Message-ID"])]
    working = settings.model_copy(update={"smtp": SmtpSettings(host=smtp_server.host, port=smtp_server.port)})
    assert deliver_digests(con, earlier, working).sent == [yesterday.recipient]
    assert undelivered_earlier(con, today, 7) == [] and len(smtp_server.messages) == 1

