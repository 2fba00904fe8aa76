"""Digests -> mailboxes (SMTP) or .eml files (outbox), through a ledger so nothing is sent twice.

The ledger is the ``deliveries`` table (store.py): one row per (night, recipient). For each digest:

1. a row with status ``sent`` means it went out already: the digest is skipped, even if its
   content has changed since (an owner gets one mail per night, never a correction);
2. otherwise the row is written as ``prepared`` with the bytes about to go out and committed
   *before* anything leaves the machine, so a crash mid-send leaves ``prepared``, never nothing;
3. the digest is delivered and the row marked ``sent`` or ``failed`` with a one-line reason.

The one window left: the server has accepted a message (its reply to DATA) and the process
dies before the ``sent`` update commits, one local UPDATE later. The next run then sends it
again, with the same Message-ID, so mail clients show it once. It goes out twice at worst,
never not at all.

Digests of earlier nights still ``prepared`` or ``failed`` (the run crashed, the server was
down all night) are sent by the next run from the stored bytes: see ``undelivered_earlier``.

A retry (a later run, or the caller's Prefect retry) re-sends the *newly rendered* digest, not
the bytes stored by the failed attempt: the new render reflects the data the night now has,
and the Message-ID is the same either way, so a receiving side that saw a half-delivered
first attempt still recognises the mail. ``attempts`` counts the attempts started, so an
attempt cut short by a crash is counted too.

Delivery is plain and synchronous; backoff between retries belongs to the caller.
"""

from __future__ import annotations

import email.policy
import logging
import os
import re
import smtplib
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import parseaddr
from pathlib import Path

import duckdb

from loyalty_engine.config import EmailSettings, SmtpSettings
from loyalty_engine.mail.digest import Digest

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class DeliveryReport:
    """What one call did, per recipient, in the order the digests came in."""

    sent: list[str] = field(default_factory=list)  # delivered this time
    skipped: list[str] = field(default_factory=list)  # delivered for this night by an earlier run
    failed: dict[str, str] = field(default_factory=dict)  # recipient -> one-line reason


class _Undeliverable(Exception):
    """One digest could not be delivered; the message is the ledger's one-line reason."""


class _ServerUnusable(_Undeliverable):
    """The server cannot be reached or refuses us: every digest still to go fails with this."""


def deliver_digests(
    con: duckdb.DuckDBPyConnection,
    digests: list[Digest],
    settings: EmailSettings,
    *,
    ssl_context: ssl.SSLContext | None = None,
    clock: Callable[[], datetime] | None = None,
) -> DeliveryReport:
    """Deliver each digest not yet delivered for its night; record every attempt in the ledger.

    A failure for one recipient never stops the others and never raises: it is reported in
    ``failed`` and stays in the ledger for the next run. ``con`` must be in autocommit mode
    (no open transaction), because each ledger row is committed before its mail goes out.
    ``ssl_context`` verifies the SMTP server (default: the system's trust store).

    Example::

        report = deliver_digests(con, render_digests(warnings, night, sender, "de"), settings.email)
        if report.failed:
            raise DeliveryError(f"{len(report.failed)} digests failed")  # the task retries
    """
    now = clock or (lambda: datetime.now(UTC).replace(tzinfo=None))
    report = DeliveryReport()
    if settings.mode == "smtp":
        transport: _Transport = _SmtpTransport(settings, ssl_context or ssl.create_default_context())
    else:
        transport = _OutboxTransport(settings.outbox_dir)
    try:
        for digest in digests:
            if _already_sent(con, digest):
                report.skipped.append(digest.recipient)
                continue
            data = digest.message.as_bytes(policy=email.policy.SMTP)
            _mark_prepared(con, digest, data, settings.mode, now())
            try:
                transport.deliver(digest, data)
            except _Undeliverable as err:
                reason = str(err)
                _mark(con, digest, "failed", reason, now())
                report.failed[digest.recipient] = reason
                log.warning("digest for %s (%s) not delivered: %s", digest.recipient, digest.night, reason)
            else:
                _mark(con, digest, "sent", None, now())
                report.sent.append(digest.recipient)
                log.info("digest for %s (%s) delivered via %s", digest.recipient, digest.night, settings.mode)
    finally:
        transport.close()
    return report


