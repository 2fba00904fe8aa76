"""The digest as an owner sees it: the HTML part opened in a real (headless) Chromium."""

from __future__ import annotations

import shutil
import struct
import subprocess
from datetime import date
from pathlib import Path

import pytest

from loyalty_engine.digest import AccountWarning, render_digests

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
HOSTILE = "<script>document.body.setAttribute('data-pwned','yes')</script>Böse & Söhne"


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: `make install` installs Debian's chromium")
    command = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=90)


@pytest.fixture(scope="module")
def digest_html(tmp_path_factory) -> Path:
    warnings = [
        AccountWarning("K-1", "Müller Metallbau GmbH", "anna@example.com", "Anna Groß", "falling_order_frequency", "high",
                       "Bestellfrequenz sinkt", "0 Bestellungen in den letzten 90 Tagen, etwa 6 erwartet", "Entscheider anrufen."),
        AccountWarning("K-2", HOSTILE, "anna@example.com", "Anna Groß", "shorter_contracts", "medium",
                       "Kürzere Vertragslaufzeit", "Der aktuelle Vertrag läuft 12 Monate, der vorige 24 Monate.", "Gespräch führen."),
    ]
    [digest] = render_digests(warnings, date(2026, 11, 23), "Frühwarnsystem <fruehwarnung@example.com>", "de")
    path = tmp_path_factory.mktemp("browser") / "digest.html"
    path.write_text(digest.message.get_body(("html",)).get_content(), encoding="utf-8")
    return path


def test_digest_renders_in_a_browser_with_names_as_text(digest_html, tmp_path):
    dom = chromium(tmp_path, "--dump-dom", digest_html.as_uri()).stdout
    assert "Müller Metallbau GmbH" in dom and "Kürzere Vertragslaufzeit" in dom
    assert "data-pwned" not in dom.replace("setAttribute('data-pwned'", "")  # the account name never ran
    assert "&lt;script&gt;" in dom
    # Most severe first: the high warning's account comes before the medium one.
    assert dom.index("Müller Metallbau GmbH") < dom.index("Böse &amp; Söhne")


def test_digest_screenshot_is_a_real_page(digest_html, tmp_path):
    shot = tmp_path / "digest.png"
    chromium(tmp_path, "--window-size=800,1000", f"--screenshot={shot}", digest_html.as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (800, 1000)
    assert len(data) > 20_000  # text and coloured labels, not an empty page
