"""The backtest's lifecycle and digest policy over a whole range of nights at once.

The nightly job advances every (account, rule) pair one night at a time (warnings.py) and then
applies the digest policy (mail/budget.py). The backtest needs the same warnings for every night
of a range; advancing night after night cost a round of statements per night. Here the same state
machine is window arithmetic over each pair's nights, for all nights at once:

- **Classes.** Each night of a pair is, for a pending warning, *held* (the condition holds),
  *unknown* (no data) or a *break*; for a firing one, a *keep* (held, or its resolve_when does
  not hold yet), *unknown*, or *calm*. A night without a signal row is a break and calm.
- **Calm ends.** A firing warning resolves on the (keep_firing_for + 1)-th calm night after its
  last keep night, unknown nights not counting: from each keep night that night is found by
  arithmetic on the unknown nights before the next keep night (`calm_ends`). They cut a pair's
  nights into segments; a warning that fires in a segment resolves at its end, so each segment
  holds at most one firing episode.
- **Pending runs.** Islands of consecutive held or unknown nights (gaps and islands); the
  warning fires on the `for:`-th held night of a run. A run restarts after a resolution inside
  it (a calm end that is an unknown night for `when`: only a rule with resolve_when has such).
  Whether it restarts depends on whether the warning was firing there, so those few restarts are
  settled by iterating until they no longer change (each depends only on earlier segments).
- **Inhibition, lost accounts.** A firing night is hidden while a rule that inhibits it fires for
  the account, or while the account is lost (lifecycle/lost.py's spells).
- **Telling.** A firing episode's nights between hidden ones form *runs*: the owner is told of a
  run once (new), then again every `repeat_after_days`. Who is told when is the digest policy's
  choice (`max_new` per recipient and night, most at stake first, the rest waiting; one voice
  per account; the weekly cadence): a queue per recipient, so it is decided night after night,
  but only over the runs not yet told (a few per owner and night, never the orders).
  Repeats then follow from the nights each recipient got a digest: each is the first visible
  night at least `repeat_after_days` after the last telling that has a digest.

The result is, row for row, what `advance_warnings` and `apply_budget` write night by night
with snoozes off, every account open and present, and every rule evaluated
(tests/unit/lifecycle/test_replay.py compares the two).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

import duckdb
import pyarrow as pa

from loyalty_engine.config import DigestSettings, LostSettings
from loyalty_engine.lifecycle.lost import LOST_SPELLS, spell_params
from loyalty_engine.mail.budget import _SEVERITY, DEFAULT_CHANCE, WEEKDAYS, rank_key, voices
from loyalty_engine.rules.loader import RuleSet

# A recipient's waiting warnings get their revenue for this many nights at once (they usually wait one or two).
REVENUE_AHEAD = 14
# Restarts of pending runs inside a resolution settle in as many rounds as they chain; more is a bug.
MAX_ROUNDS = 1000


def replay_warnings(
    con: duckdb.DuckDBPyConnection, held: pa.Table, ruleset: RuleSet, first: date, last: date,
    digest: DigestSettings, lost: LostSettings, data_end: date,
) -> tuple[pa.Table, pa.Table]:
    """The warnings of every night first … last from `held` (night, account_id, rule_id, holds,
    resolves: backtest._signals), two ways: each rule's warnings as if it were the only one
    (recipient owner + rule), and the owners' real digests with all rules together (recipient
    the owner). Each is a table of night, account_id, rule_id, notice, would_mail, owner_email,
    recipient. `con` holds the orders (the budget ranks by revenue) and the accounts."""
    nights = (last - first).days + 1
    with duckdb.connect() as replay:
        _load(replay, con, held, ruleset, first, lost, data_end)
        _states(replay, nights)
        revenue = _Revenue(con, first)  # the same accounts and nights rank both ways
        per_rule = _told(replay, revenue, ruleset, first, nights, digest, per_rule=True)
        together = _told(replay, revenue, ruleset, first, nights, digest, per_rule=False)
        return per_rule, together


def _load(replay, con, held: pa.Table, ruleset: RuleSet, first: date, lost: LostSettings, data_end: date) -> None:
    rules = [r for r in ruleset.rules if r.enabled]
    signal = voices(ruleset)
    replay.register("rule_list", pa.table({
        "rule_id": [r.id for r in rules],
        "for_nights": pa.array([r.for_nights for r in rules], pa.int32()),
        "resolves": [r.resolve_when is not None for r in rules],
        "keep": pa.array([r.keep_firing_for or 0 for r in rules], pa.int32()),
        "shadow": [r.mode == "shadow" for r in rules],
        "severity": [r.severity for r in rules],
        "signal": pa.array([signal.get(r.id) for r in rules], pa.string()),
    }))  # fmt: skip
    replay.execute("CREATE TABLE rules AS SELECT * FROM rule_list")
    # As advance_warnings: a rule on trial never silences a live one.
    modes = {r.id: r.mode for r in rules}
    pairs = [(r.id, hidden) for r in rules for hidden in r.inhibits if r.mode == "live" or modes.get(hidden) == "shadow"]
    replay.execute("CREATE TABLE inhibitions (source VARCHAR, target VARCHAR)")
    if pairs:
        replay.executemany("INSERT INTO inhibitions VALUES (?, ?)", pairs)
    replay.register("known_accounts", con.sql("SELECT account_id, owner_email FROM accounts").to_arrow_table())
    replay.execute("CREATE TABLE accounts AS SELECT * FROM known_accounts")
    replay.register("replay_held", held)
    # Whole numbers for accounts and pairs: every window below is partitioned by pair, ordered by night.
    replay.execute(
        """CREATE TABLE pairs AS
           SELECT row_number() OVER ()::INTEGER AS pair, dense_rank() OVER (ORDER BY account_id)::INTEGER AS acct, account_id, rule_id
           FROM (SELECT DISTINCT account_id, rule_id FROM replay_held)"""
    )
    replay.register("known_spells", con.sql(LOST_SPELLS, params=spell_params(lost, data_end)).to_arrow_table())
    replay.execute(
        """CREATE TABLE spells AS
           SELECT a.acct, date_diff('day', $first, s.lost_from)::INTEGER AS lost_from, date_diff('day', $first, s.lost_until)::INTEGER AS lost_until
           FROM known_spells s JOIN (SELECT DISTINCT acct, account_id FROM pairs) a USING (account_id)""",
        {"first": first},
    )
    # Night n is first + n. A pending warning's classes: held (ph) or unknown (pu), else a break;
    # a firing one's: keep (fk) or unknown (fu), else calm (warnings.py, ADVANCE's `unknown` and `sustained`).
    replay.execute(
        """CREATE TABLE cls AS
           SELECT p.pair, date_diff('day', $first, h.night)::INTEGER AS n,
               h.holds IS TRUE AS ph, h.holds IS NULL AS pu,
               h.holds IS TRUE OR (r.resolves AND h.resolves IS FALSE) AS fk,
               CASE WHEN r.resolves THEN h.holds IS NOT TRUE AND h.resolves IS NULL ELSE h.holds IS NULL END AS fu
           FROM replay_held h JOIN pairs p USING (account_id, rule_id) JOIN rules r USING (rule_id)
           ORDER BY p.pair, n""",
        {"first": first},
    )
    for name in ("rule_list", "known_spells", "known_accounts", "replay_held"):
        replay.unregister(name)


def _states(replay, nights: int) -> None:
    """TABLE episodes (pair, f, resolved_n): each firing from night f to the night before
    resolved_n (NULL: still firing on the last night), resolved on resolved_n; TABLE
    pending_rows (pair, n, notice) of the pending warnings; TABLE firing_runs (pair, f, n, fu,
    inhibited, visible, run) of every firing night; TABLE runs, one row per run of them."""
    # The calm end after each keep night L, if it comes before the next keep night: the
    # (keep+1)-th calm night after L. The unknown nights u_j (j = 1, 2, … after L) before it are
    # those with u_j - j <= L + keep (fewer than keep+1 calm nights before them).
    replay.execute(
        """CREATE TABLE calm_ends AS
        WITH marked AS (
            SELECT pair, n, fk, fu,
                max(CASE WHEN fk THEN n END) OVER (PARTITION BY pair ORDER BY n ROWS UNBOUNDED PRECEDING) AS keep_n,
                CASE WHEN fk THEN min(CASE WHEN fk THEN n END) OVER (PARTITION BY pair ORDER BY n ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) END AS next_keep
            FROM cls WHERE fk OR fu
        ),
        before_end AS (
            SELECT pair, keep_n, count(*) AS unknowns FROM (
                SELECT m.pair, m.keep_n, m.n - row_number() OVER (PARTITION BY m.pair, m.keep_n ORDER BY m.n) AS calm_before, r.keep
                FROM marked m JOIN pairs USING (pair) JOIN rules r USING (rule_id) WHERE m.fu AND m.keep_n IS NOT NULL
            ) WHERE calm_before <= keep_n + keep GROUP BY ALL
        ),
        ends AS (
            SELECT m.pair, m.n + r.keep + 1 + coalesce(b.unknowns, 0) AS n, m.next_keep
            FROM marked m JOIN pairs USING (pair) JOIN rules r USING (rule_id)
            LEFT JOIN before_end b ON b.pair = m.pair AND b.keep_n = m.n
            WHERE m.fk
        )
        SELECT pair, n::INTEGER AS n, (row_number() OVER (PARTITION BY pair ORDER BY n) - 1)::INTEGER AS seg
        FROM ends WHERE n < coalesce(next_keep, $nights) AND n < $nights""",
        {"nights": nights},
    )
    # Held and unknown nights with their segment (calm ends before them) and pending island.
    replay.execute(
        """CREATE TABLE pend AS
        WITH stream AS (
            SELECT pair, n, ph, pu, false AS calm_end FROM cls WHERE ph OR pu
            UNION ALL
            SELECT pair, n, false, false, true FROM calm_ends
        ),
        counted AS (
            SELECT *, sum(calm_end::INTEGER) OVER (PARTITION BY pair ORDER BY n, calm_end ROWS UNBOUNDED PRECEDING) AS seg,
                sum((NOT calm_end)::INTEGER) OVER (PARTITION BY pair ORDER BY n, calm_end ROWS UNBOUNDED PRECEDING) AS place
            FROM stream
        )
        SELECT pair, n, ph, pu, seg::INTEGER AS seg, (n - place)::INTEGER AS island
        FROM counted WHERE NOT calm_end"""
    )
    # Calm ends that are unknown nights for `when`: a pending run goes on through them unless the
    # warning was firing there (resolved: the run starts again). First assume it was everywhere.
    replay.execute(
        """CREATE TABLE unknown_ends AS
           SELECT e.pair, e.n, e.seg FROM calm_ends e JOIN pend p USING (pair, n) WHERE p.pu"""
    )
    replay.execute("CREATE TABLE restarts AS SELECT pair, n FROM unknown_ends")
    for _ in range(MAX_ROUNDS):
        restarts = replay.execute("SELECT count(*) FROM restarts").fetchall()[0][0]
        # Without restarts (the usual case) a run is an island.
        replay.execute(
            f"""CREATE OR REPLACE TABLE pend_counted AS
            WITH parted AS (
                SELECT p.*, {'sum((z.n IS NOT NULL)::INTEGER) OVER (PARTITION BY p.pair, p.island ORDER BY p.n ROWS UNBOUNDED PRECEDING)' if restarts else '0'} AS part
                FROM pend p {'LEFT JOIN restarts z USING (pair, n)' if restarts else ''}
            )
            SELECT *, sum(ph::INTEGER) OVER (PARTITION BY pair, island, part ORDER BY n ROWS UNBOUNDED PRECEDING) AS held_nights
            FROM parted"""
        )
        replay.execute(
            """CREATE OR REPLACE TABLE starts AS
               SELECT c.pair, c.seg, min(c.n) AS f FROM pend_counted c JOIN pairs USING (pair) JOIN rules r USING (rule_id)
               WHERE c.ph AND c.held_nights = r.for_nights GROUP BY ALL"""
        )
        changed = replay.execute(
            """WITH fired AS (SELECT u.pair, u.n FROM unknown_ends u JOIN starts s USING (pair, seg))
               SELECT count(*) FROM ((SELECT * FROM fired EXCEPT SELECT * FROM restarts) UNION ALL (SELECT * FROM restarts EXCEPT SELECT * FROM fired))"""
        ).fetchall()[0][0]
        if not changed:
            break
        replay.execute("CREATE OR REPLACE TABLE restarts AS SELECT u.pair, u.n FROM unknown_ends u JOIN starts s USING (pair, seg)")
    else:
        raise RuntimeError("the replay's pending runs did not settle")
    replay.execute(
        """CREATE TABLE episodes AS
           SELECT s.pair, p.acct, p.rule_id, s.f, e.n AS resolved_n
           FROM starts s JOIN pairs p USING (pair) LEFT JOIN calm_ends e ON e.pair = s.pair AND e.seg = s.seg"""
    )
    replay.execute(
        """CREATE TABLE pending_rows AS
           SELECT p.pair, p.n, CASE WHEN p.ph THEN 'pending' ELSE 'kept' END AS notice
           FROM pend_counted p LEFT JOIN starts s USING (pair, seg)
           WHERE p.held_nights >= 1 AND (s.f IS NULL OR p.n < s.f)"""
    )
    # Every firing night; hidden while an inhibiting rule fires for the account, or the account
    # is lost (as intervals: the few of each account, joined to its nights).
    replay.execute(
        """CREATE TABLE hiding AS
           SELECT e.acct, i.target AS rule_id, e.f AS hide_from, coalesce(e.resolved_n, $nights) AS hide_until
           FROM episodes e JOIN inhibitions i ON i.source = e.rule_id
           UNION ALL
           SELECT DISTINCT s.acct, e.rule_id, s.lost_from, coalesce(s.lost_until, $nights)
           FROM spells s JOIN episodes e USING (acct)""",
        {"nights": nights},
    )
    replay.execute(
        """CREATE TABLE firing AS
        WITH nights AS (
            SELECT pair, acct, rule_id, f, unnest(range(f, coalesce(resolved_n, $nights)))::INTEGER AS n FROM episodes
        ),
        hidden AS (
            SELECT DISTINCT x.pair, x.n FROM nights x JOIN hiding h ON h.acct = x.acct AND h.rule_id = x.rule_id AND h.hide_from <= x.n AND h.hide_until > x.n
        )
        SELECT x.pair, x.f, x.n, coalesce(c.fu, false) AS fu, h.pair IS NOT NULL AS hidden
        FROM nights x LEFT JOIN cls c USING (pair, n) LEFT JOIN hidden h USING (pair, n)""",
        {"nights": nights},
    )
    # Runs: an episode's nights between hidden ones (an unknown night neither shows nor hides).
    replay.execute(
        """CREATE TABLE firing_runs AS
           SELECT *, NOT fu AND hidden AS inhibited, NOT fu AND NOT hidden AS visible,
               sum((NOT fu AND hidden)::INTEGER) OVER (PARTITION BY pair, f ORDER BY n ROWS UNBOUNDED PRECEDING)::INTEGER AS run
           FROM firing"""
    )
    replay.execute(
        """CREATE TABLE runs AS
           SELECT row_number() OVER (ORDER BY r.pair, r.f, r.run)::INTEGER AS run_id, r.*, p.account_id, p.rule_id
           FROM (SELECT pair, f, run, min(n) FILTER (WHERE visible) AS first_visible, max(n) AS last_n,
                     coalesce(list(n ORDER BY n) FILTER (WHERE fu), []) AS unknown_nights
                 FROM firing_runs WHERE NOT inhibited GROUP BY pair, f, run) r
           JOIN pairs p USING (pair)"""
    )


@dataclass(eq=False)  # told apart by identity: a run is one warning's stretch
class _Run:
    run_id: int
    account_id: str
    rule_id: str
    severity: str
    signal: str | None
    recipient: str
    first_visible: int
    last_n: int
    unknown_nights: frozenset[int]
    told: int | None = field(default=None)

    def visible(self, n: int) -> bool:
        return n <= self.last_n and n not in self.unknown_nights


def _told(replay, revenue: _Revenue, ruleset: RuleSet, first: date, nights: int, digest: DigestSettings, per_rule: bool) -> pa.Table:
    """The digest policy over the runs, then every night's notice (the budget's queue is decided
    night after night over the runs not yet told; the rest is SQL)."""
    recipient = "lower(a.owner_email) || chr(31) || r.rule_id" if per_rule else "lower(a.owner_email)"
    rows = replay.execute(
        f"""SELECT x.run_id, x.account_id, x.rule_id, r.severity, r.signal, coalesce({recipient}, ''), x.first_visible, x.last_n, x.unknown_nights
            FROM runs x JOIN rules r USING (rule_id) LEFT JOIN accounts a USING (account_id)
            WHERE NOT r.shadow AND x.first_visible IS NOT NULL ORDER BY x.run_id"""
    ).fetchall()
    runs = [_Run(*row[:8], frozenset(row[8])) for row in rows]
    told, digests = _budget(revenue, runs, first, nights, digest, per_rule)
    replay.register("told_runs", pa.table({
        "run_id": pa.array([r.run_id for r in told], pa.int32()),
        "told_n": pa.array([r.told for r in told], pa.int32()),
        "how": pa.array([how for _, how in told.items()], pa.string()),
    }) if told else pa.table({"run_id": pa.array([], pa.int32()), "told_n": pa.array([], pa.int32()), "how": pa.array([], pa.string())}))  # fmt: skip
    replay.register("digest_nights", pa.table({
        "recipient": pa.array([d[0] for d in digests], pa.string()), "n": pa.array([d[1] for d in digests], pa.int32()),
    }))  # fmt: skip
    immediate = _SEVERITY[digest.immediate_severity]
    params = {
        "first": first, "nights": nights, "repeat": digest.repeat_after_days, "weekly": digest.cadence == "weekly",
        "weekday": WEEKDAYS.index(digest.weekday) + 1, "immediate": immediate,
        "severities": list(_SEVERITY),
    }
    try:
        replay.execute(
            f"""CREATE OR REPLACE TEMP TABLE telling AS
            SELECT x.run_id, x.account_id, x.rule_id, r.shadow, r.severity, {recipient} AS recipient, a.owner_email,
                CASE WHEN r.shadow THEN x.first_visible ELSE t.told_n END AS told_n,
                CASE WHEN r.shadow THEN 'new' ELSE t.how END AS how
            FROM runs x JOIN rules r USING (rule_id) LEFT JOIN accounts a USING (account_id)
            LEFT JOIN told_runs t USING (run_id)""",
        )
        # Nights a told run could be mentioned again: visible, and for a live rule a night its
        # recipient gets a digest that may carry it (weekly: not on another day below immediate_severity).
        replay.execute(
            """CREATE OR REPLACE TEMP TABLE repeat_nights AS
            SELECT t.run_id, f.n FROM firing_runs f JOIN runs x USING (pair, f, run) JOIN telling t USING (run_id)
            WHERE f.visible AND f.n > t.told_n AND (t.shadow OR (
                EXISTS (SELECT 1 FROM digest_nights d WHERE d.recipient = coalesce(t.recipient, '') AND d.n = f.n)
                AND NOT ($weekly AND f.n > 0 AND isodow(($first::DATE + f.n)::DATE) <> $weekday
                         AND coalesce(list_position($severities, t.severity) - 1, -1) > $immediate)))""",
            {k: params[k] for k in ("first", "weekly", "weekday", "severities", "immediate")},
        )
        # Each repeat is the first such night at least repeat_after_days after the last telling:
        # from each night, the next one a repeat could follow on (one ASOF join), then the chain.
        replay.execute(
            """CREATE OR REPLACE TEMP TABLE repeat_links AS
               SELECT a.run_id, a.n, b.n AS next_n FROM repeat_nights a ASOF LEFT JOIN repeat_nights b ON a.run_id = b.run_id AND b.n >= a.n + $repeat
               UNION ALL
               SELECT t.run_id, t.told_n, b.n FROM telling t ASOF JOIN repeat_nights b ON t.run_id = b.run_id AND b.n >= t.told_n + $repeat""",
            {"repeat": params["repeat"]},
        )
        replay.execute(
            """CREATE OR REPLACE TEMP TABLE repeats AS
            WITH RECURSIVE chain(run_id, n) AS (
                SELECT l.run_id, l.next_n FROM telling t JOIN repeat_links l ON l.run_id = t.run_id AND l.n = t.told_n WHERE l.next_n IS NOT NULL
                UNION ALL
                SELECT c.run_id, l.next_n FROM chain c JOIN repeat_links l ON l.run_id = c.run_id AND l.n = c.n WHERE l.next_n IS NOT NULL
            )
            SELECT * FROM chain"""
        )
        table = replay.sql(
            f"""WITH firing_notices AS (
                SELECT f.pair, f.n,
                    CASE
                        WHEN f.fu THEN 'kept'
                        WHEN f.inhibited THEN 'inhibited'
                        WHEN t.told_n IS NULL OR f.n < t.told_n THEN 'waiting'
                        WHEN f.n = t.told_n THEN CASE t.how WHEN 'voice' THEN 'open' WHEN 'intro' THEN 'intro' ELSE 'new' END
                        WHEN p.n IS NOT NULL THEN 'repeat'
                        ELSE 'open'
                    END AS notice,
                    coalesce(f.visible AND NOT t.shadow AND ((f.n = t.told_n AND t.how = 'new') OR p.n IS NOT NULL), false) AS would_mail
                FROM firing_runs f
                LEFT JOIN runs x ON NOT f.inhibited AND x.pair = f.pair AND x.f = f.f AND x.run = f.run
                LEFT JOIN telling t USING (run_id)
                LEFT JOIN repeats p ON p.run_id = x.run_id AND p.n = f.n
            ),
            resolutions AS (
                -- Mailed if the owner had been told (the night before it was in a told run) and gets a digest tonight.
                SELECT e.pair, e.resolved_n AS n, 'resolved' AS notice,
                    coalesce(NOT r.shadow AND NOT f.inhibited AND t.told_n <= f.n
                        AND EXISTS (SELECT 1 FROM digest_nights d WHERE d.recipient = coalesce({recipient}, '') AND d.n = e.resolved_n), false) AS would_mail
                FROM episodes e JOIN pairs USING (pair) JOIN rules r ON r.rule_id = pairs.rule_id LEFT JOIN accounts a ON a.account_id = pairs.account_id
                JOIN firing_runs f ON f.pair = e.pair AND f.f = e.f AND f.n = e.resolved_n - 1
                LEFT JOIN runs x ON NOT f.inhibited AND x.pair = f.pair AND x.f = f.f AND x.run = f.run
                LEFT JOIN telling t USING (run_id)
                WHERE e.resolved_n IS NOT NULL
            ),
            rows AS (
                SELECT pair, n, notice, false AS would_mail FROM pending_rows
                UNION ALL SELECT * FROM firing_notices
                UNION ALL SELECT * FROM resolutions
            )
            SELECT ($first::DATE + w.n::INTEGER) AS night, p.account_id, p.rule_id, w.notice, w.would_mail, a.owner_email,
                {recipient.replace('r.rule_id', 'p.rule_id')} AS recipient
            FROM rows w JOIN pairs p USING (pair) JOIN accounts a ON a.account_id = p.account_id""",
            params={"first": first},
        ).to_arrow_table()
        # A few distinct texts repeated on every row: as dictionaries the table is a fifth of the size.
        return pa.table({c: table[c].dictionary_encode() if pa.types.is_string(table[c].type) else table[c] for c in table.column_names})
    finally:
        replay.unregister("told_runs")
        replay.unregister("digest_nights")


def _budget(revenue: _Revenue, runs: list[_Run], first: date, nights: int, digest: DigestSettings, per_rule: bool) -> tuple[dict, set]:
    """Who is told of which run when, as mail/budget.apply_budget decides night after night: the
    runs told ({run: how}, how 'new' (mailed), 'intro' (the first night's over the budget) or
    'voice' (a related rule already spoke), run.told the night), and the (recipient, night) pairs
    that got a digest (something new mailed)."""
    fresh: dict[int, list[_Run]] = defaultdict(list)
    for run in runs:
        fresh[run.first_visible].append(run)
    siblings: dict[str, list[_Run]] = defaultdict(list)
    if not per_rule:
        for run in runs:
            if run.signal:
                siblings[run.account_id].append(run)
    revenue.fetch({(run.account_id, run.first_visible) for run in runs})
    told: dict[_Run, str] = {}
    digests: set[tuple[str, int]] = set()
    waiting: list[_Run] = []
    immediate = _SEVERITY[digest.immediate_severity]
    for n in range(nights):
        waiting = [run for run in waiting if run.last_n >= n] + fresh.get(n, [])
        candidates = [run for run in waiting if run.visible(n)]
        if not candidates:
            continue
        chosen: list[_Run] = []
        for run in candidates:
            # One voice per account: a related rule's warning the owner already knows of speaks for it.
            if run.signal and run.severity != "critical" and any(
                other.rule_id != run.rule_id and other.signal == run.signal and other.told is not None and other.told < n and other.visible(n)
                for other in siblings.get(run.account_id, ())
            ):
                run.told, told[run] = n, "voice"
            elif digest.cadence == "weekly" and n > 0 and WEEKDAYS[(first + timedelta(days=n)).weekday()] != digest.weekday \
                    and _SEVERITY.get(run.severity, -1) > immediate:
                pass  # waits for the digest day
            else:
                chosen.append(run)
        if chosen:
            worth = revenue.of(n, chosen)
            by_recipient: dict[str, list[tuple]] = defaultdict(list)
            for run in chosen:
                key = rank_key(run.severity, DEFAULT_CHANCE, worth.get((run.account_id, n), 0.0), None, run.account_id, run.rule_id)
                by_recipient[run.recipient].append((key, run))
            for recipient, ranked in by_recipient.items():
                ranked.sort(key=lambda item: item[0])
                for place, (_, run) in enumerate(ranked):
                    if place < digest.max_new or run.severity == "critical":
                        run.told, told[run] = n, "new"
                        digests.add((recipient, n))
                    elif n == 0:
                        run.told, told[run] = n, "intro"
        waiting = [run for run in waiting if run.told is None]
        revenue.ahead(n, waiting)
    return told, digests


class _Revenue:
    """Each account's revenue over the 365 days up to a night (the budget ranks by it), from the
    orders: for every run's first night at once, then for the nights a run waits, a fortnight
    ahead at a time (a waiting warning usually waits a night or two)."""

    def __init__(self, con, first: date):
        self.con, self.first, self.known = con, first, {}

    def of(self, n: int, runs: list[_Run]) -> dict:
        self.fetch({(run.account_id, n) for run in runs})
        return self.known

    def ahead(self, n: int, runs: list[_Run]) -> None:
        short = [run for run in runs if (run.account_id, n + 1) not in self.known and run.last_n > n]
        self.fetch({(run.account_id, m) for run in short for m in range(n + 1, min(n + REVENUE_AHEAD, run.last_n) + 1)})

    def fetch(self, probes: set[tuple[str, int]]) -> None:
        probes = probes - self.known.keys()
        if not probes:
            return
        table = pa.table({"account_id": pa.array([p[0] for p in probes], pa.string()), "n": pa.array([p[1] for p in probes], pa.int32())})
        self.con.register("revenue_probes", table)
        try:
            rows = self.con.execute(
                """SELECT p.account_id, p.n, sum(o.amount) FROM revenue_probes p
                   JOIN orders o ON o.account_id = p.account_id
                       AND o.order_date <= $first::DATE + p.n AND o.order_date > $first::DATE + p.n - 365
                   GROUP BY ALL""",
                {"first": self.first},
            ).fetchall()
        finally:
            self.con.unregister("revenue_probes")
        self.known.update(dict.fromkeys(probes, 0.0))
        self.known.update({(account, n): float(total) for account, n, total in rows})
