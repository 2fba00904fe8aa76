"""The library under the `loyalty` command: one plain function per command.

Each takes the settings (or, for the rule commands, the rule files) and the command's arguments,
does the work and returns data: dataclasses, lists of dicts. None prints; `cli.py` parses the
command line, calls one of these and hands the result to `console.py`. Scripts, notebooks and
tests call them the same way (after `make demo`):

    >>> from pathlib import Path
    >>> from loyalty_engine import api
    >>> from loyalty_engine.config import load_settings
    >>> settings = load_settings(Path("config.yaml"))
    >>> api.gate(settings).exit_code      # as `loyalty gate` exits: 0 goes out, 3 fails, 6 is held
    0
    >>> rows = api.alerts(settings)       # the rows `loyalty alerts` prints, evidence included
    >>> sorted(rows[0])[:4]
    ['account_id', 'account_name', 'cc', 'evidence']

The modules behind a command are imported inside it: `loyalty alerts` answers in half a second,
while the night's modules together take two, and only `run`, `release` and `serve` import Prefect.
Functions that take a while say what they are doing through `progress` (a line of text each),
which does nothing unless the caller passes a function.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from loyalty_engine.errors import UserError

if TYPE_CHECKING:  # pydantic (the config) loads only once a command reads its settings: `loyalty --help` stays fast
    from loyalty_engine.config import Settings
    from loyalty_engine.backtest import Backtest, Tune
    from loyalty_engine.errors import RuleError
    from loyalty_engine.gate import Check
    from loyalty_engine.lifecycle.snoozes import Snooze
    from loyalty_engine.pages.portfolio import Figures
    from loyalty_engine.rules.explain import AccountExplained
    from loyalty_engine.rules.loader import RuleSet
    from loyalty_engine.rules.testing import CaseResult
    from loyalty_engine.sample.generator import SampleSummary
    from loyalty_engine.summary import NightSummary

Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    """The default progress: say nothing."""


def version() -> str:
    """The installed loyalty-engine's version (the source tree's, when run from a checkout not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("loyalty-engine")
    except PackageNotFoundError:
        import tomllib

        with (Path(__file__).resolve().parent.parent / "pyproject.toml").open("rb") as handle:
            return tomllib.load(handle)["project"]["version"]


# --- The night ---------------------------------------------------------------------------------


