"""config.yaml -> typed settings. Every error names the file, the line and the key."""

from __future__ import annotations

import difflib
import os
import re
import types
from datetime import datetime
from email.utils import getaddresses, parseaddr
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
from typing import Literal, Union, get_args, get_origin

import yaml
from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from loyalty_engine.contract import TABLES
from loyalty_engine.errors import ConfigError
from loyalty_engine.i18n import LANGUAGES
from loyalty_engine.safe_text import escaped
from loyalty_engine.yaml_files import load_yaml

DEFAULT_CONFIG = Path("config.yaml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CsvSettings(_Section):
    """How a CSV extract is written. None: detected from the file (see docs/extracts.md)."""

    delimiter: str | None = Field(default=None, min_length=1, max_length=1)
    decimal: Literal[".", ","] | None = None  # None: "," when the delimiter is ";", else "."
    date_format: str | None = None  # strptime codes, e.g. "%d.%m.%Y"; ISO and 31.10.2026 are always read
    encoding: Literal["utf-8", "latin-1", "cp1252"] | None = None  # None: BOM or valid UTF-8, else cp1252
    quote: str = Field(default='"', min_length=1, max_length=1)

    def merged(self, override: "CsvSettings | None") -> "CsvSettings":
        """These settings with the keys the override sets explicitly."""
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_unset=True))


class TableSettings(_Section):
    # snapshot: the file holds the whole table; append: new and changed rows, merged by id.
    mode: Literal["snapshot", "append"] = "snapshot"
    required: bool | None = None  # None: as the data contract says (interactions, surveys optional)
    csv: CsvSettings | None = None  # overrides of extracts.csv for this table


class ExtractSettings(_Section):
    path: Path
    csv: CsvSettings = CsvSettings()  # defaults for every table
    tables: dict[str, TableSettings] = {}

    @field_validator("tables")
    @classmethod
    def _tables(cls, value: dict[str, TableSettings]) -> dict[str, TableSettings]:
        for name in value:
            if name not in TABLES:
                raise ValueError(f"unknown table {name!r}; the tables are {', '.join(TABLES)}")
        return value

    def table(self, name: str) -> TableSettings:
        return self.tables.get(name, TableSettings())

    def csv_for(self, name: str) -> CsvSettings:
        return self.csv.merged(self.table(name).csv)


class GateSettings(_Section):
    """Limits the night's extracts must keep before any digest goes out. Shares are fractions: 0.2 = 20 %."""

    max_row_drop: float = Field(default=0.2, ge=0, le=1)  # fewer rows than the previous loaded night
    max_row_jump: float = Field(default=1.0, ge=0)  # more rows: 1.0 = more than double
    max_age_days: int = Field(default=7, ge=0)  # the newest order, before the business date
    # Other tables only where set: complaints and contracts are sparse.
    max_age_days_per_table: dict[str, int] = {}
    min_recent_order_share: float = Field(default=0.5, ge=0, le=1)  # last week against usual weekdays; 0: off
    max_new_warning_share: float = Field(default=0.25, ge=0, le=1)  # of all accounts, newly warned tonight
    flood_min_accounts: int = Field(default=20, ge=0)  # the flood check applies from this many new accounts

    @field_validator("max_age_days_per_table")
    @classmethod
    def _per_table(cls, value: dict[str, int]) -> dict[str, int]:
        for name, days in value.items():
            if name not in TABLES or not TABLES[name].event_date:
                raise ValueError(f"{name!r} is not a table with dated rows")
            if days < 0:
                raise ValueError(f"{name}: days must be 0 or more")
        return value


class ValidationSettings(_Section):
    max_bad_fraction: float = Field(default=0.05, ge=0, le=1)  # of a table's rows quarantined


class SmtpSettings(_Section):
    host: str = "localhost"
    port: int = 25
    security: Literal["none", "starttls", "ssl"] = "none"
    username: str | None = None
    # The password itself never sits in the config file, only the name of the variable holding it.
    password_env: str = "LOYALTY_SMTP_PASSWORD"
    timeout_seconds: float = 30

    def password(self) -> str | None:
        return os.environ.get(self.password_env)


