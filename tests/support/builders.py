"""Builders the tests share: hand-made extract folders, a settings file, nights run without Prefect."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NIGHT = date(2026, 11, 23)
COLUMNS = {
    "accounts": ["account_id", "name", "owner_email", "owner_name", "status"],
    "orders": ["order_id", "account_id", "order_date", "amount", "currency"],
    "complaints": ["complaint_id", "account_id", "opened_at", "closed_at"],
    "contracts": ["contract_id", "account_id", "start_date", "end_date", "annual_value", "previous_contract_id"],
}


def write_table(folder: Path, table: str, rows: list[dict], columns: list[str] | None = None) -> Path:
    """Write one extract table as a UTF-8 CSV; missing cells stay empty."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{table}.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns or COLUMNS[table], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_extract(root: Path, night: date = NIGHT, **tables: list[dict]) -> Path:
    """A night's folder <root>/<night>/ with all four tables (empty ones where none are given)."""
    folder = root / night.isoformat()
    for table in COLUMNS:
        write_table(folder, table, tables.get(table, []))
    return folder


def write_config(folder: Path, **email) -> Path:
    """A config.yaml in the folder, pointing at extracts/, data/, the shipped rules and outbox/."""
    smtp = email.pop("smtp", None)
    lines = [
        "extracts: {path: extracts}",
        "database: data/loyalty.duckdb",
        f"rules: {ROOT / 'rules'}",
        "email:",
        f"  mode: {email.get('mode', 'outbox')}",
        "  outbox_dir: outbox",
        '  sender: "Frühwarnsystem <fruehwarnung@example.com>"',
        "  retries: 0",
    ]
    if smtp:
        lines.append(f"  smtp: {smtp}")
    lines += ["digest: {language: de}", "schedule: {cron: '0 6 * * *', timezone: Europe/Berlin}"]
    path = folder / "config.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_nights(con, ruleset, *nights: date, snoozes=(), repeat_after_days: int = 7, digest=None, lost=None) -> None:
    """The evaluate task of the flow, without Prefect: evaluate, advance and route each night in
    turn; with `lost` (LostSettings) lost accounts held back first, with `digest` (DigestSettings)
    the digest policy after routing, as night.py runs them."""
    from loyalty_engine.lifecycle.lost import announce_lost, mark_lost
    from loyalty_engine.lifecycle.warnings import advance_warnings
    from loyalty_engine.lifecycle.routing import route_warnings
    from loyalty_engine.mail.budget import apply_budget, voices
    from loyalty_engine.rules.evaluate import evaluate_rules

    for night in nights:
        outcome = evaluate_rules(con, ruleset, night)
        if lost is not None:
            mark_lost(con, night, lost)
        advance_warnings(con, ruleset, night, outcome, list(snoozes), digest.repeat_after_days if digest else repeat_after_days)
        route_warnings(con, night)
        if digest is not None:
            apply_budget(con, night, digest.max_new, digest.cadence, digest.weekday, digest.immediate_severity, voices=voices(ruleset))
            announce_lost(con, night)
