"""The owner's verdict as an owner meets it: headless Chromium opens a verdict link from a real
digest, shows the page, presses its one button and shows the thank-you page, in German and English.

Chromium is driven over its DevTools protocol (a websocket; `websockets` comes with Prefect) so
the button is pressed by the browser itself: the form, its POST and the answer are the browser's.
Screenshots land in ``$LOYALTY_TEST_ARTIFACTS`` (default ``<repo>/test-artifacts/``) as
``feedback-<language>-digest.png`` (the digest with its verdict links), ``feedback-<language>-page.png``
and ``feedback-<language>-thanks.png``, for a person to look at.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from loyalty_engine import store
from loyalty_engine.config import load_settings
from loyalty_engine.feedback.verdicts import verdict_rows
from tests.support.feedback import SECRET, SECRET_ENV, VerdictServer, feedback_project, links_in, night_digests
from tests.support.smtp import free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("LOYALTY_TEST_ARTIFACTS") or ROOT / "test-artifacts")
WIDTH, HEIGHT = 800, 640

EXPECTED = {
    "de": {"page": ["Frühwarnung: Ihre Einschätzung", "Kunde A1", "Bestellfrequenz", "Ihre Antwort: Hilfreich", "Antwort senden"],
           "thanks": "Vielen Dank: Ihre Antwort „Hilfreich“ ist gespeichert."},
    "en": {"page": ["Early warning: your verdict", "Kunde A1", "Order frequency", "Your answer: Useful", "Send answer"],
           "thanks": "Thank you: your answer “Useful” is recorded."},
}


class DevTools:
    """One Chromium page over the DevTools protocol: navigate, evaluate, wait for a load, screenshot."""

    def __init__(self, url: str):
        self.socket = connect(url, max_size=None, open_timeout=30)
        self.ids = itertools.count(1)
        self.events: list[dict] = []

    def call(self, method: str, **params) -> dict:
        sent = next(self.ids)
        self.socket.send(json.dumps({"id": sent, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == sent:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, event: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, message in enumerate(self.events):
                if message.get("method") == event:
                    return self.events.pop(i)
            self.events.append(json.loads(self.socket.recv(timeout=max(deadline - time.monotonic(), 0.1))))
        raise TimeoutError(event)

    def text(self) -> str:
        return self.call("Runtime.evaluate", expression="document.body.innerText", returnByValue=True)["result"]["value"]

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))


@pytest.fixture
def browser(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: `make install` installs Debian's chromium")
    process = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", f"--window-size={WIDTH},{HEIGHT}", "--remote-debugging-port=0",
         f"--user-data-dir={tmp_path / 'profile'}", "about:blank"],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        for line in process.stderr:
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            if found:
                break
        else:
            pytest.fail("chromium did not start its DevTools endpoint")
        port = re.search(r":(\d+)/", found.group(1)).group(1)
        [page] = [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json() if t["type"] == "page"]
        tools = DevTools(page["webSocketDebuggerUrl"])
        tools.call("Page.enable")
        yield tools
        tools.socket.close()
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize("language", ["de", "en"])
def test_an_owner_presses_the_button_and_is_thanked(language, browser, tmp_path, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    port = free_port()
    settings = load_settings(feedback_project(tmp_path / "project", port, language=language))
    [digest] = [d for d in night_digests(settings) if d.recipient == "anna@example.com"]
    html = digest.message.get_body(("html",)).get_content()
    useful = links_in(html)[0]
    opened = tmp_path / "digest.html"
    opened.write_text(html, encoding="utf-8")
    server = VerdictServer(settings, port).start()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        # The digest as the mail client shows it; the owner clicks its first verdict link.
        browser.call("Page.navigate", url=opened.as_uri())
        browser.wait_for("Page.loadEventFired")
        browser.screenshot(ARTIFACTS / f"feedback-{language}-digest.png")
        assert browser.call("Runtime.evaluate", expression="document.querySelector('a.verdict').href", returnByValue=True)["result"]["value"] == useful
        browser.call("Runtime.evaluate", expression="document.querySelector('a.verdict').click()")
        browser.wait_for("Page.loadEventFired")
        shown = browser.text()
        for words in EXPECTED[language]["page"]:
            assert words in shown, (words, shown)
        browser.screenshot(ARTIFACTS / f"feedback-{language}-page.png")
        with store.connect(settings.database) as con:
            assert verdict_rows(con) == []  # the browser opened the link: nothing recorded
        browser.call("Runtime.evaluate", expression="document.querySelector('form button').click()")
        browser.wait_for("Page.loadEventFired")
        thanked = browser.text()
        assert EXPECTED[language]["thanks"] in thanked, thanked
        browser.screenshot(ARTIFACTS / f"feedback-{language}-thanks.png")
    finally:
        server.stop()
    with store.connect(settings.database) as con:
        assert [(r["account_id"], r["verdict"], r["owner"]) for r in verdict_rows(con)] == [("A1", "useful", "anna@example.com")]
