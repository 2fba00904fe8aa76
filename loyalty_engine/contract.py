"""The data contract: which extract tables exist, their columns, and how each column is typed.

pandera schemas (schemas.py) check the values; this module only says what a table looks like,
so that loading (extracts.py) and validation share one description.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    kind: str = "text"  # text | date | number
    required: bool = True
    lowercase: bool = False  # a code like 'Active' or 'DE' means the same as 'active', 'de'


@dataclass(frozen=True)
class Table:
    name: str
    key: str  # the id column, unique per table
    columns: tuple[Column, ...]
    event_date: str | None = None  # the date a row happened on; windows in rules count on it

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]


ACCOUNTS = Table(
    "accounts",
    key="account_id",
    columns=(
        Column("account_id"),
        Column("name"),
        Column("owner_email"),
        Column("owner_name"),
        Column("status", required=False, lowercase=True),
        Column("segment", required=False),
        Column("language", required=False, lowercase=True),
        Column("supervisor_email", required=False),
        Column("customer_since", "date", required=False),
    ),
)
ORDERS = Table(
    "orders",
    key="order_id",
    event_date="order_date",
    columns=(
        Column("order_id"),
        Column("account_id"),
        Column("order_date", "date"),
        Column("amount", "number"),
        Column("currency"),
    ),
)
COMPLAINTS = Table(
    "complaints",
    key="complaint_id",
    event_date="opened_at",
    columns=(
        Column("complaint_id"),
        Column("account_id"),
        Column("opened_at", "date"),
        Column("closed_at", "date", required=False),
        Column("category", required=False),
        Column("severity", required=False),
    ),
)
CONTRACTS = Table(
    "contracts",
    key="contract_id",
    event_date="start_date",
    columns=(
        Column("contract_id"),
        Column("account_id"),
        Column("start_date", "date"),
        Column("end_date", "date"),
        Column("annual_value", "number", required=False),
        Column("previous_contract_id", required=False),
    ),
)

# Accounts first: the other tables are checked against the account ids it holds.
TABLES: dict[str, Table] = {t.name: t for t in (ACCOUNTS, ORDERS, COMPLAINTS, CONTRACTS)}
