"""The `loyalty` command: a thin layer; each command parses its options, calls one function of
`api` (the library under it) and hands what it returns to `console` (everything the terminal shows).

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

import os
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from loyalty_engine import api, console
from loyalty_engine.console import BacktestFormat, Format, GateFormat
from loyalty_engine.errors import DeliveryError, UserError

if TYPE_CHECKING:
    from loyalty_engine.config import Settings

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}
EXIT_CODES = {
    0: "done",
    1: "internal error (a bug; the traceback is printed)",
    2: "usage or configuration error (one line per mistake)",
    3: "the night's extracts failed the gate (no owner mailed; ops told)",
    4: "a rule file or the snoozes file cannot be read or compiled",
    5: "some digests could not be delivered (retried on the next run)",
    6: "the night's digests are held: too many new warnings",
    7: "another run is using the database (the line names it)",
}


def exits(*codes: int) -> str:
    """A command's epilog: the exit codes it can give, as in a man page's EXIT STATUS."""
    return "\b\nExit codes:\n" + "\n".join(f"  {code}  {EXIT_CODES[code]}" for code in codes)


NIGHT_EXITS = exits(0, 2, 3, 4, 5, 6, 7)
READ_EXITS = exits(0, 2)  # the commands that only read the database or files
EPILOG = """\b
Getting started (a fresh folder, the sample data, email to outbox/):
  loyalty generate-sample --out extracts     write sample extract folders
  loyalty run                                run the newest night; digests go to outbox/
  loyalty alerts                             what the night warned about
  loyalty explain K-00042                    why, for one account
Settings come from ./config.yaml, $LOYALTY_CONFIG or --config (see the README).
Every command has its own help with examples: loyalty COMMAND --help.

""" + exits(*EXIT_CODES) + """

\b
Environment:
  LOYALTY_CONFIG   the settings file when --config is not given
  PREFECT_API_URL  a Prefect server for run/serve (else a local one starts)
  LOYALTY_FEEDBACK_SECRET  the secret signing the digests' verdict links
                   (the variable feedback.secret_env names)"""
app = typer.Typer(
    name="loyalty",
    help="Nightly early warning for B2B accounts that are drifting away.",
    epilog=EPILOG,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
    context_settings=HELP_OPTIONS,
)


def _version(value: bool) -> None:
    if value:
        console.show_version(api.version())
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Nightly early warning for B2B accounts that are drifting away.

    Every night it loads the customers' extracts (orders, complaints, contracts, …), checks
    them, evaluates the warning rules in rules/*.yaml for every account and mails each
    account owner one short digest of what is new.
    """
ConfigOption = Annotated[
    Optional[Path],
    typer.Option("--config", "-c", metavar="PATH", help="Settings file [default: $LOYALTY_CONFIG or ./config.yaml].", show_default=False),
]
DateOption = Annotated[
    Optional[datetime],
    typer.Option("--date", "-d", formats=["%Y-%m-%d"], metavar="YYYY-MM-DD", help="Business date.", show_default=False),
]
FormatOption = Annotated[Format, typer.Option("--format", "-f", case_sensitive=False, help="Output format.")]


def _settings(path: Path | None) -> Settings:
    from loyalty_engine.config import config_path, load_settings  # pydantic: not for --help

    return load_settings(config_path(path))


def _day(value: datetime | None) -> date | None:
    """A --date option as a date (typer reads it as a datetime)."""
    return value.date() if value else None


@app.command(epilog=NIGHT_EXITS)
def run(config: ConfigOption = None, night: DateOption = None) -> None:
    """Run the nightly job once.

    Loads the night's extracts, validates them, checks them against the gate, evaluates
    the rules and mails the digests. A night that fails the gate changes nothing, mails no
    owner and tells ops (exit 3); one that would warn too many accounts at once holds its
    digests for `loyalty release` (exit 6).

    In its first second it takes the database's run lock and holds it to the end: a second
    run stops at once, naming the one that holds it (exit 7); a lock left by a run that died
    is taken over, saying so. Before Prefect starts (about 20 s), it proves the rules (exit 4)
    and checks the extracts: a bad extract is answered in seconds (exit 3).

    The night defaults to the newest <YYYY-MM-DD> folder under extracts.path, else today.
    Re-running a night replaces its data and warnings but never mails a digest twice.

    Example:

    \b
        loyalty run --date 2026-11-23 --config /etc/loyalty/config.yaml
    """
    _run(_settings(config), _day(night))


