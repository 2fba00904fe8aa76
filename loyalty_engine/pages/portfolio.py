"""The portfolio report (`loyalty report`): one self-contained HTML page for ops and management.

Five parts, each read from the DuckDB file with SQL as of a date:

1. the brief's four groups: each active account's latest NPS against its orders in the last 365
   days, coloured by its warning state, with the thresholds of rules/groups.py as quadrant lines;
2. the retention rate per calendar month over the last two years, by the brief's formula and the
   digest header's definition of a customer (retention.CUSTOMERS);
3. new warnings per rule and per owner over the last 90 nights, shadow rules apart;
4. the gate's outcome per night over the last 30 days, with the checks that did not pass;
5. the latest backtest's figures per rule.

`gather` reads the figures from a connection (read-only is enough), `render` turns them into the
page: inline CSS and SVG drawn here, no script, no font, image or style sheet from elsewhere, so
the file opens offline and prints as it shows. docs/report.md describes each chart.
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import duckdb

from loyalty_engine import i18n
from loyalty_engine.backtest import stored_figures
from loyalty_engine.feedback.verdicts import rule_figures
from loyalty_engine.errors import UserError
from loyalty_engine.i18n import Language
from loyalty_engine.retention import CUSTOMERS, retention_rate
from loyalty_engine.rules import groups
from loyalty_engine.rules.compiler import compile_rules
from loyalty_engine.rules.loader import RuleSet
from loyalty_engine.safe_text import printable
from loyalty_engine.templating import render as render_template

MONTHS = 24  # the retention chart: the month of the date and the 23 before it
WARNING_DAYS = 90  # new warnings per rule and owner: the nights of the last 90 days
GATE_DAYS = 30  # the gate's outcomes: the last 30 days
# Every row of a shadow rule (a rule on trial, never mailed) has a reason starting with this
# (lifecycle.SHADOW_REASON, "shadow rule: not mailed"); the row says what the night was.
SHADOW = "shadow"
STATES = ("firing", "pending", "shadow", "none")  # an account's warning state, strongest first
OUTCOMES = ("fail", "hold", "warn", "pass", "skip")  # the gate's, worst first

# --- the figures ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """An active account in the groups chart."""

    account_id: str
    name: str
    orders: int  # in the 365 days up to the date
    nps: float | None  # the latest survey's of the last two years; None: no survey
    group: str  # groups.GROUPS
    state: str  # STATES: its strongest warning on the night of the warnings


@dataclass(frozen=True)
class Month:
    """One month of the retention chart: the days after `start` up to `end`."""

    start: date
    end: date
    at_start: int
    at_end: int
    won: int  # customers at the end who were none at the start: new ones and reactivated ones
    reactivated: int  # of `won`: back after more than a year without an order
    complete_history: bool  # the orders reach back to 365 days before the month

    @property
    def rate(self) -> float | None:
        """At most 1: reactivated customers count as won (retention.py)."""
        return retention_rate(self.at_start, self.at_end, self.won) if self.complete_history else None

    @property
    def kept(self) -> int:
        """Customers at the start who are still customers at the end."""
        return self.at_end - self.won

    @property
    def new(self) -> int:
        """Won with their first order ever."""
        return self.won - self.reactivated


@dataclass(frozen=True)
class Count:
    """New warnings of one rule or one owner over the window."""

    key: str  # the rule id, or the recipient's address ('' for ops)
    name: str  # the owner's name (owners only)
    live: int  # new warnings of live rules
    shadow: int  # new warnings of shadow rules (never mailed)
    accounts: int
    shadow_rule: bool = False  # rules: every warning of it in the window was a shadow one, or the rule file says so


@dataclass(frozen=True)
class GateNight:
    night: date
    worst: str  # OUTCOMES
    problems: list[dict]  # the checks that did not pass: name, table_name, outcome, figure, limit_text, detail


@dataclass(frozen=True)
class Backtest:
    ran_at: datetime
    first_night: date
    last_night: date
    rules: str
    lines: list[dict]  # per rule (rule_id None: the total, last)


@dataclass
class Figures:
    """Everything the page shows, as of `night`."""

    night: date  # the report's date: data up to it
    warnings_night: date  # the evaluated night the warning states are taken from (<= night)
    accounts: list[Account]
    months: list[Month]
    year: Month  # the 12 months up to the date: the digest header's figure, for the whole book
    history_start: date | None  # the first order up to the date
    rules: list[Count]
    owners: list[Count]
    warning_nights: list[date]  # evaluated nights in the warnings window
    gate: list[GateNight]
    backtest: Backtest | None
    titles: dict[str, str] = field(default_factory=dict)  # rule id -> title in the report's language
    database: str = ""
    verdicts: dict[str, dict] = field(default_factory=dict)  # rule id -> the owners' verdicts (feedback/verdicts.py)
    shadow_rules: list[str] = field(default_factory=list)  # never mailed: owners cannot vote on them


def report_night(con: duckdb.DuckDBPyConnection, night: date | None) -> tuple[date, date]:
    """The report's date (default: the latest evaluated night) and the evaluated night whose
    warnings it shows (the latest one up to the date)."""
    if night is None:
        night = con.execute("SELECT max(night) FROM nights").fetchone()[0]
        if night is None:
            raise UserError("no night evaluated yet; run `loyalty run` first")
    warnings_night = con.execute("SELECT max(night) FROM nights WHERE night <= ?", [night]).fetchone()[0]
    if warnings_night is None:
        first = con.execute("SELECT min(night) FROM nights").fetchone()[0]
        raise UserError(
            f"no night evaluated on or before {night}" + (f"; the first is {first}" if first else "; run `loyalty run` first")
        )
    return night, warnings_night


def gather(con: duckdb.DuckDBPyConnection, night: date | None = None, ruleset: RuleSet | None = None, language: str = "en") -> Figures:
    """Read every figure of the report from the database, as of `night` (default: the latest
    evaluated night). `ruleset`, when given, supplies the rules' titles and modes."""
    night, warnings_night = report_night(con, night)
    rules, owners, nights = _new_warnings(con, night, ruleset)
    titles = {}
    if ruleset is not None:
        for rule in ruleset.rules:
            titles[rule.id] = printable(i18n.in_language(rule.title, language) or rule.id, one_line=True)
    months, year, history_start = _retention(con, night)
    return Figures(
        night=night,
        warnings_night=warnings_night,
        accounts=_accounts(con, night, warnings_night),
        months=months,
        year=year,
        history_start=history_start,
        rules=rules,
        owners=owners,
        warning_nights=nights,
        gate=_gate(con, night),
        backtest=_backtest(con),
        titles=titles,
        verdicts=rule_figures(con),
        shadow_rules=sorted(rule.id for rule in ruleset.rules if rule.mode == "shadow") if ruleset is not None else [],
    )


