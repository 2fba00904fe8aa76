"""One night's load and state update, as one DuckDB transaction.

stage → validate → gate → evaluate rules → lost accounts → advance warnings → route → flood
check → digest policy → lost accounts announced. Either all
of it is committed, or none: a run killed at any point, or stopped by the gate, leaves the
previous night's tables and warnings exactly as they were, and the next run does the night
again from the start. Only the gate's checks are kept when the night stops, so ops can see why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone

import duckdb

from loyalty_engine import gate, store
from loyalty_engine.config import Settings
from loyalty_engine.errors import UserError
from loyalty_engine.extracts.staging import ExtractProblems, stage_extracts
from loyalty_engine.gate import Check, GateStop, Outcome
from loyalty_engine.lifecycle.lost import announce_lost, mark_lost
from loyalty_engine.lifecycle.warnings import advance_warnings
from loyalty_engine.lifecycle.routing import route_warnings
from loyalty_engine.mail.budget import apply_budget, voices
from loyalty_engine.rules.evaluate import NightOutcome, evaluate_rules
from loyalty_engine.rules.loader import RuleSet
from loyalty_engine.lifecycle.snoozes import Snooze
from loyalty_engine.feedback.verdicts import owner_snoozes
from loyalty_engine.extracts.validate import TableCheck, validate_night


@dataclass
class NightState:
    """What the night's transaction did (or, for a dry run, would do)."""

    night: date
    tables: list[TableCheck] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    outcome: NightOutcome | None = None
    notices: dict[str, int] = field(default_factory=dict)  # new, repeat, open, waiting, intro, … -> warnings
    budget: dict[str, int] = field(default_factory=dict)  # waiting, intro, deferred -> warnings (mail/budget.py)
    lost: int = 0  # accounts lost tonight (lifecycle/lost.py)
    announced: int = 0  # of them, announced in tonight's digests


def run_night(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    ruleset: RuleSet,
    snoozes: list[Snooze],
    night: date,
    *,
    dry_run: bool = False,
) -> NightState:
    """Load, check and evaluate the night; commit it, or raise GateFailed / DigestsHeld.

    A stopped night is rolled back and only its checks are recorded. `dry_run` rolls back
    whatever happens and returns the checks instead of raising (`loyalty gate`).
    """
    state = NightState(night)
    con.begin()
    try:
        _load_and_evaluate(con, settings, ruleset, snoozes, state)
        if dry_run:
            con.rollback()
            return state
        gate.stop_if_failed(night, state.checks)
        gate.record_checks(con, night, state.checks)
        con.commit()
    except GateStop as stop:
        con.rollback()
        if dry_run:
            state.checks = stop.checks
            return state
        gate.record_checks(con, night, stop.checks)
        raise
    except BaseException:
        con.rollback()
        raise
    return state


def _load_and_evaluate(
    con: duckdb.DuckDBPyConnection, settings: Settings, ruleset: RuleSet, snoozes: list[Snooze], state: NightState
) -> None:
    night = state.night
    try:
        staged = stage_extracts(con, settings.extracts, night)
    except ExtractProblems as found:
        raise gate.GateFailed(night, gate.problem_checks(found.problems) + [gate.flood_not_checked()]) from None
    state.tables = validate_night(con, staged, night)
    state.checks = gate.extract_checks(con, night, state.tables, settings)
    if any(c.outcome is Outcome.FAIL for c in state.checks):
        state.checks.append(gate.flood_not_checked())
        raise gate.GateFailed(night, state.checks)
    state.outcome = evaluate_rules(con, ruleset, night, store.absent_tables(con, night), spark=spark_for_night(settings, night))
    state.lost = mark_lost(con, night, settings.backtest.lost)
    # The owners' "already known" answers rest their warnings through the same snoozes as ops' file.
    snoozes = [*snoozes, *owner_snoozes(con, night)]
    state.notices = dict(advance_warnings(con, ruleset, night, state.outcome, snoozes, settings.digest.repeat_after_days))
    route_warnings(con, night)
    state.checks.append(gate.flood_check(con, night, settings))
    # After the flood check, which judges the data by every new warning, not by what the budget lets through.
    digest = settings.digest
    state.budget = apply_budget(
        con, night, digest.max_new, digest.cadence, digest.weekday, digest.immediate_severity, voices=voices(ruleset)
    )
    state.announced = announce_lost(con, night)
    for notice in ("waiting", "intro"):  # the run summary counts what owners are told as new
        if state.budget[notice]:
            state.notices["new"] = state.notices.get("new", 0) - state.budget[notice]
            state.notices[notice] = state.budget[notice]
    if state.budget["repeat_later"]:  # repeats that ride along later are not told tonight
        state.notices["repeat"] = state.notices.get("repeat", 0) - state.budget["repeat_later"]
        state.notices["open"] = state.notices.get("open", 0) + state.budget["repeat_later"]


def spark_for_night(settings: Settings, night: date):
    """With `engine: spark`, the session with the night's extracts read and checked there (the
    gate above ran in DuckDB on the same files); None with DuckDB."""
    if settings.engine.kind != "spark":
        return None
    from loyalty_engine.spark_engine import read_extracts, start_spark

    session = start_spark(settings.engine.spark)
    read_extracts(session, settings.extracts, night)
    return session


def check_extracts(settings: Settings, night: date) -> list[Check]:
    """The gate's checks on the night's extracts (stage, validate, volume, freshness, quarantine)
    in a transaction that is rolled back: what `loyalty run` checks before it starts Prefect."""
    with store.connect(settings.database) as con:
        con.begin()
        try:
            try:
                staged = stage_extracts(con, settings.extracts, night)
            except ExtractProblems as found:
                return gate.problem_checks(found.problems)
            tables = validate_night(con, staged, night)
            return gate.extract_checks(con, night, tables, settings)
        finally:
            con.rollback()


def release_night(settings: Settings, night: date, by: str) -> None:
    """Record that ops let a held night's digests go; the next run of the night sends them."""
    with store.night_lock(settings.database, join=True), store.connect(settings.database) as con:
        outcomes = {c.name: c.outcome for c in gate.stored_checks(con, night)}
        if outcomes.get("flood") is not Outcome.HOLD:
            ran = "its last run was not held" if outcomes else "it has not run"
            raise UserError(f"night {night} has no held digests to release ({ran}; see `loyalty gate --date {night}`)")
        later = con.execute("SELECT max(night) FROM nights WHERE night > ?", [night]).fetchone()[0]
        if later is not None:
            raise UserError(f"night {night} is older than the evaluated night {later}, whose digests told its warnings")
        con.execute(
            "INSERT OR REPLACE INTO releases VALUES (?, ?, ?)",
            [night, by, datetime.now(timezone.utc).replace(tzinfo=None)],
        )
