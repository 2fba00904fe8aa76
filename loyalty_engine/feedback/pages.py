"""The verdict pages: where a digest's verdict links lead (`loyalty feedback serve`).

One route, ``/v/<token>``. A GET only shows: the warning, its evidence, the answer the link
stands for and one button. Mail security scanners (Outlook Safe Links, Gmail) open every link of
a mail, so a GET that recorded would record answers nobody gave. The button POSTs the same token
back to the same address, and only that records. No cookie, no session, no redirect: the signed
token is the whole credential, and a page never sends the reader anywhere else.

Every refusal is a short page in plain words with a 4xx status, and records nothing: a token that
is malformed, altered, signed with another secret, for another owner or for a warning the file
does not know gets one and the same answer (404), so probing tells nothing; a genuine one past
its last day gets 410; a second press of the same answer 409. Requests are size-limited and rate-
limited per client address. The DuckDB file is opened per request for milliseconds; while the
night holds it, a request waits a moment, then gets 503 "try again in a minute".

Nothing here imports Prefect: the pages start in a second and run beside the nightly flow.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from loyalty_engine import i18n, store
from loyalty_engine.config import Settings
from loyalty_engine.errors import UserError
from loyalty_engine.feedback.links import BadToken, Expired, Ticket, read
from loyalty_engine.feedback.verdicts import Answer, MailedWarning, latest_answer, record, warning_of
from loyalty_engine.mail.digest import SEVERITY_COLOURS
from loyalty_engine.mail.mailing import rule_text
from loyalty_engine.rules.loader import RuleSet
from loyalty_engine.safe_text import printable
from loyalty_engine.templating import render

log = logging.getLogger("loyalty.feedback")

MAX_BODY_BYTES = 2048  # the form holds one token: anything larger is not our form
RATE_PER_MINUTE = 30  # requests per client address; a person clicks a few links a day
BUSY_WAIT_SECONDS = 2.0  # how long a request waits for the night to let go of the file

# No script, nothing loaded from elsewhere, no framing, the form posts only to this server, and
# the token in the address is never sent on as a Referer.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass
class RateLimit:
    """A token bucket per client address: `per_minute` requests, refilled evenly."""

    per_minute: int = RATE_PER_MINUTE
    clock: Callable[[], float] = time.monotonic
    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # address: (tokens, when)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def allow(self, client: str) -> bool:
        now = self.clock()
        with self.lock:
            tokens, then = self.buckets.get(client, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - then) * self.per_minute / 60)
            allowed = tokens >= 1
            self.buckets[client] = (tokens - 1 if allowed else tokens, now)
            if len(self.buckets) > 10_000:  # many addresses: forget the ones whose bucket is full again
                self.buckets = {k: v for k, v in self.buckets.items() if v[0] + (now - v[1]) * self.per_minute / 60 < self.per_minute}
        return allowed


@dataclass(frozen=True)
class Outcome:
    """What a request got, for the page and the log line (never the token)."""

    status: int
    page: str  # which text: invalid, expired, busy, confirm, thanks, already, ...
    ticket: Ticket | None = None


def verdict_app(
    settings: Settings,
    ruleset: RuleSet,
    secret: bytes,
    *,
    rate_per_minute: int = RATE_PER_MINUTE,
    busy_wait: float = BUSY_WAIT_SECONDS,
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc).replace(tzinfo=None),
) -> Starlette:
    """The verdict pages as an ASGI app, for uvicorn (`serve`) or a test. `clock` gives UTC now."""
    rules = {rule.id: rule for rule in ruleset.rules}
    limit = RateLimit(rate_per_minute)
    # One request at a time in the file: an answer's check-then-insert stays whole, and opening the
    # file (which runs store.SCHEMA's CREATE … IF NOT EXISTS) never races itself. A few clicks a day.
    one_at_a_time = threading.Lock()
    default_language = settings.digest.language

    def words_of(code: str) -> i18n.Language:
        """The words of the token's language; a language dropped since the night falls back to the default."""
        return i18n.language(code if code in i18n.LANGUAGES else default_language)

    def page(outcome: Outcome, language: str, **context) -> HTMLResponse:
        words = words_of(language)
        text = dict(words.feedback)
        body = render("feedback.html.j2", {"lang": words.code, "ui": text, "page": outcome.page, "colours": SEVERITY_COLOURS, **context})
        headers = dict(HEADERS)
        if outcome.status in (429, 503):
            headers["Retry-After"] = "60"
        return HTMLResponse(body, status_code=outcome.status, headers=headers)

    def refused(outcome: Outcome, words_for: str | None = None, **context) -> HTMLResponse:
        # Unknown and invalid tokens answer alike: the same page in the default language.
        return page(outcome, words_for or default_language, **context)

    def open_file():
        return store.connect(settings.database, wait=busy_wait)

    def look(ticket: Ticket) -> tuple[MailedWarning | None, Answer | None]:
        with one_at_a_time, open_file() as con:
            warning = warning_of(con, ticket, secret)
            return warning, (latest_answer(con, warning) if warning else None)

    def answer(ticket: Ticket) -> tuple[MailedWarning | None, Answer | None, Answer | None]:
        with one_at_a_time, open_file() as con:
            warning = warning_of(con, ticket, secret)
            if warning is None:
                return None, None, None
            before = latest_answer(con, warning)
            return warning, before, record(con, warning, ticket.verdict, clock())

    def shown(warning: MailedWarning, ticket: Ticket) -> dict:
        """The warning as the digest said it, in the owner's language."""
        words = words_of(ticket.language)
        rule = rules.get(warning.rule_id)
        currency = settings.digest.currency
        # As in the digest (mail/digest.py): names and texts from the extract or a rule file on one
        # line, control characters as U+FFFD; markup is escaped by the template.
        return {
            "night": words.feedback["night"].format(night=words.date(warning.night)),
            "account": printable(words.feedback["account"].format(name=warning.account_name, id=warning.account_id), one_line=True),
            "severity": warning.severity,
            "severity_label": words.digest.get(warning.severity, warning.severity),
            "title": printable(rule_text(rule.title, words.code, warning.evidence, currency) if rule else warning.rule_id, one_line=True),
            "message": printable(rule_text(rule.message, words.code, warning.evidence, currency)) if rule else "",
            "action": printable(rule_text(rule.action, words.code, warning.evidence, currency)) if rule else "",
            "evidence_label": words.digest["evidence"],
            "action_label": words.digest["action"],
            "verdict": ticket.verdict.value,
            "verdict_label": words.feedback[ticket.verdict.value],
        }

    async def verdict_page(request: Request) -> Response:
        token = request.path_params["token"]
        client = request.client.host if request.client else "-"
        outcome, response = await handle(request, token, client)
        ticket = outcome.ticket
        # The log names the warning by its ids, never the token: a token in a log is a working link.
        log.info(
            "%s %s %d %s%s", client, request.method, outcome.status, outcome.page,
            f" {ticket.night} {ticket.account_id} {ticket.rule_id} {ticket.verdict.value}" if ticket else "",
        )
        return response

    async def handle(request: Request, token: str, client: str) -> tuple[Outcome, Response]:
        if not limit.allow(client):
            outcome = Outcome(429, "too_many")
            return outcome, refused(outcome)
        if request.method == "POST":
            form = await _form(request)
            if form is None:
                outcome = Outcome(413, "too_large")
                return outcome, refused(outcome)
            if form.get("token") != token:  # the button sends the token it was shown with
                outcome = Outcome(404, "invalid")
                return outcome, refused(outcome)
        now = clock()
        try:
            ticket = read(secret, token, now.date())
        except BadToken:
            outcome = Outcome(404, "invalid")
            return outcome, refused(outcome)
        except Expired as expired:
            outcome = Outcome(410, "expired", expired.ticket)
            words = words_of(expired.ticket.language)
            return outcome, page(outcome, words.code, expired_on=words.date(expired.ticket.expires), days=settings.feedback.link_days)
        try:
            if request.method == "POST":
                warning, before, recorded = await run_in_threadpool(answer, ticket)
            else:
                (warning, before), recorded = await run_in_threadpool(look, ticket), None
        except UserError:  # the night holds the file longer than we wait
            outcome = Outcome(503, "busy", ticket)
            return outcome, page(outcome, ticket.language)
        if warning is None:
            outcome = Outcome(404, "invalid", ticket)
            return outcome, refused(outcome)
        context = shown(warning, ticket)
        words = words_of(ticket.language)
        context_language = words.code
        if request.method != "POST":
            answered = ""
            if before is not None:
                answered = words.feedback["answered"].format(date=words.date(before.recorded_at.date()), verdict=words.feedback[before.verdict.value])
            same = before is not None and before.verdict is ticket.verdict
            outcome = Outcome(200, "done" if same else "confirm", ticket)
            return outcome, page(outcome, context_language, token=token, answered=answered, **context)
        if recorded is None:
            outcome = Outcome(409, "already", ticket)
            return outcome, page(outcome, context_language, already=words.feedback["already"].format(date=words.date(before.recorded_at.date())), **context)
        if before is not None:
            thanks = words.feedback["thanks_replaced"].format(verdict=words.feedback[recorded.verdict.value], previous=words.feedback[before.verdict.value])
        else:
            thanks = words.feedback["thanks"].format(verdict=words.feedback[recorded.verdict.value])
        rests = words.feedback["rests"].format(date=words.date(recorded.snooze_until)) if recorded.snooze_until else ""
        outcome = Outcome(200, "thanks", ticket)
        return outcome, page(outcome, context_language, thanks=thanks, rests=rests, **context)

    async def nothing_here(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        outcome = Outcome(status if 400 <= status < 500 else 404, "not_found")
        return refused(outcome)

    app = Starlette(
        routes=[Route("/v/{token}", verdict_page, methods=["GET", "POST"])],
        exception_handlers={404: nothing_here, 405: nothing_here},
    )
    app.router.redirect_slashes = False  # no redirect of any kind: a page never sends the reader on
    return app


async def _form(request: Request) -> dict[str, str] | None:
    """The posted form's fields (first value each); None when the body is larger than our form can be."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return None
    try:
        fields = parse_qs(body.decode("ascii"), max_num_fields=5)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {name: values[0] for name, values in fields.items()}


def serve(settings: Settings, ruleset: RuleSet, secret: bytes, host: str, port: int) -> None:
    """Serve the verdict pages with uvicorn until stopped (Ctrl-C, SIGTERM)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    uvicorn.run(
        verdict_app(settings, ruleset, secret),
        host=host,
        port=port,
        # The access log would print each token, a working link; verdict_page logs the ids instead.
        access_log=False,
        server_header=False,
        # Behind a reverse proxy on this machine the client's address comes from X-Forwarded-For
        # (trusted from 127.0.0.1 only), so the rate limit is per person, not per proxy.
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
        limit_concurrency=64,
        timeout_keep_alive=5,
        h11_max_incomplete_event_size=16 * 1024,  # request line and headers
        log_level="info",
    )