def _accounts(con: duckdb.DuckDBPyConnection, night: date, warnings_night: date) -> list[Account]:
    """Every active account with the inputs of its group (the compiler's own query, so the
    figures are those `loyalty_group` is computed from) and its strongest warning state."""
    compiled = compile_rules(RuleSet(dict(groups.INPUTS), []), [night], explain=True)
    rows = con.execute(
        f"""
        WITH grouped AS ({compiled.sql}),
        states AS (
            SELECT account_id,
                bool_or(state = 'firing' AND NOT shadow) AS firing,
                bool_or(state = 'pending' AND NOT shadow) AS pending,
                bool_or(state IN ('firing', 'pending') AND shadow) AS shadow
            FROM (SELECT *, coalesce(starts_with(reason, $shadow), false) AS shadow FROM warning_nights WHERE night = $night)
            GROUP BY account_id
        )
        SELECT g.account_id, coalesce(a.name, g.account_id), g._group_orders, g._group_nps, g.loyalty_group,
            CASE WHEN s.firing THEN 'firing' WHEN s.pending THEN 'pending' WHEN s.shadow THEN 'shadow' ELSE 'none' END AS state
        FROM grouped g
        LEFT JOIN accounts a USING (account_id)
        LEFT JOIN states s USING (account_id)
        ORDER BY g.account_id
        """,
        {"night": warnings_night, "shadow": SHADOW},
    ).fetchall()
    return [
        Account(account_id, printable(name, one_line=True), int(orders or 0), None if nps is None else float(nps), group, state)
        for account_id, name, orders, nps, group, state in rows
    ]


