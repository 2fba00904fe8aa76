"""Sample extracts: a reproducible, realistic order book for the demo, the tests and the benchmarks.

`generate_sample` writes one night's extracts (accounts, orders, complaints, contracts) covering
three years, plus `ground_truth.csv` next to the date folder saying which accounts were really
drifting away, so that backtests can measure the warning rules: `drift_started_on` is when an
account's order rate began to fade, `lost_on` the day from which it orders nothing any more (it
may lie after the night for accounts still drifting then). Stable accounts leave both empty.

Everything is drawn from one `numpy.random.default_rng(seed)`, vectorised over an
accounts x days matrix (in blocks of accounts, to bound memory), so the same arguments give
byte-identical files and 10,000 accounts take seconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

EPOCH = date(1970, 1, 1)
DAYS_PER_YEAR = 365.2425
DAYS_PER_MONTH = DAYS_PER_YEAR / 12
BLOCK = 2048  # accounts per block of the accounts x days matrix: ~18 MB per float array

DRIFTING_SHARE = 0.17
SMALL_SHARE = 0.04  # stable accounts that order only a few times a year
NEW_SHARE = 0.15  # accounts won inside the three years
COMPLAINT_REGULARITY = 2.0  # complaints come somewhat spread out, less bunched than at random
RENEWAL_LEAD = 90  # days before the drift start from which renewals are signed shorter
TERM_CHANGE = 0.05  # chance that a stable account moves to another usual term at a renewal
MONTHLY_NOISE = 30.0  # gamma shape of each account's month-to-month factor: about +-18%
ORDER_SPREAD = 0.5  # lognormal sigma of an order's amount around the account's typical amount
CLOSED_SHARE = 0.85  # lost accounts the ERP has already closed (the rest are forgotten there)

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
    folder: Path  # where the night's extracts were written: <out>/<end_date>/
    end_date: date
    rows: dict[str, int]  # rows per extract table
    drifting: int  # accounts drifting away (ground truth)
    lost: int  # of those, lost on or before end_date


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
        try:
            three_years_back = end.replace(year=end.year - 3)
        except ValueError:  # 29 February
            three_years_back = end.replace(year=end.year - 3, day=28)
        first, last = _day(three_years_back + timedelta(days=1)), _day(end)
        days = np.arange(first, last + 1)
        stamps = days.astype("datetime64[D]")
        months = stamps.astype("datetime64[M]")
        day_of_month = (stamps - months.astype("datetime64[D]")).astype(np.int64) + 1
        month_of_year = months.astype(np.int64) % 12 + 1
        weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        # B2B customers order on working days; hardly anyone between Christmas and New Year.
        saturday, sunday = 0.12, 0.02
        busy = np.select([weekday == 5, weekday == 6], [saturday, sunday], 1.0) * 7 / (5 + saturday + sunday)
        holidays = ((month_of_year == 12) & (day_of_month >= 24)) | ((month_of_year == 1) & (day_of_month == 1))
        busy = np.where(holidays, busy * 0.2, busy)
        return cls(first, last, days, busy, months.astype(np.int64))


@dataclass
class _Book:
    """Per-account parameters, one array entry per account."""

    owner: np.ndarray
    customer_since: np.ndarray  # day number
    drifting: np.ndarray  # bool
    drift_start: np.ndarray  # day number; far future for stable accounts
    lost_on: np.ndarray  # day number: no order on or after it; far future for stable accounts
    decay: np.ndarray  # exponent of the drift's decay curve: 1 linear, >1 fades faster
    orders_per_month: np.ndarray
    amplitude: np.ndarray  # yearly seasonality
    phase: np.ndarray
    trend: np.ndarray  # log growth per year
    complaints_per_year: np.ndarray
    typical_amount: np.ndarray  # median order amount (EUR)
    regularity: np.ndarray  # shape of the gamma gaps between orders: 1 erratic, 5 like clockwork


def generate_sample(out: Path, accounts: int = 200, seed: int = 7, end_date: date | None = None) -> SampleSummary:
    """Write sample extracts for `accounts` accounts over three years ending at end_date (default today).

    Files: <out>/<end_date>/{accounts,orders,complaints,contracts}.csv and <out>/ground_truth.csv.
    """
    if accounts < 1:
        raise ValueError(f"accounts must be at least 1, not {accounts}")
    end = end_date or date.today()
    rng = np.random.default_rng(seed)
    calendar = _Calendar.ending(end)
    owners = _owners(rng)
    book = _book(rng, accounts, calendar, len(owners))
    orders, complaints, volume = _events(rng, book, calendar)
    contracts = _contracts(rng, book, calendar)
    tables = {
        "accounts": _accounts_table(rng, book, calendar, owners, volume),
        "orders": orders,
        "complaints": complaints,
        "contracts": contracts,
    }
    out = Path(out)
    folder = out / end.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        _write_csv(table, folder / f"{name}.csv")
    _write_csv(_ground_truth(book), out / "ground_truth.csv")
    return SampleSummary(
        folder=folder,
        end_date=end,
        rows={name: table.height for name, table in tables.items()},
        drifting=int(book.drifting.sum()),
        lost=int((book.drifting & (book.lost_on <= calendar.last)).sum()),
    )


def _owners(rng: np.random.Generator) -> list[dict[str, str]]:
    """5-8 account owners with German names, and the two sales managers they report to."""
    count = int(rng.integers(5, 9))
    first = rng.choice(len(FIRST_NAMES), size=count + 2, replace=False)
    last = rng.choice(len(SURNAMES), size=count + 2, replace=False)
    people = [(FIRST_NAMES[f], SURNAMES[s]) for f, s in zip(first, last)]
    managers = [_email(*person) for person in people[count:]]
    return [
        {"name": f"{given} {family}", "email": _email(given, family), "supervisor": managers[i % 2]}
        for i, (given, family) in enumerate(people[:count])
    ]


def _email(given: str, family: str) -> str:
    local = f"{given}.{family}".lower()
    for umlaut, plain in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ß", "ss")):
        local = local.replace(umlaut, plain)
    return f"{local}@example.com"


def _book(rng: np.random.Generator, n: int, calendar: _Calendar, owners: int) -> _Book:
    owner = rng.choice(owners, size=n, p=rng.dirichlet(np.full(owners, 4.0)))

    # Most accounts are older than the window; some were won inside it.
    years_before = np.minimum(rng.exponential(6.0, n), 40.0)
    customer_since = calendar.first - 1 - (years_before * DAYS_PER_YEAR).astype(np.int64)
    new = rng.random(n) < NEW_SHARE
    won_inside = rng.integers(calendar.first, calendar.last - 180, size=n, endpoint=True)
    customer_since = np.where(new, won_inside, customer_since)

    # Order rhythm: lognormal around ~3.8 a month; a few small accounts order 2-5 times a year.
    orders_per_month = np.clip(rng.lognormal(np.log(3.8) - 0.32, 0.8, n), 0.4, 25.0)
    small = rng.random(n) < SMALL_SHARE
    orders_per_month = np.where(small, rng.uniform(2, 5, n) / 12, orders_per_month)

    # Drifting accounts are regular customers of at least a year's standing when the drift starts.
    candidates = np.flatnonzero(~small)
    drifting = np.zeros(n, dtype=bool)
    drifting[rng.choice(candidates, size=min(round(DRIFTING_SHARE * n), candidates.size), replace=False)] = True
    far = calendar.last + 100_000  # stable accounts: a drift and a loss that never come
    start = rng.integers(calendar.last - 730, calendar.last - 30, size=n, endpoint=True)
    duration = rng.integers(120, 300, size=n, endpoint=True)  # 4-10 months to zero
    drift_start = np.where(drifting, start, far)
    lost_on = np.where(drifting, start + duration, far)
    settled = drift_start - 400 - rng.integers(0, 2000, size=n)
    customer_since = np.where(drifting, np.minimum(customer_since, settled), customer_since)

    # About 30% complain regularly; customers with problems are likelier to drift away.
    complainer = rng.random(n) < np.where(drifting, 0.7, 0.22)
    complaints_per_year = np.where(
        complainer, rng.lognormal(np.log(10.0), 0.3, n), rng.lognormal(np.log(0.4), 0.6, n)
    )
    return _Book(
        owner=owner,
        customer_since=customer_since,
        drifting=drifting,
        drift_start=drift_start,
        lost_on=lost_on,
        decay=rng.uniform(1.0, 2.5, n),
        orders_per_month=orders_per_month,
        amplitude=rng.uniform(0.0, 0.4, n),
        phase=rng.uniform(0.0, 2 * np.pi, n),
        trend=rng.normal(0.0, 0.06, n),
        complaints_per_year=complaints_per_year,
        regularity=np.where(small, 1.0, rng.uniform(1.5, 5.0, n)),
        typical_amount=np.clip(rng.lognormal(np.log(1500.0), 0.75, n), 120.0, 12_000.0),
    )


def _events(rng: np.random.Generator, book: _Book, calendar: _Calendar) -> tuple[pl.DataFrame, pl.DataFrame, np.ndarray]:
    """Orders, complaints and each account's order volume, from daily rates over the accounts x days matrix."""
    days, n = calendar.days, book.owner.size
    month = calendar.month - calendar.month[0]
    order_parts, complaint_parts = [], []
    for lo in range(0, n, BLOCK):
        a = slice(lo, min(lo + BLOCK, n))
        size = a.stop - a.start
        # What every account has in common for orders and complaints: season, trend, month-to-month
        # noise, working days, and nothing before the customer was won.
        season = 1 + book.amplitude[a, None] * np.sin(2 * np.pi * days / DAYS_PER_YEAR + book.phase[a, None])
        trend = np.exp(book.trend[a, None] * (days - calendar.last) / DAYS_PER_YEAR)
        noise = rng.gamma(MONTHLY_NOISE, 1 / MONTHLY_NOISE, size=(size, month[-1] + 1))[:, month]
        shape = season * trend * noise * calendar.busy * (days >= book.customer_since[a, None])
        # The drift: the order rate fades from 1 at drift start to 0 at lost_on.
        fade = (days - book.drift_start[a, None]) / np.maximum(book.lost_on - book.drift_start, 1)[a, None]
        remaining = np.clip(1 - fade, 0.0, 1.0) ** book.decay[a, None]
        order_rate = shape * remaining * (book.orders_per_month[a, None] / DAYS_PER_MONTH)
        order_parts.append(_rhythm(rng, order_rate, book.regularity[a], lo))
        # Inner resignation: complaints stop when the drift starts.
        complaint_rate = shape * (days < book.drift_start[a, None]) * (book.complaints_per_year[a, None] / DAYS_PER_YEAR)
        complaint_parts.append(_rhythm(rng, complaint_rate, np.full(size, COMPLAINT_REGULARITY), lo))
    orders, volume = _orders_table(rng, book, calendar, order_parts)
    return orders, _complaints_table(rng, calendar, complaint_parts), volume


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
    amount = np.round(book.typical_amount[account] * rng.lognormal(0.0, ORDER_SPREAD, account.size), 2)
    volume = np.bincount(account, weights=amount, minlength=book.owner.size)
    table = pl.DataFrame(
        {
            "order_id": _ids("O-", np.arange(1, account.size + 1), 7),
            "account_id": _account_ids(account),
            "order_date": _dates(day),
            "amount": amount,
            "currency": pl.repeat("EUR", account.size, eager=True),
        }
    )
    return table, volume


