"""The owner's verdict end to end: a real night, a real digest through a real SMTP server, its
links opened over real HTTP against the verdict pages under a real uvicorn, a real DuckDB file.

Each test gets its own copy of one evaluated project and its own server on the port the
project's links name.
"""

from __future__ import annotations

import base64
import email
import json
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from email import policy
from pathlib import Path

import httpx
import pytest

from typer.testing import CliRunner

from loyalty_engine import api, console, store
from loyalty_engine.cli import app
from loyalty_engine.errors import UserError
from loyalty_engine.config import load_settings
from loyalty_engine.feedback.links import Verdict, sign
from loyalty_engine.feedback.verdicts import verdict_rows
from loyalty_engine.mail.delivery import deliver_digests
from tests.support.builders import NIGHT
from tests.support.feedback import RULE, SECRET, SECRET_ENV, VerdictServer, evaluate_night, feedback_project, links_in, night_digests
from tests.support.smtp import free_port

PORT = free_port()


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    import os

    os.environ[SECRET_ENV] = SECRET
    return feedback_project(tmp_path_factory.mktemp("feedback-template"), PORT)


@pytest.fixture
def project(template, tmp_path, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    folder = tmp_path / "project"
    shutil.copytree(template.parent, folder)
    return load_settings(folder / "config.yaml")


@pytest.fixture
def server(project):
    running = VerdictServer(project, PORT).start()
    yield running
    running.stop()


@pytest.fixture
def links(project, smtp_server):
    """The verdict links of anna's digest, as the owner receives it: rendered by the project's own
    digest code, delivered over SMTP to a real server, parsed from the bytes that arrived."""
    smtp = project.email.model_copy(update={"mode": "smtp", "smtp": project.email.smtp.model_copy(update={"host": smtp_server.host, "port": smtp_server.port})})
    digests = night_digests(project)
    with store.connect(project.database) as con:
        report = deliver_digests(con, digests, smtp)
    assert not report.failed
    [received] = [m for m in smtp_server.messages if "anna@example.com" in m.rcpt_tos]
    message = email.message_from_bytes(received.content, policy=policy.default)
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    found = links_in(text)
    assert found == links_in(html) and len(found) == 3, text
    return dict(zip((v.value for v in Verdict), found))


def verdict_count(settings) -> int:
    with store.connect(settings.database) as con:
        return len(verdict_rows(con))


def test_the_outbox_eml_carries_three_links_of_ids_only(project, tmp_path):
    digests = night_digests(project)
    with store.connect(project.database) as con:
        deliver_digests(con, digests, project.email)
    [eml] = list((project.email.outbox_dir / NIGHT.isoformat()).glob("*anna*.eml"))  # bernd has no warning: no digest
    message = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    text = message.get_body(("plain",)).get_content()
    assert "Ihre Einschätzung:" in text and "Hilfreich: http://" in text and "Fehlalarm: http://" in text
    found = links_in(text)
    assert len(found) == 3 and all(link.startswith(f"http://127.0.0.1:{PORT}/v/") for link in found)
    for link in found:
        payload = link.rsplit("/", 1)[1].split(".")[0]
        said = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        # Ids and dates only: no address, no name, no figure of the account.
        assert said[1:4] == [NIGHT.isoformat(), "A1", RULE]
        assert not any("@" in str(part) or "Kunde" in str(part) or "Anna" in str(part) for part in said)
    assert SECRET not in eml.read_text(encoding="utf-8", errors="replace")
    with store.connect(project.database) as con:
        stored = b"".join(row[0] for row in con.execute("SELECT message FROM deliveries").fetchall())
        assert SECRET.encode() not in stored


def test_a_get_records_nothing_the_post_records_once(project, server, links):
    with httpx.Client(follow_redirects=False) as client:
        shown = client.get(links["useful"])
        assert shown.status_code == 200
        page = shown.text
        assert "Kunde A1" in page and "A1" in page and "Bestellfrequenz" in page and "Ihre Antwort: Hilfreich" in page
        assert '<form method="post">' in page and "Antwort senden" in page
        assert shown.headers["content-security-policy"].startswith("default-src 'none'")
        assert shown.headers["referrer-policy"] == "no-referrer" and "set-cookie" not in shown.headers
        assert client.head(links["useful"]).status_code == 200
        assert verdict_count(project) == 0  # a mail scanner opening every link changes nothing
        token = links["useful"].rsplit("/", 1)[1]
        posted = client.post(links["useful"], data={"token": token})
        assert posted.status_code == 200 and 'id="thanks"' in posted.text and "„Hilfreich“ ist gespeichert" in posted.text
        again = client.post(links["useful"], data={"token": token})
        assert again.status_code == 409 and "bereits am" in again.text
        assert client.get(links["useful"]).status_code == 200
    [row] = verdict_rows(store.connect(project.database, read_only=True))
    assert (row["night"], row["account_id"], row["rule_id"], row["owner"], row["verdict"], row["counts"]) == (
        NIGHT, "A1", RULE, "anna@example.com", "useful", True)


def test_a_later_verdict_replaces_the_earlier_and_the_history_stays(project, server, links):
    with httpx.Client() as client:
        for verdict in ("useful", "false_alarm"):
            answer = client.post(links[verdict], data={"token": links[verdict].rsplit("/", 1)[1]})
            assert answer.status_code == 200
        assert "ersetzt Ihre frühere („Hilfreich“)" in answer.text
    with store.connect(project.database) as con:
        rows = verdict_rows(con)
        from loyalty_engine.feedback.verdicts import rule_figures

        figures = rule_figures(con)[RULE]
    assert [(r["verdict"], r["counts"]) for r in rows] == [("false_alarm", True), ("useful", False)]
    assert (figures["useful"], figures["false_alarm"], figures["owners_precision"]) == (0, 1, 0.0)


def tampered(link: str) -> str:
    base, token = link.rsplit("/", 1)
    payload, mac = token.split(".")
    said = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    said[2] = "A2"  # another account, same signature
    forged = base64.urlsafe_b64encode(json.dumps(said, separators=(",", ":")).encode()).rstrip(b"=").decode()
    return f"{base}/{forged}.{mac}"


def test_hostile_links_get_one_plain_answer_and_record_nothing(project, server, links):
    secret = SECRET.encode()
    base = f"{server.url}/v/"
    invalid = {
        "tampered": tampered(links["useful"]),
        "wrong signature": links["useful"][:-3] + ("AAA" if not links["useful"].endswith("AAA") else "BBB"),
        "other secret": base + sign(b"another-secret-of-enough-length-000000", NIGHT, "A1", RULE, "anna@example.com", Verdict.USEFUL, 30, "de"),
        "wrong owner": base + sign(secret, NIGHT, "A1", RULE, "bernd@example.com", Verdict.USEFUL, 30, "de"),
        "unknown warning": base + sign(secret, NIGHT, "A9", RULE, "anna@example.com", Verdict.USEFUL, 30, "de"),
        "no signature": base + links["useful"].rsplit("/", 1)[1].split(".")[0],
        "garbage": base + "%3Cscript%3E.x",
        "too long": base + "A" * 5000 + ".B",
    }
    with httpx.Client(follow_redirects=False) as client:
        bodies = set()
        for name, link in invalid.items():
            for method in ("GET", "POST"):
                token = link.rsplit("/", 1)[1][:1000]  # a form fits in MAX_BODY_BYTES; a bigger one is 413 (below)
                answer = client.request(method, link, data={"token": token} if method == "POST" else None)
                assert answer.status_code == 404, (name, method, answer.status_code)
                assert "location" not in answer.headers
                bodies.add(answer.text)
        assert len(bodies) == 1 and "Dieser Link ist ungültig" in bodies.pop()  # unknown and invalid alike
        expired = base + sign(secret, NIGHT - timedelta(days=40), "A1", RULE, "anna@example.com", Verdict.USEFUL, 30, "de")
        gone = client.post(expired, data={"token": expired.rsplit("/", 1)[1]})
        assert gone.status_code == 410 and "abgelaufen" in gone.text
        # The form must carry the token it was shown with; a bare POST (a scanner, a forged form) records nothing.
        assert client.post(links["useful"]).status_code == 404
        assert client.post(links["useful"], data={"token": "x"}).status_code == 404
        big = client.post(links["useful"], content=b"token=" + b"x" * 10_000, headers={"content-type": "application/x-www-form-urlencoded"})
        assert big.status_code == 413
        # Nothing else is served, and nothing redirects (no open redirect, not even to ourselves).
        for path in ("/", "/v/", links["useful"].replace(server.url, "") + "/", "//evil.example.com/", "/v/x/../../etc/passwd", "/static/x"):
            answer = client.get(server.url + path)
            assert 400 <= answer.status_code < 500 and "location" not in answer.headers, path
        assert client.put(links["useful"]).status_code in (404, 405)
    assert verdict_count(project) == 0


def test_clients_are_rate_limited(project):
    limited = VerdictServer(project, PORT, rate_per_minute=3).start()
    try:
        with httpx.Client() as client:
            codes = [client.get(f"{limited.url}/v/x.y").status_code for _ in range(5)]
        assert codes == [404, 404, 404, 429, 429]
    finally:
        limited.stop()


def test_while_the_night_holds_the_file_an_answer_gets_try_again(project, server, links):
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys, time; c = duckdb.connect({str(project.database)!r}); print('open', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with httpx.Client() as client:
            busy = client.post(links["useful"], data={"token": links["useful"].rsplit("/", 1)[1]})
        assert busy.status_code == 503 and busy.headers["retry-after"] == "60" and "in einer Minute" in busy.text
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    with httpx.Client() as client:
        assert client.post(links["useful"], data={"token": links["useful"].rsplit("/", 1)[1]}).status_code == 200
    assert verdict_count(project) == 1


def test_already_known_rests_the_warning_on_the_next_night(project, server, links, monkeypatch):
    with httpx.Client() as client:
        answer = client.post(links["already_known"], data={"token": links["already_known"].rsplit("/", 1)[1]})
    assert answer.status_code == 200 and "ruht bis zum" in answer.text
    server.stop()
    state = evaluate_night(project, NIGHT + timedelta(days=1))
    assert state.notices.get("snoozed") == 1
    with store.connect(project.database) as con:
        notice, mailed, reason = con.execute(
            "SELECT notice, mailed, reason FROM warning_nights WHERE night = ? AND account_id = 'A1' AND rule_id = ?", [NIGHT + timedelta(days=1), RULE]
        ).fetchone()
    assert (notice, mailed) == ("snoozed", False)
    assert reason.startswith("snooze V1 until ") and "owner's verdict: already known (anna@example.com)" in reason
    assert [d.recipient for d in night_digests(project, NIGHT + timedelta(days=1))] == []  # the next night does not mail it
    [snooze] = [row for row in api.snooze_list(project) if row["source"] == "owner's verdict"]
    assert (snooze["id"], snooze["account_id"], snooze["rule"], snooze["status"], snooze["by"]) == ("V1", "A1", RULE, "active", "anna@example.com")
    assert snooze["until"] == NIGHT + timedelta(days=1 + 30)  # 30 days from the answer (the server's day)
    with pytest.raises(UserError, match=r"^snooze V1 is an owner's \"already known\" answer, not in .*snoozes\.yaml: it ends on its date"):
        api.snooze_remove(project, "v1")
    monkeypatch.setattr(console.out, "width", 200)  # the console took its width (COLUMNS) on import
    listed = CliRunner().invoke(app, ["snooze", "--list", "--config", str(project.source)])
    assert listed.exit_code == 0 and "V1" in listed.stdout and "owner's verdict" in listed.stdout


def test_rules_list_and_the_report_show_the_owners_precision(project, server, links, tmp_path, monkeypatch):
    with httpx.Client() as client:
        client.post(links["useful"], data={"token": links["useful"].rsplit("/", 1)[1]})
    listing = api.rules_list([project.rules], project.database)
    assert listing.verdicts
    rows = {row["rule_id"]: row for row in listing.rows}
    assert (rows[RULE]["useful"], rows[RULE]["false_alarm"], rows[RULE]["owners_precision"]) == (1, 0, 1.0)
    shadow = [row for row in listing.rows if row["mode"] == "shadow"]
    assert shadow and all(row["owners_note"].startswith("shadow") and row["owners_precision"] is None for row in shadow)
    runner = CliRunner()
    monkeypatch.setattr(console.out, "width", 250)
    shown = runner.invoke(app, ["rules", "list", "--config", str(project.source)])
    assert shown.exit_code == 0, shown.output
    [line] = [line for line in shown.stdout.splitlines() if line.strip().startswith(RULE)]
    assert "100%" in line.split()
    as_json = json.loads(runner.invoke(app, ["rules", "list", "--config", str(project.source), "--format", "json"]).stdout)
    assert [r["owners_precision"] for r in as_json if r["rule_id"] == RULE] == [1.0]
    answers = json.loads(runner.invoke(app, ["feedback", "list", "--config", str(project.source), "--rule", RULE, "--format", "json"]).stdout)
    assert [(a["account_id"], a["verdict"], a["counts"]) for a in answers] == [("A1", "useful", True)]
    assert json.loads(runner.invoke(app, ["feedback", "list", "--config", str(project.source), "--since", "2099-01-01", "--format", "json"]).stdout) == []
    out = tmp_path / "report.html"
    api.report(project, out)
    page = out.read_text(encoding="utf-8")
    assert 'id="verdict-figures"' in page and "Das Urteil der Betreuer" in page and "100" in page.split('id="verdict-figures"')[1].split("</table>")[0]
    assert "Schattenregel: wird nie gemailt" in page


def test_the_command_serves_the_pages_without_prefect(project):
    """`loyalty feedback serve` as ops start it: its own process, uvicorn with the options it sets."""
    port = free_port()
    stop = Path(str(project.source) + ".stop")
    code = (
        "import sys, threading, time, os, signal\n"
        "from loyalty_engine.cli import main\n"
        "def watch():\n"
        "    while True:\n"
        "        time.sleep(0.2)\n"
        f"        if os.path.exists({str(stop)!r}):\n"
        "            print('prefect imported:', 'prefect' in sys.modules, flush=True); os.kill(os.getpid(), signal.SIGINT); return\n"
        "threading.Thread(target=watch, daemon=True).start()\n"
        f"sys.argv = ['loyalty', 'feedback', 'serve', '--config', {str(project.source)!r}, '--port', '{port}']\n"
        "main()\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # A link valid for a century: the child's clock is the machine's.
        token = sign(SECRET.encode(), NIGHT, "A1", RULE, "anna@example.com", Verdict.USEFUL, 36500, "en")
        answer = None
        for _ in range(200):
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/v/{token}")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert answer is not None and answer.status_code == 200 and "Your answer: Useful" in answer.text
        assert "server" not in answer.headers
        stop.touch()
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert "prefect imported: False" in out
    assert token not in err and f"GET 200 confirm {NIGHT} A1 {RULE} useful" in err  # the log names ids, never the token


def test_a_hostile_account_name_shows_as_text(project, server, links):
    with store.connect(project.database) as con:
        con.execute("UPDATE accounts SET name = ? WHERE account_id = 'A1'", ["<script>alert(1)</script>Böse\r\nBcc: x & Söhne"])
    page = httpx.get(links["useful"]).text
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;Böse Bcc: x &amp; Söhne" in page


@pytest.mark.usefixtures("prefect_harness")
def test_the_nightly_flow_mails_the_links_and_needs_the_secret(tmp_path, monkeypatch):
    """The flow as Prefect runs it: with feedback.base_url set its digests carry the links; without
    the secret the night stops in its pre-flight, one line, before anything is loaded."""
    from flows.nightly import nightly

    from loyalty_engine.errors import ConfigError

    monkeypatch.setenv(SECRET_ENV, SECRET)
    config = feedback_project(tmp_path / "flow", PORT, language="en", evaluate=False)
    for night in (NIGHT - timedelta(days=2), NIGHT - timedelta(days=1), NIGHT):
        nightly(config_path=str(config), night=night)
    [eml] = [p for p in (tmp_path / "flow" / "outbox" / NIGHT.isoformat()).glob("*.eml")]
    text = email.message_from_bytes(eml.read_bytes(), policy=policy.default).get_body(("plain",)).get_content()
    assert "Your verdict:" in text and len(links_in(text)) == 3
    monkeypatch.delenv(SECRET_ENV)
    with pytest.raises(ConfigError, match=r"^feedback\.secret_env: the environment variable LOYALTY_FEEDBACK_SECRET is not set"):
        nightly(config_path=str(config), night=NIGHT + timedelta(days=1))
    with store.connect(load_settings(config).database, read_only=True) as con:
        assert con.execute("SELECT max(night) FROM nights").fetchone()[0] == NIGHT


def test_the_same_answer_pressed_at_once_from_many_tabs_is_recorded_once(project, server, links):
    from concurrent.futures import ThreadPoolExecutor

    token = links["false_alarm"].rsplit("/", 1)[1]

    def press(_):
        with httpx.Client(timeout=60) as client:
            return client.post(links["false_alarm"], data={"token": token}).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(press, range(8)))
    assert codes == [200] + [409] * 7
    assert verdict_count(project) == 1
