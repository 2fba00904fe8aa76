"""A tune as one self-contained HTML page (`loyalty tune --format html`), for sharing."""

from __future__ import annotations

from pathlib import Path

from loyalty_engine import i18n
from loyalty_engine.backtest import Tune
from loyalty_engine.templating import render


def render_tune(tune: Tune, rules_path: Path, language: str) -> str:
    # The figures are written as `loyalty tune` prints them, in every language.
    return render(
        "tune.html.j2",
        {
            "tune": tune,
            "replay": tune.replay,
            "rules_path": str(rules_path),
            "language": language,
            "ui": i18n.language(language).backtest,
            "param": lambda value: f"{value:g}",
            "share": lambda value: "–" if value is None else f"{value:.0%}",
            "lead": lambda value: "–" if value is None else f"{value:+.0f}",
        },
    )
