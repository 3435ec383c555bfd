"""The ``reconcile`` command's entry point: the language is set before the command line is
built, so that every message, option help included, is in it (``--lang``, or the locale)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Replay a dry run whose inputs are unchanged (``planreuse``); else set the language from
    ``--lang`` or the environment, and run the command line."""
    from . import planreuse  # first, and alone: a replay imports nothing else

    args = list(sys.argv[1:] if argv is None else argv)
    reuse = planreuse.start(args, os.environ)
    if reuse is not None:
        try:
            replayed = reuse.replay()
        except KeyboardInterrupt:  # as the command line says it (cli.main), never a traceback
            from .i18n import _, language_from, set_language

            set_language(language_from(args, os.environ))
            print(_("Interrupted."), file=sys.stderr)
            return 130
        if replayed is not None:
            return replayed
        reuse.record()
    from .i18n import language_from, set_language

    set_language(language_from(args, os.environ))
    from .cli import main as cli_main  # after the language: option help is translated on import

    code: int | None = None
    try:
        code = cli_main(args)
    finally:
        if reuse is not None:
            reuse.finish(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
