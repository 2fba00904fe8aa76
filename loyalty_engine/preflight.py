"""Before a night runs: which night it is, and whether it can run at all.

`loyalty run`, `loyalty gate`, `loyalty release` and the nightly flow all start here, so "tonight"
means one thing everywhere, and a broken rule, a bad snoozes file or a run already going is
answered within a second or two, before Prefect's local API takes its twenty to start.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from loyalty_engine import store
from loyalty_engine.config import Settings
from loyalty_engine.extracts.staging import newest_extract_date
from loyalty_engine.lifecycle.snoozes import Snooze, load_snoozes
from loyalty_engine.rules.evaluate import prove_rules
from loyalty_engine.rules.loader import RuleSet, load_rules


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


def preflight(settings: Settings, given: date | None = None) -> Preflight:
    """Tonight, its rule set loaded and proven, the snoozes loaded, and the run lock free.

    Raises RuleError (exit 4) for a rule that cannot be read or evaluated on that night or a bad
    snoozes file, and RunLocked (exit 7) while another run holds the database. No data is
    touched: the lock is only tried here, and the run takes it when it starts.
    """
    night = tonight(settings, given)
    ruleset = load_rules(settings.rules)
    prove_rules(ruleset, night)
    snoozes = load_snoozes(settings.snoozes, {rule.id for rule in ruleset.rules})
    with store.night_lock(settings.database):
        pass
    behind = 0 if given is not None else max((today(settings) - night).days, 0)
    return Preflight(night, ruleset, snoozes, behind)