def undelivered_earlier(con: duckdb.DuckDBPyConnection, night: date, days: int) -> list[Digest]:
    """Digests of the `days` nights before `night` that never went out, as they were prepared.

    Their warnings were recorded as told that night, so a lost digest would leave its owner
    never hearing of them: the next run sends the stored bytes (same Message-ID).
    """
    rows = con.execute(
        """
        SELECT night, recipient, message FROM deliveries
        WHERE status <> 'sent' AND night < ? AND night >= ? ORDER BY night, recipient
        """,
        [night, night - timedelta(days=days)],
    ).fetchall()
    return [
        Digest(earlier, recipient, email.message_from_bytes(data, policy=email.policy.SMTP))
        for earlier, recipient, data in rows
    ]


def _already_sent(con: duckdb.DuckDBPyConnection, digest: Digest) -> bool:
    row = con.execute(
        "SELECT status FROM deliveries WHERE night = ? AND recipient = ?",
        [digest.night, digest.recipient],
    ).fetchone()
    return row is not None and row[0] == "sent"


def _mark_prepared(
    con: duckdb.DuckDBPyConnection, digest: Digest, data: bytes, mode: str, now: datetime
) -> None:
    # Committed on its own, so the row is on disk before the mail leaves. begin() also refuses
    # to run inside a transaction the caller left open, which would void that guarantee.
    con.begin()
    try:
        con.execute(
            """
            INSERT INTO deliveries AS d
                (night, recipient, message_id, mode, status, attempts, last_error, message, updated_at)
            VALUES (?, ?, ?, ?, 'prepared', 1, NULL, ?, ?)
            ON CONFLICT (night, recipient) DO UPDATE SET
                message_id = excluded.message_id,
                mode = excluded.mode,
                status = 'prepared',
                attempts = d.attempts + 1,
                message = excluded.message,
                updated_at = excluded.updated_at
            """,
            [digest.night, digest.recipient, str(digest.message["Message-ID"]), mode, data, now],
        )
    except BaseException:
        con.rollback()
        raise
    con.commit()


def _mark(
    con: duckdb.DuckDBPyConnection, digest: Digest, status: str, error: str | None, now: datetime
) -> None:
    con.execute(
        "UPDATE deliveries SET status = ?, last_error = ?, updated_at = ? WHERE night = ? AND recipient = ?",
        [status, error, now, digest.night, digest.recipient],
    )


class _Transport:
    def deliver(self, digest: Digest, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _OutboxTransport(_Transport):
    """Writes ``<outbox>/<night>/<recipient>.eml``; a reader never sees half a file."""

    def __init__(self, outbox_dir: Path) -> None:
        self.outbox_dir = outbox_dir

    def deliver(self, digest: Digest, data: bytes) -> None:
        folder = self.outbox_dir / digest.night.isoformat()
        target = folder / f"{_file_name(digest.recipient)}.eml"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".eml.tmp")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temp, target)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
        except OSError as err:
            raise _Undeliverable(f"cannot write {target}: {err.strerror or err}") from None


def _file_name(recipient: str) -> str:
    """The recipient as a file name: anything that is not plainly safe becomes '_'.

    >>> _file_name("o'brien/sales@example.com")
    'o_brien_sales@example.com'
    """
    return re.sub(r"[^A-Za-z0-9@._+-]", "_", recipient).lstrip(".") or "_"