class EmailSettings(_Section):
    mode: Literal["outbox", "smtp"] = "outbox"
    outbox_dir: Path = Path("outbox")
    sender: str
    # Who gets the warnings of accounts without a usable owner address, and notices about nights
    # that could not run.
    ops_recipients: list[str] = []
    smtp: SmtpSettings = SmtpSettings()
    # A failed delivery is retried within the run (Prefect task retries), doubling the wait each time.
    retries: int = Field(default=3, ge=0)
    retry_delay_seconds: float = Field(default=10, ge=0)

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        # One address, nothing that could end the From header or hide in it.
        if "@" not in parseaddr(value)[1] or len(getaddresses([value])) != 1 or escaped(value) != value:
            raise ValueError("not one email address such as 'Name <name@example.com>'")
        return value

    @field_validator("ops_recipients")
    @classmethod
    def _ops(cls, value: list[str]) -> list[str]:
        for address in value:
            if not is_address(address):
                raise ValueError(f"{address!r} is not an email address such as ops@example.com")
        return [address.strip().lower() for address in value]


class DigestSettings(_Section):
    language: Literal[LANGUAGES] = "de"  # for owners whose accounts name no language; i18n has one module per language
    max_accounts: int = Field(default=15, ge=1)  # shown in full, most important first; the rest one line each
    repeat_after_days: int = Field(default=7, ge=1)  # a warning still open is mentioned again after this
    currency: str = Field(default="EUR", pattern="^[A-Z]{3}$")  # of order amounts, for revenue figures
    max_new: int = Field(default=5, ge=1)  # new warnings per owner per digest, most at stake first; critical ones always; the rest wait
    cadence: Literal["daily", "weekly"] = "daily"  # weekly: one digest a week, on `weekday` (mail/budget.py)
    weekday: Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"] = "monday"
    immediate_severity: Literal["info", "low", "medium", "high", "critical"] = "critical"  # weekly: at or above this, mailed at once


class ScheduleSettings(_Section):
    cron: str = "0 6 * * *"
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            CronSim(value, datetime(2026, 1, 1))
        except CronSimError as error:
            raise ValueError(f"not a cron expression ({error})") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not an IANA time zone such as Europe/Berlin") from None
        return value


class LostSettings(_Section):
    """When an account counts as lost, for the backtest (docs/backtest.md gives the reasoning)."""

    no_order_days: int = Field(default=180, ge=1)  # silent this long after its last order: lost on that order
    regular_orders: int = Field(default=4, ge=1)  # orders in the year before the last one: it ordered regularly
    revenue_drop: float = Field(default=0.5, gt=0, lt=1)  # or a year's revenue fell by more than this share


class BacktestSettings(_Section):
    lost: LostSettings = LostSettings()
    horizon_days: int = Field(default=180, ge=1)  # a warning is right if the account was lost within this
    min_lead_days: int = Field(default=30, ge=0)  # a lost account counts as caught if warned this long before


