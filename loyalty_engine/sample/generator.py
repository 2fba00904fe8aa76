"""Sample extracts: a reproducible, realistic order book for the demo, the tests and the benchmarks.

`generate_sample` writes three years of extracts (accounts, orders, complaints, contracts and the
optional interactions and surveys) as they were exported on the last `nights` business days up
to the end date, one folder `<out>/<YYYY-MM-DD>/` per night, plus `ground_truth.csv` beside the
folders. Each night's folder holds only what was known that night: rows dated up to it (orders by
order_date, complaints by opened_at, contracts by start_date, interactions by occurred_at, surveys
by answered_at), complaints closed later still open, accounts won later left out, and accounts
closed only once they were.

The book is as hard as real order books are for rules with fixed thresholds (DESIGN.md,
"Warnings worth reading"; issue 14). Every account orders at its own rate, lognormal from 2 to
250 orders a year (two orders of magnitude), at its own regularity, with a mild season, a trend
and month-to-month noise; most complain rarely (0-2 a year), a few often, and complaints come
bunched; committed contract values are renegotiated at each renewal, now and then by 20-40 %
either way. Of the accounts not built for a rule or a group, about a third have heavy-tailed order
values, 15 % are strongly seasonal trades, 10 % are project buyers whose orders come in bursts,
one stable account in six pauses once for 1.5-4 months and comes back, and 5 % of all accounts
left 1-2 years ago and are still listed active (dormant). `_traits` says how each is made.

About a sixth of the accounts (regular customers) drift away: their orders fade to nothing,
complaints stop (inner resignation), renewals come shorter and smaller, inquiries thin out, and
now and then a competitor comes up, the contact person changes or the customer escalates. A
further ~1% of the accounts per shipped warning rule (at least 2 each) are built to show that
rule's sign robustly on the end date, and little else; and ~1% per loyalty group (at least 2
each): apostles (frequent orders, NPS 9-10), opportunists (rare orders, satisfied), hostages
(frequent orders, NPS <= 6 and many complaints), defectors (rare orders, NPS 4-6) and terrorists
(rare orders, NPS <= 3). Owners look after 50-300 accounts each (one per 120 accounts on average,
`_owners`).

`ground_truth.csv` has one row per account, relative to the end date (the last night):

- `pattern`: `stable`, `drifting`, `dormant` (left 1-2 years ago, still active in the ERP),
  `warning` (built to show the sign named in `scenario`) or `noise` (built like a stable account,
  but some rule's condition holds by chance: the false alarm a backtest has to live with). A
  `stable` account meets no rule's condition.
- `drift_started_on`: when a drifting account's order rate began to fade.
- `lost_on`, `lost_how`: when and how the account was lost, exactly as the backtest's definition
  (config `backtest.lost`, its defaults; docs/backtest.md) dates it: `stopped` on its last order
  (drifting and dormant accounts; a drifting account's last order may lie after the end date, or
  less than `no_order_days` before it, where the data cannot show it yet), or `shrank` at a month
  end. The backtest's definition also calls some plain accounts lost by chance: a rare buyer's
  long silence at the end, or a year's revenue halved by heavy tails, bursts or a slow year; the
  ground truth records those verdicts too, so that it agrees with `account_fates` on the data.
  Empty for the rest. A pause is never a loss: it is shorter than `no_order_days`.
- `signals`: the ids of the shipped rules (rules/*.yaml, live and shadow) that fire for the
  account on the end date, space-separated in the order of `RULES`, empty for none: what the
  engine itself says, run on the written files over as many nights as the rules' `for:` needs.
  For drifting accounts it is what their drift shows by then. Closed accounts get none.
- `scenario`: for `warning` accounts, the rule the account was built to trigger (most, not all,
  show it: a rule weighs the account against its own noise).
- `loyalty_group`: for the accounts built as one of the brief's groups, that group.
- `traits`: the traps the account carries, space-separated in the order of `TRAITS`: seasonal,
  bursty, paused, dormant, heavy_tailed, contract_cut (a renewal worth 20 % or more less than the
  one before, without a drift).
- `orders_per_year`, `complaints_per_year`: the account's own rates (before seasons and noise).
- `paused_from`, `paused_to`: a paused account's days without orders (paused_to may lie after
  the end date); the orders just before and just after the pause are on their edges.

Everything is drawn from one `numpy.random.default_rng(seed)`, vectorised over an
accounts x days matrix (in blocks of accounts, to bound memory), so the same arguments give
byte-identical files and 10,000 accounts take seconds.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from loyalty_engine.config import LostSettings

EPOCH = date(1970, 1, 1)
DAYS_PER_YEAR = 365.2425
DAYS_PER_MONTH = DAYS_PER_YEAR / 12
BLOCK = 2048  # accounts per block of the accounts x days matrix: ~18 MB per float array

DRIFTING_SHARE = 0.17
DORMANT_SHARE = 0.05  # accounts that left 1-2 years before the end date and are still listed active
NEW_SHARE = 0.15  # accounts won inside the three years
# Order rates: lognormal around two orders a month, from 2 a year to 250 (about five a week).
ORDERS_PER_YEAR, ORDER_RATE_SPREAD, ORDERS_PER_YEAR_RANGE = 24.0, 1.1, (2.0, 250.0)
REGULAR = 12.0  # orders a year from which a customer orders regularly: the ones that drift, lie dormant, pause
COMPLAINT_REGULARITY = 0.7  # complaints come bunched (one bad delivery, several complaints): gamma gaps, shape < 1
STEADY_COMPLAINTS = 2.0  # ... except for the accounts built for a rule or a group: spread out, so chance adds no sign
RENEWAL_LEAD = 90  # days before the drift start from which renewals are signed shorter
TERM_CHANGE = 0.05  # chance that a stable account moves to another usual term at a renewal
RENEWAL_SPREAD = 0.1  # lognormal sigma of a renewal's value change (volumes are renegotiated each time)
RENEWAL_JUMP = 0.12  # chance of a bigger move at a renewal: down to 60-85 % or up to 120-160 %
MONTHLY_NOISE = 30.0  # gamma shape of each account's month-to-month factor: about +-18%
ORDER_SPREAD = (0.35, 0.7)  # lognormal sigma of an order's amount around the account's typical amount
# The traps real order books set for fixed thresholds (ground_truth.csv's `traits`), as shares of
# the accounts that are not built for a rule or a group (stable, drifting and dormant ones):
HEAVY_TAILED_SHARE, HEAVY_SPREAD = 0.35, (1.0, 1.5)  # order amounts lognormal with this sigma
SEASONAL_SHARE, SEASON_PEAK = 0.15, (1.2, 1.8)  # von Mises concentration: 65-78 % of orders in 4 months
BURSTY_SHARE = 0.10  # project buyers: bursts of 10-30 days, then 45-150 quiet days
BURST_DAYS, QUIET_DAYS = (10, 30), (45, 150)
PAUSED_SHARE = 1 / 6  # of the stable accounts: one pause, 46-120 days from the last order to the next
PAUSE_GAP = (46, 118)  # plus at most 2 days to reach a working day
PORTFOLIO, PORTFOLIO_RANGE = 120, (55, 290)  # accounts per owner: mean, and the bounds (50-300 with slack)
OWNERS_PER_MANAGER = 8
CLOSED_SHARE = 0.85  # lost accounts the ERP has already closed (the rest are forgotten there)
SURVEYED_SHARE = 0.6  # accounts that answer the satisfaction survey (1-2 times a year)
SCENARIO_SHARE = 0.01  # accounts built to show one warning rule's sign, per rule ...
GROUP_SHARE = 0.01  # ... and built as one of the brief's loyalty groups, per group
SCENARIO_MIN = 2  # at least this many of each, as long as half of the eligible accounts stay plain

# The shipped rules (rules/*.yaml), whose warnings on the last night ground_truth.csv's `signals` reports.
SHIPPED_RULES = Path(__file__).resolve().parents[2] / "rules"
RULES = (
    "falling_order_frequency", "falling_order_value", "order_gap_beyond_rhythm",
    "sudden_zero_complaints", "complaint_spike",
    "falling_inquiries", "escalation_to_supervisor", "contact_person_changed", "competitor_mentioned",
    "owner_contact_thinning",
    "shorter_contracts", "smaller_contract_value",
    "nps_detractor",
)
GROUPS = ("apostle", "opportunist", "hostage", "defector", "terrorist")
WARNING_GROUPS = ("hostage", "defector", "terrorist")  # their low scores trigger nps_detractor

TRAITS = ("seasonal", "bursty", "paused", "dormant", "heavy_tailed", "contract_cut")
PATTERNS = ("stable", "drifting", "dormant", "warning", "noise")

# Interactions: the owner's visits, calls and meetings; the customer's calls, emails and meetings.
KINDS = ("visit", "call", "email", "meeting", "escalation")
OWNER_KINDS, OWNER_KIND_WEIGHTS = (0, 1, 3), [0.45, 0.4, 0.15]
INQUIRY_KINDS, INQUIRY_KIND_WEIGHTS = (1, 2, 3), [0.4, 0.45, 0.15]
SATISFACTION_BLANK = 0.3  # surveys whose optional satisfaction question was skipped

FIRST_NAMES = [
    "Anna", "Jonas", "Katrin", "Lukas", "Sabine", "Tobias", "Jürgen", "Sören", "Jörg", "Bärbel",
    "Claudia", "Stefan", "Petra", "Michael", "Andrea", "Thomas", "Birgit", "Matthias", "Özlem", "Frank",
]
SURNAMES = [
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz",
    "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder", "Neumann",
    "Schwarz", "Zimmermann", "Braun", "Krüger", "Hofmann", "Hartmann", "Lange", "Schmitt", "Werner",
    "Schmitz", "Krause", "Meier", "Lehmann", "Schulze", "Maier", "Köhler", "Herrmann", "König",
    "Walter", "Huber", "Kaiser", "Fuchs", "Peters", "Scholz", "Möller", "Weiß", "Jung", "Hahn",
    "Schubert", "Vogel", "Friedrich", "Keller", "Günther", "Berger", "Winkler", "Roth", "Beck",
    "Lorenz", "Baumann", "Franke", "Albrecht", "Schuster", "Ludwig", "Böhm", "Winter", "Kraus",
    "Schumacher", "Krämer", "Vogt", "Stein", "Jäger", "Sommer", "Groß", "Seidel", "Brandt", "Haas",
    "Schreiber", "Graf", "Dietrich", "Ziegler", "Kühn", "Pohl", "Engel", "Horn", "Busch",
    "Bergmann", "Voigt", "Sauer", "Arnold", "Pfeiffer", "Größ", "Büttner", "Gärtner", "Löffler",
    "Hübner", "Wößner", "Schönfeld", "Rößler", "Täuber", "Münch", "Fröhlich", "Sänger",
]
TRADES_AFTER = [  # "Müller Metallbau GmbH"
    "Metallbau", "Stahlbau", "Holzbau", "Maschinenbau", "Haustechnik", "Elektrotechnik",
    "Kältetechnik", "Fördertechnik", "Landtechnik", "Medizintechnik", "Feinmechanik", "Logistik",
    "Verpackungen", "Kunststofftechnik", "Bauelemente", "Präzisionsteile", "Gerätebau", "Anlagenbau",
    "Lüftungstechnik", "Werkzeugbau", "Oberflächentechnik", "Antriebstechnik", "Schweißtechnik",
    "Fahrzeugbau", "Gebäudereinigung", "Heizungsbau", "Möbelwerkstätten", "Präzisionsdrehteile",
]
TRADES_BEFORE = [  # "Bäckerei Größ KG"
    "Bäckerei", "Schreinerei", "Tischlerei", "Zimmerei", "Druckerei", "Gärtnerei", "Metzgerei",
    "Brauerei", "Spedition", "Autohaus", "Malerbetrieb", "Dachdeckerei", "Glaserei", "Schlosserei",
    "Möbelhaus", "Hotel", "Landhandel", "Baustoffhandel", "Getränkehandel", "Sägewerk",
]
LEGAL_FORMS = ["GmbH", "GmbH & Co. KG", "KG", "OHG", "AG", "e.K.", "UG (haftungsbeschränkt)"]
LEGAL_WEIGHTS = [0.45, 0.2, 0.1, 0.08, 0.04, 0.1, 0.03]

CATEGORIES = ["Lieferung", "Qualität", "Rechnung", "Service"]
CATEGORY_WEIGHTS = [0.35, 0.3, 0.2, 0.15]
SEVERITIES = ["low", "medium", "high"]
SEVERITY_WEIGHTS = [0.5, 0.35, 0.15]
TERMS = np.array([12, 24, 36])
TERM_WEIGHTS = [0.45, 0.4, 0.15]


@dataclass(frozen=True)
class SampleSummary:
    folder: Path  # the last night's extracts: <out>/<end_date>/
    end_date: date  # the last night: the end date, or the Friday before a weekend end date
    rows: dict[str, int]  # rows per extract table in the last night's folder
    drifting: int  # accounts drifting away (ground truth)
    lost: int  # of those, lost (their last order) on or before end_date
    folders: list[Path]  # every night's folder, oldest first (folders[-1] == folder)
    patterns: dict[str, int]  # accounts per ground-truth pattern (PATTERNS order)
    signals: dict[str, int]  # accounts per rule whose condition holds on end_date (RULES order)
    traits: dict[str, int] = field(default_factory=dict)  # accounts per trait (TRAITS order)
    owners: int = 0  # account owners


@dataclass(frozen=True)
class _Calendar:
    """The three-year window as day numbers (days since 1970-01-01), and how busy each day is."""

    first: int
    last: int
    days: np.ndarray  # first .. last
    busy: np.ndarray  # weekday/holiday factor per day, mean ~1 over a normal week
    month: np.ndarray  # month number (months since 1970-01) per day

    @classmethod
    def ending(cls, end: date) -> _Calendar:
        first, last = _day(_years_before(end, 3)) + 1, _day(end)
        days = np.arange(first, last + 1)
        return cls(first, last, days, _busy(days), _months(days))


def _months(days: np.ndarray) -> np.ndarray:
    """Month number (months since 1970-01) of each day number."""
    return days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)


def _busy(days: np.ndarray) -> np.ndarray:
    """How busy each day is for ordering: a weekday/holiday factor, mean ~1 over a normal week."""
    stamps = days.astype("datetime64[D]")
    months = stamps.astype("datetime64[M]")
    day_of_month = (stamps - months.astype("datetime64[D]")).astype(np.int64) + 1
    month_of_year = months.astype(np.int64) % 12 + 1
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    # B2B customers order on working days; hardly anyone between Christmas and New Year.
    saturday, sunday = 0.12, 0.02
    busy = np.select([weekday == 5, weekday == 6], [saturday, sunday], 1.0) * 7 / (5 + saturday + sunday)
    holidays = ((month_of_year == 12) & (day_of_month >= 24)) | ((month_of_year == 1) & (day_of_month == 1))
    return np.where(holidays, busy * 0.2, busy)


@dataclass
class _Book:
    """Per-account parameters, one array entry per account."""

    owner: np.ndarray
    customer_since: np.ndarray  # day number
    drifting: np.ndarray  # bool
    drift_start: np.ndarray  # day number; far future for stable accounts
    lost_on: np.ndarray  # day number: no order on or after it (the plan; the ground truth's is the last order)
    decay: np.ndarray  # exponent of the drift's decay curve: 1 linear, >1 fades faster
    dormant: np.ndarray  # bool: left long ago (lost_on), still listed active
    orders_per_month: np.ndarray
    amplitude: np.ndarray  # mild yearly seasonality: 1 + amplitude * sin
    kappa: np.ndarray  # strong seasonality (von Mises concentration), 0 for none
    phase: np.ndarray
    trend: np.ndarray  # log growth per year
    complaints_per_year: np.ndarray
    complaint_regularity: np.ndarray  # shape of the gamma gaps between complaints
    typical_amount: np.ndarray  # median order amount (EUR)
    order_spread: np.ndarray  # lognormal sigma of an order's amount
    regularity: np.ndarray  # shape of the gamma gaps between orders: 1 erratic, 5 like clockwork
    role: np.ndarray  # 'stable', 'drifting', 'dormant', a rule id from RULES or a group from GROUPS
    # What the scenarios change (neutral values for everyone else):
    orders_stop: np.ndarray  # day from which the account's order rhythm stops
    boost_from: np.ndarray  # days boost_from .. boost_to: the order rate times `boost`
    boost_to: np.ndarray
    boost: np.ndarray
    smaller_from: np.ndarray  # day from which orders are worth less and less, `smaller` times as much on the night
    smaller: np.ndarray
    complaints_stop: np.ndarray  # day from which no complaint comes any more
    inquiry_gap: np.ndarray  # days between the customer's own calls, emails and meetings
    inquiries_stop: np.ndarray  # day from which the customer asks nothing any more
    visit_gap: np.ndarray  # days between the owner's visits, calls and meetings
    visits_stop: np.ndarray  # day after which the owner makes no contact any more
    contact_change: np.ndarray  # day from which another person at the customer is in touch
    escalation_on: np.ndarray  # day the customer escalates to the owner's supervisor
    competitor_on: np.ndarray  # day the customer brings up a competitor's offer
    surveyed: np.ndarray  # bool: answers the satisfaction survey
    nps_level: np.ndarray  # the account's usual score
    # The traits (set in _traits; neutral for everyone else):
    bursty: np.ndarray  # bool: orders come in project bursts
    burst_row: np.ndarray  # the account's row in burst_start/burst_end, -1 for none
    burst_start: np.ndarray  # (bursty accounts, cycles): day number of each burst's first day
    burst_end: np.ndarray  # ... and of the day after its last
    burst_factor: np.ndarray  # order rate inside a burst, as a multiple of the account's mean rate
    pause_from: np.ndarray  # first day without orders of a pause; far future for none
    pause_to: np.ndarray  # last day without orders of a pause


def generate_sample(
    out: Path, accounts: int = 200, seed: int = 7, end_date: date | None = None, nights: int = 1, rules: Path | None = None
) -> SampleSummary:
    """Write sample extracts for `accounts` accounts over three years up to end_date (default today).

    Files: <out>/<night>/{accounts,orders,complaints,contracts,interactions,surveys}.csv for each of
    the last `nights` business days (Mon-Fri) up to end_date (a weekend end date means the Friday
    before), and <out>/ground_truth.csv relative to the last night. The data depends on (accounts,
    seed, last night) only: more nights add earlier folders, they do not change the last one.
    The ground truth's `signals` are the warnings `rules` (default: the shipped catalogue) fire
    on the last night, as the engine evaluates them.
    """
    if accounts < 1:
        raise ValueError(f"accounts must be at least 1, not {accounts}")
    if nights < 1:
        raise ValueError(f"nights must be at least 1, not {nights}")
    dates = _business_days(end_date or date.today(), nights)
    end = dates[-1]
    rng = np.random.default_rng(seed)
    calendar = _Calendar.ending(end)
    owners, owner = _owners(rng, accounts)
    book = _book(rng, accounts, calendar, owner)
    orders, complaints, volume, later = _events(rng, book, calendar)
    tables = {
        "accounts": _accounts_table(rng, book, calendar, owners, volume),
        "orders": orders,
        "complaints": complaints,
        "contracts": _contracts(rng, book, calendar),
        "interactions": _interactions(rng, book, calendar),
        "surveys": _surveys(rng, book, calendar),
    }
    out = Path(out)
    folders = []
    for night in dates:
        folder = out / night.isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        for name, table in tables.items():
            _write_csv(_as_of(name, table, night), folder / f"{name}.csv")
        folders.append(folder)
    fired = _fired(out, end, accounts, Path(rules) if rules else SHIPPED_RULES)
    lost_on, lost_how = _fates(orders, later, book, calendar)
    truth = _ground_truth(book, fired, lost_on, lost_how, tables["contracts"], calendar.last)
    _write_csv(truth, out / "ground_truth.csv")
    return SampleSummary(
        folder=folders[-1],
        end_date=end,
        rows={name: _as_of(name, table, end).height for name, table in tables.items()},
        drifting=int(book.drifting.sum()),
        lost=int((book.drifting & (lost_on <= calendar.last)).sum()),
        folders=folders,
        patterns={p: int((truth["pattern"] == p).sum()) for p in PATTERNS},
        signals={rule: int(fired[rule].sum()) for rule in RULES},
        traits={t: int(truth["traits"].str.contains(rf"\b{t}\b").sum()) for t in TRAITS},
        owners=len(owners),
    )


def _business_days(end: date, count: int) -> list[date]:
    """The last `count` Mondays-Fridays up to end, oldest first."""
    last = np.busday_offset(np.datetime64(end, "D"), 0, roll="backward")
    days = np.busday_offset(last, np.arange(-count + 1, 1))
    return [d.item() for d in days]


# Each table's event date: a night's extract holds the rows dated up to the night.
EVENT_DATES = {
    "orders": "order_date", "complaints": "opened_at", "contracts": "start_date",
    "interactions": "occurred_at", "surveys": "answered_at",
}


def _as_of(name: str, table: pl.DataFrame, night: date) -> pl.DataFrame:
    """The table as the night's extract shows it, without the generator's own columns (`_…`)."""
    if name == "accounts":
        closed = pl.col("_closed_from").is_not_null() & (pl.col("_closed_from") <= night)
        table = table.filter(pl.col("customer_since") <= night).with_columns(
            status=pl.when(closed).then(pl.lit("closed")).otherwise(pl.lit("active"))
        )
    elif name == "complaints":
        table = table.filter(pl.col("opened_at") <= night).with_columns(
            closed_at=pl.when(pl.col("_closed") <= night).then(pl.col("_closed"))
        )
    else:
        table = table.filter(pl.col(EVENT_DATES[name]) <= night)
    return table.select(c for c in table.columns if not c.startswith("_"))


def _owners(rng: np.random.Generator, n: int) -> tuple[list[dict[str, str]], np.ndarray]:
    """The account owners with German names, the sales managers they report to, and each
    account's owner.

    A salesperson looks after 50-300 accounts (the brief), so there is one owner per PORTFOLIO
    (120) accounts on average: 200 accounts have 2 owners, 10,000 have 83, 100,000 have 833; a
    book under 180 accounts has one owner, who then holds fewer than 50. Portfolios differ in
    size (lognormal weights, kept within PORTFOLIO_RANGE while the book allows it). One sales
    manager leads up to OWNERS_PER_MANAGER owners.
    """
    count = max(1, round(n / PORTFOLIO))
    sizes = _portfolios(rng, n, count)
    owner = rng.permutation(np.repeat(np.arange(count), sizes))
    managers = -(-count // OWNERS_PER_MANAGER)
    people = _people(rng, count + managers)
    bosses = [email for _, email in people[count:]]
    owners = [
        {"name": name, "email": email, "supervisor": bosses[i % managers]}
        for i, (name, email) in enumerate(people[:count])
    ]
    return owners, owner


def _portfolios(rng: np.random.Generator, n: int, count: int) -> np.ndarray:
    """Accounts per owner: `count` sizes summing to n, spread like real portfolios (lognormal,
    sigma 0.4) but within PORTFOLIO_RANGE (widened when n / count lies outside it)."""
    low, high = min(PORTFOLIO_RANGE[0], n / count), max(PORTFOLIO_RANGE[1], n / count)
    sizes = rng.lognormal(0.0, 0.4, count)
    sizes *= n / sizes.sum()
    for _ in range(100):  # clip, then spread what clipping moved over the sizes still inside
        sizes = np.clip(sizes, low, high)
        inside = (sizes > low) & (sizes < high)
        missing = n - sizes.sum()
        if abs(missing) < 1e-6 or not inside.any():
            break
        sizes[inside] += missing * sizes[inside] / sizes[inside].sum()
    whole = np.floor(sizes).astype(np.int64)
    # The accounts left over by rounding down go to the largest remainders.
    whole[np.argsort(whole - sizes, kind="stable")[: n - whole.sum()]] += 1
    return whole


def _people(rng: np.random.Generator, count: int) -> list[tuple[str, str]]:
    """(name, email) of `count` different people: distinct first name x surname pairs, and a
    number in the email once the pairs run out (over ~240,000 accounts)."""
    pairs = len(FIRST_NAMES) * len(SURNAMES)
    chosen = rng.permutation(pairs)[np.arange(count) % pairs]
    people = []
    for i, pair in enumerate(chosen):
        given, family = FIRST_NAMES[pair // len(SURNAMES)], SURNAMES[pair % len(SURNAMES)]
        people.append((f"{given} {family}", _email(given, family, i // pairs + 1)))
    return people


def _email(given: str, family: str, number: int = 1) -> str:
    local = f"{given}.{family}".lower()
    for umlaut, plain in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ß", "ss")):
        local = local.replace(umlaut, plain)
    return f"{local}{number if number > 1 else ''}@example.com"


def _book(rng: np.random.Generator, n: int, calendar: _Calendar, owner: np.ndarray) -> _Book:
    # Most accounts are older than the window; some were won inside it.
    years_before = np.minimum(rng.exponential(6.0, n), 40.0)
    customer_since = calendar.first - 1 - (years_before * DAYS_PER_YEAR).astype(np.int64)
    new = rng.random(n) < NEW_SHARE
    won_inside = rng.integers(calendar.first, calendar.last - 180, size=n, endpoint=True)
    customer_since = np.where(new, won_inside, customer_since)

    # Order rhythm: real books mix customers who order a few times a year with ones who order
    # several times a week, so rates spread over two orders of magnitude (lognormal).
    orders_per_year = np.clip(rng.lognormal(np.log(ORDERS_PER_YEAR), ORDER_RATE_SPREAD, n), *ORDERS_PER_YEAR_RANGE)
    regular = orders_per_year >= REGULAR

    # Drifting accounts are regular customers of at least a year's standing when the drift
    # starts: the backtest counts a loss only after regular orders (backtest.lost), so the
    # ground truth and the data agree on what was lost.
    candidates = np.flatnonzero(regular)
    drifting = np.zeros(n, dtype=bool)
    drifting[rng.choice(candidates, size=min(round(DRIFTING_SHARE * n), candidates.size), replace=False)] = True
    far = calendar.last + 100_000  # stable accounts: a drift and a loss that never come
    start = rng.integers(calendar.last - 730, calendar.last - 30, size=n, endpoint=True)
    duration = rng.integers(120, 300, size=n, endpoint=True)  # 4-10 months to zero
    drift_start = np.where(drifting, start, far)
    lost_on = np.where(drifting, start + duration, far)
    # Dormant accounts: regular customers who stopped at once 1-2 years before the end date (a
    # plant closed, a buyer went elsewhere) and that nobody closed in the ERP. The window still
    # shows the year before the stop, at two orders a month or more, so that the backtest sees
    # regular orders before it (backtest.lost) as surely as the ground truth.
    candidates = np.flatnonzero((orders_per_year >= 2 * REGULAR) & ~drifting)
    dormant = np.zeros(n, dtype=bool)
    dormant[rng.choice(candidates, size=min(round(DORMANT_SHARE * n), candidates.size), replace=False)] = True
    stop = rng.integers(calendar.last - 730, calendar.last - 365, size=n, endpoint=True)
    drift_start = np.where(dormant, stop - 1, drift_start)  # no fade: the rate falls to 0 in a day
    lost_on = np.where(dormant, stop, lost_on)
    settled = drift_start - 400 - rng.integers(0, 2000, size=n)
    customer_since = np.where(drifting | dormant, np.minimum(customer_since, settled), customer_since)

    # Complaints: most accounts complain rarely (0-2 a year), a few often; customers with
    # problems are likelier to drift away.
    complaints_per_year = np.minimum(
        np.where(drifting, rng.lognormal(np.log(4.0), 0.9, n), rng.lognormal(np.log(0.8), 1.1, n)), 40.0
    )
    book = _Book(
        owner=owner,
        customer_since=customer_since,
        drifting=drifting,
        drift_start=drift_start,
        lost_on=lost_on,
        decay=rng.uniform(1.0, 2.5, n),
        dormant=dormant,
        orders_per_month=orders_per_year / 12,
        amplitude=rng.uniform(0.0, 0.4, n),
        kappa=np.zeros(n),
        phase=rng.uniform(0.0, 2 * np.pi, n),
        trend=rng.normal(0.0, 0.06, n),
        complaints_per_year=complaints_per_year,
        complaint_regularity=np.full(n, COMPLAINT_REGULARITY),
        # From replenishment like clockwork (shape 4) to a little more erratic than chance (0.8).
        regularity=np.exp(rng.uniform(np.log(0.8), np.log(4.0), n)),
        typical_amount=np.clip(rng.lognormal(np.log(1500.0), 0.75, n), 120.0, 12_000.0),
        order_spread=rng.uniform(*ORDER_SPREAD, n),
        role=np.select([drifting, dormant], ["drifting", "dormant"], "stable").astype(object),
        orders_stop=np.full(n, far),
        boost_from=np.full(n, far),
        boost_to=np.full(n, far),
        boost=np.ones(n),
        smaller_from=np.full(n, far),
        smaller=np.ones(n),
        complaints_stop=drift_start.copy(),  # inner resignation: complaints stop when the drift starts
        inquiry_gap=rng.uniform(10.0, 20.0, n),  # about 1.5-3 a month
        inquiries_stop=np.full(n, far),
        visit_gap=rng.uniform(28.0, 56.0, n),  # every 4-8 weeks
        visits_stop=lost_on - 1,
        contact_change=np.full(n, far),
        escalation_on=np.full(n, far),
        competitor_on=np.full(n, far),
        surveyed=rng.random(n) < SURVEYED_SHARE,
        nps_level=rng.choice([8, 9], size=n, p=[0.55, 0.45]),
        bursty=np.zeros(n, dtype=bool),
        burst_row=np.full(n, -1),
        burst_start=np.zeros((0, 0), dtype=np.int64),
        burst_end=np.zeros((0, 0), dtype=np.int64),
        burst_factor=np.ones(n),
        pause_from=np.full(n, far),
        pause_to=np.full(n, far),
    )
    _drift_signs(rng, book, calendar)
    # Scenario and group accounts: long-standing customers (3+ years before the window), so every
    # window of every rule sees their history; _scenarios gives them their order rates.
    eligible = np.flatnonzero(~drifting & ~dormant & (customer_since < calendar.first - 1100))
    roles = RULES + GROUPS
    wanted = [max(SCENARIO_MIN, round((SCENARIO_SHARE if r in RULES else GROUP_SHARE) * n)) for r in roles]
    chosen = rng.permutation(eligible)
    taken = 0
    for role, count in zip(roles, _fair_shares(wanted, eligible.size // 2)):
        book.role[chosen[taken:taken + count]] = role
        taken += count
    _scenarios(rng, book, calendar)
    _traits(rng, book, calendar)
    return book


def _traits(rng: np.random.Generator, book: _Book, calendar: _Calendar) -> None:
    """Give the plain accounts (stable, drifting, dormant; not the ones built for a rule or a
    group) the traps of real order books, each to its share of them:

    - heavy_tailed: order amounts lognormal with sigma 1.0-1.5 (the others 0.35-0.7), so a
      quarter's revenue swings by half without meaning anything;
    - seasonal: a trade with a season (von Mises over the year), 65-78 % of the orders in its
      four busiest months; customers with two orders a month or more, so that the off-season
      still sees an order now and then and its silence does not pass for a loss;
    - bursty: project buyers, whose orders come in bursts of 10-30 days with 45-150 quiet days
      between them (at least 6 orders a year, so a burst holds more than one order);
    - paused: one stable account in six pauses once (a plant shut for a refit, a project
      between phases): no order for 46-120 days, then orders as before. The order before and
      the one after are placed on the pause's edges (stocking up, restarting), so the gap is
      exactly that long and never reaches the 180 days after which the backtest counts a loss.
      The pause may still run on the end date.
    - dormant accounts (chosen in _book) and contract cuts (in _contracts) are traits too.
    """
    n, night = book.owner.size, calendar.last
    plain = np.isin(book.role, ["stable", "drifting", "dormant"])
    rate = book.orders_per_month * 12

    def pick(where: np.ndarray, count: float) -> np.ndarray:
        chosen = np.zeros(n, dtype=bool)
        pool = np.flatnonzero(where)
        chosen[rng.choice(pool, size=min(round(count), pool.size), replace=False)] = True
        return chosen

    heavy = pick(plain, HEAVY_TAILED_SHARE * plain.sum())
    book.order_spread = np.where(heavy, rng.uniform(*HEAVY_SPREAD, n), book.order_spread)
    seasonal = pick(plain & (rate >= 2 * REGULAR), SEASONAL_SHARE * plain.sum())
    book.kappa = np.where(seasonal, rng.uniform(*SEASON_PEAK, n), 0.0)
    book.amplitude = np.where(seasonal, 0.0, book.amplitude)
    bursty = pick(plain & ~seasonal & ~book.dormant & (rate >= 6), BURSTY_SHARE * plain.sum())
    book.bursty = bursty
    # Bursts: cycles of a quiet stretch then a burst, from before the window to past any fade.
    rows = np.flatnonzero(bursty)
    cycles = -(-(night - calendar.first + 400) // (QUIET_DAYS[0] + BURST_DAYS[0])) + 1
    quiet = rng.integers(*QUIET_DAYS, (rows.size, cycles), endpoint=True)
    burst = rng.integers(*BURST_DAYS, (rows.size, cycles), endpoint=True)
    offset = calendar.first - (rng.random(rows.size) * (quiet[:, 0] + burst[:, 0])).astype(np.int64)
    book.burst_start = offset[:, None] + np.cumsum(quiet + burst, axis=1) - burst
    book.burst_end = book.burst_start + burst
    book.burst_row[rows] = np.arange(rows.size)
    # Inside a burst the account orders at its mean rate times (quiet + burst) / burst.
    book.burst_factor[rows] = (quiet + burst).sum(axis=1) / burst.sum(axis=1)
    book.regularity = np.where(bursty, np.maximum(book.regularity, 1.5), book.regularity)  # a project's orders follow each other

    stable = book.role == "stable"
    can_pause = stable & ~bursty & (rate >= 8) & (book.customer_since <= night - 200)
    paused = pick(can_pause, PAUSED_SHARE * stable.sum())
    earliest = np.maximum(calendar.first + 30, book.customer_since + 60)
    before = _working_day(earliest + (rng.random(n) * (night - 10 - earliest)).astype(np.int64), backward=True)
    after = _working_day(before + rng.integers(*PAUSE_GAP, n, endpoint=True), backward=False)
    book.pause_from = np.where(paused, before + 1, book.pause_from)
    book.pause_to = np.where(paused, after - 1, book.pause_to)


def _fair_shares(wanted: list[int], budget: int) -> list[int]:
    """`wanted` as it is if the budget allows, else handed out one at a time in turn."""
    if sum(wanted) <= budget:
        return wanted
    given = [0] * len(wanted)
    while budget > 0:
        for i, want in enumerate(wanted):
            if budget > 0 and given[i] < want:
                given[i] += 1
                budget -= 1
    return given


def _drift_signs(rng: np.random.Generator, book: _Book, calendar: _Calendar) -> None:
    """What else drifting accounts show: fewer inquiries (in _interactions), lower scores (in
    _surveys), and now and then an escalation before the drift, a new contact person around its
    start, a competitor's offer during it."""
    n, drifting = book.owner.size, book.drifting
    end = np.minimum(book.lost_on, calendar.last + 1)  # the drift's days up to the night
    book.escalation_on = np.where(drifting & (rng.random(n) < 0.2),
                                  book.drift_start - rng.integers(5, 45, n, endpoint=True), book.escalation_on)
    book.contact_change = np.where(drifting & (rng.random(n) < 0.25),
                                   book.drift_start + rng.integers(-60, 30, n, endpoint=True), book.contact_change)
    during = book.drift_start + (rng.random(n) * (end - book.drift_start)).astype(np.int64)
    book.competitor_on = np.where(drifting & (rng.random(n) < 0.3), during, book.competitor_on)


