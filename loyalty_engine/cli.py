"""The `loyalty` command: a thin layer; each command opens the store and calls one library function.

Exit codes (scripts can rely on them):
  0  done
  1  internal error (a bug: the traceback is printed)
  2  usage or configuration error
  3  the night's extracts failed the gate (no owner mailed; ops told; see `loyalty gate`)
  4  a rule file cannot be read or compiled
  5  some digests could not be delivered (they are retried on the next run)
  6  the night's digests are held: too many new warnings (see `loyalty release`)
  7  another run is using the database
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import shutil
import sys
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from loyalty_engine.config import Settings, config_path, load_settings
from loyalty_engine.errors import DeliveryError, UserError
from loyalty_engine.safe_text import printable

EPILOG = """\b
Exit codes:
  0  done
  1  internal error (a bug; the traceback is printed)
  2  usage or configuration error
  3  the night's extracts failed the gate (no owner mailed; ops told)
  4  a rule file cannot be read or compiled
  5  some digests could not be delivered (retried on the next run)
  6  the night's digests are held: too many new warnings
  7  another run is using the database"""
app = typer.Typer(
    name="loyalty",
    help="Nightly early warning for B2B accounts that are drifting away.",
    epilog=EPILOG,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
err = Console(stderr=True, highlight=False, soft_wrap=True)
# Piped output is not cut to 80 columns: a table in a file or a pager keeps its rows whole.
out = Console(highlight=False, soft_wrap=True, width=shutil.get_terminal_size().columns if sys.stdout.isatty() else 1000)

ConfigOption = Annotated[
    Optional[Path],
    typer.Option("--config", "-c", metavar="PATH", help="Settings file [default: $LOYALTY_CONFIG or ./config.yaml].", show_default=False),
]
DateOption = Annotated[
    Optional[datetime],
    typer.Option("--date", "-d", formats=["%Y-%m-%d"], metavar="YYYY-MM-DD", help="Business date.", show_default=False),
]


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


FormatOption = Annotated[Format, typer.Option("--format", "-f", case_sensitive=False, help="Output format.")]


def _settings(path: Path | None) -> Settings:
    return load_settings(config_path(path))


def _prefect_environment(settings: Settings) -> None:
    """Prefect's state lives beside the config; quiet console, no telemetry. Set before importing prefect."""
    os.environ.setdefault("PREFECT_HOME", str(settings.source.resolve().parent / ".prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # Our own handler below prints progress; Prefect's console handler would print tracebacks of user errors.
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")


class _Progress(logging.Handler):
    """Prints the flow's own progress lines on stderr (Prefect still stores every log for its UI)."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.filename == "nightly.py":
            warning = "[bold yellow]warning:[/bold yellow] " if record.levelno >= logging.WARNING else ""
            err.print(f"[dim]{datetime.now():%H:%M:%S}[/dim] {warning}{escape(record.getMessage())}")


@app.command()
def run(config: ConfigOption = None, night: DateOption = None) -> None:
    """Run the nightly job once.

    Loads the night's extracts, validates them, checks them against the gate, evaluates
    the rules and mails the digests. A night that fails the gate changes nothing, mails no
    owner and tells ops (exit 3); one that would warn too many accounts at once holds its
    digests for `loyalty release` (exit 6). Only one run at a time per database (exit 7).

    The night defaults to the newest <YYYY-MM-DD> folder under extracts.path, else today.
    Re-running a night replaces its data and warnings but never mails a digest twice.

    Example:

    \b
        loyalty run --date 2026-11-23 --config /etc/loyalty/config.yaml
    """
    from loyalty_engine.rules.evaluate import prove_rules
    from loyalty_engine.rules.loader import load_rules

    from loyalty_engine.lifecycle.snoozes import load_snoozes

    settings = _settings(config)
    ruleset = load_rules(settings.rules)
    prove_rules(ruleset, night.date() if night else date.today())  # at once, before Prefect starts
    load_snoozes(settings.snoozes, {rule.id for rule in ruleset.rules})
    from loyalty_engine.store import night_lock

    with night_lock(settings.database):  # another run going: say so now, not after Prefect's start
        pass
    _prefect_environment(settings)
    _run_flow(settings, night.date() if night else None)


def _run_flow(settings: Settings, night: date | None) -> None:
    if not os.environ.get("PREFECT_API_URL"):
        err.print("[dim]Starting Prefect's local API for this run (about 20 s) …[/dim]")
    from flows.nightly import nightly  # Prefect is imported only by the commands that run the flow

    logging.getLogger("prefect.flow_runs").addHandler(_Progress())
    summary = nightly(config_path=str(settings.source), night=night)
    _print_summary(summary, settings)


# The lifecycle's notices as the run summary words them, in this order.
NOTICES = {
    "new": "new", "repeat": "still open and mailed again", "resolved": "resolved", "open": "open (mailed earlier)",
    "pending": "pending", "snoozed": "snoozed", "inhibited": "inhibited", "kept": "kept (not judged tonight)",
}


def _print_checks(checks, title: str | None = None) -> None:
    """The gate's checks as a table: outcome, what, figure, limit, and the detail where there is one."""
    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left")
    for heading in ("gate", "check", "figure", "limit"):
        table.add_column(heading, overflow="fold")
    styles = {"fail": "bold red", "hold": "bold yellow", "warn": "yellow", "skip": "dim"}
    for c in checks:
        outcome = f"[{styles[c.outcome.value]}]{c.outcome.value}[/]" if c.outcome.value in styles else c.outcome.value
        what = c.name if c.table == "*" else f"{c.table} {c.name}"
        figure = escape(c.figure) + (f"\n[dim]{escape(c.detail)}[/dim]" if c.detail and c.outcome.value != "pass" else "")
        table.add_row(outcome, what, figure, escape(c.limit))
    out.print(table)


def _print_summary(summary, settings: Settings) -> None:
    table = Table(title=f"Night {summary.night}", title_justify="left")
    for heading in ("table", "rows loaded", "quarantined"):
        table.add_column(heading, justify="left" if heading == "table" else "right")
    for check in summary.tables:
        if check.present:
            table.add_row(check.table, f"{check.rows_loaded:,}", f"{check.rows_quarantined:,}")
        else:
            table.add_row(check.table, "absent", "")
    out.print(table)
    _print_checks(summary.checks)
    for rule, count in summary.warnings.items():
        unknown = summary.no_data.get(rule, 0)
        out.print(f"{rule:<28} {count:>5} accounts" + (f", {unknown:,} without data" if unknown else ""))
    for rule, why in summary.skipped.items():
        out.print(f"{rule:<28} skipped: {why}")
    shown = [(notice, summary.notices.get(notice, 0)) for notice in NOTICES]
    out.print("warnings: " + ", ".join(f"{count} {NOTICES[notice]}" for notice, count in shown if count) if any(c for _, c in shown) else "warnings: none")
    if summary.unrouted:
        out.print(f"warning: {summary.unrouted} warnings have no usable owner address and email.ops_recipients is empty")
    report = summary.delivery
    done = f"{len(report.sent)} written to {summary.outbox}" if summary.outbox else f"{len(report.sent)} sent via SMTP"
    out.print(f"digests: {done}, {len(report.skipped)} already sent earlier, {len(report.failed)} failed")
    out.print(f"database: {settings.database}  (see `loyalty alerts`)")


class GateFormat(str, Enum):
    table = "table"
    json = "json"


@app.command()
def gate(
    config: ConfigOption = None,
    night: DateOption = None,
    format: Annotated[GateFormat, typer.Option("--format", "-f", case_sensitive=False, help="Output format.")] = GateFormat.table,
) -> None:
    """Check a night's extracts against the gate, without changing anything.

    Loads the night's extracts, validates them and, when they pass, evaluates the rules, all
    in a transaction that is rolled back: prints every check with its figure, its limit and
    its outcome (pass, warn, fail, hold), and exits as the nightly run would: 0 when the
    night would go out, 3 when a check fails, 6 when the digests would be held. The night
    defaults to the newest extract folder. Limits are set under `gate:` in config.yaml.

    Example:

    \b
        loyalty gate --date 2026-11-23
    """
    from loyalty_engine import store
    from loyalty_engine.extracts.staging import newest_extract_date
    from loyalty_engine.gate import DigestsHeld, GateFailed, Outcome
    from loyalty_engine.night import run_night
    from loyalty_engine.rules.loader import load_rules
    from loyalty_engine.lifecycle.snoozes import load_snoozes

    settings = _settings(config)
    ruleset = load_rules(settings.rules)
    snoozes = load_snoozes(settings.snoozes, {rule.id for rule in ruleset.rules})
    day = night.date() if night else newest_extract_date(settings.extracts.path) or date.today()
    err.print(f"[dim]Checking the extracts of {day} in {settings.extracts.path} …[/dim]")
    with store.night_lock(settings.database), store.connect(settings.database) as con:
        checks = run_night(con, settings, ruleset, snoozes, day, dry_run=True).checks
    if format is GateFormat.json:
        print(json.dumps([{**c.__dict__, "outcome": c.outcome.value} for c in checks], ensure_ascii=False, indent=2))
    else:
        _print_checks(checks, title=f"Gate for {day}")
    if any(c.outcome is Outcome.FAIL for c in checks):
        raise typer.Exit(GateFailed.exit_code)
    if any(c.outcome is Outcome.HOLD for c in checks):
        raise typer.Exit(DigestsHeld.exit_code)


@app.command()
def release(
    night: Annotated[datetime, typer.Option("--date", "-d", formats=["%Y-%m-%d"], metavar="YYYY-MM-DD", help="The held night.")],
    by: Annotated[str, typer.Option("--by", metavar="NAME", help="Who looked and let the digests go [default: $USER].", show_default=False)] = "",
    config: ConfigOption = None,
) -> None:
    """Send a night's digests that the gate held back because of an alert flood.

    When a night would warn more than gate.max_new_warning_share of all accounts for the
    first time, the nightly run keeps nothing of the night, mails no owner and tells ops,
    with the new warnings per rule (`loyalty gate --date D` shows them again). After a look,
    this records who released the night and runs it again: its flood check then passes and
    the digests go out. A night stopped for bad data cannot be released: fix the data.

    Example:

    \b
        loyalty release --date 2026-11-23 --by "Petra Ops"
    """
    from loyalty_engine.night import release_night

    settings = _settings(config)
    release_night(settings, night.date(), by or os.environ.get("USER") or "unknown")
    err.print(f"Night {night.date()} released; running it again to send the digests.")
    _prefect_environment(settings)
    _run_flow(settings, night.date())


@app.command()
def serve(config: ConfigOption = None) -> None:
    """Run the nightly job on its schedule.

    Serves the flow on the configured cron and time zone until stopped.

    Uses the Prefect server named by PREFECT_API_URL; without one, starts a local
    `prefect server start` with its SQLite database under .prefect/ beside the config.

    Example:

    \b
        PREFECT_API_URL=http://127.0.0.1:4200/api loyalty serve --config config.yaml
    """
    settings = _settings(config)
    _prefect_environment(settings)
    from flows.serving import serve_nightly

    serve_nightly(settings, say=err.print)


@app.command()
def alerts(
    config: ConfigOption = None,
    night: DateOption = None,
    format: FormatOption = Format.table,
) -> None:
    """Print every warning of a night with its state.

    One row per account and rule: severity, state (pending, firing, resolved), what the
    night did with it (new, open, open and mailed again, snoozed, inhibited, resolved,
    pending, kept when it could not be judged), whether it was mailed, to whom, and why.
    A shadow rule's warnings (mode shadow) are listed as they would have been, never mailed.
    The latest evaluated night unless --date names one. Reads the database only.

    Example:

    \b
        loyalty alerts --date 2026-11-23 --format csv > warnings.csv
    """
    from loyalty_engine.results import night_warnings

    settings = _settings(config)
    rows = night_warnings(settings.database, night.date() if night else None)
    _print_rows(rows, format, ("account_id", "account_name", "rule_id", "mode", "severity", "state", "notice", "mailed", "recipient", "reason"), "warnings")


@app.command()
def history(
    account_id: Annotated[str, typer.Argument(metavar="ACCOUNT_ID", help="The account.")],
    config: ConfigOption = None,
    format: FormatOption = Format.table,
) -> None:
    """Show the story of one account's warnings.

    Each night a warning of the account changed: when it went pending, fired, was
    mailed (and to whom), was mailed again, snoozed, inhibited, kept without data,
    resolved, or lapsed while pending, with the reason. A shadow rule's events say what it
    would have mailed (mode shadow). Reads the database only.

    Example:

    \b
        loyalty history K-00042
    """
    from loyalty_engine.results import account_history

    rows = account_history(_settings(config).database, account_id)
    _print_rows(rows, format, ("night", "rule_id", "mode", "event", "reason"), "events")


@app.command()
def snooze(
    account_id: Annotated[Optional[str], typer.Argument(metavar="ACCOUNT_ID", help="The account whose warnings to snooze.", show_default=False)] = None,
    rule: Annotated[Optional[str], typer.Option("--rule", metavar="RULE_ID", help="Only this rule's warning [default: every rule].", show_default=False)] = None,
    until: Annotated[Optional[datetime], typer.Option(formats=["%Y-%m-%d"], metavar="YYYY-MM-DD", help="Last night the snooze covers.", show_default=False)] = None,
    reason: Annotated[Optional[str], typer.Option(metavar="TEXT", help="Why; shown in history and alerts.", show_default=False)] = None,
    by: Annotated[Optional[str], typer.Option(metavar="NAME", help="Who decided [default: $USER].", show_default=False)] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the snoozes instead.")] = False,
    remove: Annotated[Optional[int], typer.Option(metavar="ID", help="Remove the snooze with this id.", show_default=False)] = None,
    config: ConfigOption = None,
) -> None:
    """Stop mailing an account's warnings until a date.

    A snoozed warning is still evaluated and kept in history, but not mailed; if it still
    fires after the snooze ends, it comes back as new. The snoozes live in the file named
    by `snoozes:` in the config (default snoozes.yaml), which ops may also edit by hand.

    Examples:

    \b
        loyalty snooze K-00042 --rule falling_order_value --until 2026-12-31 --reason "Plant shutdown"
        loyalty snooze --list
        loyalty snooze --remove 3
    """
    from loyalty_engine.rules.loader import _did_you_mean, load_rules
    from loyalty_engine.lifecycle.snoozes import add_snooze, load_snoozes, remove_snooze

    settings = _settings(config)
    if list_ or remove is not None:
        if account_id or rule or until or reason:
            raise typer.BadParameter("--list and --remove take no account, --rule, --until or --reason")
        if remove is not None:
            gone = remove_snooze(settings.snoozes, remove)
            out.print(f"removed snooze {gone.id} of {gone.account_id} ({gone.rule_id or 'every rule'}) from {settings.snoozes}")
            return
        today = date.today()
        rows = [
            {"id": z.id, "account_id": z.account_id, "rule": z.rule_id or "every rule", "until": z.until,
             "status": "active" if z.until >= today else "ended", "reason": z.reason, "by": z.by, "created": z.created}
            for z in load_snoozes(settings.snoozes)
        ]
        _print_rows(rows, Format.table, ("id", "account_id", "rule", "until", "status", "reason", "by"), "snoozes")
        return
    if not account_id or until is None or not (reason or "").strip():
        raise typer.BadParameter("give ACCOUNT_ID, --until and --reason (or --list, or --remove ID)")
    rule_ids = {r.id for r in load_rules(settings.rules).rules}
    if rule is not None and rule not in rule_ids:
        raise UserError(f"--rule: unknown rule '{rule}'{_did_you_mean(rule, rule_ids)}")
    if until.date() < date.today():
        raise UserError(f"--until {until.date()} lies in the past; a snooze covers nights up to and including its end date")
    _known_account(settings, account_id)
    added = add_snooze(settings.snoozes, account_id, rule, until.date(), reason, by or os.environ.get("USER"), date.today())
    out.print(f"snooze {added.id}: {account_id} ({rule or 'every rule'}) not mailed up to and including {added.until}; in {settings.snoozes}")


def _known_account(settings: Settings, account_id: str) -> None:
    """An unknown account id is most likely a typo: refuse it, naming the closest known one."""
    if not settings.database.exists():
        return
    from loyalty_engine.results import open_database
    from loyalty_engine.rules.loader import _did_you_mean

    with open_database(settings.database) as con:
        ids = [row[0] for row in con.execute("SELECT account_id FROM accounts").fetchall()]
    if ids and account_id not in ids:
        raise UserError(f"unknown account '{account_id}'{_did_you_mean(account_id, ids)}: not in the latest accounts extract")


@app.command()
def preview(
    owner: Annotated[str, typer.Option(metavar="EMAIL", help="The recipient whose digest to render (an owner or an ops address).")],
    config: ConfigOption = None,
    night: DateOption = None,
    out_file: Annotated[Path, typer.Option("--out", metavar="FILE.html", help="Where to write the HTML.")] = Path("preview.html"),
    all_open: Annotated[bool, typer.Option("--all-open", help="Show every firing warning as new, even on a night with nothing to mail.")] = False,
) -> None:
    """Render one recipient's digest to a file, without sending it.

    For checking a template or text change: the digest the night sent (or would send)
    to EMAIL, as HTML; the plain-text part goes beside it as FILE.txt. The latest
    evaluated night unless --date names one. Reads the database only.

    Example:

    \b
        loyalty preview --owner anna.gross@example.com --date 2026-11-23 --out anna.html
    """
    from loyalty_engine.mail.digest import render_digests
    from loyalty_engine.mail.mailing import night_mailing
    from loyalty_engine.results import open_database
    from loyalty_engine.rules.loader import load_rules

    settings = _settings(config)
    ruleset = load_rules(settings.rules)
    with open_database(settings.database) as con:
        chosen = night.date() if night else con.execute("SELECT max(night) FROM nights").fetchall()[0][0]
        if chosen is None:
            raise UserError(f"{settings.database}: no night evaluated yet; run `loyalty run` first")
        mailing = night_mailing(con, ruleset, chosen, settings.digest.language, settings.email.ops_recipients, all_open=all_open)
    wanted = owner.strip().lower()
    mine = [w for w in mailing.warnings if (w.recipient or w.owner_email).lower() == wanted]
    if not mine:
        hint = "" if all_open else "; --all-open shows every firing warning"
        raise UserError(f"{owner} gets no digest on {chosen} (nothing new, due again or resolved){hint}")
    [digest] = render_digests(mine, chosen, settings.email.sender, settings.digest.language, settings.digest.max_accounts, mailing.portfolios, settings.digest.currency)
    out_file.write_text(digest.message.get_body(("html",)).get_content(), encoding="utf-8")
    out_file.with_suffix(".txt").write_text(digest.message.get_body(("plain",)).get_content(), encoding="utf-8")
    out.print(f"{digest.message['Subject']}\nwritten to {out_file} and {out_file.with_suffix('.txt')}")


@app.command()
def report(
    out_file: Annotated[Path, typer.Option("--out", "-o", metavar="FILE.html", help="Where to write the page.")],
    config: ConfigOption = None,
    night: DateOption = None,
) -> None:
    """Write the portfolio report: one HTML page for ops and management.

    The four groups of the brief (satisfaction against order frequency, each active account
    coloured by its warning state), the retention rate per month over two years, new warnings
    per rule and per owner over 90 days, the gate's outcomes over 30 days and the last
    backtest's figures. One self-contained file: no script, nothing loaded from elsewhere;
    it opens offline and prints. In digest.language. Data up to --date (default: the latest
    evaluated night). Reads the database only; see docs/report.md.

    Example:

    \b
        loyalty report --date 2026-11-23 --out report.html
    """
    from loyalty_engine.errors import RuleError
    from loyalty_engine.pages.portfolio import portfolio_report
    from loyalty_engine.results import open_database
    from loyalty_engine.rules.loader import load_rules

    settings = _settings(config)
    try:  # the rules give titles; a rule file being edited must not cost ops the report
        ruleset = load_rules(settings.rules)
    except RuleError as problem:
        err.print(f"warning: rule titles not shown: {problem}", markup=False)
        ruleset = None
    with open_database(settings.database) as con:
        figures, html = portfolio_report(con, night.date() if night else None, settings.digest.language, ruleset, settings.database.name)
    partial = out_file.with_name(f".{out_file.name}.partial")
    try:  # written whole or not at all: a reader never opens half a page
        partial.write_text(html, encoding="utf-8")
        partial.replace(out_file)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise UserError(f"{out_file}: cannot write the report: {error.strerror or error}") from None
    out.print(f"Portfolio report for {figures.night}: {len(figures.accounts):,} active accounts; written to {out_file}")


@app.command()
def quarantine(
    config: ConfigOption = None,
    night: DateOption = None,
    table: Annotated[Optional[str], typer.Option("--table", "-t", metavar="TABLE", help="Only this extract table.", show_default=False)] = None,
    format: FormatOption = Format.table,
) -> None:
    """Print a night's bad cells, and what became of their rows.

    One row per bad cell: table, line in the file, the row's id, the column, the check that
    failed, the value as written, and whether the row was kept out (a bad required value) or
    went on with the value cleared (a bad optional one). The latest loaded night unless --date
    names one.

    Example:

    \b
        loyalty quarantine --date 2026-11-23 --table orders --format csv
    """
    from loyalty_engine.results import night_quarantine

    rows = night_quarantine(_settings(config).database, night.date() if night else None, table)
    _print_rows(rows, format, ("table_name", "line", "row_key", "column_name", "check_name", "value", "row_kept_out"), "quarantined cells")


def _print_rows(rows: list[dict], format: Format, shown: tuple[str, ...], what: str) -> None:
    """Rows as JSON, CSV (all columns) or a table of the `shown` columns, for people and scripts."""
    if format is Format.json:
        print(json.dumps(rows, default=str, ensure_ascii=False, indent=2))
    elif format is Format.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else list(shown), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else v for k, v in row.items()} for row in rows)
    else:
        table = Table(box=box.SIMPLE_HEAD)
        for column in shown:
            table.add_column(column)
        for row in rows:
            # Values come from extracts: a terminal escape in a name must not reach the terminal.
            table.add_row(*("" if row[c] is None else escape(printable(str(row[c]), one_line=True)) for c in shown))
        if rows:
            out.print(table)
        err.print(f"{len(rows)} {what if len(rows) != 1 else what.removesuffix('s')}")


