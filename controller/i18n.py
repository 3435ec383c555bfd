"""Translation of user-facing text (gettext; catalogues under ``controller/locale/``).

Every message a user reads goes through ``_()`` or ``ngettext()``. The language is chosen before
the command line is built (``entry.main``): ``--lang``, else LANGUAGE, LC_ALL, LC_MESSAGES, LANG.
Catalogues: ``controller/locale/<lang>/LC_MESSAGES/partner-reconciler.mo``, compiled from the
``.po`` beside it (``scripts/l10n.py``).

Plans also carry text as data (reasons, warnings), which the JSON plan keeps in English: the
planner makes it with ``english()`` (or ``english_plural()``), which remembers how to translate
it, and the text and markdown renderers show it with ``shown()``.
"""

from __future__ import annotations

import gettext
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

DOMAIN = "partner-reconciler"
LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = ("en", "zh-TW")  # what --lang accepts
# click's own words ("Usage:", "Error: …", "No such option …"): a catalogue of their own, made
# from the installed click by scripts/l10n.py.
CLICK_DOMAIN = "click"
CLICK_MODULES = ("core", "decorators", "exceptions", "formatting", "parser", "termui", "types")

_translation: gettext.NullTranslations = gettext.NullTranslations()
_click_translation: gettext.NullTranslations = gettext.NullTranslations()

# English text made by english(), and how to translate it: (message, plural, count, arguments).
_Recipe = tuple[str, str | None, int, tuple[Any, ...]]
_made: dict[str, _Recipe] = {}
_MADE_LIMIT = 200_000  # a long watch run must not grow without bound


def language_from(args: Sequence[str], environ: Mapping[str, str]) -> str | None:
    """The language asked for: ``--lang X`` (or ``--lang=X``) among ``args``, else the first of
    LANGUAGE, LC_ALL, LC_MESSAGES, LANG that is set, the order in which gettext reads them."""
    for n, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--lang" and n + 1 < len(args):
            return args[n + 1]
        if arg.startswith("--lang="):
            return arg.split("=", 1)[1]
    for variable in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(variable, "")
        if value:
            return value.split(":")[0]
    return None


def catalogue_name(language: str) -> str:
    """``zh-TW``, ``zh_TW.UTF-8``, ``zh-Hant`` -> ``zh_TW``: the folder of its catalogue."""
    code = language.split(".")[0].split("@")[0].replace("-", "_")
    head, _sep, tail = code.partition("_")
    if head.lower() == "zh" and tail.lower() in ("tw", "hant", "hant_tw"):
        return "zh_TW"
    return f"{head.lower()}_{tail.upper()}" if tail else head.lower()


def set_language(language: str | None) -> None:
    """Translate into ``language`` from now on; None, C, POSIX, or a language without a
    catalogue: English."""
    global _translation, _click_translation
    if not language or language in ("C", "POSIX"):
        _translation = _click_translation = gettext.NullTranslations()
        return
    languages = [catalogue_name(language)]
    _translation = gettext.translation(
        DOMAIN, localedir=LOCALE_DIR, languages=languages, fallback=True
    )
    _click_translation = gettext.translation(
        CLICK_DOMAIN, localedir=LOCALE_DIR, languages=languages, fallback=True
    )


def translate_click() -> None:
    """click looks its words up with the standard ``gettext`` (the process's locale and default
    domain, where there is no catalogue for them): point each of its modules' ``_`` and
    ``ngettext`` at the click catalogue in the chosen language instead, so that ``--lang``
    holds for "Usage:" and "Error:" too. Before the commands are declared: some of click's
    words are taken then (the help of ``--version``)."""
    import importlib

    for name in CLICK_MODULES:
        module = importlib.import_module(f"click.{name}")
        if hasattr(module, "_"):
            module._ = _click_gettext  # type: ignore[attr-defined]
        if hasattr(module, "ngettext"):
            module.ngettext = _click_ngettext  # type: ignore[attr-defined]


def _click_gettext(message: str) -> str:
    return _click_translation.gettext(message)


def _click_ngettext(singular: str, plural: str, n: int) -> str:
    return _click_translation.ngettext(singular, plural, n)


def _(message: str) -> str:
    """Translate ``message`` into the chosen language."""
    return _translation.gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """Translate a message whose form depends on a count."""
    return _translation.ngettext(singular, plural, n)


class _English(str):
    """English text whose ``format()`` remembers how to translate the result."""

    def __new__(cls, text: str, recipe: _Recipe) -> _English:
        made = super().__new__(cls, text)
        made._recipe = recipe
        return made

    _recipe: _Recipe

    def format(self, *args: Any, **kwargs: Any) -> str:
        message, plural, count, _args = self._recipe
        return _remember(super().format(*args, **kwargs), (message, plural, count, args))


def _remember(text: str, recipe: _Recipe) -> str:
    if len(_made) >= _MADE_LIMIT:
        _made.clear()
    _made[text] = recipe
    return text


def english(message: str) -> str:
    """``message`` in English, as data (a plan's reason or warning: the JSON plan keeps it as it
    is); ``.format()`` works as usual, and ``shown()`` translates the result."""
    _remember(message, (message, None, 0, ()))
    return _English(message, (message, None, 0, ()))


def english_plural(singular: str, plural: str, n: int) -> str:
    """``english()`` for a message whose form depends on a count."""
    text = singular if n == 1 else plural
    return _English(text, (singular, plural, n, ()))


def shown(text: str) -> str:
    """Text for people: what ``english()`` made, translated (arguments made by it too); other
    text (a message of unknown origin, such as a saved plan's) translated when the catalogue
    knows it, else as it is."""
    recipe = _made.get(text)
    if recipe is None:
        return _(text)
    message, plural, count, args = recipe
    translated = ngettext(message, plural, count) if plural is not None else _(message)
    if not args:
        return translated
    return translated.format(*(shown(a) if isinstance(a, str) and a in _made else a for a in args))


set_language(language_from((), os.environ))
