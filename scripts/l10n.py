"""Re-extract the messages, update the catalogues and compile them (Babel).

    python scripts/l10n.py            # after changing user-facing text; then translate the new
                                      # (empty) entries of controller/locale/zh_TW/... .po and
                                      # run it again to compile the .mo

The same as ``pybabel extract -k english -k english_plural:1,2 -o …pot controller``, ``pybabel
update`` and ``pybabel compile``, plus the commands' help, which click takes from docstrings that
no ``_()`` can wrap (``cli.translate_help`` translates them when the command line starts).
A second catalogue, ``click``, holds click's own words ("Usage:", "Error: …"), extracted from
the installed click's modules (``i18n.CLICK_MODULES``): after upgrading click, run it again.
"""

from __future__ import annotations

import sys
from io import BytesIO
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir, extract_from_file
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
LOCALE = ROOT / "controller" / "locale"
DOMAIN = "partner-reconciler"
LANGUAGES = ("zh_TW",)
KEYWORDS = {
    "_": None,
    "ngettext": (1, 2),
    "english": None,
    "english_plural": (1, 2),
}


def po_path(language: str, domain: str = DOMAIN) -> Path:
    return LOCALE / language / "LC_MESSAGES" / f"{domain}.po"


def extract() -> Catalog:
    """Every message of the source (``_``, ``ngettext``, ``english``, ``english_plural``) and
    every command's help."""
    catalog = Catalog(project="partner-reconciler", domain=DOMAIN, fuzzy=False)
    for filename, lineno, message, _comments, context in extract_from_dir(
        ROOT / "controller", method_map=[("**.py", "python")], keywords=KEYWORDS
    ):
        catalog.add(message, locations=[(f"controller/{filename}", lineno)], context=context)
    sys.path.insert(0, str(ROOT))
    from controller.cli import cli, commands

    for command in commands(cli):
        if command.help:
            catalog.add(command.help, locations=[("controller/cli.py", 0)])
    return catalog


def extract_click() -> Catalog:
    """click's own messages, from the installed click."""
    import click

    sys.path.insert(0, str(ROOT))
    from controller.i18n import CLICK_DOMAIN, CLICK_MODULES

    catalog = Catalog(project="click", domain=CLICK_DOMAIN, fuzzy=False)
    folder = Path(click.__file__).parent
    for name in CLICK_MODULES:
        for lineno, message, _comments, context in extract_from_file(
            "python", folder / f"{name}.py", keywords={"_": None, "ngettext": (1, 2)}
        ):
            catalog.add(message, locations=[(f"click/{name}.py", lineno)], context=context)
    return catalog


def templates() -> dict[str, Catalog]:
    """Each catalogue's domain and messages."""
    from controller.i18n import CLICK_DOMAIN

    return {DOMAIN: extract(), CLICK_DOMAIN: extract_click()}


def update(template: Catalog, language: str, domain: str = DOMAIN) -> Catalog:
    """The language's catalogue with the template's messages: new ones empty, gone ones
    dropped; never fuzzy-matched (a guess is not a translation)."""
    path = po_path(language, domain)
    if not path.exists():
        write(Catalog(locale=language, domain=domain, fuzzy=False), path)
    with path.open("rb") as file:
        catalog = read_po(file, locale=language)
    catalog.update(template, no_fuzzy_matching=True)
    catalog.obsolete.clear()
    return catalog


def compiled(catalog: Catalog) -> bytes:
    out = BytesIO()
    write_mo(out, catalog)
    return out.getvalue()


def write(catalog: Catalog, path: Path) -> None:
    out = BytesIO()
    write_po(out, catalog, width=100, omit_header=False, sort_output=True, include_lineno=False)
    path.write_bytes(out.getvalue())


def main() -> None:
    sys.path.insert(0, str(ROOT))
    for domain, template in templates().items():
        write(template, LOCALE / f"{domain}.pot")
        for language in LANGUAGES:
            catalog = update(template, language, domain)
            write(catalog, po_path(language, domain))
            po_path(language, domain).with_suffix(".mo").write_bytes(compiled(catalog))
            missing = [m.id for m in catalog if m.id and (not m.string or m.fuzzy)]
            print(f"{language} {domain}: {len(catalog)} messages, {len(missing)} to translate")


if __name__ == "__main__":
    main()
