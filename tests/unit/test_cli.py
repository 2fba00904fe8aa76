"""The `loyalty` command as a user runs it: help, exit codes, one-line errors, alerts without Prefect."""

from __future__ import annotations

import ast
import csv
import email
import io
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import timedelta
from email import policy
from pathlib import Path

import pytest

from loyalty_engine import store
from loyalty_engine.extracts.staging import stage_extracts
from loyalty_engine.rules.loader import load_rules
from loyalty_engine.extracts.validate import validate_night
from tests.support.builders import NIGHT, ROOT, run_nights, write_config, write_extract
from tests.support.builders import Extract, fading, steady

LOYALTY = str(Path(sys.executable).with_name("loyalty"))


def loyalty(*args: str, cwd: Path | None = None, columns: int | None = None) -> subprocess.CompletedProcess:
    """The command as a user runs it; `columns`: as in a terminal that wide (else piped: no width)."""
    env = {k: v for k, v in os.environ.items() if k not in ("LOYALTY_CONFIG", "COLUMNS")}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return subprocess.run([LOYALTY, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


COMMANDS = [
    "run", "gate", "release", "serve", "alerts", "history", "snooze", "preview", "report", "quarantine", "explain", "generate-sample",
    "backtest", "tune", "rules check", "rules list", "rules test", "feedback serve", "feedback list",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command):
    result = loyalty(*command.split(), "--help")
    assert result.returncode == 0, result.stderr
    assert ("Example:" in result.stdout or "Examples:" in result.stdout) and f"loyalty {command}" in result.stdout
    assert "Exit codes" in result.stdout and "  0  " in result.stdout  # as a man page's EXIT STATUS


def test_the_cli_only_parses_and_hands_over():
    """cli.py holds no SQL and reaches into no module's private parts: the work is in api.py,
    the words on the terminal in console.py."""
    source = (ROOT / "loyalty_engine" / "cli.py").read_text(encoding="utf-8")
    assert not re.findall(r"\b(?:SELECT|FROM|INSERT|UPDATE|DELETE|CREATE|JOIN|WHERE)\b", source)
    assert "duckdb" not in source and ".execute(" not in source
    imported = [
        (node.module, alias.name) for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom) for alias in node.names
    ]
    assert imported and not [(module, name) for module, name in imported if name.startswith("_")]


def test_top_level_help_lists_commands_and_exit_codes():
    result = loyalty("--help", columns=100)
    assert result.returncode == 0
    for word in ("run", "serve", "alerts", "generate-sample", "Exit codes", "Getting started", "LOYALTY_CONFIG"):
        assert word in result.stdout
    for code in range(8):
        assert re.search(rf"^    {code}  \S", result.stdout, re.MULTILINE), code
    commands = result.stdout.split("Commands:\n")[1].split("\n\n")[0].splitlines()
    assert len(commands) == 16 and not [line for line in commands if line.endswith("...")]  # each summary whole


@pytest.mark.slow  # several CLI processes or a replay: seconds
def test_version_and_short_help():
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    for flag in ("--version", "-V"):
        result = loyalty(flag)
        assert (result.returncode, result.stdout) == (0, f"loyalty {version}\n")
    for command in ("", "alerts", "rules", "rules check"):
        short, long = loyalty(*command.split(), "-h"), loyalty(*command.split(), "--help")
        assert short.returncode == 0 and short.stdout == long.stdout and "-h, --help" in short.stdout


def test_bad_config_is_one_line_with_exit_2(tmp_path):
    (tmp_path / "config.yaml").write_text("extracts: {path: x}\ndatabase: db\nrules: r\nemail: {sender: a@b.c, mode: fax}\n")
    result = loyalty("alerts", "--config", str(tmp_path / "config.yaml"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {tmp_path / 'config.yaml'}:4: email.mode: must be one of 'outbox' or 'smtp', got 'fax'"
    )


def test_a_config_with_three_mistakes_prints_three_lines(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(
        "extracts: {path: x}\ndatabase: db\nrules: r\nemail: {sender: a@b.c, mode: fax}\ndigest:\n  max_acounts: 3\n  language: fr\n"
    )
    result = loyalty("alerts", "--config", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {path}:4: email.mode: must be one of 'outbox' or 'smtp', got 'fax'",
        f"error: {path}:6: digest.max_acounts: unknown key (did you mean 'digest.max_accounts'?)",
        f"error: {path}:7: digest.language: must be one of 'de' or 'en', got 'fr'",
    ]


def test_known_lists_in_error_lines_name_at_most_ten(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    for shipped in (ROOT / "rules").glob("*.yaml"):  # every metric known: more than ten names
        if not shipped.name.endswith(".test.yaml"):
            (rules / shipped.name).write_text(shipped.read_text(encoding="utf-8"), encoding="utf-8")
    text = (rules / "orders.yaml").read_text(encoding="utf-8")
    (rules / "orders.yaml").write_text(text.replace("orders_last_year >= min_orders", "orders_last_yaer >= min_orders", 1), encoding="utf-8")
    result = loyalty("rules", "check", str(rules))
    assert result.returncode == 1
    [line] = [line for line in result.stderr.splitlines() if "orders_last_yaer" in line]
    assert "(did you mean 'orders_last_year'?)" in line
    known = re.search(r"\(known: (.*)\)", line).group(1).split(", ")
    assert len(known) == 11 and known[-1] == "…"


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> Path:
    """A project folder whose database holds three evaluated nights (built without Prefect), on
    the shipped rules with falling_order_frequency live (it ships in shadow, never mailed): the
    commands are shown on a warning that reaches its owner."""
    folder = tmp_path_factory.mktemp("cli")
    rules = folder / "rules"
    shutil.copytree(ROOT / "rules", rules)
    orders = rules / "orders.yaml"
    live = orders.read_text(encoding="utf-8").replace("  - id: falling_order_frequency\n    severity: high\n    mode: shadow\n", "  - id: falling_order_frequency\n    severity: high\n", 1)
    assert live != orders.read_text(encoding="utf-8")
    orders.write_text(live, encoding="utf-8")
    config = write_config(folder)
    config.write_text(config.read_text(encoding="utf-8").replace(f"rules: {ROOT / 'rules'}", f"rules: {rules}"), encoding="utf-8")
    x = Extract()
    x.order_on(x.account("A1"), *fading())
    x.order_on(x.account("A2", owner="bernd"), *steady(30))
    x.orders.append({"order_id": "X", "account_id": "A9", "order_date": "2026-11-01", "amount": "1", "currency": "EUR"})
    write_extract(folder / "extracts", accounts=x.accounts, orders=x.orders)
    with store.connect(folder / "data" / "loyalty.duckdb") as con:
        validate_night(con, stage_extracts(con, folder / "extracts", NIGHT), NIGHT)
        # Three nights: falling_order_frequency waits `for: 3 nights`.
        run_nights(con, load_rules(rules), NIGHT - timedelta(days=2), NIGHT - timedelta(days=1), NIGHT)
    return config


def test_alerts_as_csv_and_json(evaluated):
    result = loyalty("alerts", "--config", str(evaluated), "--date", NIGHT.isoformat(), "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["account_id"], r["account_name"], r["rule_id"], r["severity"], r["state"], r["notice"], r["recipient"]) for r in rows] == [
        ("A1", "Kunde A1", "falling_order_frequency", "high", "firing", "new", "anna@example.com")
    ]
    evidence = json.loads(rows[0]["evidence"])
    assert (evidence["orders_recent"], evidence["days_since_order"], evidence["min_orders"]) == (2, 30, 6)
    as_json = json.loads(loyalty("alerts", "--config", str(evaluated), "--format", "json").stdout)
    assert as_json[0]["night"] == NIGHT.isoformat() and as_json[0]["evidence"]["orders_recent"] == 2


def test_alerts_carry_the_owner_beside_the_recipient(evaluated):
    result = loyalty("alerts", "--config", str(evaluated), "--format", "csv")
    [row] = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(row).index("owner_email") == list(row).index("recipient") + 1
    assert (row["recipient"], row["owner_email"]) == ("anna@example.com", "anna@example.com")
    [as_json] = json.loads(loyalty("alerts", "--config", str(evaluated), "--format", "json").stdout)
    assert as_json["owner_email"] == "anna@example.com"


@pytest.mark.parametrize(
    "filters, accounts",
    [
        (("--owner", "ANNA@example.com"), ["A1"]),
        (("--owner", "bernd@example.com"), []),
        (("--rule", "falling_order_frequency"), ["A1"]),
        (("--state", "firing"), ["A1"]),
        (("--state", "pending"), []),
        (("--notice", "new", "--state", "firing"), ["A1"]),
        (("--notice", "open"), []),
    ],
)
def test_alerts_filters(evaluated, filters, accounts):
    result = loyalty("alerts", "--config", str(evaluated), "--format", "json", *filters)
    assert result.returncode == 0, result.stderr
    assert [row["account_id"] for row in json.loads(result.stdout)] == accounts


def test_alerts_refuse_a_night_never_evaluated_and_a_rule_that_never_warned(evaluated):
    never = loyalty("alerts", "--config", str(evaluated), "--date", "2026-11-01")
    assert (never.returncode, never.stdout) == (2, "")
    assert never.stderr.strip() == f"error: night 2026-11-01 was never evaluated (the latest evaluated night is {NIGHT})"
    typo = loyalty("alerts", "--config", str(evaluated), "--rule", "falling_order_frequenzy")
    assert (typo.returncode, typo.stderr.strip()) == (
        2, "error: --rule: no warning of rule 'falling_order_frequenzy' on any night (did you mean 'falling_order_frequency'?)")
    bad_state = loyalty("alerts", "--config", str(evaluated), "--state", "burning")
    assert bad_state.returncode == 2


def test_alerts_table_fits_the_terminal(evaluated):
    wide = loyalty("alerts", "--config", str(evaluated))
    header = wide.stdout.splitlines()[1].split()
    assert header == ["account_id", "account_name", "rule_id", "mode", "severity", "state", "notice", "mailed", "recipient", "owner_email"]
    assert "reason" not in header  # empty in every row: left out of the table (csv and json keep it)
    assert wide.stdout.splitlines()[3].split()[-3:] == ["yes", "anna@example.com", "anna@example.com"]  # booleans read yes/no
    narrow = loyalty("alerts", "--config", str(evaluated), columns=100)
    assert narrow.returncode == 0, narrow.stderr
    lines = narrow.stdout.splitlines()
    assert all(len(line) <= 100 for line in lines)
    assert lines[1].split() == ["account_id", "rule_id", "severity", "state", "notice", "recipient"]  # no header elided
    assert lines[3].split() == ["A1", "falling_order_frequency", "high", "firing", "new", "anna@example.com"]
    assert "(left out to fit 100 columns: owner_email, mode, mailed, account_name; --format csv or json has every column)" in narrow.stderr
    for columns in (80,):  # narrower still: elided to the headers, ids whole
        result = loyalty("alerts", "--config", str(evaluated), columns=columns)
        assert all(len(line) <= columns for line in result.stdout.splitlines()) and "falling_order_frequency" in result.stdout
    as_csv = loyalty("alerts", "--config", str(evaluated), "--format", "csv", columns=80)
    assert {"owner_email", "mode", "mailed", "reason"} <= set(next(csv.reader(io.StringIO(as_csv.stdout))))


@pytest.mark.slow  # several CLI processes or a replay: seconds
def test_rules_list_fits_the_terminal():
    for columns in (60, 80, 100):
        result = loyalty("rules", "list", str(ROOT / "rules"), columns=columns)
        assert result.returncode == 0, result.stderr
        assert all(len(line) <= columns for line in result.stdout.splitlines())
        assert "falling_order_frequency" in result.stdout and "complaint_spike" in result.stdout


def test_quarantine_lists_the_bad_cells(evaluated):
    result = loyalty("quarantine", "--config", str(evaluated), "--table", "orders", "--format", "json")
    assert result.returncode == 0, result.stderr
    [row] = json.loads(result.stdout)
    assert (row["line"], row["row_key"], row["column_name"], row["check_name"], row["value"]) == (
        57, "X", "account_id", "account_exists", "A9")


@pytest.mark.parametrize(
    "command, shows",
    [("alerts", "A1"), ("history A1", "fired"), ("snooze --list", ""), ("explain A1", "FIRES"), ("rules check", "13 rules"),
     ("rules list", "nps_detractor")],
)
def test_ops_commands_do_not_import_prefect(evaluated, command, shows):
    """Ops commands answer fast: they read the database or the rule files and never start Prefect."""
    code = (
        "import sys; from loyalty_engine.cli import main\n"
        f"sys.argv = ['loyalty', *{command.split()!r}, '--config', {str(evaluated)!r}]\n"
        "try:\n    main()\nexcept SystemExit as done:\n    assert not done.code, done.code\n"
        "assert not [m for m in sys.modules if m.startswith('prefect')], 'prefect was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert shows in result.stdout


@pytest.fixture
def warned(tmp_path) -> Path:
    """A config whose database holds one evaluated night with one warning, written directly: no
    validation or evaluation, so the test that uses it stays fast."""
    config = write_config(tmp_path)
    with store.connect(tmp_path / "data" / "loyalty.duckdb") as con:
        con.execute("CREATE TABLE accounts (account_id VARCHAR, name VARCHAR, owner_email VARCHAR)")
        con.execute("INSERT INTO accounts VALUES ('A1', 'Alpha GmbH', 'anna@example.com')")
        con.execute("INSERT INTO nights VALUES (?, now())", [NIGHT])
        con.execute(
            "INSERT INTO warning_nights (night, account_id, rule_id, severity, evidence, state, held_nights, since, notice, mailed, recipient)"
            " VALUES (?, 'A1', 'falling_order_value', 'high', '{}', 'firing', 1, ?, 'new', true, 'anna@example.com')",
            [NIGHT, NIGHT],
        )
    return config


@pytest.mark.parametrize(
    "command, shows, heavy",
    [("alerts", "A1", ("sqlglot",)), ("history A1", "fired", ("sqlglot",)), ("rules list", "nps_detractor", ())],
)
def test_reading_commands_import_nothing_heavy(warned, command, shows, heavy):
    """The commands that read a few rows (or the rule files) never load the extracts' validation
    (pandera, polars, and pyspark, which pandera imports when installed) or Prefect: each costs
    them a large part of the half second issue 17 allows."""
    unwanted = ("pandera", "polars", "pyspark", "prefect", *heavy)
    code = (
        "import sys; from loyalty_engine.cli import main\n"
        f"sys.argv = ['loyalty', *{command.split()!r}, '--config', {str(warned)!r}]\n"
        "try:\n    main()\nexcept SystemExit as done:\n    assert not done.code, done.code\n"
        f"loaded = sorted({{m.split('.')[0] for m in sys.modules}} & {set(unwanted)!r})\n"
        "assert not loaded, f'imported {loaded}'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert shows in result.stdout


def test_history_tells_the_story_of_an_account(evaluated):
    result = loyalty("history", "A1", "--config", str(evaluated), "--format", "csv")
    assert result.returncode == 0, result.stderr
    events = [(r["night"], r["rule_id"], r["event"]) for r in csv.DictReader(io.StringIO(result.stdout))]
    assert events == [
        ("2026-11-21", "falling_order_frequency", "pending (1 night held)"),
        ("2026-11-23", "falling_order_frequency", "fired, mailed to anna@example.com"),
    ]
    unknown = loyalty("history", "NOPE", "--config", str(evaluated))
    assert (unknown.returncode, unknown.stderr.strip()) == (2, "error: unknown account 'NOPE': not in tonight's accounts and never warned")


def test_snooze_adds_lists_and_removes_entries_in_the_snoozes_file(evaluated):
    args = ("--config", str(evaluated))
    added = loyalty("snooze", "A1", "--rule", "falling_order_frequency", "--until", "2099-12-31", "--reason", "Werksferien", "--by", "anna", *args)
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("snooze 1: A1 (falling_order_frequency) not mailed up to and including 2099-12-31")
    snoozes = evaluated.parent / "snoozes.yaml"
    assert "reason: Werksferien" in snoozes.read_text(encoding="utf-8")
    listed = loyalty("snooze", "--list", *args)
    assert "A1" in listed.stdout and "active" in listed.stdout and listed.stderr.strip() == "1 snooze"
    assert loyalty("rules", "check", *args).returncode == 0  # the file passes the check it is held to
    removed = loyalty("snooze", "--remove", "1", *args)
    assert removed.returncode == 0 and "removed snooze 1 of A1" in removed.stdout
    assert "A1" not in snoozes.read_text(encoding="utf-8")
    for bad, message in [
        (("A1x",), "error: unknown account 'A1x' (did you mean 'A1'?): not in the latest accounts extract"),
        (("A1", "--rule", "falling_order_frequenzy"), "error: --rule: unknown rule 'falling_order_frequenzy' (did you mean 'falling_order_frequency'?)"),
        (("A1", "--until", "2026-11-22"),
         f"error: --until 2026-11-22 lies before the newest evaluated night ({NIGHT}); a snooze covers nights up to and including its end date"),
    ]:
        call = {"--until": "2099-12-31", "--reason": "x"} | dict(zip(bad[1::2], bad[2::2]))
        result = loyalty("snooze", bad[0], *[part for pair in call.items() for part in pair], *args)
        assert (result.returncode, result.stderr.strip()) == (2, message)


def test_snoozes_are_judged_against_the_newest_evaluated_night_not_the_machines_date(evaluated):
    """The evaluated night is 2026-11-23: a snooze up to that night is accepted and active, even
    when the machine's today lies later."""
    args = ("--config", str(evaluated))
    added = loyalty("snooze", "A1", "--until", NIGHT.isoformat(), "--reason", "replay", "--by", "anna", *args)
    assert added.returncode == 0, added.stderr
    try:
        [row] = [line for line in loyalty("snooze", "--list", *args).stdout.splitlines() if "replay" in line]
        assert "active" in row.split()
    finally:
        loyalty("snooze", "--remove", added.stdout.split(":")[0].split()[1], *args)


def test_a_bad_snoozes_file_is_one_line_from_rules_check(evaluated):
    snoozes = evaluated.parent / "snoozes.yaml"
    snoozes.write_text("snoozes:\n  - id: 1\n    account: A1\n    until: 2099-12-31\n", encoding="utf-8")
    try:
        result = loyalty("rules", "check", "--config", str(evaluated))
    finally:
        snoozes.unlink()
    assert result.returncode == 1
    assert result.stderr.startswith(f"{snoozes}:2:5: snooze is missing required key 'reason'\n")


def test_preview_writes_an_owners_digest_without_sending(evaluated, tmp_path):
    out = tmp_path / "anna.html"
    result = loyalty("preview", "--owner", "anna@example.com", "--out", str(out), "--config", str(evaluated))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Frühwarnung 23.11.2026: 1 neues Warnsignal bei einem Kunden")
    assert "Bestellfrequenz sinkt" in out.read_text(encoding="utf-8") and out.with_suffix(".txt").exists()
    nobody = loyalty("preview", "--owner", "bernd@example.com", "--out", str(out), "--config", str(evaluated))
    assert nobody.returncode == 2 and "bernd@example.com gets no digest on 2026-11-23" in nobody.stderr


def test_explain_shows_each_part_of_the_condition_with_its_numbers(evaluated):
    result = loyalty("explain", "A1", "--config", str(evaluated), "--date", NIGHT.isoformat())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Account A1: Kunde A1, owner Anna <anna@example.com>"
    rule = lines.index("falling_order_frequency (high): FIRES")
    assert lines[rule + 1] == "  warning: firing since 2026-11-23 (new), mailed to anna@example.com"
    assert lines[rule + 2].split() == (
        "when orders_last_year >= min_orders and days_since_order <= max_silence and orders_unusual < max_chance"
        " and -orders_trend * 144 >= min_decline * orders_last_year and -orders_trend * 12 >= min_t * orders_spread (for: 3 nights)"
    ).split()
    assert lines[rule + 3].split() == "resolve when orders_unusual >= resolve_chance or days_since_order > max_silence".split()
    assert lines[rule + 5].split() == "yes orders_last_year >= min_orders 26 >= 6".split()
    assert lines[rule + 9].split() == "yes -orders_trend * 12 >= min_t * orders_spread 4.8 >= 3.72".split()
    assert "orders_recent    = 2          number of orders, over 90d (2026-08-26 … 2026-11-23)" in result.stdout
    assert "orders_unusual   = 0.01 (about once in 86 quarters) chance of at most this many orders" in result.stdout
    assert "nps_detractor (high): skipped: needs the optional table surveys, absent tonight" in result.stdout
    missing = loyalty("explain", "NOPE", "--config", str(evaluated))
    assert (missing.returncode, missing.stderr.strip()) == (2, "error: account 'NOPE' is not in the loaded accounts")


def test_explain_says_pending_or_firing_and_whether_mailed(evaluated):
    """The second night the data already holds the condition for 3 nights, but the lifecycle has
    evaluated two: pending, not FIRES."""
    first = (NIGHT - timedelta(days=1)).isoformat()
    result = loyalty("explain", "A1", "--config", str(evaluated), "--date", first)
    lines = result.stdout.splitlines()
    rule = lines.index("falling_order_frequency (high): PENDING (the data holds the condition; the warning is still pending)")
    assert lines[rule + 1] == "  warning: pending (2 nights held), not mailed"
    as_json = json.loads(loyalty("explain", "A1", "--config", str(evaluated), "--format", "json").stdout)
    assert (as_json["account_id"], as_json["night"], as_json["evaluated"]) == ("A1", NIGHT.isoformat(), True)
    [falling] = [r for r in as_json["rules"] if r["rule_id"] == "falling_order_frequency"]
    assert falling["outcome"] == "fires" and falling["warning"]["state"] == "firing"
    assert (falling["warning"]["mailed"], falling["warning"]["recipient"]) == (True, "anna@example.com")
    assert falling["parts"][0] == {"condition": "orders_last_year >= min_orders", "held": True, "compared": "26 >= 6"}
    assert {"name": "orders_recent", "value": 2}.items() <= next(n for n in falling["numbers"] if n["name"] == "orders_recent").items()


@pytest.mark.slow  # several CLI processes or a replay: seconds
def test_rules_test_passes_for_every_shipped_rule_file():
    result = loyalty("rules", "test", str(ROOT / "rules"))
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {line.split()[1].split(":")[0] for line in result.stdout.splitlines() if line.startswith("PASS")}
    shipped = {str(p) for p in (ROOT / "rules").glob("*.yaml") if not p.name.endswith(".test.yaml")}
    assert {t.replace(".test.yaml", ".yaml") for t in tested} == shipped
    assert "FAIL" not in result.stdout


def test_alerts_without_a_database_says_so(tmp_path):
    config = write_config(tmp_path)
    result = loyalty("alerts", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'data' / 'loyalty.duckdb'}: no database yet; run `loyalty run` first"


def test_run_with_a_broken_rule_exits_4_before_touching_data(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    text = (ROOT / "rules" / "orders.yaml").read_text(encoding="utf-8")
    (rules / "falling.yaml").write_text(text.replace("orders_last_year >= min_orders", "orders_last_yaer >= min_orders", 1), encoding="utf-8")
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace(f"rules: {ROOT / 'rules'}", "rules: rules"))
    result = loyalty("run", "--config", str(config))
    assert result.returncode == 4
    assert result.stderr.startswith(
        f"error: {rules / 'falling.yaml'}:33:11: unknown metric 'orders_last_yaer' in when (did you mean 'orders_last_year'?)"
    )
    assert len(result.stderr.strip().splitlines()) == 1
    # The run lock was taken first (data/loyalty.duckdb.lock, given back empty); no database was made.
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["loyalty.duckdb.lock"]
    assert (tmp_path / "data" / "loyalty.duckdb.lock").read_text() == ""


@pytest.mark.slow  # the whole demo: sample, Prefect, outbox
def test_the_demo_path_sample_to_outbox(tmp_path):
    """What `make demo` does, in a fresh folder: generate the sample, run the newest night."""
    config = write_config(tmp_path)
    sample = loyalty("generate-sample", "--out", str(tmp_path / "extracts"), "--end-date", "2026-11-23", "--nights", "2")
    assert sample.returncode == 0, sample.stderr
    assert "2 nights, 2026-11-20 to 2026-11-23" in sample.stdout and "ground_truth.csv" in sample.stdout
    assert sorted(p.name for p in (tmp_path / "extracts").iterdir()) == ["2026-11-20", "2026-11-23", "ground_truth.csv"]
    result = loyalty("run", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "Rules:" in result.stderr and "Night 2026-11-23" in result.stdout
    emls = sorted((tmp_path / "outbox" / "2026-11-23").glob("*.eml"))
    assert len(emls) >= 2  # 200 accounts: two owners
    assert f"digests: {len(emls)} written to {tmp_path / 'outbox' / '2026-11-23'}" in result.stdout
    message = email.message_from_bytes(emls[0].read_bytes(), policy=policy.default)
    assert message["Subject"].startswith("Frühwarnung 23.11.2026:")
    assert "Kundennummer K-" in message.get_body(("plain",)).get_content()


def test_a_database_in_use_is_one_line(evaluated):
    import duckdb

    with duckdb.connect(str(evaluated.parent / "data" / "loyalty.duckdb")):  # another process would hold the lock
        code = (
            "import sys; from loyalty_engine.cli import main\n"
            f"sys.argv = ['loyalty', 'alerts', '--config', {str(evaluated)!r}]\nmain()\n"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {evaluated.parent / 'data' / 'loyalty.duckdb'}: cannot open the database: IO Error: Could not set lock")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # several CLI processes or a replay: seconds
def test_a_missing_column_is_answered_before_prefect_starts(tmp_path):
    """`gate` and `run` answer from the header line alone; `run` keeps the failed checks and
    stops with exit 3 without ever importing Prefect (here refused)."""
    config = write_config(tmp_path)
    x = Extract()
    x.order_on(x.account("A1"), *fading())
    write_extract(tmp_path / "extracts", accounts=x.accounts, orders=x.orders)
    orders = next((tmp_path / "extracts").rglob("orders.csv"))
    orders.write_text(orders.read_text(encoding="utf-8").replace("order_date", "datum", 1), encoding="utf-8")
    expected = f"{orders}: missing required column 'order_date' (found: order_id, account_id, datum, amount, currency)"
    gate = loyalty("gate", "--config", str(config), "--format", "json")
    assert gate.returncode == 3, gate.stderr
    assert "Checking the extracts" not in gate.stderr  # answered from the header, the files not read
    [check] = [c for c in json.loads(gate.stdout) if c["outcome"] == "fail"]
    assert (check["table"], check["name"], check["figure"]) == ("orders", "schema", expected)
    code = (
        "import sys; sys.modules['prefect'] = sys.modules['flows.nightly'] = None  # Prefect may not start\n"
        "from loyalty_engine.cli import main\n"
        f"sys.argv = ['loyalty', 'run', '--config', {str(config)!r}]\nmain()\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 3, run.stderr
    assert run.stderr.strip().splitlines()[-1] == f"error: night {NIGHT} stopped by the gate: orders schema: {expected}"
    assert "Prefect" not in run.stderr


def test_rules_check_reports_every_problem_of_a_rule(tmp_path):
    """A misspelt severity does not hide behind a misspelt key in the same rule."""
    rules = tmp_path / "rules"
    rules.mkdir()
    text = (ROOT / "rules" / "orders.yaml").read_text(encoding="utf-8")
    assert "    severity: high\n" in text
    spoilt = text.replace("    severity: high\n", "    severity: hihg\n    colour: red\n", 1)
    (rules / "orders.yaml").write_text(spoilt, encoding="utf-8")
    result = loyalty("rules", "check", str(rules))
    assert result.returncode == 1
    problems = [line for line in result.stderr.splitlines() if line.startswith(str(rules / "orders.yaml"))]
    assert len(problems) == 2, result.stderr
    assert any("severity must be one of" in line and "'hihg'" in line for line in problems)
    assert any("unknown key 'colour'" in line for line in problems)
