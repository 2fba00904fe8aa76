"""The night's mailed warnings -> what each digest says: accounts, owners, texts with the numbers,
each account's group and revenue, and each owner's portfolio figures."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache

import duckdb
import pyarrow as pa
from jinja2 import Template

from loyalty_engine import i18n
from loyalty_engine.config import Settings
from loyalty_engine.feedback.links import with_links
from loyalty_engine.mail.digest import AccountWarning, Digest, LostAccount, Portfolio, render_digests
from loyalty_engine.lifecycle.warnings import SHADOW_REASON
from loyalty_engine.backtest import stored_figures
from loyalty_engine.mail.budget import DEFERRED, chance_of, rule_chances
from loyalty_engine.retention import CUSTOMERS, retention_rate
from loyalty_engine.rules.compiler import compile_rules
from loyalty_engine.rules.loader import TEXT_ENV, RuleSet
from loyalty_engine.rules.texts import render_text

MONTHS = 12  # the revenue chart's bars, the current month last

# Per account of tonight's digests: revenue in the last 365 days and per calendar month.
REVENUE = """
WITH months AS (
    SELECT unnest(range(date_trunc('month', $night::DATE) - INTERVAL 11 MONTH,
                        date_trunc('month', $night::DATE) + INTERVAL 1 DAY, INTERVAL 1 MONTH))::DATE AS month
),
orders_of AS (
    SELECT o.account_id, o.order_date, o.amount FROM orders o JOIN digest_accounts USING (account_id)
    WHERE o.order_date <= $night AND o.order_date > $night - 400
),
per_month AS (
    SELECT account_id, date_trunc('month', order_date)::DATE AS month, sum(amount) AS revenue FROM orders_of GROUP BY ALL
)
SELECT d.account_id,
    (SELECT coalesce(sum(amount), 0) FROM orders_of y WHERE y.account_id = d.account_id AND y.order_date > $night - 365),
    list(coalesce(p.revenue, 0) ORDER BY m.month)
FROM digest_accounts d CROSS JOIN months m
LEFT JOIN per_month p ON p.account_id = d.account_id AND p.month = m.month
GROUP BY d.account_id
"""

# Per owner: accounts watched, accounts with a firing warning, and the brief's retention rate
# over the last 12 months (retention.py: a customer at a date ordered in the 365 days up to it;
# the portfolio report's monthly chart counts with the same CUSTOMERS).
PORTFOLIO = f"""
WITH periods AS (SELECT $night::DATE - 365 AS period_start, $night::DATE AS period_end),
customers AS ({CUSTOMERS})
SELECT lower(a.owner_email) AS owner,
    count(*) FILTER (WHERE coalesce(a.status, 'active') <> 'closed') AS watched,
    count(DISTINCT w.account_id) AS warned,
    count(*) FILTER (WHERE o.at_start) AS at_start,
    count(*) FILTER (WHERE o.at_end) AS at_end,
    count(*) FILTER (WHERE o.won) AS won
FROM accounts a
LEFT JOIN customers o USING (account_id)
-- A shadow rule's warnings are not the owner's to hear of: they do not make an account "warned".
LEFT JOIN (SELECT DISTINCT account_id FROM warning_nights
           WHERE night = $night AND state = 'firing' AND NOT coalesce(starts_with(reason, $shadow), false)) w USING (account_id)
