"""Builders the tests share: hand-made extract folders, a settings file, nights run without Prefect."""

from __future__ import annotations

import csv
from datetime import date, timedelta
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


# --- accounts built order by order, in days before NIGHT -----------------------------------


def ago(days: int) -> str:
    return (NIGHT - timedelta(days=days)).isoformat()


class Extract:
    """Builds a small extract account by account."""

    def __init__(self):
        self.accounts, self.orders, self.complaints, self.contracts = [], [], [], []

    def account(self, account_id: str, status: str = "active", owner: str = "anna") -> str:
        self.accounts.append(
            {"account_id": account_id, "name": f"Kunde {account_id}", "owner_email": f"{owner}@example.com",
             "owner_name": owner.title(), "status": status}
        )
        return account_id

    def order_on(self, account_id: str, *days_ago: int) -> None:
        for days in days_ago:
            self.orders.append({"order_id": f"O{len(self.orders) + 1}", "account_id": account_id,
                                "order_date": ago(days), "amount": "100.00", "currency": "EUR"})

    def complaint_on(self, account_id: str, *days_ago: int) -> None:
        for days in days_ago:
            self.complaints.append({"complaint_id": f"C{len(self.complaints) + 1}", "account_id": account_id,
                                    "opened_at": ago(days)})

    def contract(self, account_id: str, start: str, end: str) -> None:
        self.contracts.append({"contract_id": f"K{len(self.contracts) + 1}", "account_id": account_id,
                               "start_date": start, "end_date": end, "annual_value": "1000"})


def every(step: int, first: int, last: int) -> list[int]:
    """Days ago of an order every `step` days, from `first` days ago down to `last`."""
    return list(range(first, last - 1, -step))


def fading(last: int = 30) -> list[int]:
    """Weekly orders a year ago, then fortnightly, then monthly until `last` days ago: the order
    rate falls along a clear trend and the last quarter is thin for this account."""
    return every(7, 385, 270) + every(14, 260, 150) + every(30, last + 90, last)


def steady(step: int, last: int = 5) -> list[int]:
    """An order every `step` days for two years, the latest `last` days ago."""
    return every(step, last + (760 - last) // step * step, last)
