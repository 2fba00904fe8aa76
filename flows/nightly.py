"""The nightly flow: load, gate and evaluate the night (one transaction) → render → deliver.

The flow only composes; each task wraps plain functions from `loyalty_engine`, opens the
DuckDB file itself (connections do not travel between tasks) and closes it when done. The
whole run holds the database's lock, so a second run at the same time stops at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from loyalty_engine import store
from loyalty_engine.config import Settings, load_settings
from loyalty_engine.mail.delivery import DeliveryReport, deliver_digests, undelivered_earlier
from loyalty_engine.mail.digest import Digest, render_digests
from loyalty_engine.errors import DeliveryError
from loyalty_engine.extracts.staging import newest_extract_date
from loyalty_engine.gate import Check, GateStop
from loyalty_engine.night import NightState, run_night
from loyalty_engine.mail.notices import render_gate_notice
from loyalty_engine.mail.mailing import night_mailing
from loyalty_engine.rules.evaluate import prove_rules
from loyalty_engine.rules.loader import RuleSet, load_rules
from loyalty_engine.lifecycle.snoozes import Snooze, load_snoozes
from loyalty_engine.extracts.validate import TableCheck


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


@task(name="load, check and evaluate the night", cache_policy=NO_CACHE)
def night_task(settings: Settings, ruleset: RuleSet, snoozes: list[Snooze], night: date) -> NightState:
    # One connection and one transaction: the staged text lives in TEMP tables, and a night
    # stopped by the gate (or a crash) leaves the previous night's state as it was.
    with store.connect(settings.database) as con:
        return run_night(con, settings, ruleset, snoozes, night)


@task(name="render digests", cache_policy=NO_CACHE)
def render_task(settings: Settings, ruleset: RuleSet, night: date) -> tuple[list[Digest], int]:
    with store.connect(settings.database) as con:
        mailing = night_mailing(con, ruleset, night, settings.digest.language, settings.email.ops_recipients)
    digests = render_digests(
        mailing.warnings, night, settings.email.sender, settings.digest.language,
        settings.digest.max_accounts, mailing.portfolios, settings.digest.currency,
    )
    return digests, mailing.unrouted


@task(name="deliver digests", cache_policy=NO_CACHE)
def deliver_task(settings: Settings, night: date, digests: list[Digest]) -> DeliveryReport:
    with store.connect(settings.database) as con:
        # Digests of earlier nights that never went out (a crash, a server down all night) first,
        # also on a night that has nothing new to send.
        earlier = undelivered_earlier(con, night, settings.digest.repeat_after_days)
        report = deliver_digests(con, earlier + digests, settings.email)
    if report.failed:
        # Raising makes Prefect retry; the ledger makes the retry send only what is still missing.
        raise DeliveryError(report)
    return report


def night_to_run(settings: Settings, night: date | None) -> date:
    """The given night, else the newest extract folder, else today in the schedule's time zone."""
    if night is not None:
        return night
    newest = newest_extract_date(settings.extracts.path)
    return newest or datetime.now(ZoneInfo(settings.schedule.timezone)).date()


@flow(name="nightly", log_prints=False)
def nightly(config_path: str = "config.yaml", night: date | None = None) -> NightSummary:
    """Load the night's extracts, check them, evaluate the warning rules and mail the digests."""
    logger = get_run_logger()
    settings = load_settings(Path(config_path))
    defaulted, night = night is None, night_to_run(settings, night)
    today = datetime.now(ZoneInfo(settings.schedule.timezone)).date()
    if defaulted and (today - night).days > 1:
        # A scheduled run picks the newest folder: if tonight's export is missing, say so.
        logger.warning("the newest extract folder is %s, %d days before today; has an export failed?", night, (today - night).days)
    summary = NightSummary(night=night, mode=settings.email.mode)
    # A broken rule stops the night before any data is replaced.
    ruleset = load_rules(settings.rules)
    prove_rules(ruleset, night)
    snoozes = load_snoozes(settings.snoozes, {rule.id for rule in ruleset.rules})
    logger.info("Night %s: loading extracts from %s", night, settings.extracts.path)
    with store.night_lock(settings.database):
        try:
            state = night_task(settings, ruleset, snoozes, night)
        except GateStop as stop:
            # Nothing was replaced or advanced (a hold keeps nothing either; a release re-runs
            # the night). Ops hear of it, once per night.
            summary.checks = stop.checks
            log_checks(summary.checks)
            tell_ops(settings, night, stop)
            publish_summary(summary)
            raise
        _report_and_deliver(settings, ruleset, night, state, summary)
    return summary


