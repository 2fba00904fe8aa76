"""Text from outside (an extract, a rule file, a YAML key) made safe to show.

Control characters are invisible but not harmless: a NUL or a terminal escape (\\x1b[2J) in an
account name, a line or paragraph separator (U+2028/U+2029) in a title, a right-to-left override
(U+202E) that makes "Kunde exe.txt" read as something else. Tabs and line breaks are the only
ones a text may keep, and only where it may span lines.
"""

from __future__ import annotations

import re

# C0 controls (but tab and line feed), DEL and C1 controls, the Unicode line and paragraph
# separators, and the bidi embeddings, overrides and isolates. LRM/RLM (U+200E/F) and the
# zero-width joiners stay: names in right-to-left scripts and emoji need them, and they cannot
# reorder text beyond their own character.
_CONTROL = "\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
# A character class of the literal characters, read alike by Python's re and polars' (Rust)
# regex, whose escape syntaxes differ; schemas.py checks owner names with it.
NOT_ON_ONE_LINE = f"[\t\n{_CONTROL}]"
_UNSAFE = re.compile(f"[{_CONTROL}]")
_UNSAFE_ON_ONE_LINE = re.compile(NOT_ON_ONE_LINE)

PLACEHOLDER = "\ufffd"  # the replacement character: shows that something was there


def printable(text: str, one_line: bool = False) -> str:
    """The text with each control character replaced by U+FFFD and line breaks as "\\n". With
    `one_line`, every run of white space (line breaks, tabs, U+2028 …) becomes one space.

    >>> printable("Kunde\\x1b[2J GmbH"), printable("a\\r\\nb"), printable(" a\\r\\n b\\u2028", one_line=True)
    ('Kunde\\ufffd[2J GmbH', 'a\\nb', 'a b')
    """
    if one_line:
        text = " ".join(text.split())
    else:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return (_UNSAFE_ON_ONE_LINE if one_line else _UNSAFE).sub(PLACEHOLDER, text)


def escaped(text: str) -> str:
    """For error messages: each control character, tabs and line breaks included, written as
    its escape, so the message stays on one line and shows what is wrong.

    >>> escaped("unknown key 'a\\nb\\u202e'")
    "unknown key 'a\\\\nb\\\\u202e'"
    """
    return _UNSAFE_ON_ONE_LINE.sub(lambda match: repr(match.group())[1:-1], text)
