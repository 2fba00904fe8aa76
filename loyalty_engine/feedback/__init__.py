"""The owner's verdict on a warning: one click in the digest, recorded safely, counted per rule.

- `links.py`: the signed verdict links a digest carries under each warning (HMAC-SHA256).
- `verdicts.py`: recording a verdict in the DuckDB file (one per owner, account, rule and night,
  the latest counting, every answer kept), the owners' snoozes, the figures per rule.
- `pages.py`: the small web service the links point at (Starlette): a GET shows the warning and
  one button, only the button's POST records.
"""