def _prefect_environment(settings: Settings) -> None:
    """Prefect's state lives beside the config; quiet console, no telemetry. Set before importing prefect."""
    os.environ.setdefault("PREFECT_HOME", str(settings.source.resolve().parent / ".prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # The caller's handler prints progress; Prefect's console handler would print tracebacks of user errors.
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")


def run(settings: Settings, night: date | None = None, *, progress: Progress = _quiet, flow_log: logging.Handler | None = None) -> NightSummary:
    """Run the nightly flow once for the night (default: `preflight.tonight`) and return its summary.

    The run lock is taken first and held to the end, so a second run stops at once (RunLocked,
    exit 7, naming the holder); a lock left by a dead run is taken over, saying so through
    `progress`. Then the pre-flight, all without Prefect: the rules proven (RuleError, exit 4),
    the snoozes, and the extracts checked by the gate; a bad extract stops the night here
    (GateFailed, exit 3) with its checks kept and ops told, as the flow would. Only a night that
    really runs imports Prefect and starts its local API. `flow_log` receives the flow's own
    progress lines while it runs. Raises DigestsHeld (6) or DeliveryError (5) from the flow.
    """
    from loyalty_engine import store
    from loyalty_engine.preflight import extracts_stop, preflight

    with store.night_lock(settings.database, said=progress):
        checked = preflight(settings, night)
        progress(f"Checking the extracts of {checked.night} in {settings.extracts.path} …")
        stop = extracts_stop(settings, checked)
        if stop is not None:
            from loyalty_engine.gate import Outcome, keep_stop

            failed = [check for check in stop.checks if check.outcome is Outcome.FAIL]
            for check in failed if len(failed) > 1 else []:  # one is the error line itself
                progress(f"gate: {check.line()}")
            keep_stop(settings, stop, progress)
            raise stop
        _prefect_environment(settings)
        if not os.environ.get("PREFECT_API_URL"):
            progress("Starting Prefect's local API for this run (about 20 s) …")
        from flows.nightly import PROGRESS_LOGGER, nightly  # Prefect is imported only when the night runs

        logger = logging.getLogger(PROGRESS_LOGGER)
        if flow_log is not None:
            logger.addHandler(flow_log)
        try:
            # The flow picks the night itself when none is given, as a scheduled run does, so it can
            # say when the newest extract folder is older than it should be.
            return nightly(config_path=str(settings.source), night=night)
        finally:
            if flow_log is not None:
                logger.removeHandler(flow_log)


@dataclass(frozen=True)
class GateReport:
    night: date
    checks: list[Check]

    @property
    def exit_code(self) -> int:
        """What the nightly run would exit with: 3 when a check fails, 6 when digests would be held, else 0."""
        from loyalty_engine.gate import DigestsHeld, GateFailed, Outcome

        if any(c.outcome is Outcome.FAIL for c in self.checks):
            return GateFailed.exit_code
        if any(c.outcome is Outcome.HOLD for c in self.checks):
            return DigestsHeld.exit_code
        return 0


def gate(settings: Settings, night: date | None = None, *, progress: Progress = _quiet) -> GateReport:
    """The gate's checks for the night (default: `preflight.tonight`), from a run rolled back at the end."""
    from loyalty_engine import store
    from loyalty_engine.night import run_night
    from loyalty_engine.preflight import preflight

    with store.night_lock(settings.database, said=progress):
        checked = preflight(settings, night)
        if checked.extract_problems:  # a missing table or column: the night fails the gate; no need to read it
            from loyalty_engine.gate import problem_checks

            return GateReport(checked.night, problem_checks(checked.extract_problems))
        progress(f"Checking the extracts of {checked.night} in {settings.extracts.path} …")
        with store.connect(settings.database) as con:
            state = run_night(con, settings, checked.ruleset, checked.snoozes, checked.night, dry_run=True)
    return GateReport(checked.night, state.checks)


def release(settings: Settings, night: date, by: str) -> None:
    """Record that `by` let the night's held digests go; `run` for the night then sends them.

    The pre-flight comes first: a release that could not run is not recorded.
    """
    from loyalty_engine import store
    from loyalty_engine.night import release_night
    from loyalty_engine.preflight import preflight

    with store.night_lock(settings.database):
        preflight(settings, night)
        release_night(settings, night, by)


def serve(settings: Settings, say: Progress = _quiet) -> None:
    """Serve the nightly flow on its schedule until stopped (see flows/serving.py)."""
    _prefect_environment(settings)
    from flows.serving import serve_nightly

    serve_nightly(settings, say=say)


# --- What the nights left behind ---------------------------------------------------------------


def alerts(
    settings: Settings,
    night: date | None = None,
    *,
    owner: str | None = None,
    rule: str | None = None,
    state: str | None = None,
    notice: str | None = None,
) -> list[dict]:
    """Every warning of the night (default: the latest evaluated) with its state, notice, recipient,
    owner and evidence; only those matching each filter given (owner address, rule id, state, notice).

    A night never evaluated raises a one-line UserError (exit 2), as does a rule id that never warned.
    """
    from loyalty_engine.results import night_warnings

    return night_warnings(settings.database, night, owner=owner, rule=rule, state=state, notice=notice)


def history(settings: Settings, account_id: str) -> list[dict]:
    """Each night a warning of the account changed, oldest first, with what happened in words."""
    from loyalty_engine.results import account_history

    return account_history(settings.database, account_id)


def quarantine(settings: Settings, night: date | None = None, table: str | None = None) -> list[dict]:
    """The night's bad cells (default: the latest loaded night), of one table or all."""
    from loyalty_engine.results import night_quarantine

    return night_quarantine(settings.database, night, table)


@dataclass
class Explanation:
    """Every rule's verdict on one account (from the data), and what the lifecycle made of it
    that night: `warnings` by rule id (state, notice, mailed, recipient), None when the night was
    never evaluated."""

    account: AccountExplained
    warnings: dict[str, dict] | None

    def as_json(self) -> dict:
        a = self.account
        return {
            "account_id": a.account_id, "name": a.name, "owner": a.owner, "night": a.night.isoformat(), "group": a.group,
            "evaluated": self.warnings is not None,
            "rules": [
                {
                    "rule_id": item.rule.id, "severity": item.rule.severity, "outcome": item.outcome,
                    # The stored warning: pending and firing as the lifecycle counts nights; null: none
                    "warning": None if self.warnings is None else self.warnings.get(item.rule.id),
                    "parts": [{"condition": p.text, "held": p.held, "compared": p.compared} for p in item.parts],
                    "numbers": [
                        {"name": name, "value": _plain(value), "what": what, **({"shown": item.shown[name]} if name in item.shown else {})}
                        for name, value, what in item.numbers
                    ],
                }
                for item in a.rules
            ],
        }


def _plain(value: object) -> object:
    """A number as JSON has it (DuckDB gives Decimal); dates as ISO text."""
    from decimal import Decimal

    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def explain(settings: Settings, account_id: str, night: date | None = None) -> Explanation:
    """Every rule's verdict on the account as of the night (default: the latest loaded), with its
    numbers, and the state the night's lifecycle gave each warning (pending or firing, mailed or not)."""
    from loyalty_engine import results
    from loyalty_engine.rules.explain import explain_account
    from loyalty_engine.rules.loader import load_rules
    from loyalty_engine.store import absent_tables

    ruleset = load_rules(settings.rules)
    with results.open_database(settings.database) as con:
        loaded = results.latest_loaded_night(con)
        if loaded is None:
            raise UserError(f"{settings.database}: no night loaded yet; run `loyalty run` first")
        explained = explain_account(con, ruleset, account_id, night or loaded, absent_tables(con, loaded))
        return Explanation(explained, results.account_warning_states(con, account_id, explained.night))


@dataclass(frozen=True)
class Preview:
    subject: str
    html_file: Path
    text_file: Path


def preview(settings: Settings, owner: str, out_file: Path, night: date | None = None, all_open: bool = False) -> Preview:
    """Write the digest the night sent (or would send) to `owner` as out_file (HTML) and out_file.txt."""
    from loyalty_engine import results
    from loyalty_engine.mail.digest import render_digests
    from loyalty_engine.mail.mailing import night_mailing
    from loyalty_engine.rules.loader import load_rules

    ruleset = load_rules(settings.rules)
    with results.open_database(settings.database) as con:
        chosen = night or results.latest_evaluated_night(con)
        if chosen is None:
            raise UserError(f"{settings.database}: no night evaluated yet; run `loyalty run` first")
        mailing = night_mailing(
            con, ruleset, chosen, settings.digest.language, settings.email.ops_recipients, all_open=all_open,
            silent_days=settings.backtest.lost.no_order_days, horizon_days=settings.backtest.horizon_days,
            currency=settings.digest.currency,
        )
    wanted = owner.strip().lower()
    mine = [w for w in mailing.warnings if (w.recipient or w.owner_email).lower() == wanted]
    if not mine:
        hint = "" if all_open else "; --all-open shows every firing warning"
        raise UserError(f"{owner} gets no digest on {chosen} (nothing new, due again or resolved){hint}")
    from loyalty_engine.feedback.links import with_links

    [digest] = render_digests(
        with_links(mine, chosen, settings.feedback), chosen, settings.email.sender, settings.digest.language, settings.digest.max_accounts, mailing.portfolios,
        settings.digest.currency, mailing.lost,
    )
    text_file = out_file.with_suffix(".txt")
    out_file.write_text(digest.message.get_body(("html",)).get_content(), encoding="utf-8")
    text_file.write_text(digest.message.get_body(("plain",)).get_content(), encoding="utf-8")
    return Preview(digest.message["Subject"], out_file, text_file)


def report(settings: Settings, out_file: Path, night: date | None = None, *, warn: Progress = _quiet) -> Figures:
    """Write the portfolio report as of the night (default: the latest evaluated) to out_file; its figures.

    The rules only give titles: a rule file being edited costs the page its titles (said through
    `warn`), not the page.
    """
    from loyalty_engine import results
    from loyalty_engine.errors import RuleError
    from loyalty_engine.pages.portfolio import portfolio_report
    from loyalty_engine.rules.loader import load_rules

    try:
        ruleset = load_rules(settings.rules)
    except RuleError as problem:
        warn(f"warning: rule titles not shown: {problem}")
        ruleset = None
    with results.open_database(settings.database) as con:
        figures, html = portfolio_report(con, night, settings.digest.language, ruleset, settings.database.name)
    _write_whole(out_file, html, "the report")
    return figures


def _write_whole(path: Path, text: str, what: str) -> None:
    """Write the file whole or not at all: a reader never opens half a page."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise UserError(f"{path}: cannot write {what}: {error.strerror or error}") from None


# --- Snoozes -------------------------------------------------------------------------------------


def snooze(settings: Settings, account_id: str, rule: str | None, until: date, reason: str, by: str | None) -> Snooze:
    """Add a snooze to the snoozes file: the account's warnings (of one rule, or all) not mailed up to `until`.

    Refused with a one-line UserError: an unknown rule or account (naming the closest known
    one, a typo being likeliest) and an end date before the newest evaluated night: nights are
    business dates, so a replay or a check of a past night may snooze up to that night, whatever
    the machine's date (without a database yet, today).
    """
    from loyalty_engine.lifecycle.snoozes import add_snooze
    from loyalty_engine.rules.loader import did_you_mean, load_rules

    rule_ids = {r.id for r in load_rules(settings.rules).rules}
    if rule is not None and rule not in rule_ids:
        raise UserError(f"--rule: unknown rule '{rule}'{did_you_mean(rule, rule_ids)}")
    newest = _newest_night(settings)
    if until < newest:
        raise UserError(
            f"--until {until} lies before the newest evaluated night ({newest}); a snooze covers nights up to and including its end date"
        )
    _known_account(settings, account_id)
    return add_snooze(settings.snoozes, account_id, rule, until, reason, by, date.today())


def _known_account(settings: Settings, account_id: str) -> None:
    """An unknown account id is most likely a typo: refuse it, naming the closest known one."""
    if not settings.database.exists():
        return
    from loyalty_engine import results
    from loyalty_engine.rules.loader import did_you_mean

    with results.open_database(settings.database) as con:
        ids = results.account_ids(con)
    if ids and account_id not in ids:
        raise UserError(f"unknown account '{account_id}'{did_you_mean(account_id, ids)}: not in the latest accounts extract")


def _newest_night(settings: Settings) -> date:
    """The newest evaluated night, the clock snoozes are judged by; today before the first."""
    if settings.database.exists():
        from loyalty_engine import results

        with results.open_database(settings.database) as con:
            newest = results.latest_evaluated_night(con)
        if newest is not None:
            return newest
    return date.today()


def snooze_list(settings: Settings) -> list[dict]:
    """The snoozes in the file and the owners' "already known" verdicts (ids V<n>), each active (its
    end date on or after the newest evaluated night) or ended."""
    from loyalty_engine.lifecycle.snoozes import load_snoozes

    newest = _newest_night(settings)
    return [
        {"id": z.id, "account_id": z.account_id, "rule": z.rule_id or "every rule", "until": z.until,
         "status": "active" if z.until >= newest else "ended", "reason": z.reason, "by": z.by, "created": z.created, "source": source}
        for source, snoozes in (("snoozes file", load_snoozes(settings.snoozes)), ("owner's verdict", _owner_snoozes(settings)))
        for z in snoozes
    ]


def _owner_snoozes(settings: Settings) -> list[Snooze]:
    """The owners' "already known" answers that count (feedback/verdicts.py), from the database if any."""
    if not settings.database.exists():
        return []
    from loyalty_engine import results
    from loyalty_engine.feedback.verdicts import all_owner_snoozes, has_verdicts

    with results.open_database(settings.database) as con:
        return all_owner_snoozes(con) if has_verdicts(con) else []


def snooze_remove(settings: Settings, snooze_id: int | str) -> Snooze:
    """Delete the snooze from the file; the removed one. An owner's "already known" answer (V<n>)
    is not in the file: refused, saying how it ends."""
    from loyalty_engine.lifecycle.snoozes import remove_snooze

    text = str(snooze_id).strip()
    if text[:1] in ("V", "v") and text[1:].isdigit():
        raise UserError(
            f"snooze {text.upper()} is an owner's \"already known\" answer, not in {settings.snoozes}: it ends on its date, "
            f"or when the owner answers that warning otherwise (`loyalty feedback list`)"
        )
    if not text.isdigit():
        raise UserError(f"--remove: {text!r} is not a snooze id (a number from `loyalty snooze --list`)")
    return remove_snooze(settings.snoozes, int(text))


# --- The owners' verdicts -----------------------------------------------------------------------


def feedback_serve(settings: Settings, host: str, port: int, say: Progress = _quiet) -> None:
    """Serve the verdict pages (`loyalty_engine/feedback/pages.py`) with uvicorn until stopped.

    Refuses to start (ConfigError, exit 2) without the signing secret, and (UserError) without a
    database: the pages show warnings the night stored. No Prefect.
    """
    from loyalty_engine.feedback.pages import serve
    from loyalty_engine.rules.loader import load_rules

    secret = settings.feedback.secret()
    if not settings.database.exists():
        raise UserError(f"{settings.database}: no database yet; run `loyalty run` first")
    ruleset = load_rules(settings.rules)
    if not settings.feedback.base_url:
        say("note: feedback.base_url is not set, so digests carry no verdict links yet")
    say(f"Verdict pages on http://{host}:{port}/v/… for {settings.database}; Ctrl-C stops")
    serve(settings, ruleset, secret, host, port)


def feedback_list(settings: Settings, rule: str | None = None, since: date | None = None) -> list[dict]:
    """Every verdict the owners gave, newest first (`counts`: it is the latest on its warning).
    Reads the database only."""
    from loyalty_engine import results
    from loyalty_engine.feedback.verdicts import has_verdicts, verdict_rows

    with results.open_database(settings.database) as con:
        return verdict_rows(con, rule, since) if has_verdicts(con) else []


# --- Backtest ------------------------------------------------------------------------------------


@dataclass
class BacktestRun:
    """One backtest: the figures of each rule set replayed and, with two, the accounts the second adds and drops."""

    results: list[Backtest]
    rule_paths: list[Path]
    difference: dict | None = None
    flagged: tuple[Path, int] | None = None  # the flagged accounts' CSV and its rows, with --flagged

    def as_json(self) -> dict:
        document = self.results[0].as_json()
        if self.difference is not None:
            document["compare"] = {"rules_path": str(self.rule_paths[1]), **self.results[1].as_json(), **self.difference}
        return document


def backtest(
    settings: Settings,
    first: date,
    last: date,
    rules: Path | None = None,
    compare_with: Path | None = None,
    flagged: Path | None = None,
    *,
    progress: Progress = _quiet,
) -> BacktestRun:
    """Replay the rules (default: the config's) on the nights first … last and judge their warnings.

    Needs the database to itself (RunLocked, exit 7, while a run is going); the figures of the
    first rule set are stored for `loyalty rules list` and `loyalty report`, and with `flagged`
    the accounts behind them are written to that CSV file.
    """
    from loyalty_engine import backtest as replay
    from loyalty_engine import results, store
    from loyalty_engine.rules.loader import load_rules

    if first > last:
        raise UserError(f"--from {first:%Y-%m-%d} lies after --to {last:%Y-%m-%d}")
    rules_path = rules or settings.rules
    rule_sets = [(rules_path, load_rules(rules_path))]
    if compare_with is not None:
        rule_sets.append((compare_with, load_rules(compare_with)))
    if not settings.database.exists():
        raise UserError(f"{settings.database}: no database yet; run `loyalty run` first")
    replayed = []
    with store.night_lock(settings.database), store.connect(settings.database) as con:
        if results.latest_loaded_night(con) is None:
            raise UserError(f"{settings.database}: no night loaded yet; run `loyalty run` first")
        # engine: spark reads the newest loaded night's extracts, the tables the replay reads in DuckDB.
        from loyalty_engine.night import spark_for_night

        spark = spark_for_night(settings, results.latest_loaded_night(con))
        for path, ruleset in rule_sets:
            progress(f"Replaying {path} …")
            replayed.append(
                replay.run_backtest(
                    con, ruleset, settings.backtest, first, last, settings.digest.repeat_after_days,
                    progress=lambda message: progress(f"  {message}"), digest=settings.digest, spark=spark,
                )
            )
        replay.store_figures(con, replayed[0], rules_path)
    difference = replay.compare(replayed[0], replayed[1]) if len(replayed) == 2 else None
    written = (flagged, replay.write_flagged(replayed[0], flagged)) if flagged is not None else None
    return BacktestRun(replayed, [path for path, _ in rule_sets], difference, written)


# The most combinations one `loyalty tune` replays: each is a column of the replay's query and a
# rule in its lifecycle, so a grid far beyond a screenful costs minutes and shows nothing more.
MAX_COMBINATIONS = 200


class TuneRefused(UserError):
    """Mistakes in a `loyalty tune` command line, all found at once; each is one line."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_vary(texts: list[str]) -> tuple[dict[str, list[float]], list[str]]:
    """`--vary NAME=V1,V2,…` options as {name: [values]} (repeated values once, in the order
    given; whole numbers as ints), and the problems found, one line each.

    >>> parse_vary(["share=0.4,0.5,0.4", "min_baseline=4,6"])
    ({'share': [0.4, 0.5], 'min_baseline': [4, 6]}, [])
    >>> parse_vary(["share=0.4,half"])[1]
    ["--vary share=0.4,half: 'half' is not a number"]
    """
    from loyalty_engine.rules.compiler import LARGEST_NUMBER

    grid: dict[str, list[float]] = {}
    problems = []
    for text in texts:
        name, equals, listed = text.partition("=")
        name = name.strip()
        if not equals or not name or not listed.strip():
            problems.append(f"--vary {text}: write NAME=V1,V2,…, e.g. --vary share=0.4,0.5,0.6")
            continue
        if name in grid:
            problems.append(f"--vary {name} is given twice; list all its values in one: --vary {name}=V1,V2,…")
            continue
        values: list[float] = []
        for word in (part.strip() for part in listed.split(",")):
            try:
                value = int(word)
            except ValueError:
                try:
                    value = float(word)
                except ValueError:
                    value = None
            if value is None or value != value or value in (math.inf, -math.inf):
                problems.append(f"--vary {text}: '{word}' is not a number")
            elif abs(value) > LARGEST_NUMBER:
                problems.append(f"--vary {text}: {word} is too large")
            elif value not in values:
                values.append(value)
        grid[name] = values
    return grid, problems


def tune(
    settings: Settings,
    rule_id: str,
    vary: list[str],
    first: date,
    last: date,
    rules: Path | None = None,
    *,
    progress: Progress = _quiet,
) -> Tune:
    """Replay one rule on the nights first … last once per combination of the `--vary
    NAME=V1,V2,…` values (the cartesian product, at most MAX_COMBINATIONS) and the file's values.

    Every mistake in the arguments is found before anything runs and raised together as
    TuneRefused (exit 2): an unknown rule or param (naming the closest), a rule without params,
    a value that is not a number, --from after --to, too many combinations. Needs the database
    to itself like a backtest (RunLocked, exit 7, while a run is going); stores nothing.
    """
    from loyalty_engine import backtest as replay
    from loyalty_engine import results, store
    from loyalty_engine.rules.loader import did_you_mean, load_rules

    rules_path = rules or settings.rules
    ruleset = load_rules(rules_path)
    grid, problems = parse_vary(vary)
    rule = next((r for r in ruleset.rules if r.id == rule_id), None)
    if rule is None:
        problems.insert(0, f"unknown rule '{rule_id}'{did_you_mean(rule_id, [r.id for r in ruleset.rules])} in {rules_path}")
    elif not rule.params:
        problems.insert(0, f"rule '{rule_id}' has no params to vary; name its thresholds under params: (docs/rules.md, \"Params\")")
    else:
        known = ", ".join(rule.params)
        problems += [
            f"rule '{rule_id}' has no param '{name}'{did_you_mean(name, rule.params)} (its params: {known})"
            for name in grid if name not in rule.params
        ]
    if not vary and (rule is None or rule.params):
        problems.append("give the values to try: --vary NAME=V1,V2,… (one --vary per param)")
    if first > last:
        problems.append(f"--from {first:%Y-%m-%d} lies after --to {last:%Y-%m-%d}")
    combinations = math.prod(len(values) for values in grid.values()) if grid else 0
    if combinations > MAX_COMBINATIONS:
        sizes = " x ".join(str(len(values)) for values in grid.values())
        problems.append(f"--vary gives {combinations} combinations ({sizes}); at most {MAX_COMBINATIONS}: try fewer values")
    if problems:
        raise TuneRefused(problems)
    if not settings.database.exists():
        raise UserError(f"{settings.database}: no database yet; run `loyalty run` first")
    with store.night_lock(settings.database), store.connect(settings.database) as con:
        if results.latest_loaded_night(con) is None:
            raise UserError(f"{settings.database}: no night loaded yet; run `loyalty run` first")
        progress(f"Replaying {rule_id} from {rules_path} …")
        return replay.tune(
            con, ruleset, rule_id, grid, settings.backtest, first, last, settings.digest.repeat_after_days,
            progress=lambda message: progress(f"  {message}"), digest=settings.digest,
        )


# --- Rules ---------------------------------------------------------------------------------------


@dataclass
class RuleCheck:
    files: list[Path]
    ruleset: RuleSet
    problems: list[RuleError]  # in file order: file, line, column


def rules_check(paths: list[Path], snoozes: Path | None = None) -> RuleCheck:
    """Every problem of the rule files (and of the snoozes file, when given), each compiled once on empty tables."""
    from loyalty_engine.lifecycle.snoozes import check_snoozes
    from loyalty_engine.rules.evaluate import prove_rules
    from loyalty_engine.rules.loader import check_rule_files, rule_files

    files = rule_files(paths)
    ruleset, problems = check_rule_files(files)
    prove_rules(ruleset, date.today(), problems)
    if snoozes is not None:
        problems += check_snoozes(snoozes, {rule.id for rule in ruleset.rules})[1]
    return RuleCheck(files, ruleset, sorted(problems, key=_file_order))


def _file_order(problem: Exception) -> tuple:
    """file, line, column of a 'file:line:column: problem' message, for sorting in file order."""
    match = re.match(r"^(.*?):(\d+):(\d+): ", str(problem))
    return (match.group(1), int(match.group(2)), int(match.group(3))) if match else (str(problem), 0, 0)


@dataclass
class RuleListing:
    rows: list[dict]  # one per rule: what it is, where, and its figures from the last backtest
    backtest: tuple[date, date] | None = None  # the nights the last backtest replayed; None: none ran
    verdicts: bool = False  # some owner has answered a warning: the rows carry the owners' figures


def rules_list(paths: list[Path], database: Path | None = None) -> RuleListing:
    """The rules with severity, state and title, and the last backtest's figures from the database if any."""
    from loyalty_engine.rules.loader import load_rules

    ruleset = load_rules(paths)
    figures, verdicts = _last_backtest(database), _verdict_figures(database)
    rows = []
    for rule in ruleset.rules:
        found = figures.get(rule.id, {})
        said = verdicts.get(rule.id, {})
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
                "too_late": found.get("too_late"),
                "recall": found.get("recall"),
                "lead_days": found.get("median_lead_days"),
                # The owners' verdicts that count (feedback/verdicts.py). A shadow rule is never
                # mailed, so nobody can answer it: no figures, and the listing says why.
                "useful": said.get("useful", 0),
                "false_alarm": said.get("false_alarm", 0),
                "already_known": said.get("already_known", 0),
                "owners_precision": said.get("owners_precision"),
                "owners_note": "shadow: never mailed, no verdicts" if rule.mode == "shadow" else "",
            }
        )
    period = next(iter(figures.values()), None)
    return RuleListing(rows, (period["first_night"], period["last_night"]) if period else None, bool(verdicts))


