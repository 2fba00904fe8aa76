"""Shadow rules (`mode: shadow`): evaluated every night and kept in history exactly as a live rule
would be, never mailed, never holding the owners' digests, never hiding a live warning; and when
the rule goes live, a warning that already fired in shadow reaches the owner as new.

Real parts throughout: rule files in a temporary folder, extracts as CSV, the night's transaction
(night.run_night), the render and deliver tasks' own functions writing .eml files to an outbox.
"""

from __future__ import annotations

import csv
import email
import io
import os
import subprocess
import sys
from datetime import date, timedelta
from email import policy
from pathlib import Path

import pytest

from loyalty_engine import store
from loyalty_engine.config import DigestSettings, EmailSettings, ExtractSettings, GateSettings, Settings
from loyalty_engine.errors import RuleError
from loyalty_engine.gate import DigestsHeld, Outcome
from loyalty_engine.lifecycle.warnings import SHADOW_REASON
from loyalty_engine.mail.budget import RIDES_ALONG
from loyalty_engine.night import run_night
from loyalty_engine.mail.mailing import night_mailing
from loyalty_engine.results import account_history, night_warnings
from loyalty_engine.rules.loader import load_rules
from tests.support.builders import write_config, write_extract

N1 = date(2026, 11, 23)
LAST_ORDER = N1 - timedelta(days=5)  # quiet for 5 days on N1, 6 on N2: the rules below fire from N2 on


def n(k: int) -> date:
    return N1 + timedelta(days=k - 1)


# gone_quiet is the rule on trial. It fires for every account from N2 on; alpha_quiet, live,
# only for Alpha.
RULES = """
metrics:
  quiet: {days_since_latest: orders}
  account_name: {attribute: name}
rules:
  - id: alpha_quiet
    severity: high
    when: quiet >= 6 and account_name = 'Alpha'
    title: {de: Alpha bestellt nicht, en: Alpha does not order}
    message: m
    action: a
  - id: gone_quiet
    severity: medium
    mode: shadow
    when: quiet >= 6
    title: {de: Seit Tagen still, en: Quiet for days}
    message: m
    action: a
"""

ACCOUNTS = [
    {"account_id": "A", "name": "Alpha", "owner_email": "anna@example.com", "owner_name": "Anna", "status": "active"},
    {"account_id": "A2", "name": "Alpha Zwei", "owner_email": "anna@example.com", "owner_name": "Anna", "status": "active"},
    {"account_id": "B", "name": "Beta", "owner_email": "bernd@example.com", "owner_name": "Bernd", "status": "active"},
    # Orders every day, so the extract is never stale (the gate's freshness check) and S never warned.
    {"account_id": "S", "name": "Steady", "owner_email": "sam@example.com", "owner_name": "Sam", "status": "active"},
]


class Project:
    """A project folder: a rule file, a night's extracts per night, one database, an outbox."""

    def __init__(self, root: Path, rules: str, gate: GateSettings = GateSettings()):
        self.root = root
        self.rules = root / "rules" / "r.yaml"
        self.rules.parent.mkdir()
        self.rules.write_text(rules, encoding="utf-8")
        self.settings = Settings(
            extracts=ExtractSettings(path=root / "extracts"),
            database=root / "data" / "loyalty.duckdb",
            rules=self.rules.parent,
            email=EmailSettings(mode="outbox", outbox_dir=root / "outbox", sender="fw@example.com"),
            digest=DigestSettings(repeat_after_days=2),
            gate=gate,
        )
        self.new_orders: dict[date, list[str]] = {}  # night -> accounts that ordered on it

    def orders(self, night: date) -> list[dict]:
        """Every account's order on LAST_ORDER, S's on each night since, and the new ones up to the night."""
        placed = [(a["account_id"], LAST_ORDER) for a in ACCOUNTS]
        placed += [("S", LAST_ORDER + timedelta(days=k)) for k in range(1, (night - LAST_ORDER).days + 1)]
        placed += [(account, day) for day, accounts in self.new_orders.items() if day <= night for account in accounts]
        return [{"order_id": f"O-{account}-{day}", "account_id": account, "order_date": day.isoformat(), "amount": "100", "currency": "EUR"}
                for account, day in placed]  # fmt: skip

    def night(self, night: date) -> dict[tuple[str, str], tuple]:
        """Run the night's transaction and deliver its digests; (account, rule) -> (notice, mailed, reason)."""
        write_extract(self.root / "extracts", night, accounts=ACCOUNTS, orders=self.orders(night))
        ruleset = load_rules(self.settings.rules)
        with store.connect(self.settings.database) as con:
            self.state = run_night(con, self.settings, ruleset, [], night)
        self.deliver(night)
        with store.connect(self.settings.database, read_only=True) as con:
            rows = con.execute("SELECT account_id, rule_id, notice, mailed, reason FROM warning_nights WHERE night = ?", [night]).fetchall()
        return {(account, rule): (notice, mailed, reason) for account, rule, notice, mailed, reason in rows}

    def deliver(self, night: date) -> None:
        """The nightly flow's render and deliver tasks, called as plain functions (no Prefect run)."""
        from flows.nightly import deliver_task, render_task

        digests, _ = render_task.fn(self.settings, load_rules(self.settings.rules), night)
        deliver_task.fn(self.settings, night, digests)

    def mails(self, night: date) -> dict[str, str]:
        """The night's .eml files: recipient (To) -> plain text body."""
        folder = self.settings.email.outbox_dir / night.isoformat()
        mails = {}
        for path in sorted(folder.glob("*.eml")) if folder.exists() else []:
            message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
            mails[message["To"].addresses[0].addr_spec] = message.get_body(("plain",)).get_content()
        return mails