def _month_start(day: date, back: int = 0) -> date:
    month = day.year * 12 + day.month - 1 - back
    return date(month // 12, month % 12 + 1, 1)


# The book's customers per period (retention.CUSTOMERS, the digest header's definition), counted
# over the accounts of the accounts table, closed ones included: a closed account that ordered
# in the year up to a date was a customer then.
RETENTION = f"""
WITH periods AS (SELECT unnest($starts::DATE[]) AS period_start, unnest($ends::DATE[]) AS period_end),
customers AS ({CUSTOMERS})
SELECT p.period_start, p.period_end,
    count(c.account_id) FILTER (WHERE c.at_start) AS at_start,
    count(c.account_id) FILTER (WHERE c.at_end) AS at_end,
    count(c.account_id) FILTER (WHERE c.won) AS won,
    count(c.account_id) FILTER (WHERE c.reactivated) AS reactivated
FROM periods p
LEFT JOIN (SELECT c.* FROM customers c JOIN accounts USING (account_id)) c USING (period_start, period_end)
GROUP BY p.period_start, p.period_end
ORDER BY p.period_end, p.period_start
"""


def _retention(con: duckdb.DuckDBPyConnection, night: date) -> tuple[list[Month], Month, date | None]:
    """Per calendar month of the last MONTHS (the last one up to the date), and for the 365 days
    up to the date (the figure each digest header shows for its owner's book)."""
    starts, ends = [], []
    for back in range(MONTHS - 1, -1, -1):
        first = _month_start(night, back)
        starts.append(first - timedelta(days=1))
        ends.append(min(_month_start(night, back - 1) - timedelta(days=1), night))
    starts.append(night - timedelta(days=365))
    ends.append(night)
    history = con.execute("SELECT min(order_date) FROM orders WHERE order_date <= ?", [night]).fetchone()[0]
    rows = con.execute(RETENTION, {"starts": starts, "ends": ends}).fetchall()
    found = {(start, end): counts for start, end, *counts in rows}
    periods = [
        Month(start, end, *found[(start, end)], complete_history=history is not None and history <= start - timedelta(days=365))
        for start, end in zip(starts, ends)
    ]
    return periods[:-1], periods[-1], history


def _new_warnings(con: duckdb.DuckDBPyConnection, night: date, ruleset: RuleSet | None) -> tuple[list[Count], list[Count], list[date]]:
    """New warnings (notice 'new') of the nights in the WARNING_DAYS up to the date, per rule and
    per recipient (the owner's address; ops when the account had no usable one)."""
    first = night - timedelta(days=WARNING_DAYS - 1)
    shadow_rules = {rule.id for rule in ruleset.rules if getattr(rule, "mode", "live") == "shadow"} if ruleset else set()
    new = """
        SELECT w.*, coalesce(starts_with(w.reason, $shadow), false) AS shadow
        FROM warning_nights w WHERE w.night BETWEEN $first AND $night AND w.notice = 'new'
    """
    params = {"first": first, "night": night, "shadow": SHADOW}
    per_rule = con.execute(
        f"""
        SELECT rule_id, count(*) FILTER (WHERE NOT shadow), count(*) FILTER (WHERE shadow),
            count(DISTINCT account_id), bool_and(shadow)
        FROM ({new}) GROUP BY rule_id
        ORDER BY count(*) FILTER (WHERE NOT shadow) DESC, count(*) DESC, rule_id
        """,
        params,
    ).fetchall()
    per_owner = con.execute(
        f"""
        WITH owners AS (
            SELECT lower(owner_email) AS recipient, min(owner_name) AS owner_name FROM accounts
            WHERE owner_email IS NOT NULL GROUP BY lower(owner_email)
        )
        SELECT coalesce(lower(n.recipient), '') AS recipient, coalesce(any_value(o.owner_name), ''),
            count(*) FILTER (WHERE NOT n.shadow), count(*) FILTER (WHERE n.shadow), count(DISTINCT n.account_id)
        FROM ({new}) n LEFT JOIN owners o ON o.recipient = lower(n.recipient)
        GROUP BY 1
        ORDER BY count(*) FILTER (WHERE NOT n.shadow) DESC, count(*) DESC, 1
        """,
        params,
    ).fetchall()
    nights = [row[0] for row in con.execute("SELECT night FROM nights WHERE night BETWEEN ? AND ? ORDER BY night", [first, night]).fetchall()]
    rules = [Count(rule_id, "", live, shadow, accounts, all_shadow or rule_id in shadow_rules) for rule_id, live, shadow, accounts, all_shadow in per_rule]
    owners = [Count(recipient, printable(name, one_line=True), live, shadow, accounts) for recipient, name, live, shadow, accounts in per_owner]
    return rules, owners, nights


def _gate(con: duckdb.DuckDBPyConnection, night: date) -> list[GateNight]:
    """Per night of the last GATE_DAYS with recorded checks: the worst outcome and the checks
    that did not pass, newest first."""
    rows = con.execute(
        """
        SELECT night,
            list(struct_pack(name := check_name, table_name := table_name, outcome := outcome, figure := figure,
                             limit_text := limit_text, detail := detail) ORDER BY rowid) FILTER (WHERE outcome <> 'pass'),
            list_distinct(list(outcome))
        FROM gate_checks
        WHERE night BETWEEN ? AND ?
        GROUP BY night
        ORDER BY night DESC
        """,
        [night - timedelta(days=GATE_DAYS - 1), night],
    ).fetchall()
    found = []
    for day, problems, outcomes in rows:
        worst = min(outcomes, key=lambda o: OUTCOMES.index(o) if o in OUTCOMES else len(OUTCOMES))
        found.append(GateNight(day, worst, list(problems or [])))
    return found


def _backtest(con: duckdb.DuckDBPyConnection) -> Backtest | None:
    """The rows of the latest `loyalty backtest` (they share `ran_at`); None before the first."""
    lines = stored_figures(con)
    if not lines:
        return None
    first = lines[0]
    return Backtest(first["ran_at"], first["first_night"], first["last_night"], printable(first["rules"], one_line=True), lines)


# --- the page -------------------------------------------------------------------------------

# Colours of the warning states (the digest's palette): strong for what needs action, grey for none.
STATE_COLOURS = {"firing": "#dc2626", "pending": "#f59e0b", "shadow": "#7c3aed", "none": "#94a3b8"}
OUTCOME_COLOURS = {"fail": "#dc2626", "hold": "#ea580c", "warn": "#f59e0b", "pass": "#16a34a", "skip": "#9ca3af"}

# The groups chart, in SVG user units (1 unit = 1 CSS pixel at full width).
WIDTH = 960
PLOT_LEFT, PLOT_RIGHT = 56, WIDTH - 20
PLOT_TOP, PLOT_BOTTOM = 16, 356  # NPS 10.5 … -0.5
STRIP_TOP, STRIP_BOTTOM = 392, 436  # accounts without a survey
PAD = 10  # keeps a dot at 0 orders inside the frame
ORDER_TICKS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


def render(figures: Figures, language: str) -> str:
    """The page, as one string of HTML."""
    words = i18n.language(language)
    ui = words.report
    number = words.number
    day = words.date
    active = len(figures.accounts)
    states = {state: sum(1 for a in figures.accounts if a.state == state) for state in STATES}
    year = figures.year
    live_new = sum(c.live for c in figures.rules)
    last_gate = figures.gate[0] if figures.gate else None
    kpis = [
        {"label": ui["kpi_active"], "value": number(active), "note": ""},
        {
            "label": ui["kpi_firing"],
            "value": number(states["firing"]),
            "note": ui["of_active"].format(share=words.percent(states["firing"] / active)) if active else "",
        },
        {
            "label": ui["kpi_retention"],
            "value": words.percent(year.rate, 1) if year.rate is not None else "–",
            "note": ui["retention_counts"].format(
                kept=number(year.kept), start=number(year.at_start), new=number(year.new), back=number(year.reactivated)
            )
            if year.complete_history or figures.history_start is None
            else ui["history_short"].format(date=day(figures.history_start)),
        },
        {
            "label": ui["kpi_new"].format(days=WARNING_DAYS),
            "value": number(live_new),
            "note": words.plural(ui["new_in_nights"], len(figures.warning_nights)),
        },
        {
            "label": ui["kpi_gate"],
            "value": ui[last_gate.worst] if last_gate else "–",
            "note": day(last_gate.night) if last_gate else "",
            "outcome": last_gate.worst if last_gate else None,
        },
    ]
    context = {
        "lang": language,
        "ui": ui,
        "title": f"{ui['title']} {day(figures.night)}",
        "heading": ui["title"],
        "subtitle": ui["subtitle"].format(date=day(figures.night)),
        "warnings_as_of": ui["warnings_as_of"].format(date=day(figures.warnings_night)) if figures.warnings_night != figures.night else "",
        "kpis": kpis,
        "groups": _groups_chart(figures, words),
        "retention": _retention_chart(figures, words),
        "warnings": _warnings_tables(figures, words),
        "gate": _gate_view(figures, words),
        "backtest": _backtest_view(figures, words),
        "verdicts": _verdicts_view(figures, words),
        "state_colours": STATE_COLOURS,
        "outcome_colours": OUTCOME_COLOURS,
        # No file or folder names: the page is read by management, and mailed on.
        "footer": ui["footer"].format(date=day(figures.night)),
    }
    return render_template("portfolio.html.j2", context)


def _jitter(account_id: str, salt: int) -> float:
    """A fixed offset in [-1, 1] per account: dots on the same whole numbers spread out, the
    same way on every run."""
    return (zlib.crc32(f"{salt}:{account_id}".encode("utf-8")) % 20001) / 10000 - 1


def _groups_chart(figures: Figures, words: Language) -> dict:
    ui = words.report
    accounts = figures.accounts
    most = max((a.orders for a in accounts), default=0)
    top = next((t for t in ORDER_TICKS if t >= max(most, 20)), most)
    span = math.log10(1 + top)

    def x(orders: float) -> float:
        return PLOT_LEFT + PAD + (PLOT_RIGHT - PLOT_LEFT - 2 * PAD) * math.log10(1 + orders) / span

    def y(nps: float) -> float:
        return PLOT_TOP + (PLOT_BOTTOM - PLOT_TOP) * (10.5 - nps) / 11

    number = words.number
    frequent = groups.FREQUENT_ORDERS - 0.5  # between 5 and 6 orders: whole numbers fall on one side
    marks = []
    # Drawn in order: no warning first, firing last, so the dots that need action stay on top.
    for account in sorted(accounts, key=lambda a: (-STATES.index(a.state), a.account_id)):
        cx = x(account.orders) + 3.5 * _jitter(account.account_id, 1)
        if account.nps is None:
            cy = (STRIP_TOP + STRIP_BOTTOM) / 2 + 14 * _jitter(account.account_id, 2)
            title = ui["point_no_survey"]
        else:
            cy = y(account.nps) + 0.3 * (PLOT_BOTTOM - PLOT_TOP) / 11 * _jitter(account.account_id, 2)
            title = ui["point"]
        group_name = ui.get(account.group, account.group)
        marks.append(
            {
                "x": round(cx, 1),
                "y": round(cy, 1),
                "state": account.state,
                "surveyed": account.nps is not None,
                "title": title.format(
                    name=account.name, id=account.account_id, orders=number(account.orders),
                    nps=number(account.nps) if account.nps is not None else "", group=group_name, state=ui[account.state],
                ),
            }
        )
    ticks = [{"x": round(x(t), 1), "label": number(t)} for t in ORDER_TICKS if t <= top]
    split = round(x(frequent), 1)
    counts = {state: sum(1 for a in accounts if a.state == state) for state in STATES}
    legend = [{"state": s, "label": ui[s], "count": number(counts[s])} for s in STATES if s != "shadow" or counts[s]]
    without = sum(1 for a in accounts if a.nps is None)
    return {
        "width": WIDTH,
        "height": STRIP_BOTTOM + 44,
        "left": PLOT_LEFT,
        "right": PLOT_RIGHT,
        "top": PLOT_TOP,
        "bottom": PLOT_BOTTOM,
        "strip_top": STRIP_TOP,
        "strip_bottom": STRIP_BOTTOM,
        "split": split,
        "satisfied": round(y(6.5), 1),
        "apostle": round(y(8.5), 1),
        "terrorist": round(y(3.5), 1),
        "nps_ticks": [{"y": round(y(n), 1), "label": number(n)} for n in range(0, 11)],
        "order_ticks": ticks,
        "marks": marks,
        "legend": legend,
        "frequent": ui["frequent"].format(n=groups.FREQUENT_ORDERS),
        "no_survey": ui["no_survey"].format(n=number(without)),
        "intro": ui["groups_intro"].format(date=words.date(figures.warnings_night)),
        "cover": ui["groups_cover"].format(date=words.date(figures.warnings_night)),
        "note": ui["group_note"].format(frequent=groups.FREQUENT_ORDERS, angry=groups.ANGRY_COMPLAINTS),
        "names": {g: ui[g] for g in ("apostle", "loyal", "opportunist", "hostage", "defector", "terrorist")},
    }


def _retention_chart(figures: Figures, words: Language) -> dict:
    ui = words.report
    months = figures.months
    left, right, top, bottom = 56, WIDTH - 20, 14, 184
    rates = [m.rate for m in months if m.rate is not None]
    number = words.number
    if rates:
        high = max(1.0, max(rates))
        low = min(rates)
        # A whole-percent axis, at least 5 points tall, with 100 % on it: small moves stay visible
        # without pretending a 99.5 % month is a collapse.
        step = next((s for s in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5) if (high - low) / s <= 6), 1.0)
        low = math.floor(low / step - 0.5) * step
        high = math.ceil(high / step) * step
        while (high - low) / step < 5:
            low -= step
    else:
        low, high, step = 0.0, 1.0, 0.2
    width = (right - left) / max(len(months), 1)

    def y(rate: float) -> float:
        return top + (bottom - top) * (high - rate) / (high - low)

    points = []
    partial = bool(months) and months[-1].end < _month_start(months[-1].end, -1) - timedelta(days=1)
    for index, month in enumerate(months):
        first = month.start + timedelta(days=1)
        label = words.date(first, "LLL")
        rate = month.rate
        points.append(
            {
                "x": round(left + (index + 0.5) * width, 1),
                "y": round(y(rate), 1) if rate is not None else None,
                "month": label,
                # Under each January, and under the first month unless a January follows too closely.
                "year": str(first.year) if first.month == 1 or (index == 0 and first.month <= 10) else "",
                # One decimal only where it is not 0 (100, 99.5): 24 figures side by side stay apart.
                "value": words.number(round(rate * 100, 1), "#,##0.#") if rate is not None else "–",
                "partial": partial and index == len(months) - 1,
                "title": ui["retention_month"].format(
                    month=words.date(first, "LLLL yyyy"),
                    rate=words.percent(rate, 1) if rate is not None else "–", kept=number(month.kept),
                    start=number(month.at_start), new=number(month.new), back=number(month.reactivated), end=number(month.at_end),
                ),
            }
        )
    # The line, in pieces where a month has no rate; the segment to a partial month dashed.
    segments, piece = [], []
    for point in points:
        if point["y"] is None:
            if len(piece) > 1:
                segments.append({"points": " ".join(f"{p['x']},{p['y']}" for p in piece), "dashed": False})
            piece = []
            continue
        piece.append(point)
    if len(piece) > 1:
        if piece[-1]["partial"]:
            segments.append({"points": " ".join(f"{p['x']},{p['y']}" for p in piece[:-1]), "dashed": False})
            segments.append({"points": " ".join(f"{p['x']},{p['y']}" for p in piece[-2:]), "dashed": True})
        else:
            segments.append({"points": " ".join(f"{p['x']},{p['y']}" for p in piece), "dashed": False})
    segments = [s for s in segments if " " in s["points"]]
    grid = []
    level = low
    while level <= high + 1e-9:
        grid.append({"y": round(y(level), 1), "label": words.percent(level), "hundred": abs(level - 1) < 1e-9})
        level = round(level + step, 10)
    short = [m for m in months if not m.complete_history]
    notes = []
    if partial:
        notes.append(ui["retention_partial"].format(date=words.date(months[-1].end)))
    if short and figures.history_start is not None:  # without any order the chart says so instead
        notes.append(ui["retention_short"].format(n=len(short), date=words.date(figures.history_start)))
    return {
        "width": WIDTH,
        "height": bottom + 64,
        "left": left,
        "right": right,
        "top": top,
        "bottom": bottom,
        "grid": grid,
        "points": points,
        "segments": segments,
        "notes": notes,
        "empty": not rates,
        "cover": ui["retention_cover"].format(
            months=number(len(months)),
            first=words.date(months[0].start + timedelta(days=1)) if months else "–",
            last=words.date(months[-1].end) if months else "–",
        ),
    }


