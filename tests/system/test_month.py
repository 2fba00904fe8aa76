"""A simulated month of nights on the sample data, through every stage from the extract folder to
the outbox: each warning is mailed when it starts, again on its repeat interval, once when it
resolves and never otherwise; snoozed and inhibited warnings are not mailed; each warning
reaches exactly one recipient; a night without an extract changes nothing.

The expectation is computed here, night by night, from the signals the engine stored, by a
plain re-statement of the lifecycle rules (docs: README, "Warnings with a memory")."""

from __future__ import annotations

import csv
import shutil
import email
from dataclasses import dataclass, field
from datetime import date, timedelta
from email import policy

import pytest

from loyalty_engine import store
from loyalty_engine.config import DigestSettings, EmailSettings, ExtractSettings, Settings
from loyalty_engine.mail.budget import DEFERRED
from loyalty_engine.mail.delivery import deliver_digests
from loyalty_engine.mail.digest import render_digests
from loyalty_engine.gate import GateFailed
from loyalty_engine.night import run_night
from loyalty_engine.mail.mailing import night_mailing
from loyalty_engine.rules.loader import load_rules
from loyalty_engine.sample.generator import generate_sample
from loyalty_engine.lifecycle.snoozes import Snooze
from tests.support.builders import ROOT

END = date(2026, 11, 20)
REPEAT = 7
SKIPPED = 9  # the 10th business night has no extract
OPS = "ops@example.com"


@dataclass
class Oracle:
    """The lifecycle as the docs state it, for one (account, rule) pair at a time."""

    for_nights: dict[str, int]
    inhibits: dict[str, set[str]]
    pairs: dict[tuple[str, str], dict] = field(default_factory=dict)

    def night(self, night: date, held: set, unknown: set, present: set, closed: set, snoozed) -> dict:
        """(account, rule) -> 'new' | 'repeat' | 'resolved' for what the night mails."""
        mailed, firing = {}, set()
        for pair in set(self.pairs) | held:
            account, rule = pair
            was = self.pairs.get(pair)
            if pair in held:
                count = (was["held"] if was else 0) + 1
                firing_now = (was and was["state"] == "firing") or count >= self.for_nights[rule]
                self.pairs[pair] = {"held": count, "state": "firing" if firing_now else "pending",
                                    "told": was["told"] if was and was["state"] == "firing" else None}
            elif account not in present or pair in unknown:
                continue  # not judged: kept as it was
            elif was["state"] == "firing" and account not in closed:
                if was["told"] and not snoozed(pair, night):
                    mailed[pair] = "resolved"
                del self.pairs[pair]
            else:
                del self.pairs[pair]
        firing = {p for p, s in self.pairs.items() if s["state"] == "firing" and (p not in unknown and p[0] in present or p in held)}
        firing_all = {p for p, s in self.pairs.items() if s["state"] == "firing"}
        for pair in firing:
            account, rule = pair
            entry = self.pairs[pair]
            hidden = any((account, stronger) in firing_all for stronger, weaker in self.inhibits.items() if rule in weaker)
            if snoozed(pair, night) or hidden:
                entry["told"] = None
            elif entry["told"] is None:
                mailed[pair], entry["told"] = "new", night
            elif (night - entry["told"]).days >= REPEAT:
                mailed[pair], entry["told"] = "repeat", night
        return mailed


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    root = tmp_path_factory.mktemp("month")
    summary = generate_sample(root / "extracts", accounts=150, seed=3, end_date=END, nights=22)
    # One account's owner address is broken in the ERP: its warnings go to ops.
    with (root / "extracts" / "ground_truth.csv").open(encoding="utf-8") as handle:
        broken = next(r["account_id"] for r in csv.DictReader(handle) if r["pattern"] == "warning" and r["scenario"] == "order_gap_beyond_rhythm")
    for folder in summary.folders:
        path = folder / "accounts.csv"
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        path.write_text("".join(_broken_owner(line, broken) for line in lines), encoding="utf-8")

    shutil.rmtree(summary.folders[SKIPPED])  # the export failed that night
    ruleset = load_rules(ROOT / "rules")
    settings = EmailSettings(mode="outbox", outbox_dir=root / "outbox", sender="Frühwarnung <fw@example.com>", ops_recipients=[OPS])
    night_settings = Settings(
        extracts=ExtractSettings(path=root / "extracts"), database=root / "loyalty.duckdb", rules=ROOT / "rules",
        # No attention budget here (the quarter below has one): this month checks the lifecycle itself.
        email=settings, digest=DigestSettings(repeat_after_days=REPEAT, max_new=10_000),
    )
    oracle = Oracle({r.id: r.for_nights for r in ruleset.rules}, {r.id: set(r.inhibits) for r in ruleset.rules})
    nights, expected, actual, snoozes = [], {}, {}, []
    with store.connect(root / "loyalty.duckdb") as con:
        for index, folder in enumerate(summary.folders):
            night = date.fromisoformat(folder.name)
            if index == SKIPPED:
                with pytest.raises(GateFailed, match="no extract for the night"):
                    run_night(con, night_settings, ruleset, snoozes, night)
                continue
            if index == 5:  # ops snooze the first firing account for a week, and one rule of another
                firing = con.execute(
                    "SELECT DISTINCT account_id, rule_id FROM warning_nights WHERE state = 'firing' AND night = (SELECT max(night) FROM nights) ORDER BY 1, 2"
                ).fetchall()
                snoozes = [Snooze(1, firing[0][0], None, night + timedelta(days=6), "Werksferien"),
                           Snooze(2, firing[-1][0], firing[-1][1], date(2026, 12, 31), "Umbau")]
            # The whole night as the flow runs it, gate included: a normal month never stops at it.
            outcome = run_night(con, night_settings, ruleset, snoozes, night).outcome
            unknown = set(con.execute("SELECT account_id, rule_id FROM night_unknown").fetchall())
            mailing = night_mailing(con, ruleset, night, "de", [OPS])
            deliver_digests(con, render_digests(mailing.warnings, night, settings.sender, "de", 15, mailing.portfolios), settings)

            accounts = dict(con.execute("SELECT account_id, status FROM accounts").fetchall())
            held = {(s.account_id, s.rule_id) for s in outcome.signals}

            def snoozed(pair, when, active=list(snoozes)):
                return any(z.account_id == pair[0] and z.rule_id in (None, pair[1]) and when <= z.until for z in active)

            expected[night] = oracle.night(night, held, unknown, set(accounts), {a for a, s in accounts.items() if s == "closed"}, snoozed)
            # A recipient whose night holds nothing but resolutions gets no mail: they wait for its next digest.
            rows = con.execute(
                "SELECT account_id, rule_id, notice, coalesce(recipient, ?) FROM warning_nights WHERE night = ? AND (mailed OR reason = ?)",
                [OPS, night, DEFERRED],
            ).fetchall()
            actual[night] = {(a, r): (notice, to) for a, r, notice, to in rows}
            nights.append(night)
    return root, summary, nights, expected, actual, broken


