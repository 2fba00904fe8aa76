"""What the owner's verdict costs: signing links, rendering digests with them, and answering
requests on the verdict pages under a real uvicorn.

    .venv/bin/python benchmarks/feedback.py [--warnings 2000] [--requests 200]

1. Signing: one token (sign) and one check (read), in microseconds.
2. Digests: `render_digests` for one owner with N new warnings (max_accounts = N, all in full),
   without and with their 3 N links (`with_links`).
3. Pages: the test project of tests/support/feedback.py (a real night, a real DuckDB file),
   the pages under uvicorn on loopback; median and 95th percentile of a GET (the page) and of
   a POST (an answer, alternating useful / false alarm so each one writes), over httpx.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from loyalty_engine.config import FeedbackSettings, load_settings  # noqa: E402
from loyalty_engine.feedback.links import Verdict, read, sign, with_links  # noqa: E402
from loyalty_engine.mail.digest import AccountWarning, render_digests  # noqa: E402

NIGHT = date(2026, 11, 23)
SECRET = "benchmark-secret-0123456789abcdef0123456789"


def per_call(fn, n: int) -> float:
    begun = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - begun) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warnings", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    os.environ["LOYALTY_FEEDBACK_SECRET"] = SECRET
    secret = SECRET.encode()

    token = sign(secret, NIGHT, "K-00042", "falling_order_frequency", "anna@example.com", Verdict.USEFUL, 30, "de")
    signing = per_call(lambda: sign(secret, NIGHT, "K-00042", "falling_order_frequency", "anna@example.com", Verdict.USEFUL, 30, "de"), 20000)
    checking = per_call(lambda: read(secret, token, NIGHT), 20000)
    print(f"sign one token: {signing * 1e6:.1f} µs; check one: {checking * 1e6:.1f} µs; token {len(token)} characters")

    warnings = [
        AccountWarning(f"K-{i:05d}", f"Kunde {i}", "anna@example.com", "Anna", "falling_order_frequency", "high",
                       "Bestellfrequenz sinkt", "2 Bestellungen in 90 Tagen, etwa 7 erwartet", "Anrufen.", language="de")
        for i in range(args.warnings)
    ]
    feedback = FeedbackSettings(base_url="https://fruehwarnung.example.com")
    for label, given in (("without links", lambda: warnings), ("with links", lambda: with_links(warnings, NIGHT, feedback))):
        begun = time.perf_counter()
        [digest] = render_digests(given(), NIGHT, "fw@example.com", "de", max_accounts=args.warnings)
        took = time.perf_counter() - begun
        print(f"digest of {args.warnings} warnings {label}: {took:.2f} s, {len(digest.message.as_bytes()) / 1e6:.2f} MB")

    from tests.support.feedback import VerdictServer, feedback_project, links_in, night_digests
    from tests.support.smtp import free_port

    with tempfile.TemporaryDirectory() as scratch:
        port = free_port()
        settings = load_settings(feedback_project(Path(scratch), port))
        [digest] = night_digests(settings)
        links = dict(zip(("useful", "false_alarm", "already_known"), links_in(digest.message.get_body(("plain",)).get_content())))
        server = VerdictServer(settings, port, rate_per_minute=10**6).start()
        try:
            with httpx.Client() as client:
                gets, posts = [], []
                for _ in range(args.requests):
                    begun = time.perf_counter()
                    assert client.get(links["useful"]).status_code == 200
                    gets.append(time.perf_counter() - begun)
                for i in range(args.requests):
                    link = links["useful" if i % 2 == 0 else "false_alarm"]
                    begun = time.perf_counter()
                    assert client.post(link, data={"token": link.rsplit("/", 1)[1]}).status_code == 200
                    posts.append(time.perf_counter() - begun)
        finally:
            server.stop()
        for label, times in (("GET (page)", gets), ("POST (answer)", posts)):
            times.sort()
            print(f"{label}: median {statistics.median(times) * 1e3:.1f} ms, p95 {times[int(len(times) * 0.95)] * 1e3:.1f} ms over {len(times)}")


if __name__ == "__main__":
    main()
