"""Self-contained HTML pages for people who do not read mail digests: the portfolio report and the backtest."""
