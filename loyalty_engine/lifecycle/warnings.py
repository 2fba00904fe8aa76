"""The night's signals -> warnings with a memory: pending, firing, resolved, as in Prometheus.

Each (account, rule) pair is advanced from its state on the previous *evaluated* night (the
`nights` table), so a night that was not evaluated neither advances nor resets anything. The
result is one row per open pair in `warning_nights`, saying what the night does with it
(`notice`) and whether it goes into tonight's digest (`mailed`). It is all one SQL statement
over the night's signals, whatever the number of accounts.

A shadow rule (`mode: shadow`, a rule on trial) goes through the same lifecycle, notices and
`last_mailed` included, as if it were live, so its history shows what it would have sent; only
`mailed` is false and `reason` starts with SHADOW_REASON. That mark is also how the next night
knows the owner never heard of it: when the rule goes live, a warning still firing is new to them.

Hysteresis (docs/rules.md, "Hysteresis"): a firing warning of a rule with `resolve_when` is
judged by that condition, not by `when`: the TEMP table `night_resolve` (account_id, rule_id,
resolves) lists tonight's pairs whose resolve condition did not hold (false: not yet; null: no
data), and a pair missing from it resolved. A night whose resolve condition does not hold keeps
the warning firing and counts as held. With `keep_firing_for: N nights`, the first N calm nights
in a row (the condition no longer holds, or resolve_when does) keep it firing too; while they
run, `held_nights` counts them as negative numbers (-1, -2, …), so the next night knows how
many have passed without a column of its own; the (N+1)-th resolves it. Nights without data
neither count nor break the row, and a closed account resolves at once.

Lost accounts (lifecycle/lost.py): the warnings of an account in the TEMP table `night_lost`
are inhibited (reason LOST_REASON) while it is lost; when it orders again, a warning still
firing is new again.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

import duckdb

if TYPE_CHECKING:  # only named in annotations: `loyalty alerts` and `history` read SHADOW_REASON without the compiler
    from loyalty_engine.rules.evaluate import NightOutcome
    from loyalty_engine.rules.loader import RuleSet
    from loyalty_engine.lifecycle.snoozes import Snooze


class State(StrEnum):
    PENDING = "pending"  # the condition held, on fewer evaluated nights in a row than `for:` asks
    FIRING = "firing"  # it held on `for:` nights in a row, and still holds (or could not be judged, or hysteresis keeps it)
    RESOLVED = "resolved"  # it fired until the night before and no longer holds (nor does hysteresis keep it); written once


class Notice(StrEnum):
    PENDING = "pending"  # not firing yet: nobody is told
    NEW = "new"  # started firing (or came back from a snooze or an inhibition): mailed
    REPEAT = "repeat"  # still firing, `digest.repeat_after_days` after it was last mailed: mailed again
    OPEN = "open"  # still firing, mailed recently: not mailed
    SNOOZED = "snoozed"  # firing, but a snooze covers it tonight: not mailed
    INHIBITED = "inhibited"  # firing, but hidden by a stronger rule, a closed account or a lost one: not mailed
    RESOLVED = "resolved"  # stopped firing: mailed once, if the owner had been told about it
    KEPT = "kept"  # not judged tonight (no data, account missing, table absent): state unchanged
    # Set after routing by the attention budget (mail/budget.py), never by ADVANCE:
    WAITING = "waiting"  # new, but over the owner's budget tonight: untold, new again next night
    INTRO = "intro"  # open on the first evaluated night, over the budget: told in the introduction's attachment


# The reason of every row of a shadow rule begins with this (followed by '; ' and the reason a
# live rule would have, if any). warning_nights has no mode column, and the mark must describe the
# night as it was, not the rule as it is today: digests, alerts and history read it from the row.
SHADOW_REASON = "shadow rule: not mailed"
# Why the warnings of a lost account are not mailed (lifecycle/lost.py: TEMP TABLE night_lost).
LOST_REASON = "account lost"
# The night's pairs of rules with resolve_when whose resolve condition did not hold (resolves
# false) or could not be judged (null), where `when` did not hold; written by the evaluation.
NIGHT_RESOLVE_COLUMNS = "account_id VARCHAR, rule_id VARCHAR, resolves BOOLEAN"


ADVANCE = """
WITH prev AS (
    SELECT * FROM warning_nights WHERE night = $prev AND state IN ('pending', 'firing')
),
held AS (SELECT * FROM signals WHERE night = $night),
pairs AS (
    SELECT coalesce(h.account_id, p.account_id) AS account_id,
           coalesce(h.rule_id, p.rule_id) AS rule_id,
           h.account_id IS NOT NULL AS held,
           coalesce(h.severity, p.severity) AS severity,
           coalesce(h.evidence, p.evidence) AS evidence,
           p.state AS was, p.held_nights AS was_held, p.since AS was_since,
           -- Shadow rows keep last_mailed as if mailed; once the rule is live that was never true,
           -- so a warning that fired in shadow is new to the owner (and resolves unmailed).
           CASE WHEN starts_with(p.reason, $shadow) AND NOT coalesce(r.shadow, false) THEN NULL ELSE p.last_mailed END AS was_mailed,
           coalesce(r.shadow, false) AS shadow,
           r.for_nights, r.evaluated, r.rule_id IS NOT NULL AS known, r.keep_firing_for,
           a.account_id IS NOT NULL AS present, a.status = 'closed' AS closed,
           lost.account_id IS NOT NULL AS lost,
           -- A firing warning of a rule with resolve_when is judged by it: unknown when it is.
           CASE WHEN p.state = 'firing' AND r.resolve_when THEN x.account_id IS NOT NULL AND x.resolves IS NULL
                ELSE u.account_id IS NOT NULL END AS unknown,
           p.state = 'firing' AND coalesce(r.resolve_when, false) AND x.resolves IS FALSE AS sustained,
           -- Calm nights in a row, tonight's included, should tonight be one (see held_nights).
           CASE WHEN p.held_nights < 0 THEN -p.held_nights ELSE 0 END + 1 AS calm
    FROM held h
    FULL JOIN prev p ON h.account_id = p.account_id AND h.rule_id = p.rule_id
    LEFT JOIN night_rules r ON r.rule_id = coalesce(h.rule_id, p.rule_id)
    LEFT JOIN accounts a ON a.account_id = coalesce(h.account_id, p.account_id)
    LEFT JOIN night_unknown u ON u.account_id = p.account_id AND u.rule_id = p.rule_id
    LEFT JOIN night_resolve x ON x.account_id = p.account_id AND x.rule_id = p.rule_id
    LEFT JOIN night_lost lost ON lost.account_id = coalesce(h.account_id, p.account_id)
),
advanced AS (
    SELECT *,
        CASE
            WHEN held THEN CASE WHEN was = 'firing' OR coalesce(was_held, 0) + 1 >= for_nights THEN 'firing' ELSE 'pending' END
            WHEN NOT known THEN NULL                               -- rule removed or disabled: the pair ends
            WHEN NOT evaluated OR NOT present OR unknown THEN was  -- not judged tonight: kept as it was
            WHEN was = 'firing' AND closed THEN 'resolved'
            WHEN sustained THEN 'firing'                           -- resolve_when does not hold yet
            WHEN was = 'firing' AND calm <= keep_firing_for THEN 'firing'
            WHEN was = 'firing' THEN 'resolved'
        END AS state,                                              -- NULL: a pending pair that no longer holds ends
        CASE
            WHEN held OR NOT evaluated OR NOT present OR unknown OR closed OR was IS DISTINCT FROM 'firing' THEN NULL
            WHEN sustained THEN 'kept firing: resolve_when does not hold yet'
            WHEN calm <= keep_firing_for THEN 'kept firing: night ' || calm || ' of ' || keep_firing_for || ' after its condition last held'
        END AS kept_firing,                                        -- hysteresis keeps it firing tonight
        CASE
            WHEN held THEN NULL
            WHEN NOT evaluated THEN 'rule not evaluated tonight'
            WHEN NOT present THEN 'account missing from tonight''s accounts'
            WHEN closed THEN 'account closed'
            WHEN unknown THEN 'no data tonight'
        END AS why
    FROM pairs
),
stated AS (
    SELECT *,
        CASE WHEN state = 'resolved' THEN 0
             WHEN held OR sustained THEN greatest(coalesce(was_held, 0), 0) + 1
             WHEN kept_firing IS NOT NULL THEN -calm          -- keep_firing_for: calm nights so far
             ELSE was_held END AS held_nights,
        CASE WHEN state = was THEN was_since ELSE $night END AS since,
        why IS NOT NULL AND why <> 'account closed' AS kept
    FROM advanced WHERE state IS NOT NULL
),
judged AS (
    SELECT s.*,
        (SELECT 'snooze ' || z.snooze_id || ' until ' || strftime(z.until, '%Y-%m-%d') || ': ' || z.reason
                || coalesce(' (' || z.created_by || ')', '')
         FROM night_snoozes z
         WHERE z.account_id = s.account_id AND (z.rule_id IS NULL OR z.rule_id = s.rule_id) AND z.until >= $night
         ORDER BY z.until DESC, z.snooze_id LIMIT 1) AS snoozed_by,
        CASE WHEN closed THEN 'account closed' WHEN lost THEN $lost ELSE
            (SELECT 'hidden by ' || min(o.rule_id) FROM stated o JOIN night_inhibitions i ON i.source = o.rule_id
             WHERE o.account_id = s.account_id AND i.target = s.rule_id AND o.state = 'firing')
        END AS inhibited_by
    FROM stated s
),
noticed AS (
    SELECT *,
        CASE
            WHEN kept THEN 'kept'
            WHEN state = 'pending' THEN 'pending'
            WHEN state = 'resolved' THEN CASE WHEN closed THEN 'inhibited' ELSE 'resolved' END
            WHEN snoozed_by IS NOT NULL THEN 'snoozed'
            WHEN inhibited_by IS NOT NULL THEN 'inhibited'
            WHEN was_mailed IS NULL OR was <> 'firing' THEN 'new'
            WHEN date_diff('day', was_mailed, $night) >= $repeat_after THEN 'repeat'
            ELSE 'open'
        END AS notice
    FROM judged
),
reasoned AS (
    SELECT *,
        CASE
            WHEN notice = 'kept' THEN why
            WHEN notice = 'snoozed' OR (notice = 'resolved' AND snoozed_by IS NOT NULL) THEN snoozed_by
            WHEN notice = 'inhibited' THEN inhibited_by
            WHEN notice = 'resolved' AND was_mailed IS NULL THEN 'the owner had not been told of it'
            ELSE kept_firing
        END AS live_reason
    FROM noticed
)
SELECT $night AS night, account_id, rule_id, severity, evidence, state, held_nights, since,
    CASE
        WHEN notice IN ('new', 'repeat') THEN $night
        WHEN notice IN ('snoozed', 'inhibited') THEN NULL  -- the owner hears of it again as new
        WHEN state = 'firing' THEN was_mailed
        WHEN state = 'resolved' THEN was_mailed
    END AS last_mailed,
    notice,
    NOT shadow AND (notice IN ('new', 'repeat') OR (notice = 'resolved' AND was_mailed IS NOT NULL AND snoozed_by IS NULL)) AS mailed,
    CASE WHEN shadow THEN $shadow || coalesce('; ' || live_reason, '') ELSE live_reason END AS reason,
    NULL AS recipient, NULL AS route_reason, NULL AS cc, NULL AS route_value
