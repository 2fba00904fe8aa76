"""The attention budget: how many new warnings each recipient hears of per digest, and which.

Run inside the night's transaction, after routing and the flood check (night.py). Of tonight's
warnings with notice 'new' that are mailed, each recipient (an owner, or ops for what has no
valid owner) keeps at most `digest.max_new` in the digest's body, chosen by `rank_key`:
severity first, then whether the account had revenue in the last 12 months, then what is at
stake (the chance that the warning means a loss times the account's revenue over 12 months),
then the brief's order of care, then account and rule. Critical warnings always go out, budget
or not. The rest are stored as:

- `notice = 'waiting'`, `mailed = false`, `last_mailed = NULL` on any night but the first: the
  owner has not been told. The next evaluated night the lifecycle finds it firing and untold and
  makes it 'new' again, so it competes for that night's budget; it leaves the queue only by being
  mailed, resolving (silently: the owner never heard of it) or being snoozed or inhibited.
  Tonight's digest counts the waiting ones and lists them in its CSV attachment.
- `notice = 'intro'`, `mailed = false`, `last_mailed = night` on the first evaluated night: the
  starting state, not news. The first digest introduces the most important ones in its body and
  lists every other open warning in its CSV attachment; they count as told (repeated after
  `digest.repeat_after_days` like any open warning, resolved notices once).

One voice per account: related rules (the same `labels.signal`) speak once. A new warning of an
account whose owner was already told of a still-firing warning of the same signal is not news
(reason SAME_VOICE): it is counted as told, so the rules do not take turns night by night; the
digest shows related warnings as one, the strongest with the others as "also: …".

Only something new makes a digest: a recipient with no new warning mailed tonight (after the
budget and the cadence) gets none. A repeat due tonight (`digest.repeat_after_days`) becomes
`notice = 'open'`, `mailed = false` and keeps its last_mailed, so it stays due and rides along
in the recipient's next digest that goes out for something new (reason RIDES_ALONG); a
resolution becomes `mailed = false` with reason DEFERRED, and the recipient's next digest
carries it.

Cadence (`digest.cadence: weekly`, `digest.weekday`): on any other night only new warnings at or
above `digest.immediate_severity` go out. The other new ones wait (as above: new again the next
night, mailed on the digest day within the budget), a repeat due tonight is not mailed and keeps
its last_mailed (so it is due again the next night, until the digest day), and resolutions are
deferred to the recipient's next digest.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import duckdb

from loyalty_engine.lifecycle.warnings import SHADOW_REASON

# The chance that a warning means a loss before any backtest has measured a rule's precision.
# The same for every rule, so before a backtest the stake orders by revenue alone.
DEFAULT_CHANCE = 0.2
DEFERRED = "resolution waits for the recipient's next digest"
WAITING = "over the attention budget (digest.max_new): mailed on a later night"
WEEKLY = "weekly digest (digest.cadence): mailed on the digest day unless at or above digest.immediate_severity"
INTRO = "the first night's starting state: listed in the introduction's attachment"
SAME_VOICE = "the account's owner was already told of this signal (labels.signal) by a related rule: one voice per account"
RIDES_ALONG = "repeat due, but nothing new for the recipient tonight: rides along in the next digest"

_SEVERITY = {s: i for i, s in enumerate(("critical", "high", "medium", "low", "info"))}
_CARE = ("terrorist", "defector", "apostle", "loyal", "opportunist", "hostage")


def rule_chances(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    """Each rule's precision from the last stored backtest (rules without one are absent)."""
    from loyalty_engine.backtest import stored_figures

    return {row["rule_id"]: float(row["precision"]) for row in stored_figures(con) if row["rule_id"] and row.get("precision") is not None}


def voices(ruleset) -> dict[str, str]:
    """Each rule's `labels.signal` (rules without one speak for themselves)."""
    return {rule.id: rule.labels["signal"] for rule in ruleset.rules if rule.labels.get("signal")}


def chance_of(chances: dict[str, float], rule_id: str) -> float:
    return chances.get(rule_id, DEFAULT_CHANCE)