def _warnings_tables(figures: Figures, words: Language) -> dict:
    ui = words.report
    number = words.number
    most = max([c.live + c.shadow for c in figures.rules + figures.owners] or [1]) or 1

    def line(count: Count, label: str, sub: str) -> dict:
        return {
            "label": label,
            "sub": sub,
            "live": number(count.live),
            "shadow": ui["shadow_count"].format(n=number(count.shadow)) if count.shadow else "",
            "accounts": number(count.accounts),
            "live_width": round(100 * count.live / most, 2),
            "shadow_width": round(100 * count.shadow / most, 2),
            "shadow_rule": count.shadow_rule,
        }

    # A rule's id (an internal name, in English) only as the tooltip of its title; an owner's
    # address under the name, as the digest is addressed.
    rules = [line(c, figures.titles.get(c.key, c.key), "") | {"tip": c.key} for c in figures.rules]
    owners = [line(c, c.name or c.key if c.key else ui["ops"], c.key if c.name else "") | {"tip": ""} for c in figures.owners]
    nights = figures.warning_nights
    return {
        "title": ui["warnings_title"].format(days=WARNING_DAYS),
        "intro": ui["warnings_intro"],
        "cover": ui["cover"].format(
            days=number(WARNING_DAYS), last=words.date(figures.night), nights=words.plural(ui["nights_evaluated"], len(nights))
        ),
        "rules": rules,
        "owners": owners,
    }


