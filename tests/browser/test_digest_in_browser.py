"""The digest as an owner sees it: the HTML part opened in a real (headless) Chromium, in German and English.

Each run leaves the screenshots and the HTML in ``$LOYALTY_TEST_ARTIFACTS`` (default ``<repo>/test-artifacts/``)
as ``digest-<language>.png`` / ``digest-<language>.html``, for a person to look at.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from loyalty_engine.mail.mailing import _text
from loyalty_engine.rules.loader import load_rules
from loyalty_engine.mail.digest import CHART_HEIGHT, AccountWarning, Portfolio, render_digests

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
HOSTILE = "<script>document.body.setAttribute('data-pwned','yes')</script>Böse & Söhne"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("LOYALTY_TEST_ARTIFACTS") or ROOT / "test-artifacts")
NIGHT = date(2026, 11, 23)
WIDTH, HEIGHT = 800, 2000  # tall enough for the whole digest below: nothing is cut off at the bottom

PAGE = (0xF3, 0xF4, 0xF6)  # the grey around the white sheet
BAR = (0x25, 0x63, 0xEB)  # a month's revenue
BAR_EMPTY = (0xD1, 0xD5, 0xDB)  # a month without revenue
BAR_PARTIAL = (0x93, 0xC5, 0xFD)  # the current month, up to the night

# Per language: the owner, the texts the rules would have written, and what the page must show.
LANGUAGES = {
    "de": {
        "owner": ("anna@example.com", "Anna Groß"),
        "sender": "Loyalty Frühwarnung <fruehwarnung@example.com>",
        "currency": "EUR",
        "names": ["Müller Metallbau GmbH", "Autohaus Adler", "Bäckerei Kühn KG", "Druckerei Weiß", "Zimmerei Öztürk"],
        "segments": ["Industrie", "Handel", "Handwerk"],
        "headings": ["Neue Warnsignale", "Weiterhin offen", "Behoben"],
        "portfolio": "Ihr Portfolio: 42 Kunden beobachtet, 5 mit offenen Warnsignalen. Kundenbindungsrate der letzten 12 Monate: 91",
        "since": "seit 02.11.2026",
    },
    "en": {
        "owner": ("emma@example.com", "Emma Clarke"),
        "sender": "Loyalty early warning <early-warning@example.com>",
        "currency": "GBP",
        "names": ["Hartley Engineering Ltd", "Northgate Motors", "Bramble Bakery Ltd", "Whitfield Print Co.", "Oakwood Joinery"],
        "segments": ["Manufacturing", "Retail", "Trades"],
        "headings": ["New warning signs", "Still open", "Resolved"],
        "portfolio": "Your portfolio: 42 accounts watched, 5 with open warnings. Retention rate over the last 12 months: 91",
        "since": "since 2 Nov 2026",
    },
}

# What the engine measured for each rule's warning: the texts are the shipped catalogue's, filled in
# as a night fills them (mail/mailing.py), so the page shows what owners read.
EVIDENCE = {
    "falling_order_frequency": {"orders_recent": 1, "expected_orders": 7.2, "monthly_fall": 0.6},
    "competitor_mentioned": {"competitor_mentions": 2},
    "escalation_to_supervisor": {"escalations_recent": 1},
    "nps_detractor": {"nps_latest": 5, "nps_previous": 9, "days_since_survey": 12},
    "shorter_contracts": {"contract_months_latest": 12, "contract_months_previous": 24},
    "order_gap_beyond_rhythm": {"days_since_order": 97, "usual_order_gap": 21},
    "sudden_zero_complaints": {"complaints_baseline": 5, "orders_last_year": 24},
}


def rule_texts(language: str) -> dict[str, tuple[str, str, str]]:
    """rule id -> (title, message, action) in the language, from rules/."""
    catalogue = {rule.id: rule for rule in load_rules(ROOT / "rules").rules}
    currency = LANGUAGES[language]["currency"]
    texts = {}
    for rule_id, evidence in EVIDENCE.items():
        rule, values = catalogue[rule_id], {**catalogue[rule_id].params, **evidence}
        texts[rule_id] = tuple(_text(part, language, values, currency) for part in (rule.title, rule.message, rule.action))
    return texts


# Account -> (name index or HOSTILE, segment index, group, severity per rule, monthly revenue oldest first).
NEW = [
    ("K-1001", 0, 0, "defector", {"falling_order_frequency": "high", "competitor_mentioned": "high"},
     (18400, 17900, 19200, 16800, 15100, 14300, 11800, 9600, 7200, 4100, 0, 1300)),
    ("K-1002", HOSTILE, 2, "hostage", {"shorter_contracts": "medium"},
     (3100, 2900, 3300, 3000, 3400, 3200, 3100, 2800, 3000, 2700, 2900, 2600)),
    ("K-1003", 2, 2, "loyal", {"nps_detractor": "high"},
     (2100, 2300, 2200, 2500, 2400, 2600, 2300, 2700, 2500, 2400, 2200, 1900)),
    ("K-1004", 1, 1, "apostle", {"escalation_to_supervisor": "critical"},
     (41000, 39500, 44200, 46800, 43900, 47200, 45500, 48100, 44700, 46300, 42800, 40900)),
]


@dataclass(frozen=True)
class Rendered:
    language: str
    html: Path  # the HTML part, in a folder of this test's own
    names: list[str]  # the accounts the page must name
    bars: int  # pixels of revenue bars the charts should cover


def owner_warnings(language: str) -> list[AccountWarning]:
    lang = LANGUAGES[language]
    email, owner = lang["owner"]

    def warning(account_id, name, rule_id, severity, **more) -> AccountWarning:
        title, message, action = rule_texts(language)[rule_id]
        return AccountWarning(account_id, name, email, owner, rule_id, severity, title, message, action, **more)

    warnings = []
    for account_id, name, segment, group, rules, months in NEW:
        for rule_id, severity in rules.items():
            warnings.append(warning(
                account_id, name if name == HOSTILE else lang["names"][name], rule_id, severity,
                segment=lang["segments"][segment], group=group, revenue_12m=float(sum(months)),
                monthly_revenue=tuple(float(m) for m in months),
            ))
    warnings.append(warning("K-1005", lang["names"][3], "order_gap_beyond_rhythm", "high", notice="repeat",
                            since=date(2026, 11, 2), segment=lang["segments"][1], group="opportunist",
                            revenue_12m=8800.0, monthly_revenue=(1200.0,) * 8 + (900.0, 0.0, 0.0, 0.0)))
    warnings.append(warning("K-1006", lang["names"][4], "sudden_zero_complaints", "medium", notice="resolved",
                            since=NIGHT, segment=lang["segments"][2], group="loyal", revenue_12m=15600.0,
                            monthly_revenue=(1300.0,) * 12))
    return warnings


def expected_bar_pixels() -> int:
    """The area of the full-colour bars (all but the current month) if each is 14 px wide and as tall as digest.py makes it."""
    total = 0
    for *_, months in NEW:
        top = max(months)
        total += sum(14 * max(round(CHART_HEIGHT * m / top), 1) for m in months[:-1] if m > 0)
    return total


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: `make install` installs Debian's chromium")
    command = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=90)


def read_png(data: bytes) -> np.ndarray:
    """An 8-bit RGB(A), non-interlaced PNG (what Chromium writes) as a (height, width, 3) array."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, f"unexpected PNG format {depth=} {colour=} {interlace=}"
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    channels = 3 if colour == 2 else 4
    stride = width * channels
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8).reshape(height, stride + 1)
    image = np.zeros((height, stride), dtype=np.uint8)
    previous = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        kind, row = raw[y, 0], raw[y, 1:]
        if kind == 0:  # None
            out = row.copy()
        elif kind == 1:  # Sub: a running sum per channel, modulo 256
            out = np.cumsum(row.reshape(width, channels), axis=0, dtype=np.uint8).reshape(stride)
        elif kind == 2:  # Up
            out = row + previous
        else:  # Average (3) and Paeth (4) depend on the byte just decoded: byte by byte
            out = bytearray(row.tobytes())
            up = previous.tolist()
            for i in range(stride):
                left = out[i - channels] if i >= channels else 0
                if kind == 3:
                    out[i] = (out[i] + (left + up[i]) // 2) & 0xFF
                else:
                    upper_left = up[i - channels] if i >= channels else 0
                    p = left + up[i] - upper_left
                    pa, pb, pc = abs(p - left), abs(p - up[i]), abs(p - upper_left)
                    predictor = left if pa <= pb and pa <= pc else up[i] if pb <= pc else upper_left
                    out[i] = (out[i] + predictor) & 0xFF
            out = np.frombuffer(bytes(out), dtype=np.uint8)
        image[y] = previous = out
    return image.reshape(height, width, channels)[:, :, :3]


def near(image: np.ndarray, colour: tuple[int, int, int], tolerance: int = 8) -> np.ndarray:
    return (np.abs(image.astype(np.int16) - np.array(colour, dtype=np.int16)) <= tolerance).all(axis=2)


def runs(present: np.ndarray) -> int:
    """How many separate stretches of True a 1-D mask has."""
    values = present.astype(np.int8)
    return int(values[0] + np.count_nonzero(np.diff(values) == 1))


@pytest.fixture(scope="module", params=sorted(LANGUAGES))
def rendered(request, tmp_path_factory) -> Rendered:
    language = request.param
    lang = LANGUAGES[language]
    email, _ = lang["owner"]
    portfolios = {email: Portfolio(watched=42, warned=5, retention=0.913)}
    [digest] = render_digests(owner_warnings(language), NIGHT, lang["sender"], language,
                              portfolios=portfolios, currency=lang["currency"])
    html = digest.message.get_body(("html",)).get_content()
    path = tmp_path_factory.mktemp(f"browser-{language}") / "digest.html"
    path.write_text(html, encoding="utf-8")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, ARTIFACTS / f"digest-{language}.html")
    return Rendered(language, path, [lang["names"][i] for i in (0, 1, 2, 3, 4)], expected_bar_pixels())