def _broken_owner(line: str, account: str) -> str:
    if not line.startswith(account + ","):
        return line
    cells = line.split(",")
    cells[2] = "vertrieb(at)example"  # owner_email is the third column
    return ",".join(cells)


def test_each_night_mails_exactly_what_the_lifecycle_says(month):
    _, _, nights, expected, actual, _ = month
    assert len(nights) == 21
    for night in nights:
        assert {pair: notice for pair, (notice, _) in actual[night].items()} == expected[night], night
    kinds = {notice for night in nights for notice in expected[night].values()}
    assert kinds == {"new", "repeat", "resolved"}  # the month exercises every kind of mail


def test_every_warning_reaches_exactly_one_recipient_and_no_one_gets_two_mails_a_night(month):
    root, _, nights, _, actual, broken = month
    routed_to_ops = 0
    for night in nights:
        folder = root / "outbox" / night.isoformat()
        recipients = {to for notice, to in actual[night].values() if notice != "resolved"}
        recipients |= {to for notice, to in actual[night].values() if notice == "resolved" and to in recipients}
        files = {p.name.removesuffix(".eml"): p for p in folder.glob("*.eml")} if folder.exists() else {}
        assert set(files) == recipients, night
        texts = {to: email.message_from_bytes(p.read_bytes(), policy=policy.default).get_body(("plain",)).get_content() for to, p in files.items()}
        for (account, _), (notice, to) in actual[night].items():
            if to not in recipients:
                continue  # a deferred resolution: in the recipient's next digest (test_quarter)
            assert [who for who, text in texts.items() if f"{account})" in text or f"{account}," in text] == [to], (night, account)
            routed_to_ops += to == OPS
            assert (to == OPS) == (account == broken)
    assert routed_to_ops > 0


def test_a_night_without_an_extract_changes_nothing(month):
    root, summary, nights, _, _, _ = month
    skipped = date.fromisoformat(summary.folders[SKIPPED].name)
    assert skipped not in nights and not (root / "outbox" / skipped.isoformat()).exists()
    with store.connect(root / "loyalty.duckdb", read_only=True) as con:
        assert con.execute("SELECT count(*) FROM warning_nights WHERE night = ?", [skipped]).fetchone() == (0,)


def test_snoozed_and_inhibited_warnings_are_kept_but_never_mailed(month):
    root, _, nights, _, _, _ = month
    with store.connect(root / "loyalty.duckdb", read_only=True) as con:
        counts = dict(con.execute("SELECT notice, count(*) FROM warning_nights WHERE notice IN ('snoozed', 'inhibited') GROUP BY notice").fetchall())
        mailed = con.execute("SELECT count(*) FROM warning_nights WHERE notice IN ('snoozed', 'inhibited') AND mailed").fetchone()[0]
    assert counts.get("snoozed", 0) > 0 and mailed == 0
