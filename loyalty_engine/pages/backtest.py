"""A backtest as one self-contained HTML page (`loyalty backtest --format html`), for sharing."""

from __future__ import annotations

from pathlib import Path

from loyalty_engine import i18n
from loyalty_engine.backtest import Backtest
from loyalty_engine.templating import render


def render_backtest(results: list[Backtest], paths: list[Path], difference: dict | None, language: str) -> str:
    # The figures are written as `loyalty backtest` prints them, in every language.
    return render(
        "backtest.html.j2",
        {
            "runs": list(zip([str(p) for p in paths], results)),
            "difference": difference,
            "language": language,
            "ui": i18n.language(language).backtest,
            "share": lambda value: "–" if value is None else f"{value:.0%}",
            "lead": lambda value: "–" if value is None else f"{value:+.0f}",
        },
    )
