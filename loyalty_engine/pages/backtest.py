"""A backtest as one self-contained HTML page (`loyalty backtest --format html`), for sharing."""

from __future__ import annotations

from pathlib import Path

from loyalty_engine.backtest import Backtest
from loyalty_engine.mail.digest import template_environment


def render_backtest(results: list[Backtest], paths: list[Path], difference: dict | None, language: str) -> str:
    return template_environment().get_template("backtest.html.j2").render(
        runs=list(zip([str(p) for p in paths], results)),
        difference=difference,
        language=language,
        share=lambda value: "–" if value is None else f"{value:.0%}",
        lead=lambda value: "–" if value is None else f"{value:+.0f}",
    )
