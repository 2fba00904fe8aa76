"""Everything `loyalty` shows on the terminal: every table, line and progress note.

The api returns data and prints nothing; each command hands what it got to one function here.
Results (tables, CSV, JSON: what a script pipes on) go to stdout, everything said along the way
(progress, notes, counts, errors) to stderr, so a redirected result stays clean.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import shutil
import sys
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.cells import cell_len, set_cell_size
from rich.markup import escape
from rich.table import Table

from loyalty_engine.errors import DeliveryError
from loyalty_engine.safe_text import escaped, printable

if TYPE_CHECKING:  # the commands' modules are imported by the commands that use them
    from loyalty_engine.api import BacktestRun, Explanation, GateReport, Preview, RuleCheck, RuleListing, RuleTests
    from loyalty_engine.backtest import Backtest, Tune
    from loyalty_engine.gate import Check
    from loyalty_engine.lifecycle.snoozes import Snooze
    from loyalty_engine.pages.portfolio import Figures
    from loyalty_engine.rules.explain import AccountExplained
    from loyalty_engine.sample.generator import SampleSummary
    from loyalty_engine.summary import NightSummary

err = Console(stderr=True, highlight=False, soft_wrap=True)


def _width() -> int:
    """The terminal's width; piped output is not cut to 80 columns (a table in a file or a pager
    keeps its rows whole), unless COLUMNS is exported, which also lets a test ask for a width."""
    if os.environ.get("COLUMNS", "").isdigit():
        return int(os.environ["COLUMNS"])
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else 1000


out = Console(highlight=False, soft_wrap=True, width=_width())


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


class GateFormat(str, Enum):
    table = "table"
    json = "json"


class BacktestFormat(str, Enum):
    table = "table"
    json = "json"
    html = "html"


def say(message: str) -> None:
    """A line for the person at the terminal, on stderr."""
    err.print(message, markup=False)


def note(message: str) -> None:
    """A progress note, dimmed, on stderr."""
    err.print(f"[dim]{escape(message)}[/dim]")


class FlowProgress(logging.Handler):
    """Prints the nightly flow's own progress lines on stderr (Prefect still stores every log for its UI)."""

    def emit(self, record: logging.LogRecord) -> None:
        warning = "[bold yellow]warning:[/bold yellow] " if record.levelno >= logging.WARNING else ""
        err.print(f"[dim]{datetime.now():%H:%M:%S}[/dim] {warning}{escape(record.getMessage())}")


KNOWN_SHOWN = 10  # names of a "(known: …)" list an error line shows


def short(line: str) -> str:
    """An error line with each "(known: a, b, …)" list cut to ten names and "…": a line past 600
    characters hides the mistake it names (the closest name is in its "did you mean").

    >>> short("unknown metric 'x' (known: " + ", ".join(f"m{i}" for i in range(12)) + ")")
    "unknown metric 'x' (known: m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, …)"
    """

    def cut(match: re.Match) -> str:
        names = match.group(1).split(", ")
        return f"(known: {', '.join(names[:KNOWN_SHOWN] + ['…'] if len(names) > KNOWN_SHOWN else names)})"

    return re.sub(r"\(known: ([^()]*)\)", cut, line)


def show_version(version: str) -> None:
    out.print(f"loyalty {version}", markup=False)


def show_error(error: Exception) -> None:
    """A user's mistake (or digests not delivered) as one line, with the failed recipients under it."""
    if isinstance(error, DeliveryError):
        report = error.args[0]
        say(f"error: {len(report.failed)} digests not delivered; they are retried on the next run")
        for who, why in report.failed.items():
            say(f"  {who}: {why}")
    else:
        # Several mistakes found at once (config, `loyalty tune`): one line each.
        for problem in getattr(error, "problems", None) or [error]:
            say(f"error: {short(escaped(str(problem)))}")


ELIDED_WIDTH = 14  # a long text column is elided down to this (or its header), never further


