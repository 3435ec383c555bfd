"""The ``reconcile`` command's entry point: the language is set before the command line is
built, so that every message, option help included, is in it (``--lang``, or the locale)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Set the language from ``--lang`` or the environment, then run the command line."""
    from .i18n import language_from, set_language

    args = list(sys.argv[1:] if argv is None else argv)
    set_language(language_from(args, os.environ))
    from .cli import main as cli_main  # after the language: option help is translated on import

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