def _scenarios(rng: np.random.Generator, book: _Book, calendar: _Calendar) -> None:
    """Give each scenario account the sign of its rule, robustly on the night and nothing else
    by design; and each group account its order rhythm and scores."""
    n, night = book.owner.size, calendar.last
    role = book.role

    def uniform(low: float, high: float) -> np.ndarray:
        return rng.uniform(low, high, n)

    def days_back(low: int, high: int) -> np.ndarray:
        return night - rng.integers(low, high, n, endpoint=True)

    # A steady business underneath (>= 3 orders a month, hardly seasonal, few complaints), so that
    # chance does not add other signs to the one built in.
    steady = np.isin(role, RULES)
    book.orders_per_month = np.where(steady, np.maximum(book.orders_per_month, 3.0), book.orders_per_month)
    book.regularity = np.where(steady, np.maximum(book.regularity, 2.5), book.regularity)
    book.amplitude = np.where(steady, np.minimum(book.amplitude, 0.1), book.amplitude)
    book.complaints_per_year = np.where(steady, np.minimum(book.complaints_per_year, 1.0), book.complaints_per_year)
    book.complaint_regularity = np.where(steady | np.isin(role, GROUPS), STEADY_COMPLAINTS, book.complaint_regularity)
    book.order_spread = np.where(steady, np.minimum(book.order_spread, 0.5), book.order_spread)

    # falling_order_frequency: a customer whose order rate has fallen steadily for a year and a
    # half, to a sixth of what it was a year ago (2-4 orders a month now), and who still orders
    # (one order placed in the last week in _events, so it is not overdue as well).
    is_ = role == "falling_order_frequency"
    book.orders_per_month = np.where(is_, uniform(2, 4), book.orders_per_month)
    book.trend = np.where(is_, -np.log(6), book.trend)
    book.regularity = np.where(is_, np.maximum(book.regularity, uniform(3, 5)), book.regularity)
    # falling_order_value: orders keep coming as often (>= 4 a month, steady), each worth less
    # month by month over the last year, down to 10-20 % of the value.
    is_ = role == "falling_order_value"
    book.orders_per_month = np.where(is_, np.maximum(book.orders_per_month, uniform(4, 10)), book.orders_per_month)
    book.regularity = np.where(is_, np.maximum(book.regularity, uniform(3, 5)), book.regularity)
    book.trend = np.where(is_, 0.0, book.trend)
    book.order_spread = np.where(is_, np.minimum(book.order_spread, 0.3), book.order_spread)
    book.smaller_from = np.where(is_, night - 365, book.smaller_from)
    book.smaller = np.where(is_, uniform(0.1, 0.2), book.smaller)
    # order_gap_beyond_rhythm: a customer ordering twice a week or more, silent for 48-56 days.
    is_ = role == "order_gap_beyond_rhythm"
    silence = rng.integers(48, 56, n, endpoint=True)
    book.orders_per_month = np.where(is_, np.maximum(book.orders_per_month, uniform(8, 12)), book.orders_per_month)
    book.regularity = np.where(is_, np.maximum(book.regularity, uniform(3, 5)), book.regularity)
    book.orders_stop = np.where(is_, night - silence + 1, book.orders_stop)
    # sudden_zero_complaints: a complainer goes quiet 110 days before the night (three complaints
    # in the year before are placed in _events), still ordering as before.
    is_ = role == "sudden_zero_complaints"
    book.complaints_per_year = np.where(is_, uniform(6, 12), book.complaints_per_year)
    book.complaints_stop = np.where(is_, night - 110, book.complaints_stop)
    # complaint_spike: a quiet customer (<= 1 complaint a year) files 4-6 in the last 26 days (_events).
    # falling_inquiries: a customer who asked about twice a month or more asks nothing for 100 days.
    is_ = role == "falling_inquiries"
    book.inquiry_gap = np.where(is_, uniform(10, 15), book.inquiry_gap)
    book.inquiries_stop = np.where(is_, night - 100, book.inquiries_stop)
    # escalation_to_supervisor: one escalation 1-25 days before the night.
    book.escalation_on = np.where(role == "escalation_to_supervisor", days_back(1, 25), book.escalation_on)
    # contact_person_changed: someone new 30-70 days ago (the owner meets them: _interactions).
    book.contact_change = np.where(role == "contact_person_changed", days_back(30, 70), book.contact_change)
    # competitor_mentioned: 2-50 days ago.
    book.competitor_on = np.where(role == "competitor_mentioned", days_back(2, 50), book.competitor_on)
    # owner_contact_thinning: the owner's last visit or call was 120-170 days ago.
    book.visits_stop = np.where(role == "owner_contact_thinning", days_back(120, 170), book.visits_stop)
    # shorter_contracts, smaller_contract_value: at the latest renewal (_contracts).
    # nps_detractor: the latest score falls 3-5 points (_surveys).
    book.surveyed |= role == "nps_detractor"

    # The loyalty groups: order rhythm x satisfaction (rules/groups.py has the engine's thresholds).
    frequent = np.isin(role, ["apostle", "hostage"])
    rare = np.isin(role, ["opportunist", "defector", "terrorist"])
    book.orders_per_month = np.where(frequent, uniform(4, 12), book.orders_per_month)
    book.orders_per_month = np.where(rare, uniform(1.5, 2.5) / 12, book.orders_per_month)
    book.regularity = np.where(rare, uniform(2, 3), book.regularity)
    quiet = np.isin(role, ["apostle", "opportunist", "defector", "terrorist"])
    book.complaints_per_year = np.where(quiet, np.minimum(book.complaints_per_year, 1.0), book.complaints_per_year)
    book.complaints_per_year = np.where(role == "hostage", uniform(8, 14), book.complaints_per_year)
    book.surveyed |= frequent | rare