# A path in a gate check's text (the extract file it read): the page names the file only.
PATH = re.compile(r"(?:[A-Za-z]:)?(?:[^\\/\s;:,]*[\\/])+([^\\/\s;:,]+)")


def _problem(check: dict, words: Language) -> dict:
    """A check that did not pass, in the page's language: the check and the table by name, what
    the outcome means. The gate's own figure, limit and detail are written in English for the
    terminal (`loyalty gate`), so they appear on an English page only, with paths cut to the
    file's name."""
    ui = words.report
    name, table, outcome = check["name"], check["table_name"], check["outcome"]
    what = ui.get(f"check_{name}", name)
    if table and table != "*":
        what = f"{ui.get(f'table_{table}', table)} · {what}"
    english = words.code == "en"

    def raw(text) -> str:
        return PATH.sub(r"\1", printable(text, one_line=True)) if english and text else ""

    means = ui.get(f"means_{name}_{outcome}") or ui.get(f"means_{name}", "")
    return {
        "what": what,
        "outcome": outcome,
        "label": ui.get(outcome, outcome),
        "means": means,
        "figure": raw(check["figure"]) if outcome != "skip" else "",
        "limit": raw(check["limit_text"]) if outcome != "skip" else "",
        # The gate's detail says again what `means` says, but for a held night (the rules
        # behind the flood, and how to release it).
        "detail": raw(check["detail"]) if not means or outcome == "hold" else "",
    }