@pytest.fixture
def project(tmp_path):
    return Project(tmp_path, RULES)


def test_a_shadow_rule_is_kept_in_history_as_if_live_but_never_mailed(project):
    assert project.night(n(1)) == {}
    second = project.night(n(2))
    assert second[("A", "alpha_quiet")] == ("new", True, None)
    for account in ("A", "A2", "B"):  # the night it would have mailed them: 'new', as history should say
        assert second[(account, "gone_quiet")] == ("new", False, SHADOW_REASON)
    # Only Anna hears, and only of the live rule; Bernd, with shadow warnings only, gets no mail.
    mails = project.mails(n(2))
    assert list(mails) == ["anna@example.com"]
    assert "Alpha bestellt nicht" in mails["anna@example.com"] and "Seit Tagen still" not in mails["anna@example.com"]
    with store.connect(project.settings.database, read_only=True) as con:
        mailing = night_mailing(con, load_rules(project.settings.rules), n(2), "de", ["ops@example.com"])
        assert {(w.account_id, w.rule_id) for w in mailing.warnings} == {("A", "alpha_quiet")}
        # The header's "accounts with warnings" counts what Anna was told of: Alpha, not Alpha Zwei.
        assert mailing.portfolios["anna@example.com"].warned == 1
        # A preview of every open warning (`loyalty preview --all-open`) leaves the shadow rule out too.
        preview = night_mailing(con, load_rules(project.settings.rules), n(2), "de", [], all_open=True)
        assert {w.rule_id for w in preview.warnings} == {"alpha_quiet"}
    # Open, then repeat after repeat_after_days (2), as a live rule: last_mailed runs as if mailed.
    assert project.night(n(3))[("B", "gone_quiet")] == ("open", False, SHADOW_REASON)
    assert project.night(n(4))[("B", "gone_quiet")] == ("repeat", False, SHADOW_REASON)
    assert "bernd@example.com" not in project.mails(n(4))
    project.new_orders[n(5)] = ["B"]
    assert project.night(n(5))[("B", "gone_quiet")] == ("resolved", False, SHADOW_REASON)
    assert "bernd@example.com" not in project.mails(n(5))


