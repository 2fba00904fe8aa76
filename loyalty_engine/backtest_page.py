"""A backtest as one self-contained HTML page (`loyalty backtest --format html`), for sharing."""

from __future__ import annotations

from pathlib import Path

import jinja2

from loyalty_engine.backtest import Backtest


def render_backtest(results: list[Backtest], paths: list[Path], difference: dict | None, language: str) -> str:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("loyalty_engine", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2")),
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["share"] = lambda value: "–" if value is None else f"{value:.0%}"
    environment.filters["lead"] = lambda value: "–" if value is None else f"{value:+.0f}"
    return environment.get_template("backtest.html.j2").render(
        runs=list(zip([str(p) for p in paths], results)), difference=difference, language=language
    )