def _gate_view(figures: Figures, words: Language) -> dict:
    ui = words.report
    number = words.number
    by_night = {g.night: g for g in figures.gate}
    size, gap = 24, 6
    days = []
    for back in range(GATE_DAYS - 1, -1, -1):
        day = figures.night - timedelta(days=back)
        checked = by_night.get(day)
        outcome = checked.worst if checked else None
        days.append(
            {
                "x": (GATE_DAYS - 1 - back) * (size + gap),
                "outcome": outcome,
                "weekday": words.date(day, "EEEEE"),
                "label": words.date(day, "d"),
                "title": f"{words.date(day)}: {ui[outcome] if outcome else ui['no_run']}",
            }
        )
    # The nights with a check that did not pass (the strip shows every night's worst outcome).
    nights = [
        {
            "night": words.date(g.night),
            "weekday": words.date(g.night, "EEE"),
            "outcome": g.worst,
            "label": ui[g.worst],
            "problems": [_problem(p, words) for p in g.problems],
        }
        for g in figures.gate
        if g.problems
    ]
    clean = sum(1 for g in figures.gate if not g.problems)
    return {
        "intro": ui["gate_intro"].format(days=GATE_DAYS),
        "cover": ui["cover"].format(
            days=number(GATE_DAYS), last=words.date(figures.night), nights=words.plural(ui["nights_checked"], len(figures.gate))
        ),
        "summary": ui["gate_summary"].format(clean=words.number(clean), nights=words.number(len(figures.gate)))
        if figures.gate else "",
        "days": days,
        "size": size,
        "width": GATE_DAYS * (size + gap) - gap,
        "nights": nights,
        "legend": [{"outcome": o, "label": ui[o]} for o in ("pass", "warn", "hold", "fail")],
    }