def rank_key(severity: str, chance: float, revenue: float | None, group: str | None, account_id: str = "", rule_id: str = "") -> tuple:
    """Most important first: severity, revenue in 12 months or not, stake, order of care, ids."""
    revenue = revenue or 0.0
    care = _CARE.index(group) if group in _CARE else len(_CARE)
    return (_SEVERITY.get(severity, len(_SEVERITY)), revenue <= 0, -(chance * revenue), care, account_id, rule_id)


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def apply_budget(
    con: duckdb.DuckDBPyConnection,
    night: date,
    max_new: int,
    cadence: str = "daily",
    weekday: str = "monday",
    immediate_severity: str = "critical",
    facts: Callable[[date, list[str]], tuple[dict, dict]] | None = None,
    voices: dict[str, str] | None = None,
) -> dict[str, int]:
    """Hold back tonight's new warnings over each recipient's budget (or, on a weekly cadence's
    other nights, below immediate_severity); defer resolution-only digests.
    `facts(night, accounts)` gives the ranking's (groups, revenue) as mailing._account_facts
    does (its default); the backtest, whose replay database holds no orders, passes its own.
    `voices` maps rule ids to their `labels.signal`: a new warning of an account that already has
    a firing warning of the same signal its owner was told of is not news (one voice per
    account): it becomes 'open', counted as told tonight, and shows beside its sibling. A shadow
    rule's warning was never told, so it silences no live one.
    Returns counts: {'waiting': n, 'intro': n, 'deferred': n, 'repeat_later': n, 'same_voice': n}."""
    from loyalty_engine.mail.mailing import _account_facts

    first = not con.execute("SELECT count(*) FROM nights WHERE night < ?", [night]).fetchone()[0]
    same_voice = 0
    pairs = [(rule, signal) for rule, signal in (voices or {}).items() if signal]
    if pairs:
        con.execute("CREATE OR REPLACE TEMP TABLE night_voices (rule_id VARCHAR, signal VARCHAR)")
        con.executemany("INSERT INTO night_voices VALUES (?, ?)", pairs)
        same_voice = con.execute(
            """UPDATE warning_nights w SET notice = 'open', mailed = false, last_mailed = w.night, reason = ?
               WHERE w.night = ? AND w.notice = 'new' AND w.mailed AND w.severity <> 'critical' AND EXISTS (
                   SELECT 1 FROM warning_nights o JOIN night_voices a ON a.rule_id = o.rule_id JOIN night_voices b ON b.signal = a.signal
                   WHERE o.night = w.night AND o.account_id = w.account_id AND b.rule_id = w.rule_id AND o.rule_id <> w.rule_id
                     AND o.state = 'firing' AND o.notice IN ('open', 'repeat') AND o.last_mailed IS NOT NULL
                     -- a shadow rule's last_mailed runs as if mailed, but its owner was never told
                     AND NOT coalesce(starts_with(o.reason, ?), false))""",
            [SAME_VOICE, night, SHADOW_REASON],
        ).fetchall()[0][0]
    off_day = cadence == "weekly" and WEEKDAYS[night.weekday()] != weekday and not first
    repeat_later = 0
    if off_day:
        below = [s for s, rank in _SEVERITY.items() if rank > _SEVERITY[immediate_severity]]
        marks = ", ".join("?" for _ in below)
        con.execute(
            f"""UPDATE warning_nights SET notice = 'waiting', mailed = false, last_mailed = NULL, reason = ?
                WHERE night = ? AND notice = 'new' AND mailed AND severity IN ({marks})""",
            [WEEKLY, night, *below],
        )
        previous = con.execute("SELECT max(night) FROM nights WHERE night < ?", [night]).fetchone()[0]
        repeat_later = con.execute(
            f"""UPDATE warning_nights w SET notice = 'open', mailed = false, reason = ?,
                    last_mailed = (SELECT p.last_mailed FROM warning_nights p
                                   WHERE p.night = ? AND p.account_id = w.account_id AND p.rule_id = w.rule_id)
                WHERE night = ? AND notice = 'repeat' AND mailed AND severity IN ({marks})""",
            [WEEKLY, previous, night, *below],
        ).fetchone()[0]
    rows = con.execute(
        """SELECT account_id, rule_id, severity, coalesce(recipient, '') FROM warning_nights
           WHERE night = ? AND notice = 'new' AND mailed AND NOT coalesce(starts_with(reason, ?), false)""",
        [night, SHADOW_REASON],
    ).fetchall()
    held: list[tuple[str, str]] = []
    if rows:
        groups, revenue = (facts or (lambda n, a: _account_facts(con, n, a)))(night, sorted({r[0] for r in rows}))
        chances = rule_chances(con)
        by_recipient: dict[str, list[tuple]] = {}
        for account_id, rule_id, severity, recipient in rows:
            by_recipient.setdefault(recipient, []).append(
                (rank_key(severity, chance_of(chances, rule_id), revenue.get(account_id, (0.0, ()))[0], groups.get(account_id), account_id, rule_id), account_id, rule_id, severity)
            )
        for owned in by_recipient.values():
            owned.sort()
            held += [(a, r) for i, (_, a, r, severity) in enumerate(owned) if i >= max_new and severity != "critical"]
    counts = {"waiting": 0, "intro": 0, "deferred": 0, "repeat_later": repeat_later, "same_voice": same_voice}
    if off_day:
        counts["waiting"] = con.execute("SELECT count(*) FROM warning_nights WHERE night = ? AND reason = ?", [night, WEEKLY]).fetchone()[0] - repeat_later
    if held:
        notice = "intro" if first else "waiting"
        con.executemany(
            f"""UPDATE warning_nights SET notice = '{notice}', mailed = false,
                   last_mailed = {'night' if first else 'NULL'}, reason = ?
               WHERE night = ? AND account_id = ? AND rule_id = ?""",
            [[INTRO if first else WAITING, night, a, r] for a, r in held],
        )
        counts[notice] += len(held)
    # Only something new makes a digest (DESIGN: "only when something is new"): a recipient
    # with no new warning mailed tonight hears of nothing. Repeats due tonight keep their
    # last_mailed, so they stay due and ride along in the next digest that goes out anyway.
    previous = con.execute("SELECT max(night) FROM nights WHERE night < ?", [night]).fetchone()[0]
    counts["repeat_later"] += con.execute(
        """UPDATE warning_nights w SET notice = 'open', mailed = false, reason = ?,
                last_mailed = (SELECT p.last_mailed FROM warning_nights p
                               WHERE p.night = ? AND p.account_id = w.account_id AND p.rule_id = w.rule_id)
           WHERE night = ? AND notice = 'repeat' AND mailed
             AND NOT EXISTS (SELECT 1 FROM warning_nights o WHERE o.night = w.night AND o.mailed AND o.notice = 'new'
                             AND coalesce(o.recipient, '') = coalesce(w.recipient, ''))""",
        [RIDES_ALONG, previous, night],
    ).fetchone()[0]
    counts["deferred"] = con.execute(
        """UPDATE warning_nights w SET mailed = false, reason = ?
           WHERE night = ? AND mailed AND notice = 'resolved'
             AND NOT EXISTS (SELECT 1 FROM warning_nights o WHERE o.night = w.night AND o.mailed AND o.notice <> 'resolved'
                             AND coalesce(o.recipient, '') = coalesce(w.recipient, ''))""",
        [DEFERRED, night],
    ).fetchone()[0]
    return counts
