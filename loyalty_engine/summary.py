"""What a night did, in figures: the summary `loyalty run` prints and Prefect keeps as artifacts.

A plain record, filled by the nightly flow as the night goes on, so that the terminal, Prefect's
UI and the tests read the same numbers, and none of them needs Prefect to read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from loyalty_engine.config import EmailSettings
from loyalty_engine.errors import DeliveryError
from loyalty_engine.extracts.validate import TableCheck
from loyalty_engine.gate import Check
from loyalty_engine.mail.delivery import DeliveryReport
from loyalty_engine.night import NightState
from loyalty_engine.rules.loader import RuleSet


@dataclass
class NightSummary:
    night: date
    tables: list[TableCheck] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)  # the gate's, every one with figure, limit, outcome
    warnings: dict[str, int] = field(default_factory=dict)  # rule id -> accounts its condition held for
    notices: dict[str, int] = field(default_factory=dict)  # new, repeat, open, snoozed, … -> warnings
    unrouted: int = 0  # warnings with no owner address and no email.ops_recipients: mailed to nobody
    no_data: dict[str, int] = field(default_factory=dict)  # rule id -> accounts it could not judge
    skipped: dict[str, str] = field(default_factory=dict)  # rule id -> why it did not run
    delivery: DeliveryReport | None = None
    mode: str = "outbox"
    outbox: Path | None = None

    def record_night(self, state: NightState, ruleset: RuleSet) -> None:
        """Take the figures of the night's committed transaction: tables, checks, warnings."""
        self.tables, self.checks, self.notices = state.tables, state.checks, state.notices
        outcome = state.outcome
        for rule in ruleset.rules:
            if rule.enabled and rule.id not in outcome.skipped:
                self.warnings[rule.id] = sum(1 for signal in outcome.signals if signal.rule_id == rule.id)
        self.no_data, self.skipped = outcome.no_data, outcome.skipped

    def record_delivery(self, delivered: DeliveryReport | DeliveryError, email: EmailSettings) -> None:
        """Take what delivery did (a DeliveryError carries the report of what still failed)."""
        self.delivery = delivered.args[0] if isinstance(delivered, DeliveryError) else delivered
        if email.mode == "outbox":
            self.outbox = email.outbox_dir / self.night.isoformat()


def summary_markdown(summary: NightSummary) -> str:
    """The night as a short Markdown report (Prefect's `nightly-summary` artifact)."""
    lines = [f"# Night {summary.night}", "", "| gate check | outcome | figure | limit |", "|---|---|---|---|"]
    lines += [f"| {c.table} {c.name} | {c.outcome.value} | {c.figure} | {c.limit} |" for c in summary.checks]
    lines += ["", "| rule | condition held | accounts without data |", "|---|---:|---:|"]
    lines += [f"| {rule} | {count} | {summary.no_data.get(rule, 0)} |" for rule, count in summary.warnings.items()]
    lines += [f"| {rule} | skipped: {why} | |" for rule, why in summary.skipped.items()]
    if summary.notices:
        lines += ["", "Warnings: " + ", ".join(f"{count} {notice}" for notice, count in sorted(summary.notices.items())) + "."]
    report = summary.delivery
    if report is not None:
        lines += ["", f"Digests: {len(report.sent)} sent, {len(report.skipped)} already sent earlier, {len(report.failed)} failed."]
        lines += [f"- failed: {who}: {why}" for who, why in report.failed.items()]
    return "\n".join(lines)