def _report_and_deliver(settings: Settings, ruleset: RuleSet, night: date, state: NightState, summary: NightSummary) -> None:
    logger = get_run_logger()
    summary.tables, summary.checks, summary.notices = state.tables, state.checks, state.notices
    for check in summary.tables:
        if not check.present:
            logger.info("%-10s absent tonight (optional)", check.table)
            continue
        logger.info(
            "%-10s %9s rows loaded, %7s quarantined  (%s)",
            check.table, f"{check.rows_loaded:,}", f"{check.rows_quarantined:,}", check.source,
        )
        for reason in check.reasons:
            logger.info("%-10s   quarantined: %s", "", reason)
    log_checks(summary.checks)
    outcome = state.outcome
    for rule in ruleset.rules:
        if rule.enabled and rule.id not in outcome.skipped:
            summary.warnings[rule.id] = sum(1 for signal in outcome.signals if signal.rule_id == rule.id)
    summary.no_data, summary.skipped = outcome.no_data, outcome.skipped
    for rule_id, why in outcome.skipped.items():
        logger.info("Rule %s skipped: %s", rule_id, why)
    notices = ", ".join(f"{count} {notice}" for notice, count in sorted(summary.notices.items()))
    logger.info("Rules: %d signals for %d accounts; warnings: %s", len(outcome.signals), len({s.account_id for s in outcome.signals}), notices or "none")

    digests, summary.unrouted = render_task(settings, ruleset, night)
    if summary.unrouted:
        logger.warning("%d warnings have no usable owner address and email.ops_recipients is empty: nobody gets them", summary.unrouted)
    logger.info("Digests: %d recipients to notify", len(digests))
    retries = settings.email.retries
    delays = exponential_backoff(backoff_factor=settings.email.retry_delay_seconds)(retries) if retries else 0
    delivered = deliver_task.with_options(retries=retries, retry_delay_seconds=delays, retry_jitter_factor=0)(
        settings, night, digests, return_state=True
    )
    report = delivered.result(raise_on_failure=False)
    if isinstance(report, BaseException) and not isinstance(report, DeliveryError):
        raise report
    summary.delivery = report.args[0] if isinstance(report, DeliveryError) else report
    if settings.email.mode == "outbox":
        summary.outbox = settings.email.outbox_dir / night.isoformat()
    publish_summary(summary)
    if isinstance(report, BaseException):
        raise report


def log_checks(checks: list[Check]) -> None:
    logger = get_run_logger()
    levels = {"fail": logging.WARNING, "hold": logging.WARNING, "warn": logging.INFO}
    for check in checks:  # the passed ones are in the run summary and the nightly-gate artifact
        logger.log(levels.get(check.outcome.value, logging.DEBUG), "gate: %s", check.line())


def tell_ops(settings: Settings, night: date, stop: GateStop) -> None:
    """Mail ops why the night stopped (once per night, kind and address, through the ledger)."""
    logger = get_run_logger()
    if not settings.email.ops_recipients:
        logger.warning("night %s stopped and email.ops_recipients is empty: nobody is told", night)
        return
    notices = render_gate_notice(night, settings.email.sender, settings.email.ops_recipients, settings.digest.language, stop)
    with store.connect(settings.database) as con:
        report = deliver_digests(con, notices, settings.email)
    for who, why in report.failed.items():
        logger.warning("notice to %s not delivered: %s", who, why)


def publish_summary(summary: NightSummary) -> None:
    """The night's figures as Prefect artifacts: a table and a short report."""
    rows = [
        {"table": c.table, "rows loaded": c.rows_loaded, "rows quarantined": c.rows_quarantined, "file": c.source}
        for c in summary.tables
    ]
    create_table_artifact(key="nightly-tables", table=rows, description=f"Extracts of {summary.night}")
    checks = [{"check": c.name, "table": c.table, "outcome": c.outcome.value, "figure": c.figure, "limit": c.limit} for c in summary.checks]
    create_table_artifact(key="nightly-gate", table=checks, description=f"Gate of {summary.night}")
    create_markdown_artifact(key="nightly-summary", markdown=summary_markdown(summary), description=f"Night {summary.night}")


def summary_markdown(summary: NightSummary) -> str:
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
