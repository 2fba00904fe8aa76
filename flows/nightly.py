"""The nightly flow: load, gate and evaluate the night (one transaction) → render → deliver.

The flow only composes; each task wraps plain functions from `loyalty_engine`, opens the
DuckDB file itself (connections do not travel between tasks) and closes it when done. It starts
with the pre-flight `loyalty run` also makes (`loyalty_engine/preflight.py`: tonight, the rules
proven against it, the snoozes), and the whole run holds the database's lock, so a second run at
the same time stops at once. `loyalty run` has done all of that, and checked the extracts, before
it imported this module; the flow does it again for the scheduled runs of `loyalty serve`.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from loyalty_engine import store
from loyalty_engine.config import Settings, load_settings
from loyalty_engine.mail.delivery import DeliveryReport, deliver_digests, undelivered_earlier
from loyalty_engine.mail.digest import Digest
from loyalty_engine.errors import DeliveryError
from loyalty_engine.gate import Check, GateStop
from loyalty_engine.night import NightState, run_night
from loyalty_engine.mail.notices import tell_ops
from loyalty_engine.mail.mailing import night_digests
from loyalty_engine.preflight import preflight
from loyalty_engine.rules.loader import RuleSet
from loyalty_engine.lifecycle.snoozes import Snooze
from loyalty_engine.summary import NightSummary, summary_markdown

# The flow's own progress lines go to this child of Prefect's flow-run logger: Prefect keeps them
# with the run as it keeps every run log, and `loyalty run` shows exactly these on the terminal.
PROGRESS_LOGGER = "prefect.flow_runs.nightly"


def progress() -> logging.LoggerAdapter:
    """The run's logger for the flow's own progress lines (inside a flow run only)."""
    return get_run_logger().getChild(PROGRESS_LOGGER.rsplit(".", 1)[1])


@task(name="load, check and evaluate the night", cache_policy=NO_CACHE)
def night_task(settings: Settings, ruleset: RuleSet, snoozes: list[Snooze], night: date) -> NightState:
    # One connection and one transaction: the staged text lives in TEMP tables, and a night
    # stopped by the gate (or a crash) leaves the previous night's state as it was.
    with store.connect(settings.database) as con:
        return run_night(con, settings, ruleset, snoozes, night)


@task(name="render digests", cache_policy=NO_CACHE)
def render_task(settings: Settings, ruleset: RuleSet, night: date) -> tuple[list[Digest], int]:
    with store.connect(settings.database) as con:
        mailing, digests = night_digests(con, settings, ruleset, night)
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


@flow(name="nightly", log_prints=False)
def nightly(config_path: str = "config.yaml", night: date | None = None) -> NightSummary:
    """Load the night's extracts, check them, evaluate the warning rules and mail the digests."""
    settings = load_settings(Path(config_path))
    # The lock first, held to the end: `loyalty run` took it in its first second and the flow
    # joins it; a scheduled run takes it here. A second run stops at once (RunLocked, exit 7).
    with store.night_lock(settings.database, join=True, said=lambda line: progress().warning(line)):
        # A broken rule or snoozes file stops the night before any data is replaced.
        checked = preflight(settings, night)
        night = checked.night
        log_start(settings, night, checked.days_behind)
        summary = NightSummary(night=night, mode=settings.email.mode)
        try:
            state = night_task(settings, checked.ruleset, checked.snoozes, night)
        except GateStop as stop:
            # Nothing was replaced or advanced (a hold keeps nothing either; a release re-runs
            # the night). Ops hear of it, once per night.
            summary.checks = stop.checks
            log_checks(summary.checks)
            tell_ops(settings, night, stop, progress().warning)
            publish_summary(summary)
            raise
        summary.record_night(state, checked.ruleset)
        log_night(summary, state)
        digests, summary.unrouted = render_task(settings, checked.ruleset, night)
        log_digests(summary.unrouted, len(digests))
        delivered = deliver_with_retries(settings, night, digests)
        summary.record_delivery(delivered, settings.email)
        publish_summary(summary)
        if isinstance(delivered, DeliveryError):
            raise delivered
    return summary


def log_start(settings: Settings, night: date, days_behind: int) -> None:
    logger = progress()
    if days_behind > 1:
        # A scheduled run picks the newest folder: if tonight's export is missing, say so.
        logger.warning("the newest extract folder is %s, %d days before today; has an export failed?", night, days_behind)
    logger.info("Night %s: loading extracts from %s", night, settings.extracts.path)


def log_night(summary: NightSummary, state: NightState) -> None:
    """What the night's transaction did: rows loaded and kept out per table, the gate, the rules."""
    logger = progress()
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
    for rule_id, why in summary.skipped.items():
        logger.info("Rule %s skipped: %s", rule_id, why)
    signals = state.outcome.signals
    notices = ", ".join(f"{count} {notice}" for notice, count in sorted(summary.notices.items()))
    logger.info("Rules: %d signals for %d accounts; warnings: %s", len(signals), len({s.account_id for s in signals}), notices or "none")


def log_digests(unrouted: int, recipients: int) -> None:
    logger = progress()
    if unrouted:
        logger.warning("%d warnings have no usable owner address and email.ops_recipients is empty: nobody gets them", unrouted)
    logger.info("Digests: %d recipients to notify", recipients)


def deliver_with_retries(settings: Settings, night: date, digests: list[Digest]) -> DeliveryReport | DeliveryError:
    """The deliver task with email.retries; what still failed after the last try comes back as the error."""
    retries = settings.email.retries
    delays = exponential_backoff(backoff_factor=settings.email.retry_delay_seconds)(retries) if retries else 0
    delivered = deliver_task.with_options(retries=retries, retry_delay_seconds=delays, retry_jitter_factor=0)(
        settings, night, digests, return_state=True
    )
    report = delivered.result(raise_on_failure=False)
    if isinstance(report, BaseException) and not isinstance(report, DeliveryError):
        raise report
    return report


def log_checks(checks: list[Check]) -> None:
    logger = progress()
    levels = {"fail": logging.WARNING, "hold": logging.WARNING, "warn": logging.INFO}
    for check in checks:  # the passed ones are in the run summary and the nightly-gate artifact
        logger.log(levels.get(check.outcome.value, logging.DEBUG), "gate: %s", check.line())


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
