"""`loyalty explain`: for one account, every rule's numbers and which part of its condition held.

The same compiled query the night runs, narrowed to one account, with one extra column per part
of each condition (the comparison's result and the values it compared), so the explanation
cannot disagree with what the night decided.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

import duckdb
import sqlglot
from sqlglot import exp

from loyalty_engine.errors import UserError
from loyalty_engine.rules.compiler import DIALECT, compile_rules, window_bounds
from loyalty_engine.rules.evaluate import runnable
from loyalty_engine.rules.kinds import BUILTINS, KINDS
from loyalty_engine.rules.loader import Rule, RuleSet

YES_NO = {True: "yes", False: "no", None: "unknown"}
# How far back explain looks for a rule with resolve_when: whether a warning that started earlier
# is still kept firing depends on every night since, so a bounded look back (calendar nights).
RESOLVE_LOOK_BACK = 60


@dataclass
class Part:
    text: str  # as written in the rule: orders_recent < 0.5 * expected_orders
    held: bool | None
    compared: str  # with the numbers: 1 < 1.73


@dataclass
class RuleExplained:
    rule: Rule
    outcome: str  # fires | quiet | no data | skipped: … | disabled
    parts: list[Part] = field(default_factory=list)
    nights_held: int = 0
    numbers: list[tuple[str, object, str]] = field(default_factory=list)  # name, value, what it is
    shown: dict[str, str] = field(default_factory=dict)  # name -> the value in words, where its kind has some (odds)


@dataclass
class AccountExplained:
    account_id: str
    name: str
    owner: str
    night: date
    group: str | None
    rules: list[RuleExplained]


def explain_account(con: duckdb.DuckDBPyConnection, ruleset: RuleSet, account_id: str, night: date, absent: set[str]) -> AccountExplained:
    """Every rule's verdict on one account as of the night, with its numbers."""
    found = con.execute("SELECT name, owner_name, owner_email, status FROM accounts WHERE account_id = ?", [account_id]).fetchall()
    if not found:
        raise UserError(f"account '{account_id}' is not in the loaded accounts")
    name, owner_name, owner_email, status = found[0]
    enabled, skipped = runnable(ruleset, absent)
    longest = max((_look_back(r) for r in enabled.rules), default=1)
    nights = [night - timedelta(days=back) for back in range(longest)]
    compiled = compile_rules(RuleSet(ruleset.metrics, enabled.rules), nights, account=account_id, explain=True)
    result = con.sql(compiled.sql)
    rows = {row[1]: dict(zip(result.columns, row)) for row in result.fetchall()}
    tonight = rows.get(night, {})
    explained = []
    for rule in ruleset.rules:
        if not rule.enabled:
            explained.append(RuleExplained(rule, "disabled"))
        elif rule.id in skipped:
            explained.append(RuleExplained(rule, f"skipped: {skipped[rule.id]}"))
        elif status == "closed":
            explained.append(RuleExplained(rule, "quiet: the account is closed"))
        else:
            explained.append(_explain_rule(rule, ruleset, compiled, tonight, rows, night))
    group = tonight.get("loyalty_group") if tonight else None
    return AccountExplained(account_id, name, f"{owner_name} <{owner_email}>", night, group, explained)


def _look_back(rule: Rule) -> int:
    """The nights (tonight included) whose outcomes decide whether the rule fires tonight."""
    return rule.for_nights + rule.keep_firing_for + (RESOLVE_LOOK_BACK if rule.resolve_when is not None else 0)