def print_rows(
    rows: list[dict], format: Format, shown: tuple[str, ...], what: str, drop: tuple[str, ...] = (), keys: tuple[str, ...] = ()
) -> None:
    """Rows as JSON, CSV (all columns) or a table of the `shown` columns, for people and scripts.

    The table fits the terminal: booleans read yes/no, a column empty in every row is left out,
    long text is elided (…) but never the `keys` (ids a reader copies), and when that is not
    enough the `drop` columns are left out in their order, saying so on stderr. CSV and JSON always carry every column in full.
    """
    if format is Format.json:
        print(json.dumps(rows, default=str, ensure_ascii=False, indent=2))
    elif format is Format.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else list(shown), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else v for k, v in row.items()} for row in rows)
    else:
        # Values come from extracts: a terminal escape in a name must not reach the terminal.
        cells = [{c: _cell(row[c]) for c in shown} for row in rows]
        columns = [c for c in shown if any(cell[c] for cell in cells)] if rows else list(shown)
        widths, dropped = fit_columns(columns, cells, out.width, drop, keys)
        if rows:
            _print_table(widths, cells)
        err.print(f"{len(rows)} {what if len(rows) != 1 else what.removesuffix('s')}")
        if dropped and rows:
            err.print(f"(left out to fit {out.width} columns: {', '.join(dropped)}; --format csv or json has every column)", markup=False)


def _print_table(widths: dict[str, int], cells: list[dict]) -> None:
    """The rows as rich's Table with box.SIMPLE_HEAD draws them (fixed widths, no wrap, elided
    with …), the same text written line by line: rich lays out every cell, some 2 ms a row, which
    made `loyalty alerts` at a few thousand warnings take seconds."""

    def line(values) -> str:
        return " " + " ".join(" " + _fitted(value, width) + " " for value, width in zip(values, widths.values())) + " "

    head = line(widths)
    if cell_len(head) > out.width:  # too narrow even for the headers: rich squeezes the columns further
        table = Table(box=box.SIMPLE_HEAD)
        for column, width in widths.items():
            table.add_column(column, width=width, no_wrap=True, overflow="ellipsis")
        for cell in cells:
            table.add_row(*(escape(cell[c]) for c in widths))
        out.print(table)
        return
    blank = " " * cell_len(head)
    out.print(blank, markup=False)
    out.print(head, style="table.header", markup=False)
    out.print(" " + "─".join("─" * (width + 2) for width in widths.values()) + " ", markup=False)
    # The cells are printable already (_cell); rich's print would scan every line again for them.
    out.file.write("".join(line(cell[c] for c in widths) + "\n" for cell in cells) + blank + "\n")


def _fitted(text: str, width: int) -> str:
    """The text in exactly `width` cells: padded, or cut with … as rich's overflow="ellipsis" cuts it."""
    return set_cell_size(text, width - 1) + "…" if cell_len(text) > width else set_cell_size(text, width)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return printable(str(value), one_line=True)


