"""The owners' verdicts in the DuckDB file: recording one, the snoozes they ask for, the figures.

Every answer is a row of `verdicts` (store.py); none is ever changed or deleted. What counts for
a warning (owner, account, rule, night) is its latest answer, so a second click replaces the
first while the history stays. "Already known" asks the warning to rest: the night turns the
latest such answers into snoozes (`owner_snoozes`), which the lifecycle honours exactly like the
ones in snoozes.yaml.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import duckdb

from loyalty_engine.feedback.links import REST_DAYS, Ticket, Verdict, owner_tag
from loyalty_engine.lifecycle.snoozes import Snooze
from loyalty_engine.lifecycle.warnings import SHADOW_REASON

# The latest answer per warning: what counts.
CURRENT = """
SELECT * FROM verdicts
QUALIFY id = max(id) OVER (PARTITION BY owner, account_id, rule_id, night)
"""


@dataclass(frozen=True)
class MailedWarning:
    """The warning a verdict link is about, as the night stored it."""

    night: date
    account_id: str
    account_name: str
    rule_id: str
    severity: str
    evidence: dict  # the numbers behind it
    owner: str  # the address it was mailed to


@dataclass(frozen=True)
class Answer:
    """The latest verdict recorded on a warning."""

    verdict: Verdict
    recorded_at: datetime  # UTC
    snooze_until: date | None


def warning_of(con: duckdb.DuckDBPyConnection, ticket: Ticket, secret: bytes) -> MailedWarning | None:
    """The warning a genuine ticket is about, if that night mailed it to the ticket's owner; else None
    (a warning of another owner, of a shadow rule, or one the file does not know)."""
    row = con.execute(
        """SELECT w.night, w.account_id, coalesce(a.name, w.account_id), w.rule_id, w.severity, w.evidence, w.recipient
           FROM warning_nights w LEFT JOIN accounts a USING (account_id)
           WHERE w.night = ? AND w.account_id = ? AND w.rule_id = ? AND w.recipient IS NOT NULL
             AND NOT coalesce(starts_with(w.reason, ?), false)""",
        [ticket.night, ticket.account_id, ticket.rule_id, SHADOW_REASON],
    ).fetchone()
    if row is None or owner_tag(secret, row[6]) != ticket.owner_tag:
        return None
    night, account_id, name, rule_id, severity, evidence, owner = row
    return MailedWarning(night, account_id, name, rule_id, severity, json.loads(evidence), owner.strip().lower())


def latest_answer(con: duckdb.DuckDBPyConnection, warning: MailedWarning) -> Answer | None:
    """The verdict that counts for the warning now, if the owner gave one."""
    row = con.execute(
        "SELECT verdict, recorded_at, snooze_until FROM verdicts WHERE owner = ? AND account_id = ? AND rule_id = ? AND night = ? ORDER BY id DESC LIMIT 1",
        [warning.owner, warning.account_id, warning.rule_id, warning.night],
    ).fetchone()
    return None if row is None else Answer(Verdict(row[0]), row[1], row[2])


def rest_until(night: date, answered_on: date) -> date:
    """The last night an "already known" warning rests: 30 days from the answer (or from its
    night, if a test or a replay answers before the night's date)."""
    return max(night, answered_on) + timedelta(days=REST_DAYS)


def record(con: duckdb.DuckDBPyConnection, warning: MailedWarning, verdict: Verdict, now: datetime | None = None) -> Answer | None:
    """Record the owner's verdict on the warning; None when it is already the verdict that counts
    (a second press of the same button, a replayed request: nothing new is written)."""
    now = now or datetime.now(timezone.utc).replace(tzinfo=None)
    con.execute("BEGIN TRANSACTION")
    try:
        current = latest_answer(con, warning)
        if current is not None and current.verdict is verdict:
            con.execute("ROLLBACK")
            return None
        until = rest_until(warning.night, now.date()) if verdict is Verdict.ALREADY_KNOWN else None
        con.execute(
            "INSERT INTO verdicts (night, account_id, rule_id, owner, verdict, recorded_at, snooze_until) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [warning.night, warning.account_id, warning.rule_id, warning.owner, verdict.value, now, until],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return Answer(verdict, now, until)


def owner_snoozes(con: duckdb.DuckDBPyConnection, night: date) -> list[Snooze]:
    """The owners' "already known" answers that still rest tonight, as snoozes of one account and
    rule, with the owner as author. Ids are "V<n>" (n the verdict's row), apart from snoozes.yaml's numbers."""
    rows = con.execute(
        f"""SELECT id, account_id, rule_id, snooze_until, owner, recorded_at FROM ({CURRENT})
            WHERE verdict = 'already_known' AND snooze_until >= ? ORDER BY id""",
        [night],
    ).fetchall()
    return [
        Snooze(f"V{id}", account_id, rule_id, until, SNOOZE_REASON, by=owner, created=recorded_at.date())
        for id, account_id, rule_id, until, owner, recorded_at in rows
    ]


SNOOZE_REASON = "owner's verdict: already known"


def all_owner_snoozes(con: duckdb.DuckDBPyConnection) -> list[Snooze]:
    """Every "already known" answer that counts, ended or not, for `loyalty snooze --list`."""
    return owner_snoozes(con, date.min)


def verdict_rows(con: duckdb.DuckDBPyConnection, rule: str | None = None, since: date | None = None) -> list[dict]:
    """Every answer, newest first: the warning it is about, who gave it, when, and whether it
    still counts (`counts`: False when a later answer on the same warning replaced it)."""
    rows = con.execute(
        """SELECT date_trunc('second', v.recorded_at) AS recorded_at, v.night, v.account_id, v.rule_id, v.owner, v.verdict, v.snooze_until,
                  v.id = max(v.id) OVER (PARTITION BY v.owner, v.account_id, v.rule_id, v.night) AS counts
           FROM verdicts v
           WHERE ($rule IS NULL OR v.rule_id = $rule) AND ($since IS NULL OR v.recorded_at >= $since)
           ORDER BY v.id DESC""",
        {"rule": rule, "since": since},
    ).fetchall()
    names = ("recorded_at", "night", "account_id", "rule_id", "owner", "verdict", "snooze_until", "counts")
    return [dict(zip(names, row)) for row in rows]


def has_verdicts(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the file has the verdicts table: a database from before verdicts, opened read-only, has not."""
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'verdicts' AND NOT temporary").fetchone()[0])


def rule_figures(con: duckdb.DuckDBPyConnection) -> dict[str, dict]:
    """Per rule, the verdicts that count: useful, false alarms, already known, and the owners'
    precision, useful / (useful + false alarm); None while nobody has said either."""
    if not has_verdicts(con):
        return {}
    figures = {}
    for rule_id, useful, false_alarm, known in con.execute(
        f"""SELECT rule_id, count(*) FILTER (WHERE verdict = 'useful'), count(*) FILTER (WHERE verdict = 'false_alarm'),
                   count(*) FILTER (WHERE verdict = 'already_known')
            FROM ({CURRENT}) GROUP BY rule_id ORDER BY rule_id"""
    ).fetchall():
        judged = useful + false_alarm
        figures[rule_id] = {
            "useful": useful,
            "false_alarm": false_alarm,
            "already_known": known,
            "owners_precision": useful / judged if judged else None,
        }
    return figures