def _run(settings: Settings, night: date | None) -> None:
    summary = api.run(settings, night, progress=console.note, flow_log=console.FlowProgress())
    console.print_summary(summary, settings.database)


@app.command(epilog=exits(0, 2, 3, 4, 6, 7))
def gate(
    config: ConfigOption = None,
    night: DateOption = None,
    format: Annotated[GateFormat, typer.Option("--format", "-f", case_sensitive=False, help="Output format.")] = GateFormat.table,
) -> None:
    """Check a night's extracts, changing nothing.

    Runs the data-quality gate on them.
    Loads the night's extracts, validates them and, when they pass, evaluates the rules, all
    in a transaction that is rolled back: prints every check with its figure, its limit and
    its outcome (pass, warn, fail, hold), and exits as the nightly run would: 0 when the
    night would go out, 3 when a check fails, 6 when the digests would be held. The night
    defaults to the newest extract folder. Limits are set under `gate:` in config.yaml.

    Example:

    \b
        loyalty gate --date 2026-11-23
    """
    report = api.gate(_settings(config), _day(night), progress=console.note)
    console.show_gate(report, format)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


@app.command(epilog=NIGHT_EXITS)
def release(
    night: Annotated[datetime, typer.Option("--date", "-d", formats=["%Y-%m-%d"], metavar="YYYY-MM-DD", help="The held night.")],
    by: Annotated[str, typer.Option("--by", metavar="NAME", help="Who looked and let the digests go [default: $USER].", show_default=False)] = "",
    config: ConfigOption = None,
) -> None:
    """Send the digests of a night held for an alert flood.

    The gate holds a night's digests back when they would warn too many accounts at once. When a night would warn more than gate.max_new_warning_share of all accounts for the
    first time, the nightly run keeps nothing of the night, mails no owner and tells ops,
    with the new warnings per rule (`loyalty gate --date D` shows them again). After a look,
    this records who released the night and runs it again: its flood check then passes and
    the digests go out. A night stopped for bad data cannot be released: fix the data.

    Example:

    \b
        loyalty release --date 2026-11-23 --by "Petra Ops"
    """
    settings = _settings(config)
    api.release(settings, night.date(), by or os.environ.get("USER") or "unknown")
    console.say(f"Night {night.date()} released; running it again to send the digests.")
    _run(settings, night.date())


@app.command(epilog=exits(0, 2, 4))
def serve(config: ConfigOption = None) -> None:
    """Run the nightly job on its schedule.

    Serves the flow on the configured cron and time zone until stopped.

    Uses the Prefect server named by PREFECT_API_URL; without one, starts a local
    `prefect server start` with its SQLite database under .prefect/ beside the config.

    Example:

    \b
        PREFECT_API_URL=http://127.0.0.1:4200/api loyalty serve --config config.yaml
    """
    api.serve(_settings(config), say=console.say)


class WarningState(str, Enum):
    pending = "pending"
    firing = "firing"
    resolved = "resolved"


class WarningNotice(str, Enum):
    new = "new"
    repeat = "repeat"
    open = "open"
    pending = "pending"
    snoozed = "snoozed"
    inhibited = "inhibited"
    resolved = "resolved"
    kept = "kept"