def _backtest_view(figures: Figures, words: Language) -> dict | None:
    ui = words.report
    backtest = figures.backtest
    if backtest is None:
        return None

    missing = False

    def share(value, count, total):
        """The share and the count behind it: "100 % (5 of 5)"."""
        nonlocal missing
        if value is None:
            return "–"
        if count is None or total is None:
            missing = True
            return f"{words.percent(value)}¹"
        return ui["share_of"].format(share=words.percent(value), count=words.number(count), total=words.number(total))

    def decimal(value, pattern="#,##0.##"):
        return words.number(value, pattern) if value is not None else "–"

    lines = []
    for line in backtest.lines:
        rule_id = line["rule_id"]
        lines.append(
            {
                "total": rule_id is None,
                "label": ui["total"] if rule_id is None else figures.titles.get(rule_id, rule_id),
                "sub": "",
                "tip": rule_id or "",
                "shadow": (line["mode"] or "live") == "shadow",
                "mode": ui["shadow_mark"] if (line["mode"] or "live") == "shadow" else (ui["live"] if rule_id else ""),
                "nights_fired": decimal(line["nights_fired"]),
                "accounts_flagged": decimal(line["accounts_flagged"]),
                "emails": decimal(line["emails_per_owner_week"], "#,##0.0#"),
                # The counts behind the shares, where the backtest stored them (columns named as
                # backtest.judge names them): accounts lost after the warning of those whose outcome
                # is known; lost accounts warned in time of those lost.
                "precision": share(line["precision"], line.get("lost_after_warning"), line.get("outcome_known")),
                "too_late": decimal(line["too_late"]),
                "recall": share(line["recall"], line.get("caught"), line.get("lost_in_range")),
                # Signed, as `loyalty backtest` prints it: negative when the warning came after the loss.
                "lead": decimal(line["median_lead_days"], "+#,##0;-#,##0"),
            }
        )
    ran_at = backtest.ran_at
    nights = (backtest.last_night - backtest.first_night).days + 1  # the replay runs every night
    return {
        "intro": ui["backtest_intro"].format(
            first=words.date(backtest.first_night),
            last=words.date(backtest.last_night),
            nights=words.plural(ui["nights_replayed"], nights),
            ran_at=words.datetime(ran_at) if isinstance(ran_at, datetime) else str(ran_at),
        ),
        "means": ui["backtest_means"],
        "missing": ui["counts_missing"] if missing else "",
        "lines": lines,
    }


