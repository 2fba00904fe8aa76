"""Before a night runs: which night it is, and whether it can run at all.

`loyalty run`, `loyalty gate`, `loyalty release` and the nightly flow all start here, so "tonight"
means one thing everywhere, and a broken rule, a bad snoozes file or a bad extract is answered
in seconds, before Prefect's local API takes its twenty to start. The run lock is not taken
here: each caller takes it (`store.night_lock`) before it calls `preflight`, and holds it to its end.
"""

from __future__ import annotations

import csv
import difflib
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from loyalty_engine.config import Settings
from loyalty_engine.contract import TABLES
from loyalty_engine.extracts.staging import ExtractProblem, extract_folder, find_table_file, is_required, newest_extract_date
from loyalty_engine.lifecycle.snoozes import Snooze, load_snoozes
from loyalty_engine.rules.evaluate import prove_rules
from loyalty_engine.rules.loader import RuleSet, load_rules

if TYPE_CHECKING:
    from loyalty_engine.gate import GateFailed


def today(settings: Settings) -> date:
    """Today on the schedule's clock: a run at 02:30 in Berlin belongs to Berlin's date, not UTC's."""
    return datetime.now(ZoneInfo(settings.schedule.timezone)).date()


def tonight(settings: Settings, given: date | None = None) -> date:
    """The night to run: the given date, else the newest <YYYY-MM-DD> folder under extracts.path,
    else (extracts lying flat, or none yet) today in the schedule's time zone."""
    if given is not None:
        return given
    return newest_extract_date(settings.extracts.path) or today(settings)


@dataclass(frozen=True)
class Preflight:
    """A night that may start: its date, its rules proven against it, the snoozes it honours."""

    night: date
    ruleset: RuleSet
    snoozes: list[Snooze]
    # No date given and the newest extract folder lies this many days before today (0 otherwise):
    # more than one, and tonight's export has most likely failed.
    days_behind: int = 0
    # What a look at the files finds wrong (a missing folder, table or column): the gate will fail.
    # Found in a second; the night still runs, so that the failure is recorded and ops are told.
    extract_problems: list[ExtractProblem] = field(default_factory=list)


def preflight(settings: Settings, given: date | None = None) -> Preflight:
    """Tonight, its rule set loaded and proven, the snoozes loaded, the extracts' files and headers looked at.

    Raises RuleError (exit 4) for a rule that cannot be read or evaluated on that night or a bad
    snoozes file, ConfigError (exit 2) when digests should carry verdict links and their secret is missing. No data is touched. The caller holds the run lock.
    """
    night = tonight(settings, given)
    if settings.feedback.base_url:  # verdict links need their secret: better now than after the night's work
        settings.feedback.secret()
    ruleset = load_rules(settings.rules)
    prove_rules(ruleset, night)
    snoozes = load_snoozes(settings.snoozes, {rule.id for rule in ruleset.rules})
    behind = 0 if given is not None else max((today(settings) - night).days, 0)
    return Preflight(night, ruleset, snoozes, behind, look_at_extracts(settings, night))


_DELIMITERS = (";", ",", "\t", "|")
_HEADER_BYTES = 64 * 1024  # a header line longer than this is not one a contract table has


def look_at_extracts(settings: Settings, night: date) -> list[ExtractProblem]:
    """The night's files present and their header lines naming every required column: what can be
    seen without reading the files (staging reads them whole and finds the rest).

    The messages are those staging gives, so the early answer and the gate's say the same.
    """
    root = settings.extracts.path
    if not root.exists():
        return [ExtractProblem("*", "presence", f"{root}: extracts folder does not exist")]
    folder = extract_folder(root, night)
    newest = newest_extract_date(root)
    if folder == root and newest is not None:
        return [ExtractProblem("*", "presence", f"{root / night.isoformat()}: no extract for the night (the newest folder is {newest})")]
    problems = []
    for name, table in TABLES.items():
        path = find_table_file(folder, name)
        if path is None:
            if is_required(settings.extracts, name):
                problems.append(ExtractProblem(name, "presence", f"{folder}: missing required table {name} ({name}.csv or {name}.parquet)"))
            continue
        if path.suffix != ".csv":
            continue
        with path.open("rb") as handle:
            first = handle.read(_HEADER_BYTES).split(b"\n", 1)[0].decode("utf-8-sig", errors="replace").rstrip("\r")
        if not first.strip():
            continue  # an empty file or header: staging names it
        configured = settings.extracts.csv_for(name)
        candidates = [configured.delimiter] if configured.delimiter else _DELIMITERS
        header = max(
            (next(csv.reader([first], delimiter=d, quotechar=configured.quote), []) for d in candidates),
            key=lambda found: sum(1 for n in found if table.column(n.lower().strip())),
        )
        names = {n.lower().strip() for n in header}
        for column in table.required:
            if column not in names:
                unknown = [n for n in header if not table.column(n.lower().strip())]
                guess = difflib.get_close_matches(column, unknown, n=1, cutoff=0.6)
                hint = f"; renamed to '{guess[0]}'?" if guess else ""
                detail = f"{path}: missing required column '{column}' (found: {', '.join(header) or 'none'}){hint}"
                problems.append(ExtractProblem(name, "schema", detail))
    return problems


def extracts_stop(settings: Settings, checked: Preflight) -> GateFailed | None:
    """The gate's verdict on the night's extracts alone, without Prefect: None when they pass,
    else the stop the night would end in (exit 3).

    What the headers already show fails at once; otherwise the files are staged and validated
    and the extract checks (volume, recent orders, freshness, quarantine) run, in a transaction
    rolled back, so `loyalty run` answers a cut-off or broken file in seconds. The flood check
    needs the rules evaluated and is left to the night itself.
    """
    from loyalty_engine.gate import GateFailed, Outcome, flood_not_checked, problem_checks

    if checked.extract_problems:
        checks = problem_checks(checked.extract_problems)
    else:
        from loyalty_engine.night import check_extracts  # pandera: only when the files are read

        checks = check_extracts(settings, checked.night)
    if not any(c.outcome is Outcome.FAIL for c in checks):
        return None
    return GateFailed(checked.night, checks + [flood_not_checked()])