@app.command(epilog=READ_EXITS)
def alerts(
    config: ConfigOption = None,
    night: DateOption = None,
    format: FormatOption = Format.table,
    owner: Annotated[Optional[str], typer.Option("--owner", metavar="EMAIL", help="Only the warnings of accounts this owner holds (also those that went to ops).", show_default=False)] = None,
    rule: Annotated[Optional[str], typer.Option("--rule", metavar="RULE_ID", help="Only this rule's warnings.", show_default=False)] = None,
    state: Annotated[Optional[WarningState], typer.Option("--state", case_sensitive=False, help="Only warnings in this state.", show_default=False)] = None,
    notice: Annotated[
        Optional[WarningNotice], typer.Option("--notice", case_sensitive=False, help="Only warnings the night did this with (repeat: open, mailed again).", show_default=False)
    ] = None,
) -> None:
    """Print every warning of a night with its state.

    One row per account and rule: severity, state (pending, firing, resolved), what the
    night did with it (new, open, open and mailed again, snoozed, inhibited, resolved,
    pending, kept when it could not be judged), whether it was mailed, to whom (recipient:
    the owner, or ops), the account's owner (owner_email) and why. A shadow rule's warnings
    (mode shadow) are listed as they would have been, never mailed. The latest evaluated
    night unless --date names one; a night never evaluated exits 2. Reads the database only.

    Examples:

    \b
        loyalty alerts --date 2026-11-23 --format csv > warnings.csv
        loyalty alerts --owner anna.gross@example.com --state firing
        loyalty alerts --rule falling_order_value --notice new --format json
    """
    rows = api.alerts(
        _settings(config), _day(night), owner=owner, rule=rule, state=state.value if state else None, notice=notice.value if notice else None
    )
    console.show_alerts(rows, format)


@app.command(epilog=READ_EXITS)
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
    console.show_history(api.history(_settings(config), account_id), format)