def _verdicts_view(figures: Figures, words: Language) -> dict:
    """The owners' verdicts per rule beside the last backtest's precision; shadow rules named apart."""
    ui = words.report
    measured = {line["rule_id"]: line["precision"] for line in (figures.backtest.lines if figures.backtest else []) if line["rule_id"]}
    lines = []
    for rule_id, said in sorted(figures.verdicts.items(), key=lambda item: (-(item[1]["useful"] + item[1]["false_alarm"] + item[1]["already_known"]), item[0])):
        precision = said["owners_precision"]
        lines.append(
            {
                "label": figures.titles.get(rule_id, rule_id),
                "tip": rule_id,
                "useful": words.number(said["useful"]),
                "false_alarm": words.number(said["false_alarm"]),
                "already_known": words.number(said["already_known"]),
                "owners_precision": words.percent(precision) if precision is not None else "–",
                "backtest_precision": words.percent(measured[rule_id]) if measured.get(rule_id) is not None else "–",
            }
        )
    shadow = [
        {"label": figures.titles.get(rule_id, rule_id), "tip": rule_id, "note": ui["verdicts_shadow"]}
        for rule_id in figures.shadow_rules
        if rule_id not in figures.verdicts
    ]
    return {"intro": ui["verdicts_intro"], "lines": lines, "shadow": shadow}


def portfolio_report(
    con: duckdb.DuckDBPyConnection, night: date | None, language: str, ruleset: RuleSet | None = None, database: str = ""
) -> tuple[Figures, str]:
    """The figures as of `night` (default: the latest evaluated night) and the page showing them."""
    i18n.language(language)  # an unknown language fails before the figures are read
    figures = gather(con, night, ruleset, language)
    figures.database = database
    return figures, render(figures, language)
