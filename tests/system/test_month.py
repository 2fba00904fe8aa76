"""A simulated month of nights on the sample data, through every stage from the extract folder to
the outbox: each warning is mailed when it starts, again on its repeat interval (riding along in
a digest that goes out for something new), once when it
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
from loyalty_engine.mail.budget import DEFERRED, SAME_VOICE
from loyalty_engine.mail.delivery import deliver_digests
from loyalty_engine.gate import GateFailed
from loyalty_engine.night import run_night
from loyalty_engine.mail.mailing import night_digests
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
    shadow: set[str] = field(default_factory=set)  # rules on trial: the same lifecycle, never mailed
    keep_firing_for: dict[str, int] = field(default_factory=dict)  # hysteresis: calm nights still firing
    resolve_when: set[str] = field(default_factory=set)  # rules a firing warning of which resolve_when judges
    pairs: dict[tuple[str, str], dict] = field(default_factory=dict)

    def night(self, night: date, held: set, unknown: set, present: set, closed: set, snoozed, lost=frozenset(), same_voice=frozenset(),
              resolving=None) -> dict:
        """(account, rule) -> 'new' | 'repeat' | 'resolved' for what the night mails. `resolving`:
        (account, rule) -> False (resolve_when does not hold) or None (unknown), as the night's
        evaluation wrote them (TEMP night_resolve); pairs absent from it resolve."""
        resolving = resolving or {}
        mailed, kept = {}, set()
        for pair in set(self.pairs) | held:
            account, rule = pair
            was = self.pairs.get(pair)
            firing_before = was is not None and was["state"] == "firing"
            # No data is never "resolved": a firing warning with resolve_when is judged by it, others by `when`.
            by_resolve = firing_before and rule in self.resolve_when
            not_judged = (pair in resolving and resolving[pair] is None) if by_resolve else pair in unknown
            if pair in held:
                count = max(was["held"], 0) + 1 if was else 1
                firing_now = firing_before or count >= self.for_nights[rule]
                self.pairs[pair] = {"held": count, "state": "firing" if firing_now else "pending",
                                    "told": was["told"] if firing_before else None}
            elif account not in present or not_judged:
                kept.add(pair)
                continue  # not judged: kept as it was
            elif not firing_before or account in closed:
                del self.pairs[pair]  # a pending pair ends; a closed account's warnings resolve unmailed
            elif by_resolve and resolving.get(pair, True) is False:
                was["held"] = max(was["held"], 0) + 1  # resolve_when does not hold yet: kept firing, counted as held
            elif (calm := (-was["held"] if was["held"] < 0 else 0) + 1) <= self.keep_firing_for.get(rule, 0):
                was["held"] = -calm  # keep_firing_for: the calm nights so far
            else:
                if was["told"] and not snoozed(pair, night) and rule not in self.shadow:
                    mailed[pair] = "resolved"
                del self.pairs[pair]
        firing = {p for p, s in self.pairs.items() if s["state"] == "firing" and p not in kept}
        firing_all = {p for p, s in self.pairs.items() if s["state"] == "firing"}
        for pair in firing:
            account, rule = pair
            entry = self.pairs[pair]
            # A rule on trial never hides a live warning (it may hide another shadow one).
            hidden = any((account, stronger) in firing_all for stronger, weaker in self.inhibits.items()
                         if rule in weaker and (stronger not in self.shadow or rule in self.shadow))
            if rule in self.shadow:
                continue  # kept in history as if live, never mailed
            if snoozed(pair, night) or hidden or account in lost:  # a lost account's warnings are held back
                entry["told"] = None
            elif entry["told"] is None and pair in same_voice:  # told through a related rule (the engine's choice)
                entry["told"] = night
            elif entry["told"] is None:
                mailed[pair], entry["told"] = "new", night
            elif (night - entry["told"]).days >= REPEAT:
                mailed[pair], entry["before"], entry["told"] = "repeat", entry["told"], night
        return mailed

    def ride_along(self, mailed: dict, recipients: dict) -> dict:
        """Only something new makes a digest: a repeat of a recipient with nothing new tonight is
        not mailed and stays due (it rides along in the next digest that goes out anyway)."""
        with_new = {recipients[pair] for pair, notice in mailed.items() if notice == "new"}
        for pair, notice in list(mailed.items()):
            if notice == "repeat" and recipients[pair] not in with_new:
                self.pairs[pair]["told"] = self.pairs[pair]["before"]
                del mailed[pair]
        return mailed


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    root = tmp_path_factory.mktemp("month")
    summary = generate_sample(root / "extracts", accounts=200, seed=3, end_date=END, nights=22)
    # One account's owner address is broken in the ERP: its warnings go to ops. It is one built for
    # a live rule (a shadow rule's warnings reach no one), whose sign the engine sees on the last night.
    with (root / "extracts" / "ground_truth.csv").open(encoding="utf-8") as handle:
        broken = next(r["account_id"] for r in csv.DictReader(handle)
                      if r["pattern"] == "warning" and r["scenario"] == "shorter_contracts" and r["scenario"] in r["signals"].split())
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
    oracle = Oracle({r.id: r.for_nights for r in ruleset.rules}, {r.id: set(r.inhibits) for r in ruleset.rules},
                    {r.id for r in ruleset.rules if r.mode == "shadow"}, {r.id: r.keep_firing_for for r in ruleset.rules},
                    {r.id for r in ruleset.rules if r.resolve_when is not None})
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
            deliver_digests(con, night_digests(con, night_settings, ruleset, night)[1], settings)

            accounts = dict(con.execute("SELECT account_id, status FROM accounts").fetchall())
            held = {(s.account_id, s.rule_id) for s in outcome.signals}

            def snoozed(pair, when, active=list(snoozes)):
                return any(z.account_id == pair[0] and z.rule_id in (None, pair[1]) and when <= z.until for z in active)

            lost = {a for (a,) in con.execute("SELECT account_id FROM night_lost").fetchall()}
            same_voice = set(con.execute("SELECT account_id, rule_id FROM warning_nights WHERE night = ? AND reason = ?", [night, SAME_VOICE]).fetchall())
            resolving = {(a, r): resolves for a, r, resolves in con.execute("SELECT account_id, rule_id, resolves FROM night_resolve").fetchall()}
            told = oracle.night(night, held, unknown, set(accounts), {a for a, s in accounts.items() if s == "closed"}, snoozed, lost, same_voice,
                                resolving)
            recipients = {(a, r): to for a, r, to in con.execute(
                "SELECT account_id, rule_id, coalesce(recipient, ?) FROM warning_nights WHERE night = ?", [OPS, night]).fetchall()}
            expected[night] = oracle.ride_along(told, recipients)
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


# A quarter of nights with the attention budget (issue 15): the first night introduces, the budget
# holds back by stake, nothing held back is lost, each owner's language stays, resolutions alone send nothing.
QUARTER_NIGHTS = 63
MAX_NEW = 3
ENGLISH_OWNER = "claudia.hofmann@example.com"


def _owner_speaks_english(line: str) -> str:
    cells = line.split(",")
    if len(cells) > 6 and cells[2] == ENGLISH_OWNER and not cells[0].endswith(("1", "2")):
        cells[6] = "en"  # most of this owner's accounts: an English digest, with a few German accounts
    return ",".join(cells)


def _parse(path):
    return email.message_from_bytes(path.read_bytes(), policy=policy.default)


@pytest.fixture(scope="module")
def quarter(tmp_path_factory):
    from loyalty_engine.mail.budget import chance_of, rank_key, rule_chances

    root = tmp_path_factory.mktemp("quarter")
    summary = generate_sample(root / "extracts", accounts=200, seed=3, end_date=END, nights=QUARTER_NIGHTS)
    for folder in summary.folders:
        path = folder / "accounts.csv"
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        path.write_text("".join(_owner_speaks_english(line) for line in lines), encoding="utf-8")
    ruleset = load_rules(ROOT / "rules")
    mail = EmailSettings(mode="outbox", outbox_dir=root / "outbox", sender="Frühwarnung <fw@example.com>", ops_recipients=[OPS])
    settings = Settings(
        extracts=ExtractSettings(path=root / "extracts"), database=root / "loyalty.duckdb", rules=ROOT / "rules",
        email=mail, digest=DigestSettings(repeat_after_days=REPEAT, max_new=MAX_NEW),
    )
    nights, rows, mailings, snoozes, stake_checks = [], {}, {}, [], []
    with store.connect(root / "loyalty.duckdb") as con:
        for index, folder in enumerate(summary.folders):
            night = date.fromisoformat(folder.name)
            if index == 20:  # ops snooze an account with a waiting warning, if there is one
                waiting = con.execute(
                    "SELECT account_id FROM warning_nights WHERE night = (SELECT max(night) FROM nights) AND notice = 'waiting' ORDER BY 1 LIMIT 1"
                ).fetchall()
                snoozes = [Snooze(1, account, None, night + timedelta(days=30), "Werksferien") for (account,) in waiting]
            run_night(con, settings, ruleset, snoozes, night)
            mailing, digests = night_digests(con, settings, ruleset, night)
            deliver_digests(con, digests, mail)
            rows[night] = con.execute(
                "SELECT account_id, rule_id, notice, mailed, state, coalesce(recipient, ?), severity, reason FROM warning_nights WHERE night = ?",
                [OPS, night],
            ).fetchall()
            mailings[night] = mailing.warnings
            # What was mailed as new outranks (or is critical beside) what waits, per recipient, by the same stake.
            chances = rule_chances(con)
            for w in mailing.warnings:
                if w.notice in ("new", "waiting", "intro"):
                    stake_checks.append((night, w.recipient, w.notice, w.severity,
                                         rank_key(w.severity, chance_of(chances, w.rule_id), w.revenue_12m, w.group, w.account_id, w.rule_id)))
            nights.append(night)
    return root, nights, rows, mailings, stake_checks


def test_the_first_night_introduces_at_most_max_new_and_counts_the_rest(quarter):
    root, nights, rows, _, _ = quarter
    first = nights[0]
    introduced = [r for r in rows[first] if r[2] == "intro"]
    assert introduced, "the sample's first night has more open warnings than the budget"
    assert not [r for r in rows[first] if r[2] == "waiting"]  # the first night is the starting state, not a queue
    for path in (root / "outbox" / first.isoformat()).glob("*.eml"):
        message = _parse(path)
        recipient = path.name.removesuffix(".eml")
        mine = [r for r in rows[first] if r[5] == recipient]
        new = [r for r in mine if r[2] == "new" and r[3]]
        assert len([r for r in new if r[6] != "critical"]) <= MAX_NEW, recipient
        others = [r for r in mine if r[2] == "intro"]
        text = message.get_body(("plain",)).get_content()
        if others:
            [attachment] = message.iter_attachments()
            listed = attachment.get_content().lstrip("\ufeff").splitlines()[1:]
            assert len(listed) == len(new) + len(others), recipient
            assert ("Ihre erste Frühwarnung" in text) or ("Your first early-warning digest" in text)
            assert f"{len(others)} " in text
    # Introduced warnings count as told: on the second night they are open, not new again.
    second = {(r[0], r[1]): r[2] for r in rows[nights[1]]}
    assert all(second.get((r[0], r[1])) != "new" for r in introduced)


def test_every_later_digest_keeps_the_budget_and_critical_ones_always_go(quarter):
    _, nights, rows, _, _ = quarter
    held_back = 0
    for night in nights[1:]:
        per_recipient = {}
        for account, rule, notice, mailed, _, to, severity, _ in rows[night]:
            if notice == "new" and mailed and severity != "critical":
                per_recipient[to] = per_recipient.get(to, 0) + 1
            assert not (notice == "waiting" and severity == "critical")
            held_back += notice == "waiting"
        assert max(per_recipient.values(), default=0) <= MAX_NEW, night
    assert held_back > 0, "the quarter never exercised the budget"


def test_the_budget_picks_by_severity_then_stake(quarter):
    _, _, _, _, checks = quarter
    by_digest = {}
    for night, recipient, notice, severity, key in checks:
        by_digest.setdefault((night, recipient), []).append((notice, severity, key))
    compared = 0
    for entries in by_digest.values():
        waiting = [key for notice, _, key in entries if notice in ("waiting", "intro")]
        for notice, severity, key in entries:
            if notice == "new" and severity != "critical" and waiting:
                assert key < min(waiting)
                compared += 1
    assert compared > 0


def test_every_warning_held_back_is_mailed_later_resolved_or_snoozed_never_lost(quarter):
    _, nights, rows, _, _ = quarter
    index = {night: {(r[0], r[1]): r for r in rows[night]} for night in nights}
    outcomes = {}
    for i, night in enumerate(nights):
        for account, rule, notice, *_ in rows[night]:
            if notice != "waiting":
                continue
            fate = "still waiting at the end of the quarter"
            for later in nights[i + 1:]:
                row = index[later].get((account, rule))
                if row is None:
                    fate = "ended"  # the rule was removed or the pair stopped before firing: nothing to tell
                    break
                _, _, later_notice, later_mailed, state, _, _, reason = row
                if later_notice == "new" and later_mailed:
                    fate = "mailed"
                    break
                if later_notice == "open" and reason == SAME_VOICE:
                    fate = "told by a related rule"  # one voice per account: the owner heard of the signal
                    break
                if state == "resolved" or later_notice in ("snoozed", "inhibited"):
                    fate = later_notice if later_notice != "kept" else state
                    break
                assert later_notice in ("waiting", "kept"), (account, rule, later, later_notice)
            outcomes[fate] = outcomes.get(fate, 0) + 1
    assert outcomes.get("mailed", 0) > 0, outcomes
    assert set(outcomes) <= {"mailed", "told by a related rule", "resolved", "snoozed", "inhibited", "ended",
                             "still waiting at the end of the quarter"}, outcomes
    # What still waits at the end waited only for the last nights' budget, and is counted in the last digests.
    last_waiting = [r for r in rows[nights[-1]] if r[2] == "waiting"]
    assert outcomes.get("still waiting at the end of the quarter", 0) <= sum(1 for n in nights for r in rows[n] if r[2] == "waiting")
    assert len(last_waiting) <= 3 * MAX_NEW * 3


def test_each_owner_language_never_changes_and_both_languages_go_out(quarter):
    root, nights, _, _, _ = quarter
    languages = {}
    for night in nights:
        for path in (root / "outbox" / night.isoformat()).glob("*.eml"):
            languages.setdefault(path.name.removesuffix(".eml"), set()).add(_parse(path)["Content-Language"])
    assert all(len(spoken) == 1 for spoken in languages.values()), languages
    assert languages[ENGLISH_OWNER] == {"en"} and languages["andrea.vogel@example.com"] == {"de"}


def test_a_night_with_nothing_but_resolutions_sends_nothing_and_the_next_digest_tells_them(quarter):
    root, nights, rows, mailings, _ = quarter
    deferred = 0
    for i, night in enumerate(nights):
        sent = {p.name.removesuffix(".eml") for p in (root / "outbox" / night.isoformat()).glob("*.eml")}
        for recipient in sent:
            notices = {w.notice for w in mailings[night] if w.recipient == recipient}
            assert notices - {"resolved"}, (night, recipient)  # never a mail of resolutions alone
        for account, rule, notice, mailed, _, to, _, reason in rows[night]:
            if notice == "resolved" and reason == DEFERRED:
                deferred += 1
                assert to not in sent
                later = next((n for n in nights[i + 1:] if (root / "outbox" / n.isoformat() / f"{to}.eml").exists()), None)
                if later is not None:
                    assert any(w.account_id == account and w.rule_id == rule and w.notice == "resolved" for w in mailings[later] if w.recipient == to)
    # Whether the sample's quarter has such a night depends on the data; tests/unit/mail/test_budget.py makes one.


def test_lost_accounts_are_announced_once_and_their_warnings_no_longer_mailed(quarter):
    root, nights, rows, _, _ = quarter
    with store.connect(root / "loyalty.duckdb", read_only=True) as con:
        spells = con.execute(
            """SELECT n.account_id, n.last_order, count(DISTINCT n.announced), min(n.announced), min(n.night),
                      any_value(lower(a.owner_email)), any_value(a.name)
               FROM lost_nights n JOIN accounts a USING (account_id) GROUP BY 1, 2"""
        ).fetchall()
        lost_on = {(night, account) for night, account in con.execute("SELECT night, account_id FROM lost_nights").fetchall()}
    became_lost = [s for s in spells if s[4] > nights[0]]
    assert became_lost, "no account became lost during the quarter"
    for account, _, times, announced, first_lost, owner, name in spells:
        assert times <= 1, account
        # The section names each lost account once, in exactly the digest that announced it.
        announcing = [n for n in nights if (path := root / "outbox" / n.isoformat() / f"{owner}.eml").exists()
                      and f"{name} ({account})" in _lost_section(_parse(path).get_body(("plain",)).get_content())]
        if announced == nights[0]:  # the starting state: past MAX_LOST a digest counts them instead of naming them
            assert announcing in ([], [announced]), account
        else:
            assert announcing == ([announced] if announced else []), account
        if announced is None:  # still waiting: its owner has had no digest since it became lost
            assert not any((root / "outbox" / n.isoformat() / f"{owner}.eml").exists() for n in nights if n >= first_lost), account
    mailed_while_lost = [(n, r[0], r[1]) for n in nights for r in rows[n] if (n, r[0]) in lost_on and r[3] and r[2] != "resolved"]
    assert mailed_while_lost == []


def _lost_section(text: str) -> str:
    """The plain-text part's section of lost accounts (its heading in either language), or ''."""
    for heading in ("== Verlorene Kunden ==", "== Lost accounts =="):
        if heading in text:
            return text.split(heading, 1)[1].split("\n== ", 1)[0]
    return ""
