"""The set-based replay (lifecycle/replay.py) equals the night-by-night one (tests/support/
night_by_night.py: `advance_warnings` and `apply_budget`, one round per night), row for row:
on hand-made signals (a pair held exactly `for` nights, a gap of one night, runs at the first
and last night, resolution then firing again, unknown nights, hysteresis, inhibition, lost
accounts, waiting over the budget, one voice per account, the weekly cadence), on many random
ones, and on the sample over a quarter of nights."""

from __future__ import annotations

import random
from datetime import date, timedelta

import pyarrow as pa
import pytest

from loyalty_engine import store
from loyalty_engine.backtest import _signals, replay_nights
from loyalty_engine.config import BacktestSettings, DigestSettings, LostSettings
from loyalty_engine.contract import TABLES
from loyalty_engine.lifecycle.replay import replay_warnings
from loyalty_engine.rules.evaluate import runnable
from loyalty_engine.rules.loader import load_rules
from tests.support.night_by_night import replay_night_by_night

FIRST = date(2026, 3, 2)  # a Monday
COLUMNS = ("night", "account_id", "rule_id", "notice", "would_mail", "owner_email", "recipient")
# Five rules over one made-up metric: the lifecycle only sees their signals, written by hand.
RULES = """
metrics:
  quiet: {days_since_latest: orders}
rules:
  - {id: once, severity: high, when: quiet > 1, title: t, message: m, action: a, labels: {signal: orders}}
  - {id: three, severity: medium, when: quiet > 1, for: 3 nights, title: t, message: m, action: a, labels: {signal: orders}}
  - {id: lingering, severity: low, when: quiet > 1, for: 2 nights, keep_firing_for: 2 nights, title: t, message: m, action: a, inhibits: [once]}
  - {id: sticky, severity: critical, when: quiet > 1, for: 2 nights, resolve_when: quiet < 1, keep_firing_for: 1 night, title: t, message: m, action: a}
  - {id: trial, severity: high, mode: shadow, when: quiet > 1, for: 2 nights, title: t, message: m, action: a, labels: {signal: orders}, inhibits: [three]}
"""


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    """A database with accounts A0 … A5 (two owners, A5 without one) and their orders (revenue
    ranks the budget); A4's last order lies 176 days before the first night: lost from the fifth night on."""
    folder = tmp_path_factory.mktemp("replay")
    (folder / "rules").mkdir()
    (folder / "rules" / "r.yaml").write_text(RULES, encoding="utf-8")
    con = store.connect(folder / "loyalty.duckdb")
    for table in TABLES.values():
        con.execute(table.create_sql())
    for index in range(6):
        owner = None if index == 5 else ("anna@example.com" if index % 2 else "Bert@Example.com")
        con.execute("INSERT INTO accounts (account_id, name, owner_email, owner_name) VALUES (?, ?, ?, 'x')", [f"A{index}", f"A{index}", owner])
    for index in range(5):
        # A4 ordered every fortnight for a year, then stopped: lost 180 days after its last order.
        for day in range(0, 360 if index != 4 else 120, 14 if index != 1 else 30):
            start = FIRST - timedelta(days=288 if index == 4 else 400)
            con.execute("INSERT INTO orders VALUES (?, ?, ?, ?, 'EUR')", [f"A{index}-{day}", f"A{index}", start + timedelta(days=day), 100.0 * (index + 1)])
    yield con, load_rules(folder / "rules")
    con.close()


def held_table(signals: dict[tuple[str, str], str], nights: int) -> pa.Table:
    """Signals per (account, rule) as one character per night: H holds, . does not (no row),
    ? unknown (holds NULL), r holds not but resolve_when does not hold yet (resolves false),
    u holds not and resolve_when unknown, n holds unknown and resolve_when does (resolves true)."""
    codes = {"H": (True, None), "?": (None, None), "r": (False, False), "u": (False, None), "n": (None, True)}
    rows = []
    for (account, rule), text in signals.items():
        assert len(text) == nights, (account, rule)
        for n, code in enumerate(text):
            if code in codes:
                holds, resolves = codes[code]
                if rule != "sticky" and code in "run":
                    holds, resolves = {"r": (False, None), "u": (False, None), "n": (None, None)}[code]
                    if holds is False:
                        continue  # a rule without resolve_when keeps no row where its condition does not hold
                rows.append((FIRST + timedelta(days=n), account, rule, holds, resolves))
    return pa.table(
        {"night": pa.array([r[0] for r in rows], pa.date32()), "account_id": [r[1] for r in rows], "rule_id": [r[2] for r in rows],
         "holds": pa.array([r[3] for r in rows], pa.bool_()), "resolves": pa.array([r[4] for r in rows], pa.bool_())}
    )


def both(con, ruleset, held: pa.Table, nights: int, digest: DigestSettings):
    last = FIRST + timedelta(days=nights - 1)
    lost = LostSettings()
    new = replay_warnings(con, held, ruleset, FIRST, last, digest, lost, last)
    old = replay_night_by_night(con, held, ruleset, replay_nights(FIRST, last), digest, lost, last)
    return [sorted(tuple(r[c] for c in COLUMNS) for r in t.to_pylist()) for t in new], [sorted(tuple(r[c] for c in COLUMNS) for r in t.to_pylist()) for t in old]


def notices(rows, account: str, rule: str, nights: int) -> str:
    """One letter per night of the pair's notice (- none): p pending, k kept, n new, o open, r repeat, i inhibited, x resolved, w waiting, t intro."""
    letter = {"pending": "p", "kept": "k", "new": "n", "open": "o", "repeat": "r", "inhibited": "i", "resolved": "x", "waiting": "w", "intro": "t"}
    by_night = {r[0]: letter[r[3]] for r in rows if (r[1], r[2]) == (account, rule)}
    return "".join(by_night.get(FIRST + timedelta(days=n), "-") for n in range(nights))


