"""Translation hook for user-facing text.

Every message a user reads goes through ``_()`` so that a Traditional Chinese (zh-TW) catalogue,
in Partner Center's own terms, can be added under ``controller/locale/`` without touching the core.
"""

from __future__ import annotations

import gettext
from pathlib import Path

_LOCALE_DIR = Path(__file__).parent / "locale"
_translation = gettext.translation("partner-reconciler", localedir=_LOCALE_DIR, fallback=True)


def _(message: str) -> str:
    """Translate ``message`` with the user's locale (LANGUAGE, LC_ALL, LC_MESSAGES, LANG)."""
    return _translation.gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """Translate a message whose form depends on a count."""
    return _translation.ngettext(singular, plural, n)