@app.command(epilog=exits(0, 2, 4))
def snooze(
    account_id: Annotated[Optional[str], typer.Argument(metavar="ACCOUNT_ID", help="The account whose warnings to snooze.", show_default=False)] = None,
    rule: Annotated[Optional[str], typer.Option("--rule", metavar="RULE_ID", help="Only this rule's warning [default: every rule].", show_default=False)] = None,
    until: Annotated[Optional[datetime], typer.Option(formats=["%Y-%m-%d"], metavar="YYYY-MM-DD", help="Last night the snooze covers.", show_default=False)] = None,
    reason: Annotated[Optional[str], typer.Option(metavar="TEXT", help="Why; shown in history and alerts.", show_default=False)] = None,
    by: Annotated[Optional[str], typer.Option(metavar="NAME", help="Who decided [default: $USER].", show_default=False)] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the snoozes instead.")] = False,
    remove: Annotated[Optional[str], typer.Option(metavar="ID", help="Remove the snooze with this id (from the snoozes file).", show_default=False)] = None,
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
    settings = _settings(config)
    if list_ or remove is not None:
        if account_id or rule or until or reason:
            raise typer.BadParameter("--list and --remove take no account, --rule, --until or --reason")
        if remove is not None:
            console.snooze_removed(api.snooze_remove(settings, remove), settings.snoozes)
        else:
            console.show_snoozes(api.snooze_list(settings))
        return
    if not account_id or until is None or not (reason or "").strip():
        raise typer.BadParameter("give ACCOUNT_ID, --until and --reason (or --list, or --remove ID)")
    added = api.snooze(settings, account_id, rule, until.date(), reason, by or os.environ.get("USER"))
    console.snooze_added(added, settings.snoozes)


@app.command(epilog=READ_EXITS)
def preview(
    owner: Annotated[str, typer.Option(metavar="EMAIL", help="The recipient whose digest to render (an owner or an ops address).")],
    config: ConfigOption = None,
    night: DateOption = None,
    out_file: Annotated[Path, typer.Option("--out", metavar="FILE.html", help="Where to write the HTML.")] = Path("preview.html"),
    all_open: Annotated[bool, typer.Option("--all-open", help="Show every firing warning as new, even on a night with nothing to mail.")] = False,
) -> None:
    """Render one recipient's digest to a file; send nothing.

    For checking a template or text change: the digest the night sent (or would send)
    to EMAIL, as HTML; the plain-text part goes beside it as FILE.txt. The latest
    evaluated night unless --date names one. Reads the database only.

    Example:

    \b
        loyalty preview --owner anna.gross@example.com --date 2026-11-23 --out anna.html
    """
    console.show_preview(api.preview(_settings(config), owner, out_file, _day(night), all_open))


@app.command(epilog=READ_EXITS)
def report(
    out_file: Annotated[Path, typer.Option("--out", "-o", metavar="FILE.html", help="Where to write the page.")],
    config: ConfigOption = None,
    night: DateOption = None,
) -> None:
    """Write the portfolio report, one HTML page.

    For ops and management.
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
    figures = api.report(_settings(config), out_file, _day(night), warn=console.say)
    console.show_report(figures, out_file)


@app.command(epilog=READ_EXITS)
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
    console.show_quarantine(api.quarantine(_settings(config), _day(night), table), format)


RULES_EXITS = """\b
Exit codes (as promtool's):
  0  every file is fine / every test passed
  1  a rule file has a problem / a test failed
  2  usage or configuration error"""
rules_app = typer.Typer(
    help="Check, test and list the warning rules.\n\nThe rule language, with examples, is in docs/rules.md.",
    epilog=RULES_EXITS,
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings=HELP_OPTIONS,
)
app.add_typer(rules_app, name="rules")
PathsArgument = Annotated[
    Optional[list[Path]],
    typer.Argument(metavar="[PATH]...", help="Rule files or folders [default: the rules folder of the config].", show_default=False),
]


def _rules_paths(paths: list[Path] | None, config: Path | None) -> list[Path]:
    return paths or [_settings(config).rules]


def _configured_database(config: Path | None) -> Path | None:
    """The config's database, or None without a usable config: rules can be listed from files alone."""
    try:
        return _settings(config).database
    except UserError:
        return None


@rules_app.command("check", epilog=RULES_EXITS)
def rules_check(paths: PathsArgument = None, config: ConfigOption = None) -> None:
    """Check rule files without running anything.

    Reads every rule file, checks every metric, param, condition, value and text, and
    compiles each rule once against empty tables; without PATH, the config's snoozes
    file too. Prints every problem of every rule at once, one line each, as
    FILE:LINE:COLUMN: PROBLEM (with "did you mean" where a known name is close), and
    exits 1 if there is any. The nightly run refuses rules that fail this check.

    Example:

    \b
        loyalty rules check rules/
    """
    check = api.rules_check(_rules_paths(paths, config), None if paths else _settings(config).snoozes)
    console.show_rule_check(check)
    if check.problems:
        raise typer.Exit(1)


@rules_app.command("list", epilog=exits(0, 2, 4))
def rules_list(paths: PathsArgument = None, config: ConfigOption = None, format: FormatOption = Format.table) -> None:
    """List the rules and their figures from the last backtest.

    Each rule with its severity, state (enabled, mode) and what it says.
    Once `loyalty backtest` has run, each rule shows its figures from it: accounts flagged,
    digests per owner and week, precision, recall and median lead in days (see `loyalty
    backtest --help`), so you see which rules earn their place.

    Example:

    \b
        loyalty rules list --format csv > rules.csv
    """
    listing = api.rules_list(_rules_paths(paths, config), _configured_database(config))
    console.show_rule_list(listing, format)


@rules_app.command("test", epilog=RULES_EXITS)
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
    tests = api.rules_test(_rules_paths(paths, config))
    console.show_rule_tests(tests)
    if tests.failed or not tests.passed:
        raise typer.Exit(1)


@app.command(epilog=READ_EXITS)
def explain(
    account_id: Annotated[str, typer.Argument(metavar="ACCOUNT_ID", help="The account to explain.")],
    config: ConfigOption = None,
    night: DateOption = None,
    format: Annotated[GateFormat, typer.Option("--format", "-f", case_sensitive=False, help="Output format.")] = GateFormat.table,
) -> None:
    """Show why each rule fires or not for one account.

    For every rule: whether its condition holds (fires, pending while `for:` nights are
    still to come, quiet, no data), each part of its condition with the numbers it compared,
    every metric with the days it counts, and what the night's run made of the warning:
    pending or firing, and whether it was mailed and to whom. Uses the data of the latest
    loaded night, as of --date (default: that night). Reads the database only.

    Examples:

    \b
        loyalty explain K-00042 --date 2026-11-23
        loyalty explain K-00042 --format json
    """
    console.show_explanation(api.explain(_settings(config), account_id, _day(night)), format)


@app.command(epilog=exits(0, 2, 4, 7))
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
    flagged: Annotated[
        Optional[Path],
        typer.Option("--flagged", metavar="FILE.csv", help="Also write the accounts behind the figures: one row per account and rule, with its fate.", show_default=False),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Replay past nights: how early and precisely rules warn.

    Every night from --from to --to is evaluated as it was (only data dated up to it counts),
    and the warnings go through the real lifecycle (for:, repeats, resolution, inhibition;
    snoozes off). Shadow rules are replayed like live ones. Per rule and for all live rules:
    nights with a new warning, accounts flagged, digests per owner and week, and where the
    data shows what happened next: precision (flagged accounts lost within
    backtest.horizon_days), beside it how many were warned only after their loss (too
    late: never a hit), recall (lost accounts warned at least backtest.min_lead_days
    before) and the median lead in days from the first warning to the loss. What "lost"
    means is set under backtest.lost in config.yaml (docs/backtest.md). --flagged FILE.csv
    lists the accounts behind the figures (account_id, rule_id, first_warned, owner_email,
    fate, lost_on; rule_id * for any live rule). The figures are kept
    for `loyalty rules list` and `loyalty report`. Needs the database to itself (exit 7
    while a run is going).

    Examples:

    \b
        loyalty backtest --from 2025-05-01 --to 2026-04-30
        loyalty backtest --from 2025-05-01 --to 2026-04-30 --compare rules-next/ --format json
        loyalty backtest --from 2025-05-01 --to 2026-04-30 --flagged flagged.csv
    """
    settings = _settings(config)
    run = api.backtest(settings, first.date(), last.date(), rules, compare_with, flagged, progress=console.note)
    console.show_backtest(run, format, output, settings.digest.language)


@app.command(epilog=exits(0, 2, 4, 7))
def tune(
    rule: Annotated[str, typer.Argument(metavar="RULE", help="The rule whose params (named thresholds) to vary.")],
    first: Annotated[datetime, typer.Option("--from", formats=["%Y-%m-%d"], metavar="YYYY-MM-DD", help="First night to replay.")],
    last: Annotated[datetime, typer.Option("--to", formats=["%Y-%m-%d"], metavar="YYYY-MM-DD", help="Last night to replay.")],
    vary: Annotated[
        Optional[list[str]],
        typer.Option("--vary", metavar="NAME=V1,V2,…", help="A param and the values to try; repeat for more params (every combination is tried).", show_default=False),
    ] = None,
    rules: Annotated[
        Optional[Path], typer.Option("--rules", metavar="PATH", help="Rule file or folder [default: the rules folder of the config].", show_default=False)
    ] = None,
    format: Annotated[BacktestFormat, typer.Option("--format", "-f", case_sensitive=False, help="Output format.")] = BacktestFormat.table,
    output: Annotated[Optional[Path], typer.Option("--out", "-o", metavar="FILE", help="Write to FILE instead of stdout.", show_default=False)] = None,
    config: ConfigOption = None,
) -> None:
    """Try other thresholds for one rule on past nights.

    Compares their consequences side by side.
    A rule names its thresholds under params: (docs/rules.md, "Params"). Each --vary
    NAME=V1,V2,... gives values to try for one of them; every combination of the values is
    replayed (at most 200), and the values in the rule file too. History is replayed once:
    the metrics are computed once and each combination is one more condition beside them,
    through the real lifecycle as in `loyalty backtest`. Per combination: the params,
    accounts flagged, digests per owner and week, precision (with too late beside it),
    recall and median lead in days, as `loyalty backtest --help` defines them.

    Two marks help choose: "front" marks the combinations that no other beats on all
    three of precision, recall and digests per owner and week (at least as good on each and
    better on one; fewer digests is better): the sensible choices, between which only
    your priorities decide (a combination that warns no account is the rule switched
    off, and is not marked). "current" marks the values in the rule file. Change the
    params: in the file to adopt a combination. Nothing is stored (`rules list` keeps
    showing the last backtest). Needs the database to itself (exit 7 while a run is going).

    Examples:

    \b
        loyalty tune complaint_spike --vary min_complaints=2,3,4 --from 2025-05-01 --to 2025-10-31
        loyalty tune complaint_spike --vary min_complaints=2,3 --vary times_usual=2,3,4 \\
            --from 2025-05-01 --to 2025-10-31 --format html --out tune.html
    """
    settings = _settings(config)
    result = api.tune(settings, rule, vary or [], first.date(), last.date(), rules, progress=console.note)
    console.show_tune(result, rules or settings.rules, format, output, settings.digest.language)


feedback_app = typer.Typer(
    help="Serve and list the owners' verdicts.\n\nThe pages their digests' verdict links lead to, and the answers.\n"
    "Each warning in a digest carries three links (useful, false alarm, already known: rest 30 days)\n"
    "when feedback.base_url is set; see the README, \"The owner's verdict\".",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings=HELP_OPTIONS,
)
app.add_typer(feedback_app, name="feedback")


@feedback_app.command("serve", epilog=exits(0, 2))
def feedback_serve(
    config: ConfigOption = None,
    host: Annotated[str, typer.Option("--host", metavar="H", help="Address to listen on; put a TLS reverse proxy in front for the public address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", metavar="P", min=1, max=65535, help="Port to listen on.")] = 8470,
) -> None:
    """Serve the pages the digests' verdict links lead to.

    A small web service (Starlette under uvicorn, no Prefect) with one kind of page,
    /v/TOKEN: opening a link shows the warning with its evidence and one button; only
    pressing the button records the answer in the database (mail scanners open every
    link, so opening records nothing). One answer counts per owner, account, rule and
    night, the latest replacing the earlier; every answer is kept. "Already known" rests
    the warning 30 days, as a snooze by the owner. The signing secret comes from the
    environment variable named by feedback.secret_env; without it the service does not
    start. While a night writes the database, an answer waits briefly, then the owner
    is asked to try again in a minute (503). Runs until stopped (Ctrl-C, SIGTERM).

    Example:

    \b
        LOYALTY_FEEDBACK_SECRET=$(cat /etc/loyalty/feedback.secret) loyalty feedback serve --host 127.0.0.1 --port 8470
    """
    api.feedback_serve(_settings(config), host, port, say=console.note)


@feedback_app.command("list", epilog=READ_EXITS)
def feedback_list(
    config: ConfigOption = None,
    rule: Annotated[Optional[str], typer.Option("--rule", metavar="R", help="Only the verdicts on this rule's warnings.", show_default=False)] = None,
    since: Annotated[
        Optional[datetime], typer.Option("--since", metavar="D", formats=["%Y-%m-%d"], help="Only verdicts given on or after this day (UTC).", show_default=False)
    ] = None,
    format: FormatOption = Format.table,
) -> None:
    """List the verdicts the owners gave.

    Newest first: when it was given (UTC), the night whose digest carried the link, the
    account, the rule, the owner, the verdict (useful, false_alarm, already_known), the
    night an "already known" warning rests until, and whether it counts (no: the owner
    answered the same warning again later). Reads the database only.

    Examples:

    \b
        loyalty feedback list --rule falling_order_frequency --since 2026-11-01
        loyalty feedback list --format csv > verdicts.csv
    """
    console.show_verdicts(api.feedback_list(_settings(config), rule, _day(since)), format)


@app.command("generate-sample", epilog=exits(0, 2))
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
    summary = api.generate_sample(out_dir, accounts=accounts, seed=seed, end_date=_day(end_date), nights=nights)
    console.show_sample(summary, out_dir, nights)


def main() -> None:
    """Entry point: user mistakes get one line and their exit code, never a traceback."""
    try:
        app()
    except (UserError, DeliveryError) as error:
        # The traceback's frames still hold DuckDB objects; dropping them lets the interpreter
        # shut down without nanobind's leak report.
        error.__traceback__ = error.__context__ = None
        console.show_error(error)
        raise SystemExit(error.exit_code) from None
