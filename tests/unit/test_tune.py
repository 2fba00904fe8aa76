"""`loyalty tune`'s parts that need no history: the Pareto front on hand-made figures, reading
`--vary`, and every mistake on the command line, all found at once (api and CLI)."""

from __future__ import annotations

from datetime import date

import pytest

from loyalty_engine import api, store
from loyalty_engine.api import MAX_COMBINATIONS, TuneRefused, parse_vary
from loyalty_engine.backtest import pareto_front
from loyalty_engine.config import load_settings
from loyalty_engine.errors import RunLocked
from tests.support.builders import ROOT, write_config
from tests.unit.test_cli import loyalty

RULES = """
metrics:
  orders_recent:   {count: orders, window: 90d}
  orders_baseline: {count: orders, window: 365d, ending: 90d ago}
rules:
  - id: fewer_orders
    severity: high
    params: {min_baseline: 6, share: 0.5}
    when: orders_baseline >= min_baseline and orders_recent < share * orders_baseline * 90 / 365
    title: Fewer orders
    message: "{{ orders_recent }} orders in 90 days"
    action: Call.
  - id: no_orders
    severity: medium
    when: orders_baseline >= 4 and orders_recent = 0
    title: No orders
    message: "{{ orders_baseline }} orders before, none since"
    action: Call.
"""


def figures(precision, recall, digests) -> dict:
    return {"precision": precision, "recall": recall, "emails_per_owner_week": digests}


@pytest.mark.parametrize(
    "rows, front",
    [
        # Beaten on one figure, equal on the others: off the front.
        ([figures(0.5, 0.6, 1.0), figures(0.4, 0.6, 1.0)], [True, False]),
        # Fewer digests is better: the quieter one beats an otherwise equal one.
        ([figures(0.5, 0.6, 1.0), figures(0.5, 0.6, 0.5)], [False, True]),
        # Each best at something: all on the front.
        ([figures(0.5, 0.2, 1.0), figures(0.2, 0.5, 1.0), figures(0.1, 0.1, 0.1)], [True, True, True]),
        # Equal figures beat neither: both stay.
        ([figures(0.3, 0.3, 1.0), figures(0.3, 0.3, 1.0), figures(0.2, 0.3, 1.0)], [True, True, False]),
        # Beaten on all three at once.
        ([figures(0.6, 0.7, 0.5), figures(0.5, 0.6, 1.0), figures(0.4, 0.8, 2.0)], [True, False, True]),
        # An unknown precision (nothing judged yet) is the worst: a known one beats it, all else equal.
        ([figures(None, 0.0, 0.5), figures(0.5, 0.0, 0.5), figures(0.5, 0.5, 1.0)], [False, True, True]),
        ([figures(None, None, 0.1), figures(0.5, 0.5, 1.0)], [True, True]),
        # Warning nobody is the rule switched off: never on the front, and it beats no row, though
        # it sends the fewest digests; the quietest row that warns somebody stays on the front.
        ([{**figures(None, 0.0, 0.0), "accounts_flagged": 0}, {**figures(0.0, 0.0, 0.02), "accounts_flagged": 1},
          {**figures(0.0, 0.0, 0.05), "accounts_flagged": 3}, {**figures(0.4, 0.2, 1.0), "accounts_flagged": 40}],
         [False, True, False, True]),
        ([{**figures(None, 0.0, 0.0), "accounts_flagged": 0}] * 2, [False, False]),
        ([figures(0.1, 0.1, 3.0)], [True]),
        ([], []),
    ],
)
def test_the_pareto_front_on_hand_made_figures(rows, front):
    assert pareto_front(rows) == front


def test_vary_reads_names_and_numbers():
    assert parse_vary(["share=0.4, 0.5,0.4", "min_baseline=4,6", "x=-2,1e3"]) == (
        {"share": [0.4, 0.5], "min_baseline": [4, 6], "x": [-2, 1000.0]}, [])
    grid, problems = parse_vary(["share", "share=0.4,half", "share=1", "n=nan,2e20,inf", "=3", "m="])
    assert problems == [
        "--vary share: write NAME=V1,V2,…, e.g. --vary share=0.4,0.5,0.6",
        "--vary share=0.4,half: 'half' is not a number",
        "--vary share is given twice; list all its values in one: --vary share=V1,V2,…",
        "--vary n=nan,2e20,inf: 'nan' is not a number",
        "--vary n=nan,2e20,inf: 2e20 is too large",
        "--vary n=nan,2e20,inf: 'inf' is not a number",
        "--vary =3: write NAME=V1,V2,…, e.g. --vary share=0.4,0.5,0.6",
        "--vary m=: write NAME=V1,V2,…, e.g. --vary share=0.4,0.5,0.6",
    ]
    assert grid == {"share": [0.4], "n": []}


