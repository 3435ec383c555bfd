"""The one error tree of the controller.

    ReconcileError                      every error a user can cause or meet; the CLI catches it
    ├── SpecError(file, line, field)     a spec file is invalid (one line each; several at once)
    ├── StateError                       a state file (world, records, saved plan) is unreadable
    ├── PlanError                        a plan is refused (guards, partner mismatch, empty specs)
    │   └── StalePlanError               a saved plan no longer matches the current state
    ├── ProviderError                    the provider could not observe or apply
    │   ├── TemporaryProviderError(retry_after)   worth retrying (throttling, 5xx, timeouts)
    │   └── PermanentProviderError(code)          not worth retrying (a precondition, a 4xx)
    └── LockError                        another apply holds the state directory

Foreign exceptions (yaml, pydantic, OSError, httpx) are translated at the boundary where they
occur, with ``raise X(...) from exc``, so the CLI never shows a traceback for a user's mistake.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .i18n import _


class ReconcileError(Exception):
    """Root of every error the controller reports to a user."""


@dataclass(frozen=True)
class SpecProblem:
    """One problem in one spec file, pointing at the offending line and field."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.field}: " if self.field else ""
        return f"{self.file}:{self.line}: {where}{self.message}"


class SpecError(ReconcileError):
    """The specs are invalid; carries every problem found, one line each."""

    def __init__(self, problems: Sequence[SpecProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class StateError(ReconcileError):
    """A state file (world, records, journal, saved plan) cannot be read or written."""


class PlanError(ReconcileError):
    """A plan is refused: a guard, a partner mismatch, or empty specs."""


class StalePlanError(PlanError):
    """A saved plan was made from a current state that has changed since."""


class ProviderError(ReconcileError):
    """The provider could not observe the current state or apply an action."""


class TemporaryProviderError(ProviderError):
    """A failure that may pass: throttling, a server error, a timeout."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentProviderError(ProviderError):
    """A failure that retrying cannot fix: a violated precondition, a refused request."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class LockError(ReconcileError):
    """Another process is applying to the same state directory."""


def validation_problem(exc: Any) -> str:
    """The first problem of a pydantic ValidationError as ``field.path: message``, for the one
    line that names a damaged state file."""
    first = exc.errors()[0]
    where = ".".join(_one_line(str(p)) for p in first["loc"]) or _("document")
    return f"{where}: {_one_line(str(first['msg'])).removeprefix('Value error, ')}"


def _one_line(text: str) -> str:
    """A key or message of a damaged file, its line breaks and control characters escaped:
    the error stays one line (a key holding a line break in applied.json made two)."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")