EDGES = {
    ("A0", "three"): "HHH.HH.HHH?HHH..H",   # held exactly `for` nights, a gap of one night, an unknown night in a pending run
    ("A0", "once"): "H.H..HHHHHHHHHHHH",    # runs at the first and last night; resolved, then firing again
    ("A1", "lingering"): "HH.H..H??..HH.?.H",  # keep_firing_for: calm nights, unknown ones between them, resolved after two
    ("A1", "sticky"): "HHrrnu.HnnHHn.HnH",   # resolve_when: not yet, unknown, resolved on a night `when` is unknown
    ("A2", "trial"): "HHHHHHH.HHHHHHHHH",    # a shadow rule: as if mailed, never mailed; hides `three`
    ("A2", "three"): "HHHHHHHHHHHHHHHHH",
    ("A3", "once"): "..HHHHHHHHHHHHHHH",     # one voice: `three` of the same signal comes later
    ("A3", "three"): "..HHHHHHHHHHHHHHH",
    ("A4", "once"): "HHHHHHHHHHHHHHHHH",     # the account is lost from the fifth night: held back
    ("A5", "once"): "HHHHHHHHHHHHHHHHH",     # no owner
}


@pytest.mark.parametrize("digest", [
    DigestSettings(max_new=5, repeat_after_days=3),
    DigestSettings(max_new=1, repeat_after_days=2),
    DigestSettings(max_new=1, repeat_after_days=4, cadence="weekly", weekday="thursday", immediate_severity="high"),
], ids=["daily", "budget", "weekly"])  # fmt: skip
def test_hand_made_edges(book, digest):
    con, ruleset = book
    nights = len(next(iter(EDGES.values())))
    new, old = both(con, ruleset, held_table(EDGES, nights), nights, digest)
    assert new[0] == old[0]
    assert new[1] == old[1]
    # The cases are what they claim to be (notices from the night-by-night replay).
    rows = old[1]
    if digest.max_new == 5:
        assert notices(rows, "A0", "three", nights) == "ppnxpp-ppokooox-p"  # fires on the 3rd night; open at once: `once` spoke (one voice)
        assert notices(rows, "A0", "once", nights) == "nxnx-nooooooooooo"
        assert notices(rows, "A1", "lingering", nights) == "pnoooookkoroookor"
        assert notices(rows, "A1", "sticky", nights) == "pnoookxpkknooxpkn"  # the pending run goes on through an unknown calm end
        assert notices(rows, "A4", "once", nights) == "noooiiiiiiiiiiiii"


@pytest.mark.slow
def test_random_signals(book):
    """Many random signals, every rule and notice, three digest policies: the same rows."""
    con, ruleset = book
    chance = random.Random(17)
    nights = 30
    rules = [r.id for r in ruleset.rules]
    seen = set()
    for round_ in range(4):
        signals = {}
        for account in (f"A{i}" for i in range(6)):
            for rule in rules:
                if chance.random() < 0.8:
                    weights = [chance.random() for _ in range(6)]
                    # `once` holds on the first night: more new warnings than the budget there (the introduction).
                    signals[(account, rule)] = ("H" if rule == "once" else "") + "".join(chance.choices("H.?run", weights=weights, k=nights - (rule == "once")))
        digest = [DigestSettings(max_new=1, repeat_after_days=3), DigestSettings(max_new=1, repeat_after_days=5, cadence="weekly", weekday="tuesday"),
                  DigestSettings(max_new=2, repeat_after_days=1), DigestSettings(max_new=5, repeat_after_days=7)][round_]
        new, old = both(con, ruleset, held_table(signals, nights), nights, digest)
        assert new[0] == old[0], round_
        assert new[1] == old[1], round_
        seen |= {r[3] for r in old[0] + old[1]}
    assert seen == {"pending", "kept", "new", "open", "repeat", "inhibited", "resolved", "waiting", "intro"}


@pytest.mark.slow
def test_the_sample_over_a_quarter(tmp_path):
    """The sample's signals over 90 nights through both replays, with a budget tight enough to make owners' warnings wait."""
    from loyalty_engine.extracts.staging import stage_extracts
    from loyalty_engine.extracts.validate import validate_night
    from loyalty_engine.sample.generator import generate_sample
    from tests.support.builders import ROOT

    last = date(2026, 11, 20)
    sample = generate_sample(tmp_path / "extracts", accounts=300, seed=7, end_date=last)
    ruleset = load_rules(ROOT / "rules")
    with store.connect(tmp_path / "loyalty.duckdb") as con:
        con.execute("BEGIN")
        validate_night(con, stage_extracts(con, sample.folder, last), last)
        con.execute("COMMIT")
        ruleset, _ = runnable(ruleset, store.absent_tables(con, last))
        first = last - timedelta(days=89)
        held = _signals(con, ruleset, replay_nights(first, last), lambda _: None)
        for digest in (DigestSettings(), DigestSettings(max_new=1, cadence="weekly", weekday="wednesday", immediate_severity="high")):
            new = replay_warnings(con, held, ruleset, first, last, digest, BacktestSettings().lost, last)
            old = replay_night_by_night(con, held, ruleset, replay_nights(first, last), digest, BacktestSettings().lost, last)
            for mine, theirs in zip(new, old):
                assert sorted(tuple(r[c] for c in COLUMNS) for r in mine.to_pylist()) == sorted(tuple(r[c] for c in COLUMNS) for r in theirs.to_pylist())
            assert {"waiting", "new", "repeat", "resolved"} <= {r["notice"] for r in old[1].to_pylist()}