def _events(
    rng: np.random.Generator, book: _Book, calendar: _Calendar
) -> tuple[pl.DataFrame, pl.DataFrame, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Orders, complaints and each account's order volume, from daily rates over the accounts x
    days matrix; and (account, day) of the orders a drifting account still places after the
    end date, which only the ground truth's lost_on needs (its last order)."""
    days, n, night = calendar.days, book.owner.size, calendar.last
    order_parts, complaint_parts = [], []
    for lo in range(0, n, BLOCK):
        block = np.arange(lo, min(lo + BLOCK, n))
        order_rate, complaint_rate = _rates(rng, book, block, days, calendar.busy, night)
        order_parts.append(_rhythm(rng, order_rate, book.regularity[block], lo))
        complaint_parts.append(_rhythm(rng, complaint_rate, book.complaint_regularity[block], lo))
    # After the end date, for the drifting accounts whose fade is not over yet.
    fading = np.flatnonzero(book.drifting & (book.lost_on > night + 1))
    later = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    if fading.size:
        future = np.arange(night + 1, book.lost_on[fading].max())
        rate, _ = _rates(rng, book, fading, future, _busy(future), night)
        account, day = _rhythm(rng, rate, book.regularity[fading], 0)
        later = (fading[account], day + night + 1)

    def members(role: str) -> np.ndarray:
        return np.flatnonzero(book.role == role)

    # Scenario events placed by hand: the few late orders of a fading customer (one in the last
    # week, so it is not overdue as well), the complaints before a sudden silence, a spike of 4-6.
    # And the orders on a pause's edges: the last before it, the first after it (if by the night).
    fading, smaller = members("falling_order_frequency"), members("falling_order_value")
    paused = np.flatnonzero(book.pause_from <= night)
    restarted = paused[book.pause_to[paused] < night]
    order_parts.append(_placed(rng, calendar, [
        (fading, night - 5, night), (smaller, night - 5, night),
        (paused, book.pause_from[paused] - 1, book.pause_from[paused] - 1),
        (restarted, book.pause_to[restarted] + 1, book.pause_to[restarted] + 1),
    ]))
    silent, spike = members("sudden_zero_complaints"), members("complaint_spike")
    more = spike[rng.random(spike.size) < 0.6]
    complaint_parts.append(_placed(rng, calendar, [
        (silent, night - 200, night - 120), (silent, night - 320, night - 220), (silent, night - 440, night - 330),
        *[(spike, night - 26, night)] * 4, (more, night - 26, night), (more[: more.size // 2], night - 26, night),
        (spike, night - 380, night - 40),  # the one complaint of its usual year, its baseline
    ]))
    # A drifting account silent for no_order_days has left (and the backtest dates its loss to the
    # order before the silence): an order after that would be a stray, and is left out.
    account, offset = (np.concatenate(column) for column in zip(*order_parts))
    every_account, every_day = np.concatenate([account, later[0]]), np.concatenate([offset + calendar.first, later[1]])
    stray = _strays(book, every_account, every_day, LostSettings().no_order_days)
    kept = ~stray[: account.size]
    later = (later[0][~stray[account.size:]], later[1][~stray[account.size:]])
    orders, volume = _orders_table(rng, book, calendar, [(account[kept], offset[kept])])
    return orders, _complaints_table(rng, calendar, complaint_parts), volume, later


def _strays(book: _Book, account: np.ndarray, day: np.ndarray, silence: int) -> np.ndarray:
    """Whether each order comes after a drifting account's first silence of `silence` days that
    began during its drift."""
    rows = np.flatnonzero(book.drifting[account])
    rows = rows[np.lexsort((day[rows], account[rows]))]
    a, d = account[rows], day[rows]
    same = np.concatenate([[False], a[1:] == a[:-1]])
    previous = np.concatenate([[0], d[:-1]])
    starts = same & (d - previous >= silence) & (previous >= book.drift_start[a])
    first = np.full(book.owner.size, np.iinfo(np.int64).max)
    np.minimum.at(first, a[starts], d[starts])
    stray = np.zeros(account.size, dtype=bool)
    stray[rows] = d >= first[a]
    return stray


def _rates(
    rng: np.random.Generator, book: _Book, accounts: np.ndarray, days: np.ndarray, busy: np.ndarray, night: int
) -> tuple[np.ndarray, np.ndarray]:
    """Expected orders and complaints per day, for the accounts x days (orders_per_month is the
    rate on the night, before season and noise)."""
    size, at = accounts.size, accounts[:, None]
    month = _months(days)
    month -= month[0]
    # What every account has in common for orders and complaints: season, trend, month-to-month
    # noise, working days, nothing before the customer was won, and nothing while it pauses.
    angle = 2 * np.pi * days / DAYS_PER_YEAR + book.phase[at]
    season = 1 + book.amplitude[at] * np.sin(angle)
    strong = np.flatnonzero(book.kappa[accounts] > 0)  # the seasonal trades (their amplitude is 0)
    if strong.size:
        kappa = book.kappa[accounts[strong], None]
        season[strong] = np.exp(kappa * np.cos(angle[strong])) / np.i0(kappa)
    trend = np.exp(book.trend[at] * (days - night) / DAYS_PER_YEAR)
    noise = rng.gamma(MONTHLY_NOISE, 1 / MONTHLY_NOISE, size=(size, month[-1] + 1))[:, month]
    shape = season * trend * noise * busy * (days >= book.customer_since[at])
    paused = np.flatnonzero(book.pause_from[accounts] <= days[-1])
    if paused.size:
        p = accounts[paused, None]
        shape[paused] *= (days < book.pause_from[p]) | (days > book.pause_to[p])
    # The drift: the order rate fades from 1 at drift start to 0 at lost_on.
    fade = (days - book.drift_start[at]) / np.maximum(book.lost_on - book.drift_start, 1)[at]
    remaining = np.clip(1 - fade, 0.0, 1.0) ** book.decay[at]
    order_rate = shape * remaining * (book.orders_per_month[at] / DAYS_PER_MONTH)
    # Project buyers: the same orders a year, all inside their bursts.
    bursty = np.flatnonzero(book.bursty[accounts])
    if bursty.size:
        rows = book.burst_row[accounts[bursty]]
        inside = np.zeros((bursty.size, days.size), dtype=bool)
        for start, end in zip(book.burst_start[rows].T, book.burst_end[rows].T):
            inside |= (days >= start[:, None]) & (days < end[:, None])
        order_rate[bursty] *= inside * book.burst_factor[accounts[bursty], None]
    # Scenarios: a stretch of busier ordering, then none.
    touched = np.flatnonzero((book.orders_stop[accounts] <= days[-1]) | (book.boost[accounts] != 1.0))
    if touched.size:
        t = accounts[touched][:, None]
        boosted = (days >= book.boost_from[t]) & (days <= book.boost_to[t])
        order_rate[touched] *= np.where(boosted, book.boost[t], 1.0) * (days < book.orders_stop[t])
    # Inner resignation: complaints stop when the drift starts.
    complaint_rate = shape * (days < book.complaints_stop[at]) * (book.complaints_per_year[at] / DAYS_PER_YEAR)
    return order_rate, complaint_rate


def _placed(
    rng: np.random.Generator, calendar: _Calendar, spans: list[tuple[np.ndarray, int | np.ndarray, int | np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """(account index, day offset): one event per account and (accounts, first day, last day),
    on a random day of the span (the Friday before if that is a weekend). The days are the same
    for all the accounts of a span, or one per account."""
    account = np.concatenate([members for members, _, _ in spans])
    low = np.concatenate([np.broadcast_to(first, members.shape) for members, first, _ in spans])
    high = np.concatenate([np.broadcast_to(last, members.shape) for members, _, last in spans])
    day = _working_day(rng.integers(low, high, endpoint=True), backward=True)
    return account, day - calendar.first


def _working_day(day: np.ndarray, backward: bool) -> np.ndarray:
    """Saturdays and Sundays moved to the Friday before, or to the Monday after."""
    weekday = (day + 3) % 7
    if backward:
        return day - np.select([weekday == 5, weekday == 6], [1, 2], 0)
    return day + np.select([weekday == 5, weekday == 6], [2, 1], 0)


def _rhythm(
    rng: np.random.Generator, rate: np.ndarray, regularity: np.ndarray, first_account: int
) -> tuple[np.ndarray, np.ndarray]:
    """(account index, day offset) per event, for events that come at a rhythm rather than at random.

    B2B customers reorder at fairly steady intervals, so counts vary less than Poisson counts
    (and a quiet quarter means more). The gaps between events are gamma distributed with shape
    `regularity` (1 would be Poisson), measured in expected events: the cumulative daily rate,
    which carries season, drift and weekends.
    """
    size, days = rate.shape
    expected = np.cumsum(rate, axis=1)
    total = expected[:, -1]
    draws = np.ceil(total + 6 * np.sqrt(total) + 10).astype(np.int64)  # more gaps than will fit
    account = np.repeat(np.arange(size), draws)
    gaps = rng.gamma(regularity[account], 1 / regularity[account])
    first = np.concatenate(([0], np.cumsum(draws)[:-1]))
    gaps[first] *= rng.random(size)  # the rhythm was already running when the window opened
    at = np.cumsum(gaps)
    at -= np.repeat(at[first] - gaps[first], draws)  # restart the running sum for each account
    keep = at <= total[account]
    account, at = account[keep], at[keep]
    # One sorted line of all accounts' cumulative rates, each account lifted above the one before.
    lift = np.ceil(total.max()) + 1
    cell = np.searchsorted((expected + lift * np.arange(size)[:, None]).ravel(), at + lift * account)
    return account + first_account, cell % days


def _chronological(parts: list[tuple[np.ndarray, np.ndarray]], calendar: _Calendar) -> tuple[np.ndarray, np.ndarray]:
    """All blocks' (account, day offset) pairs as (account, day number), in time order."""
    account = np.concatenate([p[0] for p in parts])
    day = np.concatenate([p[1] for p in parts])
    order = np.lexsort((account, day))  # by day, then account: ids run in time like an ERP's
    return account[order], day[order] + calendar.first


def _orders_table(rng: np.random.Generator, book: _Book, calendar: _Calendar, parts) -> tuple[pl.DataFrame, np.ndarray]:
    account, day = _chronological(parts, calendar)
    # From smaller_from on, each order is worth less, down to `smaller` on the night.
    ramp = np.clip((day - book.smaller_from[account]) / np.maximum(calendar.last - book.smaller_from[account], 1), 0.0, 1.0)
    worth = 1.0 - (1.0 - book.smaller[account]) * ramp
    spread = book.order_spread[account]
    amount = np.round(book.typical_amount[account] * worth * np.exp(rng.normal(0.0, 1.0, account.size) * spread), 2)
    volume = np.bincount(account, weights=amount, minlength=book.owner.size)
    table = pl.DataFrame(
        {
            "order_id": _ids("O-", np.arange(1, account.size + 1), 7),
            "account_id": _account_ids(account),
            "order_date": _dates(day),
            "amount": amount,
            "currency": pl.repeat("EUR", account.size, eager=True),
            "_account": account,
            "_day": day,
        }
    )
    return table, volume


def _complaints_table(rng: np.random.Generator, calendar: _Calendar, parts) -> pl.DataFrame:
    account, opened = _chronological(parts, calendar)
    closed = opened + np.round(rng.lognormal(np.log(6.0), 0.9, account.size)).astype(np.int64)
    return pl.DataFrame(
        {
            "complaint_id": _ids("B-", np.arange(1, account.size + 1), 6),
            "account_id": _account_ids(account),
            "opened_at": _dates(opened),
            "closed_at": _dates(closed),  # per night: empty while still open (_as_of)
            "category": np.array(CATEGORIES)[rng.choice(len(CATEGORIES), account.size, p=CATEGORY_WEIGHTS)],
            "severity": np.array(SEVERITIES)[rng.choice(len(SEVERITIES), account.size, p=SEVERITY_WEIGHTS)],
            "_closed": _dates(closed),
            "_account": account,
            "_day": opened,
        }
    )


def _contracts(rng: np.random.Generator, book: _Book, calendar: _Calendar) -> pl.DataFrame:
    """Each account's chain of consecutive contracts, starting on the first of a month.

    The chain covers the window from the customer's start; renewals stop after end_date and at
    lost_on. A renewal during a drift is signed shorter and smaller. Otherwise the committed
    volume is renegotiated at each renewal: a few percent either way (lognormal, sigma
    RENEWAL_SPREAD), and now and then (RENEWAL_JUMP) a bigger move, down to 60-85 % or up to
    120-160 %, without meaning a loss; and now and then an account changes its usual term for good
    (the noise a contract rule has to live with). The contract scenarios renewed 0-25 days (to the month's start) before
    the night, shorter or smaller, and changed nothing before. The hidden column `_cut` marks a
    renewal worth 80 % or less of the one before that no drift explains (trait contract_cut).
    """
    n = book.owner.size
    term = rng.choice(TERMS, size=n, p=TERM_WEIGHTS)
    since_month = book.customer_since.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    joined_late = book.customer_since > _month_start(since_month)
    first_month = calendar.month[0] - rng.integers(0, term)  # the contract running at window start
    # Contract scenarios: a chain of the usual term whose latest renewal lies 0-25 days back (its month's start).
    shorter_now, smaller_now = book.role == "shorter_contracts", book.role == "smaller_contract_value"
    renewed = _months(calendar.last - rng.integers(0, 25, n, endpoint=True))  # news for 60 days (the rules' max_age)
    aligned = renewed - -(-(renewed - calendar.month[0]) // term) * term  # <= window start, > it - term
    first_month = np.where(shorter_now | smaller_now, aligned, first_month)
    start = np.maximum(first_month, since_month + joined_late)
    may_change = ~np.isin(book.role, RULES)  # scenario accounts keep their term: one sign each
    yearly_orders = book.orders_per_month * 12 * book.typical_amount * np.exp(book.order_spread**2 / 2)
    value = np.round(yearly_orders * rng.uniform(0.5, 0.9, n), -2)
    running = np.ones(n, dtype=bool)
    usual = term.copy()
    rows: list[tuple[np.ndarray, ...]] = []
    cut = np.zeros(n, dtype=bool)
    step = 0
    while running.any():
        rows.append((np.flatnonzero(running), start[running], term[running], value[running], np.full(running.sum(), step), cut[running]))
        renewal = start + term
        renewal_day = _month_start(renewal)
        running &= (renewal_day <= calendar.last) & (renewal_day < book.lost_on)
        # The decision to leave is made before the orders show it: renewals shortly before count too.
        in_drift = renewal_day >= book.drift_start - RENEWAL_LEAD
        changes = (rng.random(n) < TERM_CHANGE) & may_change
        usual = np.where(changes & ~in_drift, rng.choice(TERMS, size=n, p=TERM_WEIGHTS), usual)
        shorter = np.where(term >= 24, 12, 6)  # 36 or 24 -> 12, 12 -> 6
        jump = np.where(rng.random(n) < 0.5, rng.uniform(0.6, 0.85, n), rng.uniform(1.2, 1.6, n))
        usual_growth = np.where(rng.random(n) < RENEWAL_JUMP, jump, rng.lognormal(0.02, RENEWAL_SPREAD, n))
        # The scenario accounts renew at a steady few percent more: one sign each.
        usual_growth = np.where(may_change, usual_growth, 1 + rng.normal(0.03, 0.04, n))
        growth = np.where(in_drift, rng.uniform(0.4, 0.75, n), usual_growth)
        growth = np.where(smaller_now & (renewal == renewed), rng.uniform(0.5, 0.7, n), growth)
        term = np.where(in_drift | (shorter_now & (renewal == renewed)), shorter, usual)
        renewed_value = np.round(value * growth, -2)
        cut = ~in_drift & may_change & (renewed_value <= 0.8 * value)
        value = renewed_value
        start = renewal
        step += 1
    account, start, term, value, step, cut = (np.concatenate(column) for column in zip(*rows))
    order = np.lexsort((step, account))
    account, start, term, value, step, cut = account[order], start[order], term[order], value[order], step[order], cut[order]
    ids = _ids("V-", np.arange(1, account.size + 1), 6)
    previous = pl.Series([None], dtype=pl.String).append(ids[:-1])[: account.size]
    return pl.DataFrame(
        {
            "contract_id": ids,
            "account_id": _account_ids(account),
            "start_date": _dates(_month_start(start)),
            "end_date": _dates(_month_start(start + term) - 1),
            "annual_value": value,
            "previous_contract_id": _blank(previous, step == 0),
            "_account": account,
            "_day": _month_start(start),
            "_end": _month_start(start + term) - 1,
            "_cut": cut,
        }
    )


def _interactions(rng: np.random.Generator, book: _Book, calendar: _Calendar) -> pl.DataFrame:
    """The contact history: the owner's visits, calls and meetings every 4-8 weeks, the customer's
    own calls, emails and meetings 1.5-3 times a month (thinning out with a drift), and the
    scenarios' escalations, competitor mentions and new contact persons. All on working days.
    """
    n, night = book.owner.size, calendar.last
    begin = np.maximum(calendar.first, book.customer_since)
    gone = np.minimum(night, book.lost_on - 1)
    # The customer asks: steady, and fading like the orders during a drift.
    asked, asked_on = _lattice(rng, begin, np.minimum(gone, book.inquiries_stop - 1), book.inquiry_gap, 0.25)
    fade = (asked_on - book.drift_start[asked]) / np.maximum(book.lost_on - book.drift_start, 1)[asked]
    keep = rng.random(asked.size) < np.clip(1 - fade, 0.0, 1.0) ** book.decay[asked]
    asked, asked_on = asked[keep], asked_on[keep]
    # The owner calls on the customer.
    visited, visited_on = _lattice(rng, begin, np.minimum(gone, book.visits_stop), book.visit_gap, 0.2)
    # One-off events: escalations, competitors' offers, the owner meeting a new contact person.
    escalated = np.flatnonzero((book.escalation_on >= begin) & (book.escalation_on <= gone))
    rival = np.flatnonzero((book.competitor_on >= begin) & (book.competitor_on <= gone))
    met = np.flatnonzero(book.role == "contact_person_changed")
    met_on = book.contact_change[met] + rng.integers(0, 10, met.size, endpoint=True)

    parts = [  # (accounts, days, kinds, by the owner, a competitor mentioned)
        (asked, asked_on, np.array(INQUIRY_KINDS)[rng.choice(3, asked.size, p=INQUIRY_KIND_WEIGHTS)], False, False),
        (visited, visited_on, np.array(OWNER_KINDS)[rng.choice(3, visited.size, p=OWNER_KIND_WEIGHTS)], True, False),
        (escalated, book.escalation_on[escalated], KINDS.index("escalation"), False, False),
        (rival, book.competitor_on[rival], np.array([1, 3])[rng.integers(0, 2, rival.size)], False, True),  # call, meeting
        (met, met_on, KINDS.index("meeting"), True, False),
    ]
    account = np.concatenate([accounts for accounts, *_ in parts])
    day = np.concatenate([days for _, days, *_ in parts])
    kind = np.concatenate([np.broadcast_to(kinds, accounts.shape) for accounts, _, kinds, *_ in parts])
    by_owner = np.concatenate([np.full(accounts.size, owner) for accounts, _, _, owner, _ in parts])
    competitor = np.concatenate([np.full(accounts.size, mentioned) for accounts, *_, mentioned in parts])
    # Sales people work Monday to Friday: weekend dates move to the Monday (never after the night,
    # which is a working day itself).
    day = _working_day(day, backward=False)
    order = np.lexsort((account, day))
    account, day, kind, by_owner, competitor = account[order], day[order], kind[order], by_owner[order], competitor[order]
    # One contact person per account, another one from the day of a change on.
    contact = account + n * (day >= book.contact_change[account])
    names = pl.Series(_person_names(rng, 2 * n))
    return pl.DataFrame(
        {
            "interaction_id": _ids("I-", np.arange(1, account.size + 1), 7),
            "account_id": _account_ids(account),
            "occurred_at": _dates(day),
            "kind": np.array(KINDS)[kind],
            "contact_person": names.gather(contact),
            "by_owner": by_owner,
            "competitor_mentioned": competitor,
            "_account": account,
            "_day": day,
            "_kind": kind,
            "_contact": contact,
        }
    )


def _lattice(
    rng: np.random.Generator, begin: np.ndarray, end: np.ndarray, gap: np.ndarray, jitter: float
) -> tuple[np.ndarray, np.ndarray]:
    """(account index, day) of events at a steady pace: one every gap[i] days, each moved by up
    to jitter * gap, on the days begin[i] .. end[i]. Unlike a random rhythm, a steady pace never
    leaves a long silence by chance (two events lie at most (1 + 2 jitter) * gap apart)."""
    count = np.where(end >= begin, np.ceil((end - begin + 1) / gap).astype(np.int64) + 2, 0)
    account = np.repeat(np.arange(begin.size), count)
    k = np.arange(account.size) - np.repeat(np.cumsum(count) - count, count)
    spacing = gap[account]
    at = begin[account] + (rng.random(begin.size)[account] + k - 1 + rng.uniform(-jitter, jitter, account.size)) * spacing
    day = np.floor(at).astype(np.int64)
    keep = (day >= begin[account]) & (day <= end[account])
    return account[keep], day[keep]


def _surveys(rng: np.random.Generator, book: _Book, calendar: _Calendar) -> pl.DataFrame:
    """NPS surveys every 6-10 months for the surveyed accounts, from three months after they
    were won. Stable accounts score 7-10 around their usual level (never falling by 3 or more),
    drifting ones 3-6 points less once the drift has begun; the groups score as they are named."""
    n, night = book.owner.size, calendar.last
    begin = np.maximum(calendar.first, book.customer_since + 90)
    end = np.where(book.surveyed, np.minimum(night, book.lost_on - 1), begin - 1)
    account, day = _lattice(rng, begin, end, rng.uniform(183, 300, n), 0.1)
    day = _working_day(day, backward=False)
    order = np.lexsort((day, account))  # by account, then day
    account, day = account[order], day[order]
    role, rows = book.role[account], account.size
    nps = np.clip(book.nps_level[account] + rng.choice([-1, 0, 1], rows, p=[0.25, 0.5, 0.25]), 7, 10)
    nps = np.where(role == "apostle", rng.integers(9, 10, rows, endpoint=True), nps)
    nps = np.where(role == "hostage", rng.integers(3, 6, rows, endpoint=True), nps)
    nps = np.where(role == "defector", rng.integers(4, 6, rows, endpoint=True), nps)
    nps = np.where(role == "terrorist", rng.integers(0, 3, rows, endpoint=True), nps)
    drifted = day >= book.drift_start[account]
    nps = np.where(drifted, np.maximum(nps - rng.integers(3, 6, rows, endpoint=True), 0), nps)
    # nps_detractor: the latest score 3-5 points below the one before, answered in the last 50
    # days (the rule's news lasts 60); the warning groups' latest score as recent.
    newest = np.append(account[1:], -1) != account
    after_another = np.concatenate([[False], account[1:] == account[:-1]])
    recent = newest & np.isin(role, ("nps_detractor", *WARNING_GROUPS)) & (day < night - 50)
    day = np.where(recent, _working_day(night - rng.integers(3, 50, rows, endpoint=True), backward=True), day)
    latest = np.flatnonzero((role == "nps_detractor") & newest & after_another)
    nps[latest] = np.maximum(nps[latest - 1] - rng.integers(3, 5, latest.size, endpoint=True), 0)
    satisfaction = np.round(np.clip(1 + 0.4 * nps + rng.normal(0, 0.4, rows), 1, 5), 1)
    blank = rng.random(rows) < SATISFACTION_BLANK
    order = np.lexsort((account, day))  # ids in time order
    account, day, nps, satisfaction, blank = account[order], day[order], nps[order], satisfaction[order], blank[order]
    return pl.DataFrame(
        {
            "survey_id": _ids("S-", np.arange(1, rows + 1), 6),
            "account_id": _account_ids(account),
            "answered_at": _dates(day),
            "nps": nps.astype(np.int64),
            "satisfaction": _blank(pl.Series(satisfaction), blank),
            "_account": account,
            "_day": day,
        }
    )


def _person_names(rng: np.random.Generator, count: int) -> list[str]:
    """Contact persons at the customers: 'Petra Wößner'. The second half differs from the first
    in the surname, so a changed contact is always another name."""
    half = count // 2
    given = rng.integers(0, len(FIRST_NAMES), count)
    family = rng.integers(0, len(SURNAMES), half)
    family = np.concatenate([family, (family + rng.integers(1, len(SURNAMES), half)) % len(SURNAMES)])
    return [f"{FIRST_NAMES[g]} {SURNAMES[f]}" for g, f in zip(given, family)]


def _accounts_table(
    rng: np.random.Generator, book: _Book, calendar: _Calendar, owners: list[dict[str, str]], volume: np.ndarray
) -> pl.DataFrame:
    n = book.owner.size
    # Segment by order volume over the window: A the top 20%, B the next 30%, C the rest.
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(-volume, kind="stable")] = np.arange(n)
    segment = np.select([rank < 0.2 * n, rank < 0.5 * n], ["A", "B"], "C")
    # One owner in ten looks after international accounts, which mostly read English (none in a
    # book under 10 owners); the other owners' accounts read German, a few English.
    international = book.owner < len(owners) // 10
    language = np.where(rng.random(n) < np.where(international, 0.5, 0.05), "en", "de")
    # Lost accounts are closed in the ERP some 60 days after their last order (most of them).
    closes = book.drifting & (rng.random(n) < CLOSED_SHARE)
    return pl.DataFrame(
        {
            "account_id": _account_ids(np.arange(n)),
            "name": _company_names(rng, n),
            "owner_email": [owners[o]["email"] for o in book.owner],
            "owner_name": [owners[o]["name"] for o in book.owner],
            "status": np.full(n, "active"),  # per night (_as_of)
            "segment": segment,
            "language": language,
            "supervisor_email": [owners[o]["supervisor"] for o in book.owner],
            "customer_since": _dates(book.customer_since),
            "_closed_from": _blank(_dates(np.minimum(book.lost_on + 60, calendar.last + 1)), ~closes),
        }
    )


def _company_names(rng: np.random.Generator, n: int) -> list[str]:
    """German company names: surname x trade x legal form, in a few common shapes."""
    shapes = [
        "{family} {after}",  # Müller Metallbau GmbH
        "{before} {family}",  # Bäckerei Größ KG
        "{family} & Söhne",  # Schäfer & Söhne OHG
        "{family} & {partner}",  # Roth & Albrecht GmbH
        "Gebr. {family} {after}",  # Gebr. Köhler Stahlbau KG
    ]
    shape = rng.choice(len(shapes), size=n, p=[0.45, 0.3, 0.08, 0.07, 0.1])
    family = rng.integers(0, len(SURNAMES), size=n)
    partner = (family + rng.integers(1, len(SURNAMES), size=n)) % len(SURNAMES)  # never the same name twice
    after = rng.integers(0, len(TRADES_AFTER), size=n)
    before = rng.integers(0, len(TRADES_BEFORE), size=n)
    form = rng.choice(len(LEGAL_FORMS), size=n, p=LEGAL_WEIGHTS)
    return [
        shapes[shape[i]].format(
            family=SURNAMES[family[i]], partner=SURNAMES[partner[i]],
            after=TRADES_AFTER[after[i]], before=TRADES_BEFORE[before[i]],
        )
        + f" {LEGAL_FORMS[form[i]]}"
        for i in range(n)
    ]


def _fired(out: Path, night: date, n: int, rules: Path) -> dict[str, np.ndarray]:
    """Per rule, whether it fires for each account on the night: the real stages (staging,
    contract, rules, lifecycle) in a throwaway database, over as many nights before it as the
    rules' `for:` needs. The conditions are the engine's, not a copy that could drift from them."""
    from loyalty_engine import store
    from loyalty_engine.extracts.staging import stage_extracts
    from loyalty_engine.extracts.validate import validate_night
    from loyalty_engine.lifecycle.warnings import advance_warnings
    from loyalty_engine.rules.evaluate import evaluate_rules
    from loyalty_engine.rules.loader import load_rules

    ruleset = load_rules(rules)
    held = max(rule.for_nights for rule in ruleset.rules)
    with tempfile.TemporaryDirectory() as scratch, store.connect(Path(scratch) / "truth.duckdb") as con:
        con.execute("SET enable_progress_bar = false")  # the sample's own progress is said by the CLI
        validate_night(con, stage_extracts(con, out, night), night)
        for day in (night - timedelta(days=back) for back in range(held - 1, -1, -1)):
            advance_warnings(con, ruleset, day, evaluate_rules(con, ruleset, day), [], repeat_after_days=7)
        firing = con.execute(
            "SELECT CAST(substr(account_id, 3) AS INTEGER) - 1, rule_id FROM warning_nights WHERE night = ? AND state = 'firing'",
            [night],
        ).fetchall()
    fired = {rule: np.zeros(n, dtype=bool) for rule in RULES}
    for account, rule in firing:
        if rule in fired:
            fired[rule][account] = True
    return fired


def _newest_value(
    account: np.ndarray, day: np.ndarray, where: np.ndarray, value: np.ndarray, n: int, rank: int, missing=-1
) -> np.ndarray:
    """Per account, `value` of its newest (rank 0) or second-newest (rank 1) row among `where`,
    by day and then row (ids run in row order); `missing` where there is none."""
    rows = np.flatnonzero(where)
    rows = rows[np.lexsort((rows, day[rows], account[rows]))]
    per_account = np.bincount(account[rows], minlength=n)
    has = per_account > rank
    result = np.full(n, missing, dtype=np.result_type(value, np.asarray(missing)))
    result[has] = value[rows[np.cumsum(per_account)[has] - 1 - rank]]
    return result


def _median_gap(account: np.ndarray, day: np.ndarray, first: int, last: int, n: int) -> np.ndarray:
    """Per account, the median of the days between its distinct order days first .. last, the
    first of them counted from the order day before `first` (the `rhythm` metric, docs/rules.md);
    NaN without a gap."""
    upto = day <= last
    pairs = np.sort(account[upto].astype(np.int64) * 1_000_000 + day[upto])
    pairs = pairs[np.append(True, pairs[1:] != pairs[:-1])]  # one per order day
    a, d = pairs // 1_000_000, pairs % 1_000_000
    same = (a[1:] == a[:-1]) & (d[1:] >= first)  # gaps that end inside the window
    gap_account, gap = a[1:][same], (d[1:] - d[:-1])[same]
    gaps = np.sort(gap_account * 1_000_000 + gap)  # by account, then gap
    gap_account, gap = gaps // 1_000_000, gaps % 1_000_000
    per_account = np.bincount(gap_account, minlength=n)
    start = np.cumsum(per_account) - per_account
    median = np.full(n, np.nan)
    has = per_account > 0
    low = start[has] + (per_account[has] - 1) // 2
    high = start[has] + per_account[has] // 2
    median[has] = (gap[low] + gap[high]) / 2
    return median


def _fates(
    orders: pl.DataFrame, later: tuple[np.ndarray, np.ndarray], book: _Book, calendar: _Calendar
) -> tuple[np.ndarray, np.ndarray]:
    """Per account, the day it was lost and how (`stopped`, `shrank`, ''), as the backtest's
    definition of a loss (config `backtest.lost`, its defaults; docs/backtest.md) reads the orders:

    - stopped: at least `regular_orders` orders in the year up to the last order, then none for
      `no_order_days`: lost on the last order day. For the accounts made to leave (drifting,
      dormant) the generator knows the future: their last order may lie after the end date (the
      orders in `later`), or less than `no_order_days` before it; the data show it in time.
    - shrank: otherwise, the first month end (months complete by the end date) whose last twelve
      months' revenue is below (1 - revenue_drop) of the twelve before, with at least
      `regular_orders` orders in those. Heavy-tailed and bursty accounts get there by chance.

    Any other account, stable in whatever way, is never lost here; the far future stands for none.
    """
    lost = LostSettings()
    n, night, far = book.owner.size, calendar.last, calendar.last + 100_000
    account, day, amount = (orders[c].to_numpy() for c in ("_account", "_day", "amount"))
    every_account, every_day = np.concatenate([account, later[0]]), np.concatenate([day, later[1]])
    last = np.full(n, np.iinfo(np.int64).min // 2)
    np.maximum.at(last, every_account, every_day)
    has = last > calendar.first - 1
    year_before = np.where(has, _year_earlier(np.where(has, last, night)), night)
    in_year = (every_day > year_before[every_account]) & (every_day <= last[every_account])
    regular = np.bincount(every_account[in_year], minlength=n) >= lost.regular_orders
    leaving = book.drifting | book.dormant
    stopped = has & regular & (leaving | (last + lost.no_order_days <= night))

    first_month = calendar.month[0]
    complete = int(_months(np.array([night + 1]))[0] - first_month)  # months 0 .. complete-1 are over
    month = _months(day) - first_month
    starts = np.full(n, complete)
    np.minimum.at(starts, account, month)
    over = month < complete
    cell = account[over] * complete + month[over]
    revenue = np.bincount(cell, weights=amount[over], minlength=n * complete).reshape(n, complete)
    count = np.bincount(cell, minlength=n * complete).reshape(n, complete)
    shrank = np.full(n, far)
    if complete >= 24:
        windows = np.lib.stride_tricks.sliding_window_view
        revenue_year, count_year = windows(revenue, 12, axis=1).sum(-1), windows(count, 12, axis=1).sum(-1)
        recent, before, orders_before = revenue_year[:, 12:], revenue_year[:, :-12], count_year[:, :-12]
        months = np.arange(23, complete)  # the month each column ends in
        holds = (
            (months >= starts[:, None] + 23) & (orders_before >= lost.regular_orders) & (before > 0)
            & (recent < (1 - lost.revenue_drop) * before)
        )
        first = np.argmax(holds, axis=1)
        found = holds[np.arange(n), first]
        shrank[found] = _month_start(first_month + months[first[found]] + 1) - 1
    lost_on = np.where(stopped, last, shrank)
    how = np.select([stopped, shrank < far], ["stopped", "shrank"], "")
    return lost_on, how


def _year_earlier(days: np.ndarray) -> np.ndarray:
    """The same date a year earlier (28 February for a 29 February), as `- INTERVAL 1 YEAR` counts."""
    stamps = days.astype("datetime64[D]")
    month = stamps.astype("datetime64[M]")
    earlier = (month - 12).astype("datetime64[D]") + (stamps - month.astype("datetime64[D]"))
    return np.minimum(earlier, (month - 11).astype("datetime64[D]") - 1).astype(np.int64)


def _ground_truth(
    book: _Book, fired: dict[str, np.ndarray], lost_on: np.ndarray, lost_how: np.ndarray, contracts: pl.DataFrame, night: int
) -> pl.DataFrame:
    n, drifting, role = book.owner.size, book.drifting, book.role
    scenario = np.where(np.isin(role, WARNING_GROUPS), "nps_detractor", role)
    warning = np.isin(scenario, RULES)
    noisy = np.any(np.column_stack([fired[rule] for rule in RULES]), axis=1)
    pattern = np.select([drifting, book.dormant, warning, noisy], ["drifting", "dormant", "warning", "noise"], "stable")
    paused = book.pause_from <= night  # the far future for none
    cut = np.zeros(n, dtype=bool)
    cut[contracts.filter(pl.col("_cut"))["_account"].to_numpy()] = True
    has = {
        "seasonal": book.kappa > 0, "bursty": book.bursty, "paused": paused, "dormant": book.dormant,
        "heavy_tailed": book.order_spread >= HEAVY_SPREAD[0], "contract_cut": cut,
    }
    return pl.DataFrame(
        {
            "account_id": _account_ids(np.arange(n)),
            "pattern": pattern,
            "drift_started_on": _blank(_dates(book.drift_start), ~drifting),
            "lost_on": _blank(_dates(np.where(lost_how == "", 0, lost_on)), lost_how == ""),
            "signals": _blank(_words({rule: fired[rule] for rule in RULES}), ~noisy),
            "scenario": _blank(pl.Series(scenario.astype(str)), ~warning),
            "loyalty_group": _blank(pl.Series(role.astype(str)), ~np.isin(role, GROUPS)),
            "lost_how": _blank(pl.Series(lost_how.astype(str)), lost_how == ""),
            "traits": _blank(_words({trait: has[trait] for trait in TRAITS}), ~np.any(np.column_stack(list(has.values())), axis=1)),
            "orders_per_year": np.round(book.orders_per_month * 12, 1),
            "complaints_per_year": np.round(book.complaints_per_year, 1),
            "paused_from": _blank(_dates(np.where(paused, book.pause_from, 0)), ~paused),
            "paused_to": _blank(_dates(np.where(paused, book.pause_to, 0)), ~paused),
        }
    )


def _words(flags: dict[str, np.ndarray]) -> pl.Series:
    """Per row, the names whose flag is set, space-separated in the order given ('' for none)."""
    table = pl.DataFrame(flags)
    return table.select(
        pl.concat_str([pl.when(pl.col(name)).then(pl.lit(name)) for name in flags], separator=" ", ignore_nulls=True)
    ).to_series()


def _write_csv(table: pl.DataFrame, path: Path) -> None:
    """UTF-8, comma, ISO dates, two decimals; written aside and renamed so no half file is left."""
    partial = path.with_name(f".{path.name}.partial")
    table.write_csv(partial, float_precision=2, date_format="%Y-%m-%d")
    os.replace(partial, path)


def _day(day: date) -> int:
    return (day - EPOCH).days


def _date(day: int) -> date:
    return EPOCH + timedelta(days=int(day))


def _years_before(day: date, years: int) -> date:
    """The same date `years` earlier (28 February for a 29 February), as the rules' `1y` windows count."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _month_start(month: np.ndarray) -> np.ndarray:
    """Day number of the first of each month (months counted since 1970-01)."""
    return np.asarray(month).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)


def _dates(days: np.ndarray) -> pl.Series:
    return pl.Series(np.asarray(days, dtype=np.int32)).cast(pl.Date)


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pl.Series:
    """Ids like K-00001 for the numbers 1, 2, ... (wider when the numbers need it)."""
    return prefix + pl.Series(np.asarray(numbers, dtype=np.int64)).cast(pl.String).str.zfill(width)


def _account_ids(index: np.ndarray) -> pl.Series:
    return _ids("K-", np.asarray(index) + 1, 5)


def _blank(series: pl.Series, where: np.ndarray) -> pl.Series:
    """The series with nulls (empty CSV fields) where the mask is true."""
    return series.set(pl.Series(where, dtype=pl.Boolean), None) if series.len() else series