class _SmtpTransport(_Transport):
    """One SMTP session for the whole run, opened on first use, reopened when the server hung up."""

    def __init__(self, settings: EmailSettings, context: ssl.SSLContext) -> None:
        self.smtp_settings: SmtpSettings = settings.smtp
        self.context = context
        self.envelope_from = parseaddr(settings.sender)[1]
        self.session: smtplib.SMTP | None = None
        # Set once the server proved unusable; every later digest fails fast with it
        # instead of waiting out another connection timeout.
        self.broken: str | None = None
        self.password: str | None = None

    def deliver(self, digest: Digest, data: bytes) -> None:
        if self.broken:
            raise _ServerUnusable(self.broken)
        # A session can die between two digests (idle timeout, server restart): check it
        # before handing over a message: once it is handed over, a lost line leaves it unknown
        # whether it arrived; it is then marked failed and sent again by the next attempt.
        if self.session is not None and not _alive(self.session):
            self._drop()
        try:
            if self.session is None:
                self.session = self._connect()
        except _ServerUnusable as err:
            self.broken = str(err)
            raise
        try:
            self._send(self.session, digest, data)
        except _Lost:
            self._drop()
            raise _Undeliverable(
                "SMTP connection lost while sending; the message may not have arrived"
            ) from None

    def _connect(self) -> smtplib.SMTP:
        cfg = self.smtp_settings
        if cfg.username:
            self.password = cfg.password()
            if self.password is None:
                raise _ServerUnusable(
                    f"SMTP username {cfg.username!r} is configured but environment variable "
                    f"{cfg.password_env} (smtp.password_env) is not set"
                )
        where = f"{cfg.host}:{cfg.port}"
        session: smtplib.SMTP | None = None
        try:
            if cfg.security == "ssl":
                session = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout_seconds, context=self.context)
            else:
                session = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_seconds)
            session.ehlo()
            if cfg.security == "starttls":
                session.starttls(context=self.context)
                session.ehlo()
            if cfg.username:
                session.login(cfg.username, self.password or "")
        except smtplib.SMTPAuthenticationError as err:
            _quit(session)
            raise _ServerUnusable(
                self._reason(f"SMTP server {where} rejected login as {cfg.username!r}: {_response(err)}")
            ) from None
        except smtplib.SMTPNotSupportedError as err:
            _quit(session)
            raise _ServerUnusable(self._reason(f"SMTP server {where}: {_one_line(err)}")) from None
        except smtplib.SMTPResponseException as err:
            _quit(session)
            raise _ServerUnusable(self._reason(f"SMTP server {where} refused the session: {_response(err)}")) from None
        except ssl.SSLError as err:
            _quit(session)
            raise _ServerUnusable(self._reason(f"TLS with SMTP server {where} failed: {_ssl_reason(err)}")) from None
        except TimeoutError:
            _quit(session)
            raise _ServerUnusable(f"SMTP server {where} did not answer within {cfg.timeout_seconds:g} s") from None
        except (OSError, smtplib.SMTPException, UnicodeError) as err:
            _quit(session)
            raise _ServerUnusable(self._reason(f"cannot connect to SMTP server {where}: {_os_reason(err)}")) from None
        return session

    def _send(self, session: smtplib.SMTP, digest: Digest, data: bytes) -> None:
        """Send one message; a refusal is this recipient's failure, a dropped line is _Lost."""
        try:
            # The stored bytes themselves, not a re-serialisation: the ledger holds what went out.
            refused = session.sendmail(self.envelope_from, digest.envelope, data)
        except smtplib.SMTPRecipientsRefused as err:
            code, text = next(iter(err.recipients.values()), (0, b"refused"))
            raise _Undeliverable(self._reason(f"recipient refused: {code} {_decode(text)}")) from None
        except smtplib.SMTPSenderRefused as err:
            raise _Undeliverable(self._reason(f"sender {self.envelope_from} refused: {_response(err)}")) from None
        except smtplib.SMTPServerDisconnected:
            raise _Lost from None
        except smtplib.SMTPResponseException as err:
            raise _Undeliverable(self._reason(f"message refused: {_response(err)}")) from None
        except (smtplib.SMTPException, ssl.SSLError) as err:
            raise _Undeliverable(self._reason(f"sending failed: {_one_line(err)}")) from None
        except OSError:  # reset, broken pipe, timeout
            raise _Lost from None
        except UnicodeError:
            raise _Undeliverable(
                f"an address of {', '.join(digest.envelope)} needs SMTPUTF8, which is not supported here"
            ) from None
        for address, (code, text) in refused.items():
            # The server took the message for someone: failing it now would send it twice.
            log.warning("digest for %s (%s): %s refused: %s %s", digest.recipient, digest.night, address, code, _decode(text))

    def _reason(self, text: str) -> str:
        """One line, and never the password, whatever the server chose to echo back."""
        text = _one_line(text)
        if self.password:
            text = text.replace(self.password, "***")
        return text

    def _drop(self) -> None:
        _quit(self.session)
        self.session = None

    def close(self) -> None:
        self._drop()


class _Lost(Exception):
    """The SMTP session went away mid-conversation."""


def _alive(session: smtplib.SMTP) -> bool:
    try:
        return session.noop()[0] == 250
    except (OSError, smtplib.SMTPException):
        return False


def _quit(session: smtplib.SMTP | None) -> None:
    if session is None:
        return
    try:
        session.quit()
    except (OSError, smtplib.SMTPException):
        session.close()


def _response(err: smtplib.SMTPResponseException) -> str:
    return f"{err.smtp_code} {_decode(err.smtp_error)}"


def _decode(text: bytes | str) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _ssl_reason(err: ssl.SSLError) -> str:
    # verify_message says *why* a certificate was refused ("self-signed certificate", ...).
    detail = getattr(err, "verify_message", None) or err.reason or str(err)
    return _one_line(detail)


def _os_reason(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return _one_line(err) or type(err).__name__
