"""The one Jinja environment for every digest and page, and the CSS inlining mail clients need.

Digests (mail/digest.py), the portfolio report and the backtest page (pages/) all render from
`templates/` through this environment, so escaping and undefined names behave the same in each:
HTML is autoescaped, and a name a template uses but the context lacks fails the render instead
of leaving a hole in a mail (StrictUndefined).
"""

from __future__ import annotations

from functools import cache

import css_inline
import jinja2


@cache
def template_environment() -> jinja2.Environment:
    """The templates of digests and pages: autoescaped (STACK.md §6: select_autoescape misses *.html.j2 by default)."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("loyalty_engine", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "xml", "html.j2")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(template: str, context: dict) -> str:
    """The template of that name in `templates/`, rendered with the context."""
    return template_environment().get_template(template).render(context)


def inline_css(html: str) -> str:
    """The page with its <style> rules moved into style="" attributes: many mail clients
    (Outlook, Gmail's app) drop a <style> block. Nothing remote is fetched."""
    return _inliner().inline(html)


@cache
def _inliner() -> css_inline.CSSInliner:
    return css_inline.CSSInliner(load_remote_stylesheets=False)