def _explain_rule(rule: Rule, ruleset: RuleSet, compiled, tonight: dict, rows: dict, night: date) -> RuleExplained:
    holds = tonight.get(f"{rule.id}.holds")
    held = 0  # nights in a row, up to tonight, the condition held (the set may reach further back)
    for back in range(len(rows)):
        if rows.get(night - timedelta(days=back), {}).get(f"{rule.id}.holds") is not True:
            break
        held += 1
    if tonight.get(f"{rule.id}.fired") and not holds and rule.hysteresis:
        outcome = "fires: " + _kept_by(rule, tonight)
    elif tonight.get(f"{rule.id}.fired"):
        outcome = "fires"
    elif holds is None:
        outcome = "no data"
    elif holds and rule.for_nights > 1:
        outcome = f"pending: held {held} of the {rule.for_nights} nights in a row it needs"
    else:
        outcome = "quiet"
    parts = []
    for index, (text, operands) in enumerate(compiled.parts[rule.id]):
        values = [tonight.get(f"{rule.id}.part{index}.{position}") for position in range(operands)]
        parts.append(Part(text, tonight.get(f"{rule.id}.part{index}"), _compared(text, values)))
    numbers, shown = [], {}
    for name in compiled.evidence[rule.id]:
        value = tonight.get(f"{rule.id}.{name}", tonight.get(name))
        if name in ruleset.metrics:
            metric = ruleset.metrics[name]
            what = metric.describe()
            if KINDS[metric.kind].reads_rows:
                start, end = window_bounds(metric, night)
                what += f" ({start} … {end})" if start else f" (up to {end})"
                words = KINDS[metric.kind].shown and start and KINDS[metric.kind].shown(value, (end - start).days + 1)
                if words:
                    shown[name] = words
        elif name in rule.values:
            what = rule.values[name]
        elif name in rule.params:
            what = "param"
        else:
            what = BUILTINS[name].words
        numbers.append((name, value, what))
    return RuleExplained(rule, outcome, parts, held, numbers, shown)


def _kept_by(rule: Rule, tonight: dict) -> str:
    """Why a warning fires on a night its condition does not hold (hysteresis)."""
    if rule.resolve_when is not None and tonight.get(f"{rule.id}.resolves") is not True:
        shown = "unknown" if tonight.get(f"{rule.id}.resolves") is None else "not yet"
        return f"kept firing until resolve_when holds ({shown} tonight)"
    return f"kept firing for up to {rule.keep_firing_for} nights after its condition last held"


def _compared(text: str, values: list) -> str:
    """The part with its operands replaced by their values: 'orders_recent < 0.5 * x' -> '1 < 1.73'."""
    tree = sqlglot.parse_one(text, read=DIALECT)
    operands = [o for o in (tree.this, tree.args.get("expression"), tree.args.get("low"), tree.args.get("high"), *tree.expressions) if o is not None and not isinstance(o, exp.Null)]
    for operand, value in zip(operands, values):
        operand.replace(_literal(value))
    return tree.sql(DIALECT).replace("<>", "!=")


def _literal(value) -> exp.Expression:
    if value is None:
        return exp.var("unknown")
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, (int, float, Decimal)):  # a literal such as 0.01 comes back as a Decimal
        return exp.Literal.number(_shown(float(value) if isinstance(value, Decimal) else value))
    return exp.Literal.string(str(value))


def _shown(value) -> str:
    if isinstance(value, float) and 0 < abs(value) < 0.005:  # a small chance: 3.5e-06, not 0
        return f"{value:.2g}"
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return str(value)


def _loud(outcome: str) -> str:
    """FIRES and NO DATA stand out; the rest as it is ('fires: kept firing …' -> 'FIRES: kept firing …')."""
    verdict, colon, why = outcome.partition(":")
    return verdict.upper() + colon + why if verdict in ("fires", "no data") else outcome


def render(explained: AccountExplained) -> str:
    """Plain text for a terminal or a ticket."""
    lines = [
        f"Account {explained.account_id}: {explained.name}, owner {explained.owner}",
        f"As of {explained.night}" + (f"; group: {explained.group}" if explained.group else ""),
    ]
    for item in explained.rules:
        rule = item.rule
        lines += ["", f"{rule.id} ({rule.severity}): {_loud(item.outcome)}"]
        if not item.parts:
            continue
        lines.append(f"  when {' '.join(rule.when.split())}" + (f"   (for: {rule.for_nights} nights)" if rule.for_nights > 1 else ""))
        if rule.resolve_when is not None:
            lines.append(f"  resolve when {' '.join(rule.resolve_when.split())}")
        if rule.keep_firing_for:
            lines.append(f"  keep firing for {rule.keep_firing_for} night{'s' if rule.keep_firing_for != 1 else ''} after it last held")
        width = max(len(p.text) for p in item.parts)
        lines += [f"    {YES_NO[p.held]:<8} {p.text:<{width}}   {p.compared}" for p in item.parts]
        width = max((len(n) for n, _, _ in item.numbers), default=0)
        for name, value, what in item.numbers:
            shown = "no data" if value is None else _shown(value)
            if name in item.shown:  # a chance, as odds
                shown = f"{_shown(value)} ({item.shown[name]})"
            lines.append(f"  {name:<{width}} = {shown:<10} {what}")
    return "\n".join(lines)