FROM reasoned
"""


def advance_warnings(
    con: duckdb.DuckDBPyConnection,
    ruleset: RuleSet,
    night: date,
    outcome: NightOutcome,
    snoozes: list[Snooze],
    repeat_after_days: int,
) -> Counter[str]:
    """Advance every (account, rule) pair from the previous evaluated night to this one.

    Call it on the connection `evaluate_rules` just used (it reads the TEMP tables
    `night_unknown` and, for rules with resolve_when, `night_resolve`; without the latter, no
    warning is kept firing by resolve_when). Re-running a night recomputes it from the night
    before. Returns how many pairs got each notice; shadow rules' pairs are counted apart ('shadow new', 'shadow open', …),
    so a run summary's "new" stays what owners are told."""
    import pyarrow as pa  # here, not above: `alerts` and `history` import this module for SHADOW_REASON

    rules = pa.table(
        {
            "rule_id": [r.id for r in ruleset.rules if r.enabled],
            "for_nights": [r.for_nights for r in ruleset.rules if r.enabled],
            "resolve_when": [r.resolve_when is not None for r in ruleset.rules if r.enabled],
            "keep_firing_for": pa.array([r.keep_firing_for for r in ruleset.rules if r.enabled], pa.int32()),
            "evaluated": [r.id not in outcome.skipped for r in ruleset.rules if r.enabled],
            "shadow": [r.mode == "shadow" for r in ruleset.rules if r.enabled],
        }
    )
    # A rule on trial must not silence a live warning the owner relies on; it may hide other
    # shadow rules (as it would once both are live), and a live rule hides a shadow one as usual.
    modes = {r.id: r.mode for r in ruleset.rules}
    pairs = [
        (r.id, hidden)
        for r in ruleset.rules
        if r.enabled
        for hidden in r.inhibits
        if r.mode == "live" or modes.get(hidden) == "shadow"
    ]
    inhibitions = pa.table({"source": [p[0] for p in pairs], "target": [p[1] for p in pairs]}, schema=pa.schema([("source", pa.string()), ("target", pa.string())]))
    night_snoozes = pa.table(
        {
            "snooze_id": pa.array([str(s.id) for s in snoozes], pa.string()),
            "account_id": pa.array([s.account_id for s in snoozes], pa.string()),
            "rule_id": pa.array([s.rule_id for s in snoozes], pa.string()),
            "until": pa.array([s.until for s in snoozes], pa.date32()),
            "reason": pa.array([s.reason for s in snoozes], pa.string()),
            "created_by": pa.array([s.by for s in snoozes], pa.string()),
        }
    )
    for name, table in (("night_rules", rules), ("night_inhibitions", inhibitions), ("night_snoozes", night_snoozes)):
        con.register(name, table)
    con.execute(f"CREATE TEMP TABLE IF NOT EXISTS night_resolve ({NIGHT_RESOLVE_COLUMNS})")
    con.execute("CREATE TEMP TABLE IF NOT EXISTS night_lost (account_id VARCHAR, last_order DATE)")
    previous = con.execute("SELECT max(night) FROM nights WHERE night < ?", [night]).fetchone()[0]
    # No transaction of its own: the night's (night.py) makes this atomic with the load.
    try:
        con.execute("DELETE FROM warning_nights WHERE night = ?", [night])
        con.execute(
            f"INSERT INTO warning_nights {ADVANCE}",
            {"night": night, "prev": previous, "repeat_after": repeat_after_days, "shadow": SHADOW_REASON, "lost": LOST_REASON},
        )
        con.execute(
            "INSERT OR REPLACE INTO nights VALUES (?, ?)", [night, datetime.now(UTC).replace(tzinfo=None)]
        )
    finally:
        for name in ("night_rules", "night_inhibitions", "night_snoozes"):
            con.unregister(name)
    return Counter(
        dict(
            con.execute(
                """
                SELECT CASE WHEN starts_with(reason, ?) THEN 'shadow ' || notice ELSE notice END, count(*)
                FROM warning_nights WHERE night = ? GROUP BY ALL
                """,
                [SHADOW_REASON, night],
            ).fetchall()
        )
    )