class FeedbackSettings(_Section):
    """The owners' verdicts on warnings (loyalty_engine/feedback/): links in the digest, `loyalty feedback serve`."""

    # The public address of the verdict pages; digests carry verdict links only when it is set.
    base_url: str | None = None
    # The signing secret itself never sits in the config file (nor in the database or the mail
    # log), only the name of the variable holding it.
    secret_env: str = "LOYALTY_FEEDBACK_SECRET"
    link_days: int = Field(default=30, ge=1, le=366)  # a link works this many days after its night

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment or escaped(value) != value or " " in value:
            raise ValueError("not a web address such as 'https://fruehwarnung.example.com'")
        return value.rstrip("/")

    @field_validator("secret_env")
    @classmethod
    def _secret_env(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError("not the name of an environment variable such as LOYALTY_FEEDBACK_SECRET")
        return value

    def secret(self) -> bytes:
        """The signing secret from the environment; a ConfigError naming the variable when it is missing or short."""
        value = os.environ.get(self.secret_env, "")
        if len(value.encode("utf-8")) < MIN_SECRET_BYTES:
            state = "is not set" if not value else f"holds fewer than {MIN_SECRET_BYTES} bytes"
            raise ConfigError(
                f"feedback.secret_env: the environment variable {self.secret_env} {state}; "
                f"it must hold the secret that signs verdict links (e.g. `openssl rand -hex 32`)"
            )
        return value.encode("utf-8")


# A secret shorter than this is guessable; 32 random hex digits are 16 bytes of entropy.
MIN_SECRET_BYTES = 32


class SparkSettings(_Section):
    """Where Spark runs: a master URL (local[N], spark://host:7077, yarn, …) and its conf."""

    master: str = Field(default="local[2]", min_length=1)
    conf: dict[str, str | int | float | bool] = {}  # spark.* keys, e.g. {spark.driver.memory: 4g}

    @field_validator("conf")
    @classmethod
    def _spark_keys(cls, value: dict) -> dict:
        for key in value:
            if not key.startswith("spark."):
                raise ValueError(f"'{key}' is not a Spark setting (they start with 'spark.')")
        return value


class EngineSettings(_Section):
    """Where the rules are evaluated (docs/spark.md): DuckDB in the store's file, or Spark."""

    kind: Literal["duckdb", "spark"] = "duckdb"
    spark: SparkSettings = SparkSettings()


class Settings(_Section):
    extracts: ExtractSettings
    database: Path
    rules: Path
    email: EmailSettings
    digest: DigestSettings = DigestSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    gate: GateSettings = GateSettings()
    validation: ValidationSettings = ValidationSettings()
    backtest: BacktestSettings = BacktestSettings()
    feedback: FeedbackSettings = FeedbackSettings()
    engine: EngineSettings = EngineSettings()
    snoozes: Path = Path("snoozes.yaml")  # ops' snoozes; a missing file means none
    # Where the file came from; relative paths above are already resolved against its folder.
    source: Path = Field(default=Path("config.yaml"), exclude=True)


def is_address(text: str) -> bool:
    """A plain mail address a digest can be sent to: name@domain, no display name, no spaces.

    >>> is_address("anna@example.com"), is_address("Anna"), is_address("a@b@c")
    (True, False, False)
    """
    local, at, domain = text.strip().rpartition("@")
    return bool(local and at and "." in domain.strip(".")) and parseaddr(text.strip())[1] == text.strip() and " " not in text.strip()


def config_path(explicit: Path | None = None) -> Path:
    """The config file to use: --config, else $LOYALTY_CONFIG, else ./config.yaml."""
    if explicit is not None:
        return explicit
    return Path(os.environ.get("LOYALTY_CONFIG") or DEFAULT_CONFIG)


def load_settings(path: Path | None = None) -> Settings:
    """Read and check config.yaml; relative paths resolve against the file's folder.

    >>> load_settings(Path("config.yaml")).digest.language
    'de'
    """
    path = config_path(path)
    node, data = load_yaml(path, ConfigError, what="config file")  # safe, size- and depth-limited
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    try:
        settings = Settings.model_validate(data)
    except ValidationError as err:
        # Every mistake at once, in file order: fixing one and rerunning to meet the next wastes a night.
        found = [(_line_of(node, _loc(e)) or 0, _describe(path, node, e)) for e in err.errors()]
        problems = [line for _, line in sorted(found, key=lambda pair: pair[0])]
        error = ConfigError(problems[0])
        error.problems = [ConfigError(line) for line in problems]
        raise error from None
    base = path.resolve().parent
    return settings.model_copy(
        update={
            "extracts": settings.extracts.model_copy(update={"path": base / settings.extracts.path}),
            "database": base / settings.database,
            "rules": base / settings.rules,
            "snoozes": base / settings.snoozes,
            "email": settings.email.model_copy(update={"outbox_dir": base / settings.email.outbox_dir}),
            "source": path,
        }
    )


def _loc(error: dict) -> list:
    return [part for part in error["loc"] if isinstance(part, (str, int))]


def _describe(path: Path, root: yaml.Node | None, error: dict) -> str:
    """One line for a pydantic error: file:line: key: problem."""
    loc = _loc(error)
    key = ".".join(str(part) for part in loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        known = _known_keys(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.7)
        problem = "unknown key" + (f" (did you mean '{'.'.join(map(str, loc[:-1] + [close[0]]))}'?)" if close else "")
    elif kind == "missing":
        problem = "required key is missing"
    elif kind == "literal_error":
        problem = f"must be one of {error['ctx']['expected']}, got {error['input']!r}"
    elif kind == "value_error":  # our own validators: the message is already for people
        problem = f"{error['ctx']['error']}, got {error['input']!r}"
    else:
        problem = f"{error['msg'].lower()}, got {error['input']!r}"
    line = _line_of(root, loc)
    where = f"{path}:{line}" if line else str(path)
    return f"{where}: {key}: {problem}"


def _known_keys(loc: list) -> list[str]:
    """The keys the settings section at `loc` takes ([] when `loc` is no section)."""
    model: object = Settings
    for part in [*loc, None]:
        while get_origin(model) in (Union, types.UnionType):  # `X | None`: the section itself
            model = next((arg for arg in get_args(model) if arg is not type(None)), None)
        if get_origin(model) in (dict, list):  # a table's settings, a list's items
            model = get_args(model)[-1]
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        if part is None:
            return [name for name, field in model.model_fields.items() if not field.exclude]
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        model = field.annotation
    return []


def _line_of(node: yaml.Node | None, loc: list) -> int | None:
    """The line of the deepest YAML node on the error's path (the parent for a missing key)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is None:
                break
            line = match[0].start_mark.line + 1
            node = match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line
