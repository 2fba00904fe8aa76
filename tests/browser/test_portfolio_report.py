"""`loyalty report` on real data, opened in a real (headless) Chromium.

Two business nights of sample extracts go through the real nightly stages (night.run_night):
the first is evaluated, the second's orders are cut in half so the gate stops it. One shadow
warning and two backtest runs are added with plain SQL. The command writes the page; Chromium
loads it once with a probe script added to a copy (the page itself has none) to measure the
charts and record every request, and once more for the screenshot, which is kept as
``$LOYALTY_TEST_ARTIFACTS/portfolio-report.png`` (default ``<repo>/test-artifacts/``) for a person
to look at.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import struct
import subprocess
import sys
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path

import pytest

from loyalty_engine import store
from loyalty_engine.config import load_settings
from loyalty_engine.gate import GateFailed
from loyalty_engine.night import run_night
from loyalty_engine.pages.portfolio import gather, render
from loyalty_engine.results import open_database
from loyalty_engine.rules.loader import load_rules
from loyalty_engine.sample.generator import generate_sample
from tests.support.builders import ROOT, write_config
from tests.browser.test_digest_in_browser import ARTIFACTS, chromium

FIRST, SECOND = date(2026, 11, 19), date(2026, 11, 20)
WIDTH = 1280  # a laptop's browser window
SHADOW_ACCOUNT_RULE = "trial_rule"
COUNTS = ("outcome_known", "lost_after_warning", "lost_in_range", "caught")  # behind precision and recall


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project folder: config, two nights of extracts, the first evaluated, the second stopped by the gate."""
    folder = tmp_path_factory.mktemp("portfolio")
    config = write_config(folder)
    generate_sample(folder / "extracts", accounts=60, seed=11, end_date=SECOND, nights=2)
    orders = folder / "extracts" / SECOND.isoformat() / "orders.csv"
    with orders.open(encoding="utf-8", newline="") as handle:
        lines = handle.readlines()
    orders.write_text("".join(lines[: len(lines) // 2]), encoding="utf-8")  # a truncated export

    settings = load_settings(config)
    rules = load_rules(settings.rules)
    with store.connect(settings.database) as con:
        run_night(con, settings, rules, [], FIRST)
        with pytest.raises(GateFailed):
            run_night(con, settings, rules, [], SECOND)
        # A shadow rule's warning (a rule on trial: kept in history, never mailed) on an account
        # without any other warning; lifecycle marks such rows by their reason.
        con.execute(
            """
            INSERT INTO warning_nights
            SELECT ?, account_id, ?, 'medium', '{}', 'firing', 1, ?, ?, 'new', false, 'shadow rule: not mailed', lower(owner_email), NULL, NULL, NULL
            FROM accounts WHERE coalesce(status, 'active') <> 'closed'
                AND account_id NOT IN (SELECT account_id FROM warning_nights WHERE night = ?)
            ORDER BY account_id LIMIT 1
            """,
            [FIRST, SHADOW_ACCOUNT_RULE, FIRST, FIRST, FIRST],
        )
        # Two backtests; the report shows the later one. rule_id NULL is the total. With the
        # counts behind the shares, as backtest.judge counts them (outcome_known,
        # lost_after_warning, lost_in_range, caught); a recall of 100 % on 5 accounts, a negative lead.
        for column in ("too_late", *COUNTS):
            con.execute(f"ALTER TABLE backtest_figures ADD COLUMN IF NOT EXISTS {column} INTEGER")
        rows = [
            (datetime(2026, 11, 1, 8), None, "live", 1, 1, 0.1, 0.1, 0.1, 1.0, 0, 1, 0, 10, 1),
            (datetime(2026, 11, 18, 9, 30), "falling_order_frequency", "live", 41, 17, 0.42, 0.8125, 0.5, 63.0, 1, 16, 13, 10, 5),
            (datetime(2026, 11, 18, 9, 30), "nps_detractor", "live", 12, 6, 0.125, 0.5, None, None, 0, 6, 3, 10, 0),
            (datetime(2026, 11, 18, 9, 30), SHADOW_ACCOUNT_RULE, "shadow", 30, 25, 1.5, 0.2, 1.0, -12.0, 4, 20, 4, 5, 5),
            (datetime(2026, 11, 18, 9, 30), None, None, 44, 21, 0.55, 0.7143, 0.6, 48.0, 1, 21, 15, 10, 6),
        ]
        con.executemany(
            "INSERT INTO backtest_figures (ran_at, first_night, last_night, rules, rule_id, mode, nights_fired, accounts_flagged,"
            " emails_per_owner_week, precision, recall, median_lead_days, too_late, " + ", ".join(COUNTS) + ")"
            " VALUES (?, DATE '2025-11-20', DATE '2026-05-20', 'rules', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return folder


@pytest.fixture(scope="module")
def written(project) -> Path:
    """`loyalty report` run as a user runs it, in a process of its own: it must not import Prefect."""
    out = project / "report.html"
    code = (
        "import sys; from loyalty_engine.cli import main\n"
        f"sys.argv = ['loyalty', 'report', '--config', {str(project / 'config.yaml')!r}, '--date', {SECOND.isoformat()!r}, '--out', {str(out)!r}]\n"
        "try:\n    main()\nexcept SystemExit as done:\n    assert not done.code, done.code\n"
        "assert not [m for m in sys.modules if m.startswith('prefect')], 'prefect was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"written to {out}" in result.stdout
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out, ARTIFACTS / "portfolio-report.html")
    return out


def expected(project: Path) -> dict:
    """What the page must show, counted straight from the database (not through portfolio.py)."""
    with store.connect(project / "data" / "loyalty.duckdb", read_only=True) as con:
        one = lambda sql, *args: con.execute(sql, list(args)).fetchone()[0]  # noqa: E731
        active = "SELECT account_id FROM accounts WHERE coalesce(status, 'active') <> 'closed'"
        return {
            "active": one(f"SELECT count(*) FROM ({active})"),
            "firing": one(
                f"""SELECT count(DISTINCT account_id) FROM warning_nights WHERE night = ? AND state = 'firing'
                    AND NOT coalesce(reason LIKE 'shadow%', false) AND account_id IN ({active})""",
                FIRST,
            ),
            # Accounts whose only warnings (firing or pending) are a shadow rule's: the added
            # trial_rule one, and those of the shipped shadow rules (order_gap_beyond_rhythm,
            # complaint_spike, owner_contact_thinning) on accounts no live rule warns.
            "shadow": one(
                f"""SELECT count(*) FROM ({active}) a WHERE
                    EXISTS (SELECT 1 FROM warning_nights w WHERE w.account_id = a.account_id AND w.night = ?
                            AND w.state IN ('firing', 'pending') AND w.reason LIKE 'shadow%')
                    AND NOT EXISTS (SELECT 1 FROM warning_nights w WHERE w.account_id = a.account_id AND w.night = ?
                            AND w.state IN ('firing', 'pending') AND NOT coalesce(w.reason LIKE 'shadow%', false))""",
                FIRST, FIRST,
            ),
            "unsurveyed": one(
                f"""SELECT count(*) FROM ({active}) a WHERE NOT EXISTS (SELECT 1 FROM surveys s WHERE s.account_id = a.account_id
                    AND s.answered_at <= ? AND s.answered_at > ?::DATE - INTERVAL 2 YEAR)""",
                SECOND, SECOND,
            ),
            # Rules with new warnings kept in shadow (the trial rule, and the shipped shadow rules that spoke).
            "shadow_rules": {rule for (rule,) in con.execute(
                "SELECT DISTINCT rule_id FROM warning_nights WHERE notice = 'new' AND reason LIKE 'shadow%' AND night > ?::DATE - 90", [SECOND]).fetchall()},
            "rules": one("SELECT count(DISTINCT rule_id) FROM warning_nights WHERE notice = 'new' AND night > ?::DATE - 90", SECOND),
            "owners": one("SELECT count(DISTINCT coalesce(recipient, '')) FROM warning_nights WHERE notice = 'new'"),
            # The brief's retention over the 365 days up to the date, for the whole book, written out
            # once more in the digest header's original form. Won: a customer at the end who was
            # none at the start (new, or back after more than a year: retention.py).
            "year": con.execute(
                """
                WITH per AS (
                    SELECT account_id,
                        count(*) FILTER (WHERE order_date > $d - 730 AND order_date <= $d - 365) AS before,
                        count(*) FILTER (WHERE order_date > $d - 365) AS recent, min(order_date) AS first_order
                    FROM orders WHERE order_date <= $d GROUP BY account_id
                )
                SELECT count(*) FILTER (WHERE before > 0), count(*) FILTER (WHERE recent > 0),
                       count(*) FILTER (WHERE recent > 0 AND before = 0)
                FROM accounts JOIN per USING (account_id)
                """,
                {"d": SECOND},
            ).fetchone(),
        }


def test_figures_are_the_databases(project):
    with open_database(project / "data" / "loyalty.duckdb") as con:
        figures = gather(con, SECOND, load_rules(ROOT / "rules"), "de")
        [(trial,)] = con.execute("SELECT account_id FROM warning_nights WHERE rule_id = ?", [SHADOW_ACCOUNT_RULE]).fetchall()
    want = expected(project)
    assert (figures.night, figures.warnings_night) == (SECOND, FIRST)  # the second night was stopped
    assert len(figures.accounts) == want["active"]
    assert sum(a.state == "firing" for a in figures.accounts) == want["firing"] > 0
    assert sum(a.state == "shadow" for a in figures.accounts) == want["shadow"] > 1
    assert [a.state for a in figures.accounts if a.account_id == trial] == ["shadow"]
    assert sum(a.nps is None for a in figures.accounts) == want["unsurveyed"] > 0
    assert (figures.year.at_start, figures.year.at_end, figures.year.won) == want["year"]
    assert len(figures.months) == 24 and figures.months[-1].end == SECOND and figures.months[0].start == date(2024, 11, 30)
    assert {c.key for c in figures.rules if c.shadow_rule} == want["shadow_rules"] > {SHADOW_ACCOUNT_RULE}
    assert [(g.night, g.worst) for g in figures.gate][0] == (SECOND, "fail")
    assert figures.backtest is not None and figures.backtest.ran_at == datetime(2026, 11, 18, 9, 30)
    assert [line["rule_id"] for line in figures.backtest.lines] == ["falling_order_frequency", "nps_detractor", SHADOW_ACCOUNT_RULE, None]

    page = render(replace(figures, backtest=None), "en")  # before any backtest
    assert "No backtest yet: run <code>loyalty backtest --from … --to …</code>." in page


def measure(page: str, tmp_path: Path, width: int = WIDTH) -> tuple[dict, str, Path]:
    """Open a copy of the page with the probe: what it measured, the DOM, and the net log."""
    probe = tmp_path / f"probe-{width}.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    netlog = tmp_path / f"net-{width}.json"
    result = chromium(tmp_path, f"--window-size={width},900", f"--log-net-log={netlog}", "--dump-dom", probe.as_uri())
    found = re.search(r'data-probe="([^"]*)"', result.stdout)
    assert found, result.stderr[-2000:]
    return json.loads(html.unescape(found.group(1))), result.stdout.replace("&nbsp;", " ").replace("\xa0", " "), netlog


def screenshot(page: Path, tmp_path: Path, height: int, name: str) -> None:
    """The whole page as a person sees it, kept in ARTIFACTS as `name`."""
    shot = tmp_path / name
    height = min(height + 2, 8000)
    result = chromium(tmp_path, f"--window-size={WIDTH},{height}", f"--screenshot={shot}", page.as_uri())
    assert shot.exists(), result.stderr[-2000:]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / name)
    data = shot.read_bytes()
    assert struct.unpack(">II", data[16:24]) == (WIDTH, height)
    assert len(data) > 100_000, "an almost blank screenshot"


# Words of English sentences that are no German words; a German page must show none of them
# (rule ids, which are names, and addresses aside).
ENGLISH = {
    "the", "of", "and", "is", "was", "are", "not", "with", "from", "by", "at", "on", "to", "this", "that", "has", "have",
    "rows", "row", "orders", "order", "night", "nights", "rule", "rules", "checked", "stopped", "before", "every", "warning",
    "warnings", "new", "flood", "newest", "days", "accounts", "customers", "written", "fewer", "looks", "stale", "last",
    "first", "evaluated", "volume", "freshness", "presence", "skipped", "held", "passed", "limit", "shadow", "live", "total",
    "precision", "recall", "lead", "report", "definitions", "ops", "owner", "owners", "emails", "too", "late",
}
# An internal path or file: a folder with a slash, or a file of the project's own. (The name of an
# extract file, orders.csv, is what the gate's detail names on an English page: not a path.)
PATHLIKE = re.compile(r"\b[\w.-]+/[\w./-]+|[\w-]+\.(?:py|md|duckdb|yaml|j2)\b")


def visible_words(text: str) -> list[str]:
    """The words of the page's visible text, without addresses and rule ids."""
    text = re.sub(r"\S+@\S+|\b\w*_\w*\b", " ", text)
    return re.findall(r"[A-Za-zÄÖÜäöüß]+", text)


def test_report_in_a_browser(project, written, tmp_path):
    page = written.read_text(encoding="utf-8")
    # Self-contained: no script, nothing fetched from anywhere.
    assert "<script" not in page.lower()
    assert not re.search(r"""\b(?:src|href)\s*=|url\((?!#)|@import|https?:|//[a-z0-9.-]+\.[a-z]{2,}/""", page, re.IGNORECASE), "refers to a file outside the page"

    # A copy with a probe: it measures the charts after layout and writes what it found into the DOM.
    boxes, dom, netlog = measure(page, tmp_path)

    want = expected(project)
    groups = boxes["charts"]["groups-chart"]
    assert groups["width"] > 800 and groups["height"] > 300
    assert groups["marks"] == want["active"] and groups["visible"] == want["active"], "one dot per active account, each drawn"
    assert groups["inside"] == want["active"], "a dot outside its chart"
    assert groups["firing"] == want["firing"] and groups["shadow"] == want["shadow"] and groups["unsurveyed"] == want["unsurveyed"]
    retention = boxes["charts"]["retention-chart"]
    assert retention["width"] > 800 and retention["points"] == 24 and retention["lines"] >= 1
    gate = boxes["charts"]["gate-chart"]
    assert gate["days"] == 30 and gate["width"] > 500
    assert boxes["rows"]["per-rule"] == want["rules"] and boxes["rows"]["per-owner"] == want["owners"]
    assert boxes["rows"]["backtest-figures"] == 4
    assert boxes["scroll_width"] <= WIDTH, "the page is wider than the window"
    assert boxes["hatched"] >= 1, "the shadow rule's bar"

    # German, as config.yaml says; Babel's numbers; the gate's failure; the backtest's shares as
    # percentages with the counts behind them; how many nights each part covers.
    for text in ("Portfolio-Bericht", "Kundengruppen", "Kundenbindungsrate pro Monat", "Daten bis 20.11.2026",
                 "Warnsignale: Stand der Nacht vom 19.11.2026", "gestoppt", "Bestellungen · Datenmenge",
                 ">0,42<", ">81 % (13 von 16)<", ">50 % (5 von 10)<", ">100 % (5 von 5)<", ">+63<", ">-12<",
                 ">Gesamt (aktive Regeln)<", "Zeitraum: 90 Tage bis 20.11.2026, 1 Nacht ausgewertet.",
                 "Zeitraum: 30 Tage bis 20.11.2026, 2 Nächte geprüft.", "(182 Nächte nachgespielt)",
                 "in 1 ausgewerteten Nacht", "negativ heißt, die Warnung kam im Median erst nach dem Verlust"):
        assert text in dom, text
    assert "¹" not in boxes["text"], "every share has its count"
    language_and_layout(boxes, "de")

    # Every request the page made (the browser's own background requests have no file:// site):
    # only the probe's control image, which shows the net log would have caught one.
    assert page_requests(netlog) == [CONTROL], "the page fetched something"

    screenshot(written, tmp_path, boxes["height"], "portfolio-report.png")


def language_and_layout(boxes: dict, language: str) -> None:
    """What a reader must never see: labels on top of each other, internal paths, and (German)
    English words."""
    assert not boxes["overlaps"], f"labels overlap: {boxes['overlaps'][:5]}"
    text = boxes["text"]
    assert not PATHLIKE.findall(text), PATHLIKE.findall(text)
    if language == "de":
        english = sorted({w for w in visible_words(text) if w.lower() in ENGLISH})
        assert not english, f"English on the German page: {english}"


def test_report_in_english(project, tmp_path):
    """The same report in English, and in a narrow window (where a chart is drawn smaller): no
    overlapping labels, no paths; kept as portfolio-report-en.png."""
    with open_database(project / "data" / "loyalty.duckdb") as con:
        figures = gather(con, SECOND, load_rules(ROOT / "rules"), "en")
    page = tmp_path / "report-en.html"
    page.write_text(render(figures, "en"), encoding="utf-8")
    boxes, dom, _ = measure(page.read_text(encoding="utf-8"), tmp_path)
    for text in ("81% (13 of 16)", "100% (5 of 5)", "Period: 90 days up to 20 Nov 2026, 1 night evaluated.", "orders · volume"):
        assert text in dom, text
    language_and_layout(boxes, "en")
    narrow, _, _ = measure(page.read_text(encoding="utf-8"), tmp_path, width=760)
    language_and_layout(narrow, "en")
    screenshot(page, tmp_path, boxes["height"], "portfolio-report-en.png")


def test_report_needs_a_database(tmp_path, capsys, monkeypatch):
    from loyalty_engine.cli import main

    config = write_config(tmp_path)
    monkeypatch.setattr(sys, "argv", ["loyalty", "report", "--config", str(config), "--out", str(tmp_path / "r.html")])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'data' / 'loyalty.duckdb'}: no database yet; run `loyalty run` first"
    assert not (tmp_path / "r.html").exists()


def test_report_before_the_first_night(project, capsys, monkeypatch):
    from loyalty_engine.cli import main

    monkeypatch.setattr(sys, "argv", ["loyalty", "report", "--config", str(project / "config.yaml"), "--date", "2026-01-05", "--out", str(project / "old.html")])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: no night evaluated on or before 2026-01-05; the first is {FIRST}"
    assert not (project / "old.html").exists()


def page_requests(netlog: Path) -> list[str]:
    """URLs of the requests whose site is the page's (file://) in a Chromium net log."""
    log = json.loads(netlog.read_text(encoding="utf-8"))
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [
        e["params"]["url"]
        for e in log["events"]
        if e["type"] == start and "file://" in e["params"].get("network_isolation_key", "")
    ]


# Added to the probe copy only: a control request (a name that never resolves), and a script that
# counts and measures what the page drew, into <body data-probe>.
CONTROL = "http://control.invalid/probe.png"
PROBE = f"""<img src="{CONTROL}" alt="" width="1" height="1"><script>
(function () {{
  const box = (e) => e.getBoundingClientRect();
  const drawn = (e) => {{ const b = box(e); return b.width > 0 && b.height > 0; }};
  const charts = {{}};
  for (const svg of document.querySelectorAll('svg.chart')) {{
    const b = box(svg), marks = [...svg.querySelectorAll('circle.mark')];
    const inside = marks.filter((m) => {{ const r = box(m); return r.left >= b.left && r.right <= b.right && r.top >= b.top && r.bottom <= b.bottom; }});
    charts[svg.id] = {{
      width: b.width, height: b.height, marks: marks.length, visible: marks.filter(drawn).length, inside: inside.length,
      firing: svg.querySelectorAll('circle.mark-firing').length, shadow: svg.querySelectorAll('circle.mark-shadow').length,
      unsurveyed: svg.querySelectorAll('circle.mark-unsurveyed').length,
      points: [...svg.querySelectorAll('circle.point')].filter(drawn).length,
      lines: [...svg.querySelectorAll('polyline.line')].filter(drawn).length,
      days: [...svg.querySelectorAll('rect.day')].filter(drawn).length,
    }};
  }}
  // Text elements of each chart whose boxes intersect (by more than a pixel each way).
  const overlaps = [];
  for (const svg of document.querySelectorAll('svg.chart')) {{
    const texts = [...svg.querySelectorAll('text')].filter(drawn).map((t) => [t.textContent.trim(), box(t)]);
    for (let i = 0; i < texts.length; i++) for (let j = i + 1; j < texts.length; j++) {{
      const [a, p] = texts[i], [b, q] = texts[j];
      if (Math.min(p.right, q.right) - Math.max(p.left, q.left) > 1 && Math.min(p.bottom, q.bottom) - Math.max(p.top, q.top) > 1)
        overlaps.push(svg.id + ': ' + a + ' / ' + b);
    }}
    // A label the group lines run through (one with a white halo is drawn over the line, so it stays readable).
    const lines = [...svg.querySelectorAll('line.split, line.split-minor')].map(box);
    for (const t of svg.querySelectorAll('text:not(.halo):not(.quadrant):not(.quadrant-minor)')) {{
      const p = box(t);
      for (const q of lines)
        if (p.left < q.right + 0.5 && q.left - 0.5 < p.right && p.top < q.bottom + 0.5 && q.top - 0.5 < p.bottom)  // a line's box is 0 wide or tall
          overlaps.push(svg.id + ': ' + t.textContent.trim() + ' / a group line');
    }}
  }}
  const rows = {{}};
  for (const table of document.querySelectorAll('table[id]')) rows[table.id] = table.querySelectorAll('tbody tr').length;
  const hatched = [...document.querySelectorAll('rect.bar-shadow')].filter(drawn).length;
  document.body.setAttribute('data-probe', JSON.stringify({{
    charts, rows, hatched, overlaps, text: document.body.innerText, height: document.documentElement.scrollHeight, scroll_width: document.documentElement.scrollWidth,
  }}));
}})();
</script>"""