def _complaints_table(rng: np.random.Generator, calendar: _Calendar, parts) -> pl.DataFrame:
    account, opened = _chronological(parts, calendar)
    closed = opened + np.round(rng.lognormal(np.log(6.0), 0.9, account.size)).astype(np.int64)
    still_open = closed > calendar.last
    return pl.DataFrame(
        {
            "complaint_id": _ids("B-", np.arange(1, account.size + 1), 6),
            "account_id": _account_ids(account),
            "opened_at": _dates(opened),
            "closed_at": _blank(_dates(closed), still_open),
            "category": np.array(CATEGORIES)[rng.choice(len(CATEGORIES), account.size, p=CATEGORY_WEIGHTS)],
            "severity": np.array(SEVERITIES)[rng.choice(len(SEVERITIES), account.size, p=SEVERITY_WEIGHTS)],
        }
    )


def _contracts(rng: np.random.Generator, book: _Book, calendar: _Calendar) -> pl.DataFrame:
    """Each account's chain of consecutive contracts, starting on the first of a month.

    The chain covers the window from the customer's start; renewals stop after end_date and at
    lost_on. A renewal during a drift is signed shorter and smaller; now and then a stable account
    changes its usual term for good (the noise a contract rule has to live with).
    """
    n = book.owner.size
    term = rng.choice(TERMS, size=n, p=TERM_WEIGHTS)
    since_month = book.customer_since.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    joined_late = book.customer_since > _month_start(since_month)
    first_month = calendar.month[0] - rng.integers(0, term)  # the contract running at window start
    start = np.maximum(first_month, since_month + joined_late)
    yearly_orders = book.orders_per_month * 12 * book.typical_amount * np.exp(ORDER_SPREAD**2 / 2)
    value = np.round(yearly_orders * rng.uniform(0.5, 0.9, n), -2)
    running = np.ones(n, dtype=bool)
    usual = term.copy()
    rows: list[tuple[np.ndarray, ...]] = []
    step = 0
    while running.any():
        rows.append((np.flatnonzero(running), start[running], term[running], value[running], np.full(running.sum(), step)))
        renewal = start + term
        renewal_day = _month_start(renewal)
        running &= (renewal_day <= calendar.last) & (renewal_day < book.lost_on)
        # The decision to leave is made before the orders show it: renewals shortly before count too.
        in_drift = renewal_day >= book.drift_start - RENEWAL_LEAD
        changes = rng.random(n) < TERM_CHANGE
        usual = np.where(changes & ~in_drift, rng.choice(TERMS, size=n, p=TERM_WEIGHTS), usual)
        shorter = np.where(term >= 24, 12, 6)  # 36 or 24 -> 12, 12 -> 6
        growth = np.where(in_drift, rng.uniform(0.4, 0.75, n), 1 + rng.normal(0.03, 0.04, n))
        term = np.where(in_drift, shorter, usual)
        value = np.round(value * growth, -2)
        start = renewal
        step += 1
    account, start, term, value, step = (np.concatenate(column) for column in zip(*rows))
    order = np.lexsort((step, account))
    account, start, term, value, step = account[order], start[order], term[order], value[order], step[order]
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
        }
    )