WHERE a.owner_email IS NOT NULL
GROUP BY lower(a.owner_email)
"""


@dataclass(frozen=True)
class Mailing:
    """What tonight's digests say: the warnings, one per recipient who gets it, and each owner's portfolio."""

    warnings: list[AccountWarning]
    portfolios: dict[str, Portfolio]
    unrouted: int  # warnings with neither a usable owner nor email.ops_recipients: mailed to nobody
    lost: dict[str, list[LostAccount]] = field(default_factory=dict)  # by recipient: lost accounts announced tonight


def night_digests(con: duckdb.DuckDBPyConnection, settings: Settings, rules: RuleSet, night: date) -> tuple[Mailing, list[Digest]]:
    """The night's mailing and its digests as config asks for them: what the nightly flow mails
    (flows/nightly.py), in one function a test can call."""
    mailing = night_mailing(
        con, rules, night, settings.digest.language, settings.email.ops_recipients,
        silent_days=settings.backtest.lost.no_order_days, horizon_days=settings.backtest.horizon_days,
        currency=settings.digest.currency,
    )
    digests = render_digests(
        # Each warning told to its own owner carries the three verdict links (when feedback.base_url is set).
        with_links(mailing.warnings, night, settings.feedback), night, settings.email.sender, settings.digest.language,
        settings.digest.max_accounts, mailing.portfolios, settings.digest.currency, mailing.lost,
    )
    return mailing, digests


def night_mailing(
    con: duckdb.DuckDBPyConnection,
    ruleset: RuleSet,
    night: date,
    language: str,
    ops_recipients: list[str],
    all_open: bool = False,
    silent_days: int = 180,
    horizon_days: int = 180,
    currency: str = "EUR",
) -> Mailing:
    """The night's warnings marked `mailed`, with texts in each owner's language (the language
    most of all their accounts name, ties and none to `language`); warnings without an owner go
    to each ops address. A recipient with a digest tonight also gets, for its count and CSV
    attachment, the warnings the budget held back (notice 'waiting' or, on the first night,
    'intro'), and the resolutions deferred from nights that sent them nothing else
    (mail/budget.py). Evidence numbers are those of the last night the condition held. `all_open`
    (for previews) takes every firing warning that is not snoozed, inhibited or of a shadow rule,
    as new: what the owner could get, and a shadow rule's warnings never go out. The lost
    accounts announced tonight (lifecycle/lost.py) go with their owner's digest; `silent_days`
    is backtest.lost.no_order_days, for the note that says what lost means. Each warning carries
    the odds behind it from the last stored backtest (`odds`), with `horizon_days` as the
    backtest judged it; before a backtest has measured the rule, none."""
    rules = {rule.id: rule for rule in ruleset.rules}
    rows = con.execute(
        """
        WITH owner_languages AS (
            -- Each owner's language over all of their accounts (not tonight's warned ones), so it
            -- stays the same from night to night: the most common one, ties to digest.language.
            SELECT owner, arg_max(language, (n, language = $language, language)) AS owner_language
            FROM (SELECT lower(owner_email) AS owner, language, count(*) AS n FROM accounts
                  WHERE owner_email IS NOT NULL AND language IS NOT NULL GROUP BY ALL)
            GROUP BY owner
        ),
        digests AS (  -- recipients who get a digest tonight ('' stands for ops)
            SELECT DISTINCT coalesce(recipient, '') AS who FROM warning_nights WHERE night = $night AND mailed
        ),
        tonight AS (
            SELECT w.* FROM warning_nights w
            WHERE w.night = $night AND (w.mailed
                OR ($all_open AND w.state = 'firing' AND w.notice NOT IN ('snoozed', 'inhibited')
                    AND NOT coalesce(starts_with(w.reason, $shadow), false))
                -- Over the budget (waiting) or the first night's starting state (intro): counted, in the attachment.
                OR (NOT $all_open AND w.notice IN ('waiting', 'intro') AND coalesce(w.recipient, '') IN (SELECT who FROM digests)))
            UNION ALL
            -- Resolutions of nights that sent this recipient nothing else, since their last digest.
            SELECT w.* FROM warning_nights w
            WHERE NOT $all_open AND w.night < $night AND w.notice = 'resolved' AND NOT w.mailed AND w.reason = $deferred
              AND coalesce(w.recipient, '') IN (SELECT who FROM digests)
              AND w.night > coalesce((SELECT max(o.night) FROM warning_nights o WHERE o.night < $night AND o.mailed
                                      AND coalesce(o.recipient, '') = coalesce(w.recipient, '')), DATE '0001-01-01')
        )
        SELECT w.account_id, coalesce(a.name, w.account_id), a.owner_email, a.owner_name, w.rule_id, w.severity,
               w.evidence, CASE WHEN $all_open AND w.state = 'firing' AND w.notice NOT IN ('snoozed', 'inhibited') THEN 'new' ELSE w.notice END, w.since, a.segment, w.recipient, w.route_reason, w.route_value, w.cc,
               l.owner_language
        FROM tonight w LEFT JOIN accounts a USING (account_id) LEFT JOIN owner_languages l ON l.owner = w.recipient
        ORDER BY w.recipient, w.account_id, w.rule_id, w.night
        """,
        {"night": night, "all_open": all_open, "shadow": SHADOW_REASON, "language": language, "deferred": DEFERRED},
    ).fetchall()
    accounts = sorted({row[0] for row in rows})
    groups, revenue = _account_facts(con, night, accounts)
    chances = rule_chances(con)
    measured = {row["rule_id"]: row for row in stored_figures(con) if row["rule_id"]}
    warnings, unrouted = [], 0
    for account_id, name, owner_email, owner_name, rule_id, severity, evidence, notice, since, segment, recipient, route_reason, route_value, cc, owner_language in rows:
        rule = rules.get(rule_id)
        if rule is None:  # the rule was removed since the night was evaluated
            continue
        speaks = owner_language if recipient and owner_language in i18n.LANGUAGES else language
        numbers = json.loads(evidence)  # raw: rules/texts.py formats them in the reader's locale
        last_year, months = revenue.get(account_id, (0.0, ()))
        common = dict(
            account_id=account_id,
            # Names, and the texts below with their values filled in, go as they are: AccountWarning
            # puts a name on one line and replaces control characters, for every digest alike.
            account_name=name,
            owner_email=owner_email or "",
            owner_name=owner_name or "",
            rule_id=rule_id,
            severity=severity,
            title=_text(rule.title, speaks, numbers, currency),
            message=_text(rule.message, speaks, numbers, currency),
            action=_text(rule.action, speaks, numbers, currency),
            notice=notice,
            since=since,
            segment=segment,
            group=groups.get(account_id),
            revenue_12m=last_year,
            monthly_revenue=tuple(months),
            route_reason=route_reason,
            route_value=route_value,
            language=speaks,
            chance=chance_of(chances, rule_id),
            signal=rule.labels.get("signal"),
            odds=odds(measured.get(rule_id), speaks, horizon_days),
        )
        if recipient:
            warnings.append(AccountWarning(**common, recipient=recipient, cc=cc))
        elif ops_recipients:
            warnings += [AccountWarning(**common, recipient=address) for address in ops_recipients]
        else:
            unrouted += 1
    lost: dict[str, list[LostAccount]] = {}
    has_lost = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'lost_nights' AND NOT temporary").fetchall()[0][0]
    if not all_open and has_lost:  # a database from before lost accounts has no lost_nights
        for recipient, account_id, name, last_order in con.execute(
            """SELECT lower(a.owner_email), n.account_id, coalesce(a.name, n.account_id), n.last_order
               FROM lost_nights n JOIN accounts a USING (account_id) WHERE n.night = ? AND n.announced = n.night ORDER BY 1, 2""",
            [night],
        ).fetchall():
            lost.setdefault(recipient, []).append(LostAccount(account_id, name, last_order, silent_days))
    return Mailing(warnings, _portfolios(con, night), unrouted, lost)


def odds(figures: dict | None, language: str, horizon_days: int) -> str:
    """The odds behind a rule's warning from a stored backtest row, in the reader's words:
    "Of the 120 accounts this rule warned in the last backtest (…), 38 % were lost within 6
    months." Counts the accounts whose outcome was known (precision's denominator); "" when the
    rule was not measured or no outcome was known.

    >>> odds({"outcome_known": 120, "lost_after_warning": 46, "first_night": date(2025, 12, 1), "last_night": date(2026, 11, 30)}, "en", 180)
    'Of the 120 accounts this rule warned in the last backtest (1 Dec 2025 – 30 Nov 2026), 38% were lost within 6 months.'
    """
    if not figures or not figures.get("outcome_known") or figures.get("lost_after_warning") is None:
        return ""
    words = i18n.language(language)
    known = int(figures["outcome_known"])
    months = max(1, round(horizon_days / 30.4))
    return words.plural(
        words.digest["odds"], known,
        share=words.percent(figures["lost_after_warning"] / known),
        first=words.date(figures["first_night"]), last=words.date(figures["last_night"]),
        months=words.plural(words.digest["odds_months"], months),
    )


def _account_facts(con: duckdb.DuckDBPyConnection, night: date, accounts: list[str]) -> tuple[dict[str, str], dict]:
    """For the digest's accounts: each one's loyalty group (the built-in metric rules use) and its
    revenue over the last 365 days and per calendar month."""
    if not accounts:
        return {}, {}
    compiled = compile_rules(RuleSet({}, []), [night], explain=True)
    con.register("digest_accounts", pa.table({"account_id": pa.array(accounts, pa.string())}))
    try:
        groups = con.execute(
            f"SELECT account_id, loyalty_group FROM ({compiled.sql}) WHERE account_id IN (SELECT account_id FROM digest_accounts)"
        ).fetchall()
        revenue = con.execute(REVENUE, {"night": night}).fetchall()
    finally:
        con.unregister("digest_accounts")
    return dict(groups), {account: (float(last_year), [float(m) for m in months]) for account, last_year, months in revenue}


def _portfolios(con: duckdb.DuckDBPyConnection, night: date) -> dict[str, Portfolio]:
    portfolios = {}
    for owner, watched, warned, at_start, at_end, won in con.execute(PORTFOLIO, {"night": night, "shadow": SHADOW_REASON}).fetchall():
        portfolios[owner] = Portfolio(watched, warned, retention_rate(at_start, at_end, won))
    return portfolios


def rule_text(texts: dict[str, str], language: str, values: dict, currency: str = "EUR") -> str:
    """A rule's text (title, message, action) in the reader's language with the warning's numbers
    filled in, as the digest says it; the verdict pages show the same words."""
    return render_text(_compiled(i18n.in_language(texts, language)), language, values, currency)


_text = rule_text


@lru_cache(maxsize=1024)
def _compiled(template: str) -> Template:
    """Compiling a text costs a millisecond; a night renders the same few texts thousands of times."""
    return TEXT_ENV.from_string(template)
