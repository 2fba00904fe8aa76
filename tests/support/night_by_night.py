"""The backtest's lifecycle as it was first replayed: night after night, one round of the
nightly statements (`advance_warnings`, `apply_budget`) per night, in an in-memory database.
Too slow for a year at scale (benchmarks/README.md), and kept here as the oracle the set-based
replay (loyalty_engine/lifecycle/replay.py) must equal row for row."""

from __future__ import annotations

from datetime import date
from typing import Callable

import duckdb
import pyarrow as pa

from loyalty_engine import store
from loyalty_engine.config import DigestSettings, LostSettings
from loyalty_engine.lifecycle.lost import LOST_SPELLS, spell_params
from loyalty_engine.lifecycle.warnings import advance_warnings
from loyalty_engine.mail.budget import apply_budget, voices
from loyalty_engine.rules.evaluate import NightOutcome
from loyalty_engine.rules.loader import RuleSet


def replay_night_by_night(con, held: pa.Table, ruleset: RuleSet, nights: list[date], digest: DigestSettings, lost: LostSettings, data_end: date):
    """(per rule alone, all rules together), as lifecycle.replay.replay_warnings returns them."""
    tables = []
    for per_rule in (True, False):
        with duckdb.connect() as replay:
            tables.append(night_by_night(replay, con, held, ruleset, nights, digest, lost, data_end, per_rule))
    return tuple(tables)


def night_by_night(
    replay, con, held, ruleset: RuleSet, nights: list[date], digest: DigestSettings, lost: LostSettings, data_end: date, per_rule: bool
) -> pa.Table:
    """The warnings night by night, as the nightly job would have kept and mailed them (snoozes
    off): the real lifecycle, then the real digest policy (mail/budget.py: cadence, max_new with
    the rest waiting, repeats riding along, resolution-only nights sending nothing). Every
    warning goes to its account's owner; with `per_rule`, each rule's warnings as a digest stream
    of their own (recipient owner + rule), as if the rule were the only one. A lost account's
    warnings are held back while it is lost (lifecycle/lost.py), by the same spells."""
    replay.execute(store.SCHEMA)
    replay.register("known_spells", con.sql(LOST_SPELLS, params=spell_params(lost, data_end)).to_arrow_table())
    replay.execute("CREATE TABLE lost_spells AS SELECT * FROM known_spells")
    # Every account as open: whether one was closed on a past night is not known.
    accounts = con.sql("SELECT account_id, owner_email FROM accounts").to_arrow_table()
    replay.register("known_accounts", accounts)
    replay.execute("CREATE TABLE accounts AS SELECT account_id, owner_email, NULL::VARCHAR AS status FROM known_accounts")
    replay.register("replay_held", held)
    replay.execute("CREATE TABLE held AS SELECT * FROM replay_held ORDER BY night")
    severity = {rule.id: rule.severity for rule in ruleset.rules}
    replay.execute("CREATE TABLE severities (rule_id VARCHAR, severity VARCHAR)")
    replay.executemany("INSERT INTO severities VALUES (?, ?)", list(severity.items()))
    recipient = "lower(a.owner_email) || chr(31) || w.rule_id" if per_rule else "lower(a.owner_email)"
    facts = revenue_facts(con)
    # One voice per account among related rules, in the owners' stream only: alone, a rule has no relatives.
    related = {} if per_rule else voices(ruleset)
    for night in nights:
        replay.execute(
            """INSERT INTO signals SELECT h.night, h.account_id, h.rule_id, s.severity, '{}'
               FROM held h JOIN severities s USING (rule_id) WHERE h.night = ? AND h.holds""",
            [night],
        )
        replay.execute("CREATE OR REPLACE TEMP TABLE night_unknown AS SELECT account_id, rule_id FROM held WHERE night = ? AND holds IS NULL", [night])
        # Read only for rules with resolve_when, as the nightly evaluation writes it.
        replay.execute(
            "CREATE OR REPLACE TEMP TABLE night_resolve AS SELECT account_id, rule_id, resolves FROM held WHERE night = ? AND holds IS NOT TRUE AND resolves IS NOT TRUE",
            [night],
        )
        replay.execute(
            """CREATE OR REPLACE TEMP TABLE night_lost AS SELECT account_id, last_order FROM lost_spells
               WHERE lost_from <= $night AND (lost_until IS NULL OR lost_until > $night)""",
            {"night": night},
        )
        advance_warnings(replay, ruleset, night, NightOutcome(), [], digest.repeat_after_days)
        replay.execute(f"UPDATE warning_nights w SET recipient = {recipient} FROM accounts a WHERE w.night = ? AND a.account_id = w.account_id", [night])
        apply_budget(replay, night, digest.max_new, digest.cadence, digest.weekday, digest.immediate_severity, facts=facts, voices=related)
    return replay.sql(
        """SELECT w.night, w.account_id, w.rule_id, w.notice, w.mailed AS would_mail, a.owner_email, w.recipient
           FROM warning_nights w JOIN accounts a USING (account_id)"""
    ).to_arrow_table()


def revenue_facts(con: duckdb.DuckDBPyConnection) -> Callable[[date, list[str]], tuple[dict, dict]]:
    """The budget's ranking facts in a replay: each account's revenue over the 365 days up to the
    night, from the real orders (the loyalty group's tie-break is left out: one query a night)."""

    def facts(night: date, accounts: list[str]) -> tuple[dict, dict]:
        rows = con.execute(
            """SELECT account_id, sum(amount) FROM orders
               WHERE order_date <= $night AND order_date > $night::DATE - 365 AND list_contains($accounts, account_id) GROUP BY ALL""",
            {"night": night, "accounts": accounts},
        ).fetchall()
        return {}, {account: (float(revenue), ()) for account, revenue in rows}

    return facts
