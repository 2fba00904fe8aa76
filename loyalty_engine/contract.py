"""The data contract: which extract tables exist, their columns, and how each column is typed.

pandera schemas (schemas.py) check the values; this module only says what a table looks like,
so that loading (extracts.py) and validation share one description.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    kind: str = "text"  # text | date | number | flag (yes/no)
    required: bool = True  # the file must have this column ...
    # ... and each row a good value, else the row is kept out; a value_optional one is cleared.
    value_optional: bool = False
    lowercase: bool = False  # a code like 'Active' or 'DE' means the same as 'active', 'de'
    sql: str | None = None  # a derived column: how it is computed from the others


@dataclass(frozen=True)
class Table:
    name: str
    key: str  # the id column, unique per table
    columns: tuple[Column, ...]
    event_date: str | None = None  # the date a row happened on; windows in rules count on it
    optional: bool = False  # a night may come without this table; rules that need it are skipped
    derived: tuple[Column, ...] = ()  # computed while loading (contracts.term_months)

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    @property
    def required_values(self) -> list[str]:
        return [c.name for c in self.columns if c.required and not c.value_optional]

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns + self.derived if c.name == name), None)

    def create_sql(self) -> str:
        """The clean table, empty: for a night without this optional table, and for proving rules."""
        columns = ", ".join(f"{c.name} {SQL_TYPES[c.kind]}" for c in self.columns + self.derived)
        return f"CREATE OR REPLACE TABLE {self.name} ({columns})"


SQL_TYPES = {"text": "VARCHAR", "date": "DATE", "number": "DOUBLE", "flag": "BOOLEAN"}


ACCOUNTS = Table(
    "accounts",
    key="account_id",
    columns=(
        Column("account_id"),
        Column("name"),
        # An account without a usable owner still gets its warnings: routed to ops.
        Column("owner_email", value_optional=True),
        Column("owner_name", value_optional=True),
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
    # Months as people count them: 2026-01-01 … 2026-12-31 is 12, whatever the month lengths.
    derived=(Column("term_months", "number", sql="round(date_diff('day', start_date, end_date) / 30.4375)"),),
)

INTERACTIONS = Table(
    "interactions",
    key="interaction_id",
    event_date="occurred_at",
    optional=True,
    columns=(
        Column("interaction_id"),
        Column("account_id"),
        Column("occurred_at", "date"),
        Column("kind", lowercase=True),  # visit | call | email | meeting | escalation
        Column("contact_person", required=False),  # who at the customer
        Column("by_owner", "flag", required=False),  # the account owner made the contact
        Column("competitor_mentioned", "flag", required=False),
    ),
)
SURVEYS = Table(
    "surveys",
    key="survey_id",
    event_date="answered_at",
    optional=True,
    columns=(
        Column("survey_id"),
        Column("account_id"),
        Column("answered_at", "date"),
        Column("nps", "number"),  # 0-10: promoters 9-10, passives 7-8, detractors 0-6
        Column("satisfaction", "number", required=False),
    ),
)
INTERACTION_KINDS = ("visit", "call", "email", "meeting", "escalation")

# Accounts first: the other tables are checked against the account ids it holds.
TABLES: dict[str, Table] = {t.name: t for t in (ACCOUNTS, ORDERS, COMPLAINTS, CONTRACTS, INTERACTIONS, SURVEYS)}
