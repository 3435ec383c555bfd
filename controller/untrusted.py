"""Untrusted text made safe to show: names, ids and messages that come from specs, state files,
saved plans or the service's answers.

On a terminal, a control character or an ANSI escape in a customer's name could move the cursor
and rewrite the plan just before the "apply?" question; a bidi override could make text read
differently from what it is. ``printable`` shows every such character escaped (``\\x1b``,
``\\u202e``) instead, and ``SafeFormatter`` does the same for every log line. Markdown has its
own escaping (``render/markdown.py``) on top of this.
"""

from __future__ import annotations

import logging
import re

# Controls (C0, DEL, C1), format characters (bidi marks, embeddings, overrides and isolates,
# zero-width and invisible characters, tags), line and paragraph separators, lone surrogates:
# Unicode categories Cc, Cf, Zl, Zp and Cs (as of Unicode 14, Python 3.11's; a test checks it),
# except the zero-width joiners U+200C and U+200D, which shape Indic and Persian words and emoji.
_UNSAFE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e"
    r"\u200b\u200e-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ud800-\udfff\ufeff"
    r"\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3"
    r"\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]"
)


_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: object) -> str:
    """``text`` with every control, escape, bidi and invisible format character escaped, so
    that it shows as what it is and cannot act on the terminal (newlines included)."""
    return _UNSAFE.sub(_escape, str(text))


class SafeFormatter(logging.Formatter):
    """Log lines with untrusted text escaped (a message from the service, a name in a line)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return printable(super().formatMessage(record))