def test_alerts_and_history_show_the_mode_and_what_it_would_have_sent(project):
    for k in (1, 2):
        project.night(n(k))
    rows = {(r["account_id"], r["rule_id"]): r for r in night_warnings(project.settings.database)}
    assert (rows[("B", "gone_quiet")]["mode"], rows[("B", "gone_quiet")]["mailed"]) == ("shadow", False)
    assert (rows[("A", "alpha_quiet")]["mode"], rows[("A", "alpha_quiet")]["mailed"]) == ("live", True)
    events = [(r["rule_id"], r["mode"], r["event"], r["reason"]) for r in account_history(project.settings.database, "A")]
    assert events == [
        ("alpha_quiet", "live", "fired, mailed to anna@example.com", None),
        ("gone_quiet", "shadow", "fired, would have been mailed to anna@example.com (shadow rule)", SHADOW_REASON),
    ]
    # The command, as ops run it (reads the database only).
    config = write_config(project.root)
    result = subprocess.run(
        [str(Path(sys.executable).with_name("loyalty")), "alerts", "--config", str(config), "--format", "csv"],
        capture_output=True, text=True, timeout=120, env={k: v for k, v in os.environ.items() if k != "LOYALTY_CONFIG"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    shown = {(r["account_id"], r["rule_id"], r["mode"], r["notice"], r["mailed"]) for r in csv.DictReader(io.StringIO(result.stdout))}
    assert ("B", "gone_quiet", "shadow", "new", "False") in shown and ("A", "alpha_quiet", "live", "new", "True") in shown


@pytest.mark.parametrize("mode, held", [("shadow", False), ("live", True)])
def test_a_noisy_shadow_rule_never_holds_the_digests(tmp_path, mode, held):
    # One newly warned account in ten is a flood here; gone_quiet warns three of four on N2.
    rules = RULES.replace("mode: shadow", f"mode: {mode}")
    project = Project(tmp_path, rules, GateSettings(max_new_warning_share=0.1, flood_min_accounts=1))
    project.new_orders[n(1)] = ["A"]  # so alpha_quiet stays quiet: only gone_quiet could flood
    project.night(n(1))
    if held:  # the same rule live: the very night is held, which shows the check looks at all
        with pytest.raises(DigestsHeld):
            project.night(n(2))
        return
    assert project.night(n(2))[("B", "gone_quiet")] == ("new", False, SHADOW_REASON)
    [flood] = [c for c in project.state.checks if c.name == "flood"]
    assert flood.outcome is Outcome.PASS and flood.figure.startswith("0 of 4 accounts newly warned")


def test_a_shadow_rule_cannot_hide_a_live_warning_but_a_live_rule_hides_a_shadow_one(tmp_path):
    rules = RULES.replace("    when: quiet >= 6\n", "    when: quiet >= 6\n    inhibits: [alpha_quiet, trial_quiet]\n")
    rules = rules.replace("    when: quiet >= 6 and account_name = 'Alpha'\n", "    when: quiet >= 6 and account_name = 'Alpha'\n    inhibits: [trial_quiet]\n")
    rules += """
  - {id: trial_quiet, severity: low, mode: shadow, when: quiet >= 6, title: t, message: m, action: a}
"""
    project = Project(tmp_path, rules)
    project.night(n(1))
    second = project.night(n(2))
    # gone_quiet (shadow) fires on Alpha and names alpha_quiet in inhibits: the owner is told anyway.
    assert second[("A", "alpha_quiet")] == ("new", True, None)
    assert second[("A", "gone_quiet")] == ("new", False, SHADOW_REASON)
    # A live rule hides a shadow one as usual, and a shadow rule another shadow one (as once both are live).
    assert second[("A", "trial_quiet")] == ("inhibited", False, f"{SHADOW_REASON}; hidden by alpha_quiet")
    assert second[("B", "trial_quiet")] == ("inhibited", False, f"{SHADOW_REASON}; hidden by gone_quiet")
    assert "Alpha bestellt nicht" in project.mails(n(2))["anna@example.com"]


def test_going_live_tells_the_owner_of_a_warning_that_fired_in_shadow(project):
    # Alpha orders on N1 too, so it goes quiet (alpha_quiet, something new for Anna) only on N7.
    project.new_orders[n(1)] = ["A"]
    for k in (1, 2):
        project.night(n(k))
    assert project.night(n(3))[("A2", "gone_quiet")] == ("open", False, SHADOW_REASON)
    # Ops take the rule live by deleting `mode: shadow`; Bernd's account orders that very night.
    project.rules.write_text(RULES.replace("    mode: shadow\n", ""), encoding="utf-8")
    project.new_orders[n(4)] = ["B"]
    fourth = project.night(n(4))
    # Anna never heard of it: new to her, and mailed, though it has fired since N2.
    assert fourth[("A2", "gone_quiet")] == ("new", True, None)
    assert "Seit Tagen still" in project.mails(n(4))["anna@example.com"]
    # Bernd's resolves the night it goes live: he was never told of it, so no "resolved" mail.
    assert fourth[("B", "gone_quiet")] == ("resolved", False, "the owner had not been told of it")
    assert "bernd@example.com" not in project.mails(n(4))
    # From now on it is an ordinary live warning: mailed on N4, quiet on N5, due again on N6
    # (repeat_after_days 2); Anna has nothing new on N6, so the repeat rides along in her next
    # digest, which goes out on N7 for Alpha's new warning.
    assert project.night(n(5))[("A2", "gone_quiet")] == ("open", False, None)
    assert project.night(n(6))[("A2", "gone_quiet")] == ("open", False, RIDES_ALONG)
    assert "anna@example.com" not in project.mails(n(6))
    seventh = project.night(n(7))
    assert seventh[("A", "alpha_quiet")] == ("new", True, None)
    assert seventh[("A2", "gone_quiet")] == ("repeat", True, None)
    assert "Alpha Zwei" in project.mails(n(7))["anna@example.com"]


def test_a_bad_mode_is_one_line_with_its_place_and_the_allowed_values(tmp_path):
    (tmp_path / "r.yaml").write_text(RULES.replace("mode: shadow", "mode: Shadow"), encoding="utf-8")
    with pytest.raises(RuleError) as error:
        load_rules(tmp_path)
    assert str(error.value) == f"{tmp_path / 'r.yaml'}:14:11: mode must be one of live, shadow, got 'Shadow' (did you mean 'shadow'?)"
    (tmp_path / "r.yaml").write_text(RULES.replace("mode: shadow", "mode: [live]"), encoding="utf-8")
    with pytest.raises(RuleError, match=r"r\.yaml:14:11: mode must be one of live, shadow, got \['live'\]$"):
        load_rules(tmp_path)
    # Left out, a rule is live.
    (tmp_path / "r.yaml").write_text(RULES, encoding="utf-8")
    assert {r.id: r.mode for r in load_rules(tmp_path).rules} == {"alpha_quiet": "live", "gone_quiet": "shadow"}
