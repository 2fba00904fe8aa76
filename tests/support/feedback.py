"""A project whose digests carry verdict links, and the verdict pages served by a real uvicorn.

`feedback_project` builds a folder (shipped rules with falling_order_frequency live, so its
warning reaches an owner; a config with `feedback:`; a DuckDB file with nights evaluated by the
real `night.run_night`, no Prefect). `VerdictServer` runs the real app under uvicorn on a loopback
port in a thread, with a clock the test sets, so links do not expire as the calendar moves on.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import uvicorn

from loyalty_engine import store
from loyalty_engine.config import Settings, load_settings
from loyalty_engine.feedback.pages import verdict_app
from loyalty_engine.mail import mailing
from loyalty_engine.mail.digest import Digest
from loyalty_engine.night import run_night
from loyalty_engine.rules.loader import load_rules
from tests.support.builders import NIGHT, ROOT, Extract, fading, steady, write_config, write_extract, write_table
from tests.support.smtp import HOST

SECRET_ENV = "LOYALTY_FEEDBACK_SECRET"
SECRET = "test-secret-0123456789abcdef0123456789abcdef"
RULE = "falling_order_frequency"
# Three nights in a row: the rule waits `for: 3 nights` before it fires on the last.
NIGHTS = (NIGHT - timedelta(days=2), NIGHT - timedelta(days=1), NIGHT)
LINK = re.compile(r"https?://[^\s\"'<>]+/v/[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+")


def feedback_project(folder: Path, port: int, language: str = "de", evaluate: bool = True) -> Path:
    """A project folder with verdict links on http://127.0.0.1:<port>; A1 (anna) fades away and
    fires falling_order_frequency on NIGHT, A2 (bernd) orders steadily. Returns its config."""
    rules = folder / "rules"
    shutil.copytree(ROOT / "rules", rules)
    orders = rules / "orders.yaml"
    text = orders.read_text(encoding="utf-8")
    live = text.replace(f"  - id: {RULE}\n    severity: high\n    mode: shadow\n", f"  - id: {RULE}\n    severity: high\n", 1)
    assert live != text, "falling_order_frequency no longer ships in shadow: adjust the builder"
    orders.write_text(live, encoding="utf-8")
    config = write_config(folder)
    body = config.read_text(encoding="utf-8").replace(f"rules: {ROOT / 'rules'}", f"rules: {rules}")
    body = body.replace("digest: {language: de}", f"digest: {{language: {language}}}")
    body += f"feedback:\n  base_url: \"http://{HOST}:{port}\"\n  secret_env: {SECRET_ENV}\n  link_days: 30\n"
    config.write_text(body, encoding="utf-8")
    x = Extract()
    x.order_on(x.account("A1"), *fading())
    x.order_on(x.account("A2", owner="bernd"), *steady(30))
    for account in x.accounts:
        account["language"] = language
    columns = ["account_id", "name", "owner_email", "owner_name", "status", "language"]
    for night in (*NIGHTS, NIGHT + timedelta(days=1)):
        folder_of_night = write_extract(folder / "extracts", night, orders=x.orders)
        write_table(folder_of_night, "accounts", x.accounts, columns)
    if evaluate:
        settings = load_settings(config)
        for night in NIGHTS:
            evaluate_night(settings, night)
    return config


def evaluate_night(settings: Settings, night: date):
    """One night as the flow's first task runs it (stage, gate, evaluate, lifecycle, route), no Prefect."""
    with store.connect(settings.database) as con:
        return run_night(con, settings, load_rules(settings.rules), [], night)


def night_digests(settings: Settings, night: date = NIGHT) -> list[Digest]:
    """The night's digests as the flow renders them (mail/mailing.night_digests: the mailing, the
    verdict links, the templates)."""
    with store.connect(settings.database) as con:
        return mailing.night_digests(con, settings, load_rules(settings.rules), night)[1]


def links_in(text: str) -> list[str]:
    return LINK.findall(text)


@dataclass
class VerdictServer:
    """The verdict pages under a real uvicorn on 127.0.0.1:<port>, in a thread of the test process."""

    settings: Settings
    port: int
    today: date = NIGHT + timedelta(days=1)  # the server's clock: the day after the digest
    rate_per_minute: int = 1000
    busy_wait: float = 0.5
    server: uvicorn.Server | None = field(default=None, repr=False)
    thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> "VerdictServer":
        app = verdict_app(
            self.settings, load_rules(self.settings.rules), self.settings.feedback.secret(),
            rate_per_minute=self.rate_per_minute, busy_wait=self.busy_wait,
            clock=lambda: datetime.combine(self.today, datetime.min.time()) + timedelta(hours=9),
        )
        self.server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=self.port, log_level="warning", access_log=False, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"uvicorn did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)