def _accounts_table(
    rng: np.random.Generator, book: _Book, calendar: _Calendar, owners: list[dict[str, str]], volume: np.ndarray
) -> pl.DataFrame:
    n = book.owner.size
    # Segment by order volume over the window: A the top 20%, B the next 30%, C the rest.
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(-volume, kind="stable")] = np.arange(n)
    segment = np.select([rank < 0.2 * n, rank < 0.5 * n], ["A", "B"], "C")
    # One owner looks after the international accounts, which mostly read English.
    language = np.where(rng.random(n) < np.where(book.owner == 0, 0.5, 0.05), "en", "de")
    gone = book.drifting & (book.lost_on <= calendar.last - 60)
    status = np.where(gone & (rng.random(n) < CLOSED_SHARE), "closed", "active")
    return pl.DataFrame(
        {
            "account_id": _account_ids(np.arange(n)),
            "name": _company_names(rng, n),
            "owner_email": [owners[o]["email"] for o in book.owner],
            "owner_name": [owners[o]["name"] for o in book.owner],
            "status": status,
            "segment": segment,
            "language": language,
            "supervisor_email": [owners[o]["supervisor"] for o in book.owner],
            "customer_since": _dates(book.customer_since),
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


def _ground_truth(book: _Book) -> pl.DataFrame:
    drifting = book.drifting
    return pl.DataFrame(
        {
            "account_id": _account_ids(np.arange(drifting.size)),
            "pattern": np.where(drifting, "drifting", "stable"),
            "drift_started_on": _blank(_dates(book.drift_start), ~drifting),
            "lost_on": _blank(_dates(book.lost_on), ~drifting),
        }
    )


def _write_csv(table: pl.DataFrame, path: Path) -> None:
    """UTF-8, comma, ISO dates, two decimals; written aside and renamed so no half file is left."""
    partial = path.with_name(f".{path.name}.partial")
    table.write_csv(partial, float_precision=2, date_format="%Y-%m-%d")
    os.replace(partial, path)


def _day(day: date) -> int:
    return (day - EPOCH).days


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