def test_digest_renders_in_a_browser_with_names_as_text(rendered, tmp_path):
    lang = LANGUAGES[rendered.language]
    result = chromium(tmp_path, "--dump-dom", rendered.html.as_uri())
    dom = result.stdout
    assert "</html>" in dom, result.stderr[-2000:]

    for name in rendered.names:
        assert name in dom
    for title, _, _ in rule_texts(rendered.language).values():
        assert title in dom
    for heading in lang["headings"]:
        assert f">{heading}</td>" in dom
    assert lang["portfolio"] in dom
    assert lang["since"] in dom
    assert "data-pwned" not in dom.replace("setAttribute('data-pwned'", "")  # the account name never ran
    assert "&lt;script&gt;document.body.setAttribute('data-pwned','yes')&lt;/script&gt;Böse &amp; Söhne" in dom

    # New, then still open, then resolved; within the new ones (issue 15) severity, then what is at
    # stake: the critical apostle, the large high-severity defector, the small loyal one, the medium hostage.
    new, still_open, resolved = (dom.index(f">{heading}</td>") for heading in lang["headings"])
    names = rendered.names
    order = [dom.index(names[1]), dom.index(names[0]), dom.index(names[2]), dom.index("Böse &amp; Söhne")]
    assert new < order[0] < order[1] < order[2] < order[3] < still_open < dom.index(names[3]) < resolved < dom.index(names[4])


