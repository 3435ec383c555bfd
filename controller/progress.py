"""Apply progress on stderr: a live bar on a terminal, one plain line per action elsewhere
(CI logs stay readable)."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from .document import ActionResult
from .i18n import _, ngettext
from .plan import Action
from .render.text import result_line

log = logging.getLogger("reconcile")


class Progress(Protocol):
    def start(self, total: int) -> None: ...

    def advance(self, action: Action, result: ActionResult) -> None: ...

    def close(self) -> None: ...


class LineProgress:
    """One line per finished action."""

    def __init__(self, names: Mapping[str, str]) -> None:
        self.names = names

    def start(self, total: int) -> None:
        log.info(ngettext("applying %d action", "applying %d actions", total), total)

    def advance(self, action: Action, result: ActionResult) -> None:
        log.info("%s", result_line(action, result, self.names))

    def close(self) -> None:
        pass


class BarProgress:
    """A rich progress bar: done/total, failures, rate, time left; failures also as lines."""

    def __init__(self, names: Mapping[str, str]) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self.names = names
        self._bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn(_("failed {task.fields[failed]}")),
            TextColumn("[progress.data.speed]{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._task: Any = None
        self._failed = 0
        self._lock = threading.Lock()

    def start(self, total: int) -> None:
        self._task = self._bar.add_task(_("applying"), total=total, failed=0, rate="")
        self._bar.start()

    def advance(self, action: Action, result: ActionResult) -> None:
        with self._lock:
            if result.status == "failed":
                self._failed += 1
                self._bar.console.print(
                    result_line(action, result, self.names), markup=False, highlight=False
                )
            task = self._bar.tasks[0]
            speed = task.speed
            rate = _("{:.1f} actions/s").format(speed) if speed else ""
            self._bar.update(self._task, advance=1, failed=self._failed, rate=rate)

    def close(self) -> None:
        self._bar.stop()


def make_progress(names: Mapping[str, str]) -> Progress:
    """A bar when stderr is a terminal, plain lines otherwise."""
    return BarProgress(names) if sys.stderr.isatty() else LineProgress(names)