rules_app = typer.Typer(
    help="Check, test and list the warning rules (see docs/rules.md).",
    epilog="""\b
Exit codes:
  0  every file is fine / every test passed
  1  a rule file has errors / a test failed
  2  usage or configuration error""",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(rules_app, name="rules")
PathsArgument = Annotated[
    Optional[list[Path]],
    typer.Argument(metavar="[PATH]...", help="Rule files or folders [default: the rules folder of the config].", show_default=False),
]


def _rules_paths(paths: list[Path] | None, config: Path | None) -> list[Path]:
    return paths or [_settings(config).rules]


@rules_app.command("check")
def rules_check(paths: PathsArgument = None, config: ConfigOption = None) -> None:
    """Check rule files without running anything.

    Reads every rule file, checks every metric, condition, value and placeholder, and
    compiles each rule once against empty tables; without PATH, the config's snoozes
    file too. Prints every problem as
    FILE:LINE:COLUMN: PROBLEM and exits 1 if there is any. The nightly run refuses
    rules that fail this check.

    Example:

    \b
        loyalty rules check rules/
    """
    from loyalty_engine.rules.evaluate import prove_rules
    from loyalty_engine.rules.loader import check_rule_files, rule_files
    from loyalty_engine.lifecycle.snoozes import check_snoozes

    files = rule_files(_rules_paths(paths, config))
    ruleset, problems = check_rule_files(files)
    prove_rules(ruleset, date.today(), problems)
    if not paths:  # the configured rules: their snoozes file is checked with them
        snoozes = _settings(config).snoozes
        problems += check_snoozes(snoozes, {rule.id for rule in ruleset.rules})[1]
    for problem in sorted(problems, key=_file_order):
        err.print(str(problem), markup=False)
    if problems:
        err.print(f"{_count(len(problems), 'problem')} in {_count(len(files), 'rule file')}")
        raise typer.Exit(1)
    out.print(f"{_count(len(files), 'rule file')}, {_count(len(ruleset.rules), 'rule')}, {_count(len(ruleset.metrics), 'metric')}: fine")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _file_order(problem: Exception) -> tuple:
    """file, line, column of a 'file:line:column: problem' message, for printing in file order."""
    match = re.match(r"^(.*?):(\d+):(\d+): ", str(problem))
    return (match.group(1), int(match.group(2)), int(match.group(3))) if match else (str(problem), 0, 0)


@rules_app.command("list")
def rules_list(paths: PathsArgument = None, config: ConfigOption = None, format: FormatOption = Format.table) -> None:
    """List the rules with severity, state, what they say and how they did in the last backtest.

    Once `loyalty backtest` has run, each rule shows its figures from it: accounts flagged,
    digests per owner and week, precision, recall and median lead in days (see `loyalty
    backtest --help`), so you see which rules earn their place.

    Example:

    \b
        loyalty rules list --format csv > rules.csv
    """
    from loyalty_engine.rules.loader import load_rules

    ruleset = load_rules(_rules_paths(paths, config))
    figures = _last_backtest(config)
    rows = []
    for rule in ruleset.rules:
        found = figures.get(rule.id, {})
        rows.append(
            {
                "rule_id": rule.id,
                "severity": rule.severity,
                "enabled": "yes" if rule.enabled else "no",
                "mode": rule.mode,
                "for": f"{rule.for_nights} nights" if rule.for_nights > 1 else "",
                "title": rule.title.get("en") or next(iter(rule.title.values())),
                "labels": " ".join(f"{k}={v}" for k, v in rule.labels.items()),
                "file": f"{rule.where.file.name}:{rule.where.line}",
                "flagged": found.get("accounts_flagged"),
                "digests/week": found.get("emails_per_owner_week"),
                "precision": found.get("precision"),
                "recall": found.get("recall"),
                "lead_days": found.get("median_lead_days"),
            }
        )
    shown = ("rule_id", "severity", "enabled", "mode", "for", "title", "file")
    if figures:
        period = next(iter(figures.values()))
        err.print(f"Figures from the backtest of {period['first_night']} … {period['last_night']}")
        shown += ("flagged", "digests/week", "precision", "recall", "lead_days")
        if format is Format.table:
            for row in rows:
                for key in ("precision", "recall"):
                    row[key] = None if row[key] is None else f"{row[key]:.0%}"
                row["lead_days"] = None if row["lead_days"] is None else f"{row['lead_days']:+.0f}"
                row["digests/week"] = None if row["digests/week"] is None else f"{row['digests/week']:.1f}"
    _print_rows(rows, format, shown, "rules")


def _last_backtest(config: Path | None) -> dict:
    """The last backtest's figures by rule id, or {} (none yet, or the database busy)."""
    import duckdb

    from loyalty_engine import store
    from loyalty_engine.results import latest_figures

    try:
        database = _settings(config).database
    except UserError:
        return {}  # rules listed from files alone, without a config
    if not database.exists():
        return {}
    try:
        with store.connect(database, read_only=True) as con:
            return latest_figures(con)
    except duckdb.IOException:
        err.print("[dim]The database is in use by a run; backtest figures left out.[/dim]")
        return {}
    except duckdb.CatalogException:  # a database from before backtests, opened read-only
        return {}


@rules_app.command("test")
def rules_test(
    paths: Annotated[
        Optional[list[Path]],
        typer.Argument(metavar="[PATH]...", help="Test files (*.test.yaml) or folders [default: the rules folder of the config].", show_default=False),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Run the rule unit tests written in YAML beside the rules.

    rules/orders.test.yaml tests the rules of rules/orders.yaml: small input tables,
    one or more nights, and the warnings expected ([] means none may fire). Each case
    runs in memory; the database is not touched. Prints PASS or FAIL per case, with
    what fired and what was expected; exits 1 if any case fails.

    Example:

    \b
        loyalty rules test rules/orders.test.yaml
    """
    from loyalty_engine.errors import RuleError
    from loyalty_engine.rules.testing import find_test_files, run_rule_tests

    passed = failed = 0
    for path in find_test_files(_rules_paths(paths, config)):
        try:
            results = run_rule_tests(path)
        except RuleError as problem:
            err.print(f"ERROR {problem}", markup=False)
            failed += 1
            continue
        for result in results:
            out.print(f"{'PASS' if result.passed else 'FAIL'}  {result.where}  {result.name}", markup=False)
            passed, failed = passed + result.passed, failed + (not result.passed)
            for line in result.missing:
                out.print(f"      - expected, did not fire: {line}", markup=False)
            for line in result.unexpected:
                out.print(f"      + fired, not expected:    {line}", markup=False)
            for line in result.wrong_values:
                out.print(f"      ≠ {line}", markup=False)
    err.print(f"{passed} passed, {failed} failed")
    if failed or not passed:
        raise typer.Exit(1)


@app.command()
def explain(
    account_id: Annotated[str, typer.Argument(metavar="ACCOUNT_ID", help="The account to explain.")],
    config: ConfigOption = None,
    night: DateOption = None,
) -> None:
    """Show why each rule fires or not for one account.

    For every rule: whether it fires, each part of its condition with the numbers it
    compared, and every metric with the days it counts. Uses the data of the latest
    loaded night, as of --date (default: that night). Reads the database only.

    Example:

    \b
        loyalty explain K-00042 --date 2026-11-23
    """
    from loyalty_engine.results import open_database
    from loyalty_engine.rules.explain import explain_account, render
    from loyalty_engine.rules.loader import load_rules
    from loyalty_engine.store import absent_tables

    settings = _settings(config)
    ruleset = load_rules(settings.rules)
    with open_database(settings.database) as con:
        loaded = con.execute("SELECT max(night) FROM loads").fetchall()[0][0]
        if loaded is None:
            raise UserError(f"{settings.database}: no night loaded yet; run `loyalty run` first")
        explained = explain_account(con, ruleset, account_id, night.date() if night else loaded, absent_tables(con, loaded))
    out.print(render(explained), markup=False)


class BacktestFormat(str, Enum):
    table = "table"
    json = "json"
    html = "html"


@app.command()
def backtest(
    first: Annotated[datetime, typer.Option("--from", formats=["%Y-%m-%d"], metavar="YYYY-MM-DD", help="First night to replay.")],
    last: Annotated[datetime, typer.Option("--to", formats=["%Y-%m-%d"], metavar="YYYY-MM-DD", help="Last night to replay.")],
    rules: Annotated[
        Optional[Path], typer.Option("--rules", metavar="PATH", help="Rule file or folder [default: the rules folder of the config].", show_default=False)
    ] = None,
    compare_with: Annotated[
        Optional[Path], typer.Option("--compare", metavar="PATH", help="A second rule set: its figures, and the accounts it adds and drops.", show_default=False)
    ] = None,
    format: Annotated[BacktestFormat, typer.Option("--format", "-f", case_sensitive=False, help="Output format.")] = BacktestFormat.table,
    output: Annotated[Optional[Path], typer.Option("--out", "-o", metavar="FILE", help="Write to FILE instead of stdout.", show_default=False)] = None,
    config: ConfigOption = None,
) -> None:
    """Replay the rules on past nights and show how early and how precisely they warned.

    Every night from --from to --to is evaluated as it was (only data dated up to it counts),
    and the warnings go through the real lifecycle (for:, repeats, resolution, inhibition;
    snoozes off). Shadow rules are replayed like live ones. Per rule and for all live rules:
    nights with a new warning, accounts flagged, digests per owner and week, and where the
    data shows what happened next: precision (flagged accounts lost within
    backtest.horizon_days), recall (lost accounts warned at least backtest.min_lead_days
    before) and the median lead in days from the first warning to the loss. What "lost"
    means is set under backtest.lost in config.yaml (docs/backtest.md). The figures are kept
    for `loyalty rules list` and `loyalty report`. Needs the database to itself (exit 7
    while a run is going).

    Examples:

    \b
        loyalty backtest --from 2025-05-01 --to 2026-04-30
        loyalty backtest --from 2025-05-01 --to 2026-04-30 --compare rules-next/ --format json
    """
    from loyalty_engine import backtest as replay
    from loyalty_engine import store
    from loyalty_engine.rules.loader import load_rules

    settings = _settings(config)
    if first > last:
        raise UserError(f"--from {first:%Y-%m-%d} lies after --to {last:%Y-%m-%d}")
    rules_path = rules or settings.rules
    rule_sets = [(rules_path, load_rules(rules_path))]
    if compare_with is not None:
        rule_sets.append((compare_with, load_rules(compare_with)))
    if not settings.database.exists():
        raise UserError(f"{settings.database}: no database yet; run `loyalty run` first")
    results = []
    with store.night_lock(settings.database), store.connect(settings.database) as con:
        if con.execute("SELECT count(*) FROM loads").fetchall()[0][0] == 0:
            raise UserError(f"{settings.database}: no night loaded yet; run `loyalty run` first")
        for path, ruleset in rule_sets:
            err.print(f"[dim]Replaying {path} …[/dim]")
            results.append(
                replay.run_backtest(
                    con, ruleset, settings.backtest, first.date(), last.date(), settings.digest.repeat_after_days,
                    progress=lambda message: err.print(f"[dim]  {message}[/dim]"),
                )
            )
        replay.store_figures(con, results[0], rules_path)
    difference = replay.compare(results[0], results[1]) if len(results) == 2 else None
    if format is BacktestFormat.json:
        document = results[0].as_json()
        if difference is not None:
            document["compare"] = {"rules_path": str(compare_with), **results[1].as_json(), **difference}
        text = json.dumps(document, ensure_ascii=False, indent=2, default=str)
    elif format is BacktestFormat.html:
        from loyalty_engine.pages.backtest import render_backtest

        text = render_backtest(results, [path for path, _ in rule_sets], difference, settings.digest.language)
    else:
        text = None
    if text is not None:
        if output is not None:
            output.write_text(text + "\n", encoding="utf-8")
            err.print(f"Wrote {output}")
        else:
            print(text)
        return
    for (path, _), result in zip(rule_sets, results):
        _print_backtest(result, str(path))
    if difference is not None:
        _print_difference(difference, str(rules_path), str(compare_with))


def _share_text(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _print_backtest(result, title: str) -> None:
    table = Table(
        box=box.SIMPLE_HEAD,
        title=f"{title}: {result.nights} nights {result.first} … {result.last}, {result.owners} owners (outcomes known up to {result.data_end})",
        title_justify="left",
    )
    for column, justify in (("rule", "left"), ("mode", "left"), ("nights fired", "right"), ("accounts flagged", "right"), ("digests/owner/week", "right"),
                            ("precision", "right"), ("recall", "right"), ("median lead (days)", "right")):
        table.add_column(column, justify=justify)
    rows = [(r["rule_id"], r["mode"], r) for r in result.rules] + [("all live rules", "", result.total)]
    for index, (name, mode, figures) in enumerate(rows):
        table.add_row(
            name, mode, str(figures["nights_fired"]), str(figures["accounts_flagged"]),
            "–" if figures["emails_per_owner_week"] is None else f"{figures['emails_per_owner_week']:.1f}",
            _share_text(figures["precision"]), _share_text(figures["recall"]),
            "–" if figures["median_lead_days"] is None else f"{figures['median_lead_days']:+.0f}",
            end_section=index == len(rows) - 2,
        )
    out.print(table)


def _print_difference(difference: dict, before: str, after: str) -> None:
    for key, verb in (("added", f"{after} warns, {before} does not"), ("dropped", f"{before} warns, {after} does not")):
        part = difference[key]
        out.print(f"{part['accounts']} accounts {verb}; {part['lost']} of them were lost")
        for account in part["accounts_list"][:20]:
            fate = f"lost {account['lost_on']} ({account['lost_how']})" if account["lost_on"] else "not lost"
            out.print(f"  {account['account_id']}  first warned {account['first_warned']}  {fate}", markup=False)
        if part["accounts"] > 20:
            out.print(f"  … and {part['accounts'] - 20} more (--format json lists all)")


@app.command("generate-sample")
def generate_sample(
    out_dir: Annotated[Path, typer.Option("--out", metavar="DIR", help="Folder to write <YYYY-MM-DD>/<table>.csv folders and ground_truth.csv into.")],
    accounts: Annotated[int, typer.Option(min=1, metavar="N", help="Number of accounts.")] = 200,
    seed: Annotated[int, typer.Option(metavar="S", help="Random seed; the same seed gives the same files.")] = 7,
    end_date: Annotated[
        Optional[datetime],
        typer.Option(formats=["%Y-%m-%d"], metavar="YYYY-MM-DD", help="Last night; a Saturday or Sunday means the Friday before [default: today].", show_default=False),
    ] = None,
    nights: Annotated[int, typer.Option(min=1, metavar="N", help="Write the last N business days (Mon-Fri), one folder each.")] = 1,
) -> None:
    """Write realistic sample extracts.

    Three years of accounts, orders, complaints, contracts, interactions and surveys, as
    they were exported on each of the last N business days up to the end date: one folder
    per night, each holding only what was known that night. Most accounts are stable, a
    share drift away, and a few are built to show each shipped rule's warning sign;
    ground_truth.csv records which, and which rules' conditions hold on the last night.

    Example:

    \b
        loyalty generate-sample --out extracts --accounts 500 --nights 20 --end-date 2026-11-23
    """
    from loyalty_engine.sample.generator import generate_sample as generate

    summary = generate(out_dir, accounts=accounts, seed=seed, end_date=end_date.date() if end_date else None, nights=nights)
    counts = ", ".join(f"{rows:,} {table}" for table, rows in summary.rows.items())
    if nights > 1:
        out.print(f"{nights} nights, {summary.folders[0].name} to {summary.end_date}, in {out_dir}")
    out.print(f"Sample for {summary.end_date} in {summary.folder}: {counts}")
    patterns = ", ".join(f"{count} {pattern}" for pattern, count in summary.patterns.items())
    out.print(f"Accounts: {patterns}; {summary.lost} of the drifting ones lost by then")
    out.print(f"See {out_dir / 'ground_truth.csv'} for each account's pattern and the rules whose conditions hold")


def main() -> None:
    """Entry point: user mistakes get one line and their exit code, never a traceback."""
    try:
        app()
    except (UserError, DeliveryError) as error:
        # The traceback's frames still hold DuckDB objects; dropping them lets the interpreter
        # shut down without nanobind's leak report.
        error.__traceback__ = error.__context__ = None
        if isinstance(error, DeliveryError):
            report = error.args[0]
            err.print(f"error: {len(report.failed)} digests not delivered; they are retried on the next run", markup=False)
            for who, why in report.failed.items():
                err.print(f"  {who}: {why}", markup=False)
        else:
            err.print(f"error: {error}", markup=False)
        raise SystemExit(error.exit_code) from None