@pytest.fixture
def project(tmp_path):
    """A config, a rule file with params, and a database with no night in it yet."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "orders.yaml").write_text(RULES, encoding="utf-8")
    config = write_config(tmp_path)
    config.write_text(config.read_text(encoding="utf-8").replace(f"rules: {ROOT / 'rules'}", f"rules: {tmp_path / 'rules'}"), encoding="utf-8")
    return load_settings(config), config


FROM, TO = date(2025, 5, 1), date(2025, 8, 31)


def refused(settings, rule, vary, first=FROM, last=TO) -> list[str]:
    with pytest.raises(TuneRefused) as refusal:
        api.tune(settings, rule, vary, first, last)
    assert refusal.value.exit_code == 2
    return refusal.value.problems


def test_every_mistake_is_named_at_once(project):
    settings, _ = project
    assert refused(settings, "fewer_order", ["share=0.4,x"], TO, FROM) == [
        f"unknown rule 'fewer_order' (did you mean 'fewer_orders'?) in {settings.rules}",
        "--vary share=0.4,x: 'x' is not a number",
        "--from 2025-08-31 lies after --to 2025-05-01",
    ]
    assert refused(settings, "fewer_orders", ["shar=0.4", "min_baseline=4", "floor=1"]) == [
        "rule 'fewer_orders' has no param 'shar' (did you mean 'share'?) (its params: min_baseline, share)",
        "rule 'fewer_orders' has no param 'floor' (its params: min_baseline, share)",
    ]
    assert refused(settings, "no_orders", ["share=0.4"]) == [
        """rule 'no_orders' has no params to vary; name its thresholds under params: (docs/rules.md, "Params")""",
    ]
    assert refused(settings, "fewer_orders", []) == ["give the values to try: --vary NAME=V1,V2,… (one --vary per param)"]
    many = [f"share={','.join(str(n / 100) for n in range(20))}", f"min_baseline={','.join(str(n) for n in range(11))}"]
    assert refused(settings, "fewer_orders", many) == [f"--vary gives 220 combinations (20 x 11); at most {MAX_COMBINATIONS}: try fewer values"]


def test_tune_needs_the_database_to_itself(project):
    settings, _ = project
    store.connect(settings.database).close()
    with store.night_lock(settings.database):
        with pytest.raises(RunLocked, match="another run is using the database") as stop:
            api.tune(settings, "fewer_orders", ["share=0.4"], FROM, TO)
    assert stop.value.exit_code == 7


@pytest.mark.slow  # two CLI processes: about 4 s
def test_the_cli_names_every_mistake_on_its_own_line_and_exits_2(project):
    _, config = project
    result = loyalty("tune", "fewer_order", "--vary", "shar=0.4,x", "--from", "2025-08-31", "--to", "2025-05-01", "--config", str(config))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: unknown rule 'fewer_order' (did you mean 'fewer_orders'?) in {config.parent / 'rules'}",
        "error: --vary shar=0.4,x: 'x' is not a number",
        "error: --from 2025-08-31 lies after --to 2025-05-01",
    ]
    result = loyalty("tune", "fewer_orders", "--vary", "shar=0.4", "--vary", "min_baseline=3,4", "--from", "2025-05-01", "--to", "2025-08-31", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: rule 'fewer_orders' has no param 'shar' (did you mean 'share'?) (its params: min_baseline, share)"]


def test_tune_returns_each_combinations_figures_and_stores_nothing(project, capsys):
    """The api on a hand-made history: accounts whose orders thin out at different times."""
    from datetime import timedelta

    from loyalty_engine.backtest import stored_figures
    from loyalty_engine.contract import TABLES

    settings, _ = project
    last = date(2026, 11, 23)
    with store.connect(settings.database) as con:
        for table in TABLES.values():
            con.execute(table.create_sql())
        for number in range(12):
            account = f"A{number}"
            con.execute("INSERT INTO accounts (account_id, name, owner_email, owner_name, status) VALUES (?, ?, 'a@example.com', 'A', 'active')", [account, account])
            for n in range(40):
                day = last - timedelta(days=400) + timedelta(days=n * (5 + number))
                if day <= last - timedelta(days=10 * number):
                    con.execute("INSERT INTO orders VALUES (?, ?, ?, 100, 'EUR')", [f"{account}-{n}", account, day])
        for table in TABLES:
            con.execute("INSERT INTO loads VALUES (?, ?, 'x', 0, 0, now())", [last, table])
    notes = []
    tuned = api.tune(settings, "fewer_orders", ["share=0.3,0.9", "min_baseline=6"], last - timedelta(days=20), last, progress=notes.append)
    assert capsys.readouterr() == ("", "") and notes[0] == f"Replaying fewer_orders from {settings.rules} …"
    assert (tuned.rule_id, tuned.varied, tuned.current) == ("fewer_orders", ["share", "min_baseline"], {"min_baseline": 6, "share": 0.5})
    # The grid, then the file's values (share 0.5 is not in it).
    assert [(c["params"], c["current"]) for c in tuned.combinations] == [
        ({"min_baseline": 6, "share": 0.3}, False), ({"min_baseline": 6, "share": 0.9}, False), ({"min_baseline": 6, "share": 0.5}, True)]
    flagged = [c["accounts_flagged"] for c in tuned.combinations]
    assert flagged[0] <= flagged[2] <= flagged[1] and flagged[0] < flagged[1]
    assert [c["pareto"] for c in tuned.combinations] == pareto_front(tuned.combinations)
    assert tuned.replay.nights == 21 and tuned.as_json()["combinations"] == tuned.combinations
    with store.connect(settings.database, read_only=True) as con:
        assert stored_figures(con) == []