def test_digest_screenshot_shows_the_page_and_the_charts(rendered, tmp_path):
    shot = tmp_path / "digest.png"
    result = chromium(tmp_path, f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={shot}", rendered.html.as_uri())
    assert shot.exists(), result.stderr[-2000:]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / f"digest-{rendered.language}.png")  # before the checks: a failure can be looked at

    data = shot.read_bytes()
    assert struct.unpack(">II", data[16:24]) == (WIDTH, HEIGHT)
    image = read_png(data)
    assert image.shape == (HEIGHT, WIDTH, 3)

    # Not blank: text, labels and charts on the white sheet.
    white = (image == 255).all(axis=2)
    ink = ~white & ~near(image, PAGE, tolerance=0)
    assert ink.sum() > 0.02 * WIDTH * HEIGHT
    assert (image.max(axis=2) < 100).sum() > 5_000  # dark text, not just coloured boxes

    # The charts: one band of blue bars per account with new warnings, twelve months side by side,
    # the current month (up to the night) lighter.
    bars = near(image, BAR)
    assert bars.sum() >= 0.5 * rendered.bars, f"{bars.sum()} bar pixels, expected about {rendered.bars}"
    assert runs(bars.any(axis=1)) == len(NEW)
    partial = near(image, BAR_PARTIAL)
    assert runs(bars.any(axis=0)) == 11 and runs(partial.any(axis=0)) == 1
    assert partial.any(axis=0).nonzero()[0].min() > bars.any(axis=0).nonzero()[0].max()  # the last bar, right of the others
    empty = near(image, BAR_EMPTY, tolerance=0)
    assert (empty[:, :-9] & np.logical_and.reduce([empty[:, k:WIDTH - 9 + k] for k in range(1, 10)])).any(), \
        "the month without revenue shows no grey slot"

    # Nothing cut off: the page ends above the bottom of the window, and nothing spills right of the sheet.
    assert near(image[-20:], PAGE, tolerance=0).all(), "the digest is taller than the screenshot"
    assert near(image[:, -40:], PAGE, tolerance=0).all(), "something sticks out to the right of the sheet"
