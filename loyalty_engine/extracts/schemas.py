"""The data contract as pandera schemas, one per extract table (polars backend).

Why polars: the extracts live in DuckDB and reach millions of rows. DuckDB hands them to polars
as Arrow batches without copying, pandera's polars backend checks each batch with vectorised
expressions, and memory stays bounded by the batch size. (pandas would copy and box every value;
pandera's ibis backend runs in DuckDB but silently ignores `Field(unique=True)`.)

The frames arrive typed by validate.py: dates and numbers were parsed in SQL with TRY_CAST, the
text as written sits beside them in `_raw_<column>`, and facts that need the whole table
(`_duplicate_key`, `_account_known`) were computed in SQL, so every check here is row-local.
"""

from __future__ import annotations

from datetime import date

import pandera.polars as pa
import polars as pl

from loyalty_engine.contract import INTERACTION_KINDS
from loyalty_engine.i18n import LANGUAGES
from loyalty_engine.safe_text import NOT_ON_ONE_LINE

# What an email header carries as it is: an ASCII dot-atom address (no quotes, no IDN), so
# every owner address that passes here can be put into a digest's To header.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
EMAIL = rf"^{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})+$"


def parses(column: str, kind: str) -> pa.Check:
    """The text in the extract is a valid date/number (empty is left to `nullable`)."""
    return pa.Check(
        lambda data: data.lazyframe.select(pl.col(column).is_not_null() | pl.col(f"_raw_{column}").is_null()),
        name=f"is_{kind}",
    )


def unique_key() -> pa.Check:
    return pa.Check(lambda data: data.lazyframe.select(~pl.col("_duplicate_key").fill_null(False)), name="unique")


def account_exists() -> pa.Check:
    return pa.Check(lambda data: data.lazyframe.select(pl.col("_account_known").fill_null(True)), name="account_exists")


def not_after(night: date) -> pa.Check:
    return pa.Check.le(night, error="not_after_business_date")


def not_before(column: str, name: str, strictly: bool = False) -> pa.Check:
    """This date column lies after `column` in the same row (null on either side passes)."""

    def check(data):
        this = pl.col(data.key)
        ok = this > pl.col(column) if strictly else this >= pl.col(column)
        return data.lazyframe.select(ok.fill_null(True))

    return pa.Check(check, name=name)


def one_line() -> pa.Check:
    """No line break, tab or other control character (safe_text.py): the owner's name becomes
    the display name of a digest's To header, where a line break would start a header of its own."""
    return pa.Check(
        lambda data: data.lazyframe.select(pl.col(data.key).str.contains(NOT_ON_ONE_LINE).not_().fill_null(True)),
        name="is_one_line_text",
    )


def text(required: bool = True, checks: list[pa.Check] | None = None) -> pa.Column:
    return pa.Column(pl.String, nullable=not required, checks=checks or [])


def day(column: str, night: date | None, required: bool = True, extra: list[pa.Check] | None = None) -> pa.Column:
    checks = [parses(column, "date")] + ([not_after(night)] if night else []) + (extra or [])
    return pa.Column(pl.Date, nullable=not required, checks=checks)


def number(column: str, required: bool = True, extra: list[pa.Check] | None = None) -> pa.Column:
    return pa.Column(pl.Float64, nullable=not required, checks=[parses(column, "number")] + (extra or []))


def flag(column: str) -> pa.Column:
    """A yes/no column (true/false, yes/no, 1/0, ja/nein); optional, since every flag in the contract is."""
    return pa.Column(pl.Boolean, nullable=True, checks=[parses(column, "flag")])


def accounts_schema(night: date) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            "account_id": text(checks=[unique_key()]),
            "name": text(),
            "owner_email": text(False, [pa.Check.str_matches(EMAIL, error="is_email")]),
            "owner_name": text(False, [one_line()]),
            "status": text(False, [pa.Check.isin(["active", "closed"], error="status_is_active_or_closed")]),
            "segment": text(False),
            "language": text(False, [pa.Check.isin(list(LANGUAGES), error="language_is_" + "_or_".join(LANGUAGES))]),
            "supervisor_email": text(False, [pa.Check.str_matches(EMAIL, error="is_email")]),
            "customer_since": day("customer_since", night, required=False),
        },
        name="accounts",
    )


def orders_schema(night: date) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            "order_id": text(checks=[unique_key()]),
            "account_id": text(checks=[account_exists()]),
            "order_date": day("order_date", night),
            "amount": number("amount", extra=[pa.Check.ge(0, error="amount_never_negative")]),
            "currency": text(checks=[pa.Check.str_matches(r"^[A-Z]{3}$", error="is_currency_code")]),
        },
        name="orders",
    )


def complaints_schema(night: date) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            "complaint_id": text(checks=[unique_key()]),
            "account_id": text(checks=[account_exists()]),
            "opened_at": day("opened_at", night),
            "closed_at": day(
                "closed_at", night, required=False, extra=[not_before("opened_at", "closed_not_before_opened")]
            ),
            "category": text(False),
            "severity": text(False),
        },
        name="complaints",
    )


def contracts_schema(night: date) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            "contract_id": text(checks=[unique_key()]),
            "account_id": text(checks=[account_exists()]),
            # A renewal signed ahead starts, and a running contract ends, after the night: both are
            # real. Rules only count contracts started by the night they evaluate.
            "start_date": day("start_date", None),
            "end_date": day("end_date", None, extra=[not_before("start_date", "end_after_start", strictly=True)]),
            "annual_value": number("annual_value", required=False, extra=[pa.Check.ge(0, error="value_never_negative")]),
            "previous_contract_id": text(False),
        },
        name="contracts",
    )


def interactions_schema(night: date) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            "interaction_id": text(checks=[unique_key()]),
            "account_id": text(checks=[account_exists()]),
            "occurred_at": day("occurred_at", night),
            "kind": text(checks=[pa.Check.isin(list(INTERACTION_KINDS), error="kind_is_" + "_or_".join(INTERACTION_KINDS))]),
            "contact_person": text(False),
            "by_owner": flag("by_owner"),
            "competitor_mentioned": flag("competitor_mentioned"),
        },
        name="interactions",
    )


def surveys_schema(night: date) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            "survey_id": text(checks=[unique_key()]),
            "account_id": text(checks=[account_exists()]),
            "answered_at": day("answered_at", night),
            "nps": number("nps", extra=[pa.Check.isin([float(score) for score in range(11)], error="nps_is_whole_number_0_to_10")]),
            "satisfaction": number("satisfaction", required=False),
        },
        name="surveys",
    )


SCHEMAS = {
    "accounts": accounts_schema,
    "orders": orders_schema,
    "complaints": complaints_schema,
    "contracts": contracts_schema,
    "interactions": interactions_schema,
    "surveys": surveys_schema,
}
