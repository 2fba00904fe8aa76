"""Real SMTP servers on loopback (aiosmtpd) for delivery tests.

Import the fixtures into tests/conftest.py with ``from tests.support.smtp import *``.

Each server fixture yields an :class:`SmtpServer` whose ``messages`` list fills as mail arrives.
Traps worked around here:

- aiosmtpd's Controller connects to its own port once started, so ``port=0`` fails; a free
  port is found by binding a socket first.
- Implicit TLS (SMTPS) is the Controller's ``ssl_context=``, which wraps the listening socket;
  ``tls_context=`` is STARTTLS. aiosmtpd only counts a STARTTLS upgrade as "TLS" for AUTH, so
  the SMTPS server needs ``auth_require_tls=False`` to offer AUTH at all (the line is encrypted
  anyway); the warning aiosmtpd gives for that is silenced.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session, SMTP

# What ``from tests.support.smtp import *`` brings into conftest.py: the fixtures and their types.
__all__ = [
    "ReceivedMessage",
    "SmtpServer",
    "free_port",
    "smtp_ca",
    "smtp_server",
    "smtp_ssl_server",
    "smtp_starttls_server",
    "smtp_tls_contexts",
    "unused_port",
]

HOST = "127.0.0.1"
USERNAME = "digest-bot"
PASSWORD = "correct-horse-battery-staple"


@dataclass(frozen=True)
class ReceivedMessage:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes  # the message as it arrived, CRLF line ends


@dataclass
class SmtpServer:
    host: str
    port: int
    messages: list[ReceivedMessage] = field(default_factory=list)
    # Add an address here to have the server answer its RCPT TO with 550.
    refused_recipients: set[str] = field(default_factory=set)
    # Replies for the next DATA commands, used up in order, instead of accepting the message;
    # "" hangs up without answering, as a server that crashes mid-message would, and "hang"
    # never answers at all.
    data_replies: list[str] = field(default_factory=list)
    # Set when a message's DATA has arrived (before it is answered).
    data_received: threading.Event = field(default_factory=threading.Event)
    # Only for the TLS servers: a client context that trusts the test CA, and the credentials.
    client_context: ssl.SSLContext | None = None
    username: str | None = None
    password: str | None = None

    def recipients(self) -> list[str]:
        """Every envelope recipient of every message received, in arrival order."""
        return [rcpt for message in self.messages for rcpt in message.rcpt_tos]


class _Recorder:
    """aiosmtpd handler: keeps each envelope in the server's list and accepts it."""

    def __init__(self, server: SmtpServer) -> None:
        self.messages = server.messages
        self.refused = server.refused_recipients
        self.data_replies = server.data_replies
        self.data_received = server.data_received

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refused:
            return "550 5.1.1 Mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.data_received.set()
        if self.data_replies:
            reply = self.data_replies.pop(0)
            if reply == "hang":
                await asyncio.sleep(3600)  # cancelled when the server stops
            if not reply:
                server.transport.close()
            return reply or "451 unreachable"
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)
        self.messages.append(ReceivedMessage(envelope.mail_from, list(envelope.rcpt_tos), content))
        return "250 Message accepted for delivery"


def _authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: object) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USERNAME.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)


def free_port() -> int:
    """A TCP port on loopback nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def smtp_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def smtp_tls_contexts(smtp_ca: trustme.CA) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context with a certificate for 127.0.0.1 and localhost, client context trusting it)."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    smtp_ca.issue_cert(HOST, "localhost").configure_cert(server)
    client = ssl.create_default_context()
    smtp_ca.configure_trust(client)
    return server, client


class _SmtpsController(Controller):
    """Implicit TLS with AUTH: aiosmtpd warns on each connection that AUTH does not require
    (STARTTLS-)TLS; here the whole connection is TLS, so the warning is noise."""

    def factory(self) -> SMTP:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS", UserWarning)
            return super().factory()


def _serve(server: SmtpServer, controller_class: type[Controller] = Controller, **options: object) -> Iterator[SmtpServer]:
    controller = controller_class(_Recorder(server), hostname=server.host, port=server.port, **options)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """Plain SMTP, no TLS, no AUTH."""
    yield from _serve(SmtpServer(HOST, free_port()))


@pytest.fixture
def smtp_starttls_server(smtp_tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> Iterator[SmtpServer]:
    """SMTP that demands STARTTLS before anything else, then AUTH (PLAIN/LOGIN)."""
    server_ctx, client_ctx = smtp_tls_contexts
    yield from _serve(
        SmtpServer(HOST, free_port(), client_context=client_ctx, username=USERNAME, password=PASSWORD),
        tls_context=server_ctx,
        require_starttls=True,
        authenticator=_authenticate,
        auth_required=True,
        auth_require_tls=True,
    )


@pytest.fixture
def smtp_ssl_server(smtp_tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> Iterator[SmtpServer]:
    """SMTPS: TLS from the first byte (as on port 465), then AUTH."""
    server_ctx, client_ctx = smtp_tls_contexts
    yield from _serve(
        SmtpServer(HOST, free_port(), client_context=client_ctx, username=USERNAME, password=PASSWORD),
        _SmtpsController,
        ssl_context=server_ctx,
        authenticator=_authenticate,
        auth_required=True,
        auth_require_tls=False,
    )


@pytest.fixture
def unused_port() -> int:
    """A loopback port with no server behind it: connecting is refused at once."""
    return free_port()