def _verdict_figures(database: Path | None) -> dict:
    """The owners' verdicts per rule, or {} (none yet, or no database)."""
    from loyalty_engine import store
    from loyalty_engine.feedback.verdicts import rule_figures

    if database is None or not database.exists():
        return {}
    with store.connect(database, read_only=True) as con:
        return rule_figures(con)


def _last_backtest(database: Path | None) -> dict:
    """The last backtest's figures by rule id, or {} (none yet, or no database)."""
    import duckdb

    from loyalty_engine import results, store

    if database is None or not database.exists():
        return {}
    try:
        with store.connect(database, read_only=True) as con:
            return results.latest_figures(con)
    except duckdb.CatalogException:  # a database from before backtests, opened read-only
        return {}


@dataclass
class RuleTestFile:
    path: Path
    cases: list[CaseResult] = field(default_factory=list)
    error: RuleError | None = None  # the file could not be read or run


@dataclass
class RuleTests:
    files: list[RuleTestFile]

    @property
    def passed(self) -> int:
        return sum(case.passed for found in self.files for case in found.cases)

    @property
    def failed(self) -> int:
        return sum(not case.passed for found in self.files for case in found.cases) + sum(found.error is not None for found in self.files)


def rules_test(paths: list[Path]) -> RuleTests:
    """Run the rule unit tests (*.test.yaml) in the paths, each case in memory."""
    from loyalty_engine.errors import RuleError
    from loyalty_engine.rules.testing import find_test_files, run_rule_tests

    files = []
    for path in find_test_files(paths):
        try:
            files.append(RuleTestFile(path, run_rule_tests(path)))
        except RuleError as problem:
            files.append(RuleTestFile(path, error=problem))
    return RuleTests(files)


# --- Sample data ---------------------------------------------------------------------------------


def generate_sample(out_dir: Path, accounts: int = 200, seed: int = 7, end_date: date | None = None, nights: int = 1) -> SampleSummary:
    """Write realistic sample extracts, one folder per night, and their ground truth (see loyalty_engine/sample/)."""
    from loyalty_engine.sample.generator import generate_sample as generate

    return generate(out_dir, accounts=accounts, seed=seed, end_date=end_date, nights=nights)