def fit_columns(
    columns: list[str], cells: list[dict], width: int, drop: tuple[str, ...] = (), keys: tuple[str, ...] = ()
) -> tuple[dict[str, int], list[str]]:
    """Each column's width so the table fits `width`, and the columns dropped to get there.

    A column never gets narrower than its header, nor a key or a short one (ELIDED_WIDTH or
    less) than its longest value; long ones are elided, the widest first.

    >>> fit_columns(["id", "name"], [{"id": "A1", "name": "x" * 40}], 30)
    ({'id': 2, 'name': 21}, [])
    >>> fit_columns(["id", "name", "note"], [{"id": "A1", "name": "x" * 40, "note": "y" * 40}], 30, drop=("note",))
    ({'id': 2, 'name': 21}, ['note'])
    """
    natural = {c: max([len(c)] + [len(cell[c]) for cell in cells]) for c in columns}
    least = {c: natural[c] if natural[c] <= ELIDED_WIDTH or c in keys else max(len(c), ELIDED_WIDTH) for c in columns}

    def room(kept: list[str]) -> int:  # SIMPLE_HEAD: an edge each side, a separator and padding of 1 each side per column
        return width - (2 + max(len(kept) - 1, 0) + 2 * len(kept))

    kept, dropped = list(columns), []
    for column in drop:
        if sum(least[c] for c in kept) <= room(kept):
            break
        if column in kept:
            kept.remove(column)
            dropped.append(column)
    if sum(least[c] for c in kept) > room(kept):  # still too wide: elide down to the headers
        least = {c: natural[c] if c in keys else min(natural[c], len(c)) for c in kept}
    left = room(kept)
    if sum(natural[c] for c in kept) <= left:
        return {c: natural[c] for c in kept}, dropped
    # Each column gets its least width; what is left over goes to those that need more, the
    # smallest need first, so only the widest columns are elided.
    widths = {c: least[c] for c in kept}
    extra = max(left - sum(widths.values()), 0)
    needy = sorted(kept, key=lambda c: natural[c] - least[c])
    for index, column in enumerate(needy):
        give = min(natural[column] - least[column], extra // (len(needy) - index))
        widths[column] += give
        extra -= give
    return {c: widths[c] for c in kept}, dropped


def show_alerts(rows: list[dict], format: Format) -> None:
    shown = ("account_id", "account_name", "rule_id", "mode", "severity", "state", "notice", "mailed", "recipient", "owner_email", "reason")
    # When the terminal is narrow: the owner (mostly the recipient), the mode, mailed (the notice
    # says it too), then the reason and the name go first.
    print_rows(rows, format, shown, "warnings", drop=("owner_email", "mode", "mailed", "reason", "account_name"), keys=("account_id", "rule_id"))


def show_history(rows: list[dict], format: Format) -> None:
    print_rows(rows, format, ("night", "rule_id", "mode", "event", "reason"), "events", drop=("mode", "reason"), keys=("rule_id",))


def show_quarantine(rows: list[dict], format: Format) -> None:
    shown = ("table_name", "line", "row_key", "column_name", "check_name", "value", "row_kept_out")
    print_rows(rows, format, shown, "quarantined cells", drop=("row_kept_out",), keys=("row_key",))


def print_checks(checks: list[Check], title: str | None = None) -> None:
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


def show_gate(report: GateReport, format: GateFormat) -> None:
    if format is GateFormat.json:
        # The sentence for people, and beside it its numbers with their units for scripts.
        checks = [
            {"name": c.name, "table": c.table, "outcome": c.outcome.value, "figure": c.figure, "figures": c.figures,
             "limit": c.limit, "limits": c.limits, "detail": c.detail}
            for c in report.checks
        ]
        print(json.dumps(checks, ensure_ascii=False, indent=2))
    else:
        print_checks(report.checks, title=f"Gate for {report.night}")


# The lifecycle's notices as the run summary words them, in this order.
NOTICES = {
    "new": "new", "repeat": "still open and mailed again", "resolved": "resolved", "open": "open (mailed earlier)",
    "pending": "pending", "snoozed": "snoozed", "inhibited": "inhibited", "kept": "kept (not judged tonight)",
}


def print_summary(summary: NightSummary, database: Path) -> None:
    """The night's run: rows per table, the gate, warnings per rule and notice, the digests."""
    table = Table(title=f"Night {summary.night}", title_justify="left")
    for heading in ("table", "rows loaded", "quarantined"):
        table.add_column(heading, justify="left" if heading == "table" else "right")
    for check in summary.tables:
        if check.present:
            table.add_row(check.table, f"{check.rows_loaded:,}", f"{check.rows_quarantined:,}")
        else:
            table.add_row(check.table, "absent", "")
    out.print(table)
    print_checks(summary.checks)
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
    out.print(f"database: {database}  (see `loyalty alerts`)")


def show_snoozes(rows: list[dict]) -> None:
    print_rows(rows, Format.table, ("id", "account_id", "rule", "until", "status", "reason", "by", "source"), "snoozes", drop=("source",), keys=("id", "account_id"))


def show_verdicts(rows: list[dict], format: Format) -> None:
    """The owners' verdicts, newest first; `counts` no: a later answer on the same warning replaced it."""
    print_rows(
        rows, format, ("recorded_at", "night", "account_id", "rule_id", "owner", "verdict", "snooze_until", "counts"), "verdicts",
        drop=("snooze_until", "owner"), keys=("account_id", "rule_id"),
    )


def snooze_added(snooze: Snooze, path: Path) -> None:
    out.print(f"snooze {snooze.id}: {snooze.account_id} ({snooze.rule_id or 'every rule'}) not mailed up to and including {snooze.until}; in {path}", markup=False)


def snooze_removed(snooze: Snooze, path: Path) -> None:
    out.print(f"removed snooze {snooze.id} of {snooze.account_id} ({snooze.rule_id or 'every rule'}) from {path}", markup=False)


def show_preview(preview: Preview) -> None:
    out.print(f"{preview.subject}\nwritten to {preview.html_file} and {preview.text_file}", markup=False)


def show_report(figures: Figures, out_file: Path) -> None:
    out.print(f"Portfolio report for {figures.night}: {len(figures.accounts):,} active accounts; written to {out_file}", markup=False)


def show_explanation(explanation: Explanation, format: GateFormat = GateFormat.table) -> None:
    """The account's rules as text (or JSON), each with what the night's lifecycle made of its
    warning: the data may hold a condition that the lifecycle still holds as pending."""
    from loyalty_engine.rules.explain import render

    if format is GateFormat.json:
        print(json.dumps(explanation.as_json(), ensure_ascii=False, indent=2, default=str))
        return
    lines = render(explanation.account).splitlines()
    for item in explanation.account.rules:
        head = f"{item.rule.id} ({item.rule.severity}): "
        at = next((i for i, line in enumerate(lines) if line.startswith(head)), None)
        if at is None:
            continue
        stored = None if explanation.warnings is None else explanation.warnings.get(item.rule.id)
        if stored is not None and stored["state"] == "pending" and item.outcome.startswith("fires"):
            lines[at] = head + "PENDING (the data holds the condition; the warning is still pending)"
        never_evaluated = explanation.warnings is None
        if stored is not None or (never_evaluated and item.outcome.startswith(("fires", "pending"))):
            lines.insert(at + 1, f"  warning: {_warning_words(stored, never_evaluated, explanation.account.night)}")
    out.print("\n".join(lines), markup=False)


def _warning_words(stored: dict | None, never_evaluated: bool, night: object) -> str:
    """What the lifecycle made of a rule's warning on the night, in words."""
    if never_evaluated:
        return f"night {night} was not evaluated: no warning stored"
    held = f"{stored['held_nights']} night{'s' if stored['held_nights'] != 1 else ''} held"
    if stored["state"] == "pending":
        return f"pending ({held}), not mailed"
    mailed = f"mailed to {stored['recipient']}" if stored["mailed"] else "not mailed"
    return f"{stored['state']} since {stored['since']} ({stored['notice']}), {mailed}"


def _share_text(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def show_backtest(run: BacktestRun, format: BacktestFormat, output: Path | None, language: str) -> None:
    """The replay's figures as tables, or as a JSON document or an HTML page on stdout or in a file."""
    if run.flagged is not None:
        say(f"Wrote {run.flagged[1]:,} rows of flagged accounts to {run.flagged[0]}")
    if format is BacktestFormat.table:
        for path, result in zip(run.rule_paths, run.results):
            print_backtest(result, str(path))
        if run.difference is not None:
            print_difference(run.difference, str(run.rule_paths[0]), str(run.rule_paths[1]))
        return
    if format is BacktestFormat.json:
        text = json.dumps(run.as_json(), ensure_ascii=False, indent=2, default=str)
    else:
        from loyalty_engine.pages.backtest import render_backtest

        text = render_backtest(run.results, run.rule_paths, run.difference, language)
    if output is not None:
        output.write_text(text + "\n", encoding="utf-8")
        say(f"Wrote {output}")
    else:
        print(text)


def print_backtest(result: Backtest, title: str) -> None:
    table = Table(
        box=box.SIMPLE_HEAD,
        title=f"{title}: {result.nights} nights {result.first} … {result.last}, {result.owners} owners (outcomes known up to {result.data_end})",
        title_justify="left",
    )
    for column, justify in (("rule", "left"), ("mode", "left"), ("nights fired", "right"), ("accounts flagged", "right"), ("digests/owner/week", "right"),
                            ("precision", "right"), ("too late", "right"), ("recall", "right"), ("median lead (days)", "right")):
        table.add_column(column, justify=justify)
    rows = [(r["rule_id"], r["mode"], r) for r in result.rules] + [("all live rules", "", result.total)]
    for index, (name, mode, figures) in enumerate(rows):
        table.add_row(
            name, mode, str(figures["nights_fired"]), str(figures["accounts_flagged"]),
            "–" if figures["emails_per_owner_week"] is None else f"{figures['emails_per_owner_week']:.1f}",
            _share_text(figures["precision"]), str(figures["too_late"]), _share_text(figures["recall"]),
            "–" if figures["median_lead_days"] is None else f"{figures['median_lead_days']:+.0f}",
            end_section=index == len(rows) - 2,
        )
    out.print(table)


def _param_text(value: float) -> str:
    return f"{value:g}"


def show_tune(tune: Tune, rules_path: Path, format: BacktestFormat, output: Path | None, language: str) -> None:
    """Each combination's figures as a table with the front and the file's values marked, or as
    a JSON document or an HTML page on stdout or in a file."""
    if format is BacktestFormat.table:
        print_tune(tune, str(rules_path))
        return
    if format is BacktestFormat.json:
        text = json.dumps({"rules_path": str(rules_path), **tune.as_json()}, ensure_ascii=False, indent=2, default=str)
    else:
        from loyalty_engine.pages.tune import render_tune

        text = render_tune(tune, rules_path, language)
    if output is not None:
        output.write_text(text + "\n", encoding="utf-8")
        say(f"Wrote {output}")
    else:
        print(text)


def print_tune(tune: Tune, title: str) -> None:
    replay = tune.replay
    table = Table(
        box=box.SIMPLE_HEAD,
        title=f"{tune.rule_id} ({title}): {replay.nights} nights {replay.first} … {replay.last}, {replay.owners} owners (outcomes known up to {replay.data_end})",
        title_justify="left",
        caption="front: no other combination is at least as good on precision, recall and digests/owner/week and better on one"
                " (combinations that warn nobody left out)\n"
                "current: the values in the rule file",
        caption_justify="left",
    )
    for name in tune.varied:
        table.add_column(escape(name), justify="right")
    for column in ("accounts flagged", "digests/owner/week", "precision", "too late", "recall", "median lead (days)", ""):
        table.add_column(column, justify="right" if column else "left")
    for row in tune.combinations:
        marks = ", ".join(mark for mark, on in (("front", row["pareto"]), ("current", row["current"])) if on)
        table.add_row(
            *(_param_text(row["params"][name]) for name in tune.varied),
            str(row["accounts_flagged"]),
            "–" if row["emails_per_owner_week"] is None else f"{row['emails_per_owner_week']:.2f}",
            _share_text(row["precision"]), str(row["too_late"]), _share_text(row["recall"]),
            "–" if row["median_lead_days"] is None else f"{row['median_lead_days']:+.0f}",
            marks,
            style="bold" if row["pareto"] else None,
        )
    out.print(table)


def print_difference(difference: dict, before: str, after: str) -> None:
    for key, verb in (("added", f"{after} warns, {before} does not"), ("dropped", f"{before} warns, {after} does not")):
        part = difference[key]
        out.print(f"{part['accounts']} accounts {verb}; {part['lost']} of them were lost")
        for account in part["accounts_list"][:20]:
            fate = f"lost {account['lost_on']} ({account['lost_how']})" if account["lost_on"] else "not lost"
            out.print(f"  {account['account_id']}  first warned {account['first_warned']}  {fate}", markup=False)
        if part["accounts"] > 20:
            out.print(f"  … and {part['accounts'] - 20} more (--format json lists all)")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def show_rule_check(check: RuleCheck) -> None:
    """Every problem as FILE:LINE:COLUMN: PROBLEM on stderr, or one line saying all is fine."""
    for problem in check.problems:
        say(short(str(problem)))
    if check.problems:
        say(f"{_count(len(check.problems), 'problem')} in {_count(len(check.files), 'rule file')}")
    else:
        ruleset = check.ruleset
        out.print(f"{_count(len(check.files), 'rule file')}, {_count(len(ruleset.rules), 'rule')}, {_count(len(ruleset.metrics), 'metric')}: fine", markup=False)


def show_rule_tests(tests: RuleTests) -> None:
    """PASS or FAIL per case with what differed, a file that cannot be read as ERROR, then the counts."""
    for found in tests.files:
        if found.error is not None:
            say(f"ERROR {found.error}")
        for result in found.cases:
            out.print(f"{'PASS' if result.passed else 'FAIL'}  {result.where}  {result.name}", markup=False)
            for line in result.missing:
                out.print(f"      - expected, did not fire: {line}", markup=False)
            for line in result.unexpected:
                out.print(f"      + fired, not expected:    {line}", markup=False)
            for line in result.wrong_values:
                out.print(f"      ≠ {line}", markup=False)
    say(f"{tests.passed} passed, {tests.failed} failed")


def show_rule_list(listing: RuleListing, format: Format) -> None:
    """The rules, with the last backtest's figures beside them once one has run."""
    rows = listing.rows
    shown = ("rule_id", "severity", "enabled", "mode", "for", "title", "file")
    if listing.backtest is not None:
        say(f"Figures from the backtest of {listing.backtest[0]} … {listing.backtest[1]}")
        shown += ("flagged", "digests/week", "precision", "too_late", "recall", "lead_days")
        if format is Format.table:
            rows = [
                row | {
                    "precision": None if row["precision"] is None else f"{row['precision']:.0%}",
                    "recall": None if row["recall"] is None else f"{row['recall']:.0%}",
                    "lead_days": None if row["lead_days"] is None else f"{row['lead_days']:+.0f}",
                    "digests/week": None if row["digests/week"] is None else f"{row['digests/week']:.1f}",
                }
                for row in rows
            ]
    if listing.verdicts:
        say("Owners' verdicts (the latest answer per warning): owners' precision = useful / (useful + false alarm)")
        shown += ("useful", "false_alarm", "already_known", "owners_precision", "owners_note")
        if format is Format.table:
            rows = [row | {"owners_precision": None if row["owners_precision"] is None else f"{row['owners_precision']:.0%}"} for row in rows]
    print_rows(rows, format, shown, "rules", drop=("file", "for", "enabled", "mode", "too_late", "lead_days", "already_known", "owners_note"), keys=("rule_id",))


def show_sample(summary: SampleSummary, out_dir: Path, nights: int) -> None:
    counts = ", ".join(f"{rows:,} {table}" for table, rows in summary.rows.items())
    if nights > 1:
        out.print(f"{nights} nights, {summary.folders[0].name} to {summary.end_date}, in {out_dir}", markup=False)
    out.print(f"Sample for {summary.end_date} in {summary.folder}: {counts}", markup=False)
    patterns = ", ".join(f"{count} {pattern}" for pattern, count in summary.patterns.items())
    out.print(f"Accounts: {patterns}; {summary.lost} of the drifting ones lost by then", markup=False)
    out.print(f"See {out_dir / 'ground_truth.csv'} for each account's pattern and the rules whose conditions hold", markup=False)
