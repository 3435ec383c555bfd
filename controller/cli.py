"""The command line: parses options, wires the parts, renders, and maps errors to exit codes.

This is the only place that catches the root error type."""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from contextlib import closing
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import click

from .errors import ReconcileError, SpecError
from .i18n import LANGUAGES, _, ngettext, shown, translate_click

translate_click()  # before the commands below are declared

# --lang: taken by every command, before or after its name (``entry.main`` reads it first).
_LANG_DECLS = ("--lang",)
_LANG_ATTRS: dict[str, Any] = {
    "type": click.Choice(LANGUAGES, case_sensitive=False),
    "expose_value": False,
    "help": _(
        "Language of plans and messages (default: from LANGUAGE, LC_ALL, LC_MESSAGES or LANG)."
    ),
}

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2  # only with --dry-run --detailed-exitcode

log = logging.getLogger("reconcile")

OUTPUTS = ("text", "json", "markdown")
# The longest wait in seconds an option may ask for (a lock timeout, the emulator's latency):
# a year, far below what the system can sleep (threading.TIMEOUT_MAX, about 292 years).
WAIT_MAX = 365 * 24 * 3600.0
PROVIDERS = ("local", "partner-center")


def _colour() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def _render_plan(plan: Any, output: str) -> str:
    from .render import json as json_render
    from .render import markdown, text

    if output == "json":
        return json_render.render_plan(plan)
    if output == "markdown":
        return markdown.render_plan(plan)
    return text.render_plan(plan, colour=_colour())


def _render_outcome(outcome: Any, output: str) -> str:
    from .render import json as json_render
    from .render import markdown, text

    if output == "json":
        return json_render.render_outcome(outcome)
    if output == "markdown":
        return markdown.render_outcome(outcome)
    return text.render_outcome(outcome, colour=_colour())


class FiniteFloatRange(click.FloatRange):
    """click's FloatRange without ``nan`` and ``inf``, which it takes for numbers: a lock
    timeout, a rate or an interval of ``nan`` compares false with everything and silently
    meant "never" or "no limit"."""

    name = "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        import math

        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(_("{} is not a finite number").format(value), param, ctx)
        return number


class RateRange(FiniteFloatRange):
    """Requests per minute: 0 (no limit) or at least ``MIN_RATE``. A smaller rate would make a
    worker wait longer than the system can sleep (an OverflowError), and mean "never" anyway."""

    MIN_RATE = 0.01  # one request in 100 minutes

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if 0 < number < self.MIN_RATE:
            self.fail(
                _("{} is neither 0 (no limit) nor at least {}").format(value, self.MIN_RATE),
                param,
                ctx,
            )
        return number


def _specs_option(function: Any) -> Any:
    return click.option(
        "--specs",
        "specs_dir",
        type=click.Path(path_type=Path),
        default=Path("specs"),
        show_default=True,
        help=_("Directory of spec files (the desired state)."),
    )(function)


def _state_option(function: Any) -> Any:
    return click.option(
        "--state",
        "state_dir",
        type=click.Path(path_type=Path),
        default=Path("state"),
        show_default=True,
        help=_("Controller state directory (and the local provider's world)."),
    )(function)


def _lock_timeout_option(function: Any) -> Any:
    return click.option(
        "--lock-timeout",
        type=FiniteFloatRange(min=0, max=WAIT_MAX),
        default=0.0,
        show_default=True,
        help=_("Seconds to wait for another apply to finish."),
    )(function)


# --- the shared store (PostgreSQL) and the HA watch: these options are kept together -------


def _state_url_option(function: Any) -> Any:
    function = click.option(
        "--partner",
        envvar="RECONCILE_PARTNER",
        metavar="TENANT_ID",
        help=_(
            "With --state-url: whose records (default: the specs' partner.id, or the "
            "provider's tenant)."
        ),
    )(function)
    return click.option(
        "--state-url",
        envvar="RECONCILE_STATE_URL",
        metavar="postgresql://…",
        help=_(
            "Keep the records in this PostgreSQL database instead of --state (env "
            "RECONCILE_STATE_URL; a password only there, in PGPASSWORD or ~/.pgpass)."
        ),
    )(function)


def _listen_option(function: Any) -> Any:
    return click.option(
        "--listen",
        metavar="HOST:PORT",
        help=_("Watch mode: serve /healthz, /readyz and /metrics on this address."),
    )(function)


def _checked_store(state_url: str | None, partner: str | None) -> tuple[str | None, str | None]:
    """Refuse a --state-url that is not PostgreSQL, or that carries a password on the command
    line (visible to every user of the machine and in CI logs)."""
    if not state_url:
        return None, _normalized_partner(partner)
    from .pgstore import is_postgres_url, redact_url

    if not is_postgres_url(state_url):
        raise click.BadParameter(
            _("must start with postgresql://, got {}").format(redact_url(state_url)),
            param_hint="--state-url",
        )
    if _typed_with_password(click.get_current_context()):
        raise click.BadParameter(
            _(
                "a password on the command line is visible to others: put the URL in "
                "RECONCILE_STATE_URL, or the password in PGPASSWORD or ~/.pgpass"
            ),
            param_hint="--state-url",
        )
    return state_url, _normalized_partner(partner)


def _typed_with_password(ctx: click.Context | None) -> bool:
    """Whether a --state-url with a password was typed, after the subcommand or before it."""
    from .pgstore import redact_url

    while ctx is not None:
        url = ctx.params.get("state_url")
        typed = ctx.get_parameter_source("state_url") is click.core.ParameterSource.COMMANDLINE
        if typed and url and redact_url(url) != url:
            return True
        ctx = ctx.parent
    return False


def _normalized_partner(partner: str | None) -> str | None:
    if not partner:
        return None
    return sorted(_customer_ids((partner,), "--partner"))[0]


# --------------------------------------------------------------------------------------------


def _provider_option(function: Any) -> Any:
    return click.option(
        "--provider",
        type=click.Choice(PROVIDERS),
        default="local",
        show_default=True,
        help=_("Where the current state is read and actions are applied."),
    )(function)


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@_specs_option
@_state_option
@_provider_option
@click.option("--dry-run", is_flag=True, help=_("Plan only; change nothing."))
@click.option("--output", type=click.Choice(OUTPUTS), default="text", show_default=True)
@click.option(
    "--detailed-exitcode", is_flag=True, help=_("With --dry-run: exit 2 when the plan has changes.")
)
@click.option(
    "--fail-on-warnings",
    is_flag=True,
    help=_("Exit 1 when the plan has warnings, after showing it; an apply then applies nothing."),
)
@click.option(
    "--plan-out",
    type=click.Path(path_type=Path, dir_okay=False),
    help=_("With --dry-run: also save the JSON plan to this file."),
)
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help=_("Apply exactly this saved plan; refuse it if the state changed since."),
)
@click.option(
    "--max-removals",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help=_("Refuse to apply a plan removing more relationships than this."),
)
@click.option(
    "--max-cancellations",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help=_("Refuse to apply a plan cancelling more subscriptions than this."),
)
@click.option(
    "--allow-mass-removal", is_flag=True, help=_("Lift both limits (removals, cancellations).")
)
@click.option(
    "--parallelism",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help=_("Actions in flight at once."),
)
@click.option(
    "--rate-limit",
    type=RateRange(min=0),
    default=None,
    help=_(
        "Provider requests per minute, shared by all workers (0: no limit). Default: 500, "
        "Partner Center's documented limit, with --provider partner-center; no limit locally."
    ),
)
@click.option(
    "--refresh",
    type=click.Choice(["auto", "full", "none"]),
    default="auto",
    show_default=True,
    help=_(
        "Partner Center: which customers' subscriptions a plan reads afresh. auto: those it "
        "needs (changed specs, removals, pending, new, older than --max-age), the rest from the "
        "observation cache; full: every customer; none: no request, the cache alone."
    ),
)
@click.option(
    "--max-age",
    default="24h",
    show_default=True,
    metavar="DURATION",
    help=_(
        "With --refresh auto: cached observations older than this (36h, 2d) are read again, "
        "the oldest first, at most --max-stale per run."
    ),
)
@click.option(
    "--max-stale",
    type=click.IntRange(min=0),
    default=50,  # observation.STALE_PER_RUN: not imported here, it would load pydantic at start
    show_default=True,
    metavar="N",
    help=_(
        "With --refresh auto: how many customers observed more than --max-age ago are read "
        "again per run, the oldest first (0: none; the nightly --refresh full reads the rest)."
    ),
)
@_lock_timeout_option
@click.option("--yes", "-y", is_flag=True, help=_("Apply without asking, even on a terminal."))
@click.option("--watch", is_flag=True, help=_("Keep running: reconcile on spec changes."))
@click.option(
    "--interval",
    type=FiniteFloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    help=_("Resync period in seconds in watch mode."),
)
@click.option(
    "--only",
    multiple=True,
    metavar="CUSTOMER_ID",
    help=_("Plan and apply only these customers (repeat, or comma-separate)."),
)
@click.option(
    "--exclude",
    multiple=True,
    metavar="CUSTOMER_ID",
    help=_("Leave these customers out (repeat, or comma-separate)."),
)
@click.option(
    "--health-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help=_("Watch mode: touched after each successful pass."),
)
@_state_url_option
@_listen_option
@click.option(*_LANG_DECLS, **_LANG_ATTRS)
@click.version_option(package_name="partner-reconciler")
@click.pass_context
def cli(ctx: click.Context, **options: Any) -> None:
    """Reconcile Partner Center customer relationships with the specs: plan, show, apply."""
    if ctx.invoked_subcommand is not None:
        _pass_to_subcommand(ctx, ctx.invoked_subcommand)
        return
    for name, needs in (("interval", "--watch"), ("health_file", "--watch")):
        if _given(ctx, name) and not options["watch"]:
            raise click.UsageError(_("{} goes with {}").format(_flag(ctx, name), needs))
    ctx.exit(_run(**options))


def _given(ctx: click.Context, name: str) -> bool:
    """Whether the option was given (on the command line or in the environment)."""
    source = ctx.get_parameter_source(name)
    return source in (
        click.core.ParameterSource.COMMANDLINE,
        click.core.ParameterSource.ENVIRONMENT,
    )


def _flag(ctx: click.Context, name: str) -> str:
    """The option's name as users type it (``--plan-out`` for ``plan_out``)."""
    param = next(p for p in ctx.command.params if p.name == name)
    return max(param.opts, key=len)


def _pass_to_subcommand(ctx: click.Context, name: str) -> None:
    """Options given before a subcommand (``reconcile --state ops/state status``) reach it as its
    defaults, as if given after it; those it does not take are refused, never ignored."""
    command = cli.get_command(ctx, name)
    assert command is not None
    accepted = _parameter_names(command)
    given = {
        p.name: ctx.params[p.name]
        for p in ctx.command.params
        if p.name and p.expose_value and _given(ctx, p.name)  # not --lang: it holds for all
    }
    # Options from the environment (RECONCILE_STATE_URL in a CI job) hold for every command
    # that takes them; only those typed before the subcommand are refused.
    typed = {
        n for n in given if ctx.get_parameter_source(n) is click.core.ParameterSource.COMMANDLINE
    }
    given = {n: v for n, v in given.items() if n in accepted or n in typed}
    refused = sorted(_flag(ctx, n) for n in given if n not in accepted)
    if refused:
        raise click.UsageError(
            _("{} does not go with `reconcile {}`").format(", ".join(refused), name)
        )
    ctx.default_map = {name: _defaults_for(command, given)}


def _parameter_names(command: click.Command) -> set[str]:
    names = {p.name for p in command.params if p.name}
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            names |= _parameter_names(sub)
    return names


def _defaults_for(command: click.Command, given: dict[str, Any]) -> dict[str, Any]:
    """``default_map`` entries for ``command`` (nested for a group such as ``world``)."""
    defaults: dict[str, Any] = {p.name: given[p.name] for p in command.params if p.name in given}
    if isinstance(command, click.Group):
        for sub_name, sub in command.commands.items():
            defaults[sub_name] = _defaults_for(sub, given)
    return defaults


def _run(
    *,
    specs_dir: Path,
    state_dir: Path,
    provider: str,
    dry_run: bool,
    output: str,
    detailed_exitcode: bool,
    fail_on_warnings: bool,
    plan_out: Path | None,
    plan_file: Path | None,
    max_removals: int,
    max_cancellations: int,
    allow_mass_removal: bool,
    parallelism: int,
    lock_timeout: float,
    rate_limit: float | None,
    refresh: str,
    max_age: str,
    max_stale: int,
    yes: bool,
    watch: bool,
    interval: float,
    health_file: Path | None,
    only: tuple[str, ...],
    exclude: tuple[str, ...],
    state_url: str | None,
    partner: str | None,
    listen: str | None,
) -> int:
    from .reconcile import Options, spec_cache_path
    from .spec import load_specs

    for given, flag in ((detailed_exitcode, "--detailed-exitcode"), (plan_out, "--plan-out")):
        if given and not dry_run:
            raise click.UsageError(_("{} goes with {}").format(flag, "--dry-run"))
    if dry_run and plan_file:
        raise click.UsageError(_("--plan applies a saved plan; it does not go with --dry-run"))
    if listen and not watch:
        raise click.UsageError(_("--listen goes with --watch"))
    state_url, partner = _checked_store(state_url, partner)
    options = Options(
        state_dir=state_dir,
        provider=provider,
        max_removals=max_removals,
        max_cancellations=max_cancellations,
        allow_mass_removal=allow_mass_removal,
        parallelism=parallelism,
        lock_timeout=lock_timeout,
        rate_limit=rate_limit,
        refresh=refresh,  # type: ignore[arg-type]  # one of click's choices
        max_age=_max_age(max_age),
        max_stale=max_stale,
        targets=_targets(only, exclude),
        state_url=state_url,
        partner=partner,
    )
    if watch:
        if plan_file or detailed_exitcode or plan_out or fail_on_warnings:
            raise click.UsageError(
                _(
                    "--watch does not go with --plan, --plan-out, --detailed-exitcode or "
                    "--fail-on-warnings"
                )
            )
        return _watch(specs_dir, options, dry_run, output, interval, health_file, listen)
    if dry_run:
        # A dry run is short and makes no cycles worth collecting: the collector's passes over
        # the many objects of a large plan would only cost time (see perf.paused_gc).
        gc.disable()
        if plan_out is None and options.provider == "local" and not options.state_url:
            from . import planreuse

            planreuse.allow()  # a pure function of files and the command line: may be replayed
    desired = load_specs(specs_dir, cache=spec_cache_path(specs_dir))
    if dry_run:
        return _dry_run(desired, options, output, detailed_exitcode, plan_out, fail_on_warnings)
    return _apply(desired, options, output, plan_file, yes, fail_on_warnings)


def _max_age(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except click.BadParameter as exc:
        exc.param_hint = "--max-age"
        raise


def _customer_ids(values: tuple[str, ...], option: str) -> frozenset[str]:
    from .ids import normalize_guid

    ids = set()
    for value in values:
        for part in filter(None, (p.strip() for p in value.split(","))):
            try:
                ids.add(normalize_guid(part))
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint=option) from exc
    return frozenset(ids)


def _targets(only: tuple[str, ...], exclude: tuple[str, ...]) -> Any:
    from .targeting import Targets

    return Targets(only=_customer_ids(only, "--only"), exclude=_customer_ids(exclude, "--exclude"))


def _watch(
    specs_dir: Path,
    options: Any,
    dry_run: bool,
    output: str,
    interval: float,
    health_file: Path | None,
    listen: str | None = None,
) -> int:
    """Run passes until SIGINT or SIGTERM; exit 0 once the actions in flight are recorded."""
    from .render import json as json_render
    from .watch import Watcher, WatchSettings, error_document

    if output == "json":  # one JSON document per pass, one per line
        render_plan: Any = partial(json_render.render_plan, compact=True)
        render_outcome: Any = partial(json_render.render_outcome, compact=True)
        render_error: Any = error_document
    else:
        render_plan = lambda plan: _render_plan(plan, output)  # noqa: E731
        render_outcome = lambda outcome: _render_outcome(outcome, output)  # noqa: E731
        render_error = lambda message: ""  # noqa: E731 - errors go to the log (stderr)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.warning(_("%s: stopping after the actions in flight"), signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    leadership = None if dry_run else _leadership(specs_dir, options)
    _serve_health(listen, leadership)
    settings = WatchSettings(specs_dir, options, dry_run, interval, health_file, leadership)

    def emit(text: str) -> None:
        if text:
            click.echo(text, nl=False)

    watcher = Watcher(
        settings,
        emit=emit,
        render_plan=render_plan,
        render_outcome=render_outcome,
        render_error=render_error,
        show_plan=lambda plan: emit(render_plan(plan)) if output == "text" else None,
        emit_idle=output == "json",
        stop=stop,
    )
    log.info(_("watching %s; a pass on every change and every %g s"), specs_dir, interval)
    try:
        watcher.run()
    finally:
        if leadership is not None:
            leadership.close()
    return EXIT_OK


def _leadership(specs_dir: Path, options: Any) -> Any:
    """With a shared database, this replica's part in the leader election (else None)."""
    if not options.state_url:
        return None
    from .errors import ReconcileError
    from .leader import Leadership
    from .reconcile import store_partner
    from .spec import load_specs

    try:  # the partner from the specs when they are valid now; else --partner or the tenant
        desired = load_specs(specs_dir)
    except ReconcileError:
        desired = None
    return Leadership(options.state_url, store_partner(options, desired))


def _serve_health(listen: str | None, leadership: Any) -> None:
    """Serve /healthz, /readyz and /metrics on ``listen`` (HOST:PORT), from a thread."""
    if not listen:
        return
    from .health import parse_listen, serve

    try:
        address = parse_listen(listen)
        server = serve(address, lambda: leadership.role if leadership else "leader")
    except (ValueError, OSError) as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from exc
    log.info(_("serving /healthz, /readyz and /metrics on %s:%s"), *server.server_address[:2])


def _warnings_fail(plan: Any, *, refused_apply: bool) -> int:
    """--fail-on-warnings: say why the exit code is 1."""
    message = ngettext(
        "the plan has {} warning and --fail-on-warnings is set",
        "the plan has {} warnings and --fail-on-warnings is set",
        len(plan.warnings),
    ).format(len(plan.warnings))
    if refused_apply:
        message = _("{}: nothing applied").format(message)
    click.echo(_("error: {}").format(message), err=True)
    return EXIT_ERROR


def _dry_run(
    desired: Any,
    options: Any,
    output: str,
    detailed_exitcode: bool,
    plan_out: Path | None,
    fail_on_warnings: bool = False,
) -> int:
    from .fsutil import atomic_write
    from .reconcile import dry_run

    plan = dry_run(desired, options)
    click.echo(_render_plan(plan, output), nl=False)
    if plan_out is not None:
        try:
            atomic_write(plan_out, _render_plan(plan, "json"))
        except OSError as exc:
            raise ReconcileError(_("cannot write {}: {}").format(plan_out, exc.strerror)) from exc
        log.info(_("saved the plan to %s"), plan_out)
    if plan.unobserved:
        return _unobserved_fail(plan.unobserved)
    if fail_on_warnings and plan.warnings:
        return _warnings_fail(plan, refused_apply=False)
    return EXIT_CHANGES if detailed_exitcode and plan.has_changes else EXIT_OK


def _unobserved_fail(unobserved: Any) -> int:
    """Customers that could not be observed fail the run (as Terraform fails a plan whose
    refresh failed), after the plan of the others: one line each, and how to go on without."""
    from .untrusted import printable

    for customer_id, why in unobserved.items():
        click.echo(
            _("error: customer {} could not be observed: {}").format(customer_id, printable(why)),
            err=True,
        )
    click.echo(
        ngettext(
            "error: the plan leaves out {} customer that could not be observed; run again, or "
            "leave it out with --exclude",
            "error: the plan leaves out {} customers that could not be observed; run again, or "
            "leave them out with --exclude",
            len(unobserved),
        ).format(len(unobserved)),
        err=True,
    )
    return EXIT_ERROR


class _ApplySession:
    """The terminal side of one apply: the question, signals, progress."""

    def __init__(self, output: str, interactive: bool, fail_on_warnings: bool = False) -> None:
        self.output = output
        self.interactive = interactive
        self.fail_on_warnings = fail_on_warnings
        self.refused: Any = None  # the plan, when its warnings refused it
        self.stop = threading.Event()
        self.signal: int | None = None
        self.progress: Any = None
        self._previous: dict[int, Any] = {}

    def confirm(self, plan: Any) -> bool:
        """Show the plan, ask on a terminal, then arm the signals and start the progress."""
        if self.output == "text":
            click.echo(_render_plan(plan, self.output), nl=False)
        if self.fail_on_warnings and plan.warnings:
            self.refused = plan
            return False
        if self.interactive:
            n = len(plan.actions)
            question = ngettext(
                "Apply this {} action? Only 'yes' will be accepted",
                "Apply these {} actions? Only 'yes' will be accepted",
                n,
            ).format(n)
            answer = click.prompt(question, default="", show_default=False, err=True)
            if answer.strip() != "yes":
                click.echo(_("Apply cancelled."), err=True)
                return False
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._on_signal)
        from .progress import make_progress

        self.progress = make_progress(plan.names)
        self.progress.start(len(plan.actions))
        return True

    def on_result(self, action: Any, result: Any) -> None:
        self.progress.advance(action, result)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        """First signal: start nothing new, let running actions finish and be recorded.
        The handlers are restored at once, so a second signal interrupts as usual."""
        self.signal = signum
        self.stop.set()
        self._restore()
        log.warning(
            _("%s: finishing the actions in flight, starting no more; the next run resumes"),
            signal.Signals(signum).name,
        )

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
        self._restore()


def _apply(
    desired: Any,
    options: Any,
    output: str,
    plan_file: Path | None,
    yes: bool,
    fail_on_warnings: bool = False,
) -> int:
    from .document import read_plan_file
    from .reconcile import apply
    from .untrusted import printable

    saved = read_plan_file(plan_file) if plan_file else None
    session = _ApplySession(output, sys.stdin.isatty() and not yes, fail_on_warnings)
    try:
        outcome = apply(
            desired,
            options,
            saved_plan=saved,
            confirm=session.confirm,
            on_result=session.on_result,
            stop=session.stop,
        )
    finally:
        session.close()
    if outcome is None:
        if session.refused is None:
            return EXIT_ERROR
        if output != "text":  # text showed it before deciding
            click.echo(_render_plan(session.refused, output), nl=False)
        return _warnings_fail(session.refused, refused_apply=True)
    if output == "text" and not outcome.plan.has_changes:
        click.echo(_render_plan(outcome.plan, output), nl=False)
    click.echo(_render_outcome(outcome, output), nl=False)
    for problem in outcome.problems:
        click.echo(_("error: {}").format(printable(problem)), err=True)
    if outcome.unobserved:
        _unobserved_fail(outcome.unobserved)
    if session.signal is not None:
        return 128 + session.signal
    if fail_on_warnings and outcome.plan.warnings:
        return _warnings_fail(outcome.plan, refused_apply=False)
    return EXIT_OK if outcome.succeeded else EXIT_ERROR


@cli.command()
@_specs_option
def validate(specs_dir: Path) -> None:
    """Check the spec files only (no state needed)."""
    from .spec import load_specs

    desired = load_specs(specs_dir)
    subscriptions = sum(len(c.subscriptions) for c in desired.customers.values())
    click.echo(
        _("{}, {}, {}: valid.").format(
            ngettext("{} file", "{} files", len(desired.files)).format(len(desired.files)),
            ngettext("{} customer", "{} customers", len(desired.customers)).format(
                len(desired.customers)
            ),
            ngettext("{} subscription", "{} subscriptions", subscriptions).format(subscriptions),
        )
    )


@cli.command("import")
@_specs_option
@_state_option
@_provider_option
@click.option(
    "--customers",
    multiple=True,
    metavar="CUSTOMER_ID",
    help=_("Import only these customers (repeat, or comma-separate)."),
)
@click.option("--force", is_flag=True, help=_("Overwrite spec files that exist."))
@_lock_timeout_option
@_state_url_option
def import_(
    specs_dir: Path,
    state_dir: Path,
    provider: str,
    customers: tuple[str, ...],
    force: bool,
    lock_timeout: float,
    state_url: str | None,
    partner: str | None,
) -> None:
    """Write spec files describing the current state, and mark those customers managed."""
    from .reconcile import Options, import_customers

    state_url, partner = _checked_store(state_url, partner)
    options = Options(
        state_dir=state_dir,
        provider=provider,
        lock_timeout=lock_timeout,
        state_url=state_url,
        partner=partner,
    )
    wanted = _customer_ids(customers, "--customers")
    result = import_customers(specs_dir, options, wanted=wanted, force=force)
    for customer_id in result.skipped:
        log.info(_("%s is already in the specs: not imported"), customer_id)
    for path in result.files:
        click.echo(_("wrote {}").format(path))
    click.echo(
        ngettext(
            "Imported {} customer; it is managed from now on.",
            "Imported {} customers; they are managed from now on.",
            len(result.customers),
        ).format(len(result.customers))
    )


@cli.command()
def schema() -> None:
    """Print the JSON Schema of a spec file."""
    from .spec import dump_schema

    click.echo(dump_schema())


@cli.command()
@_state_option
@click.option("--output", type=click.Choice(("text", "json")), default="text", show_default=True)
@_state_url_option
def status(state_dir: Path, output: str, state_url: str | None, partner: str | None) -> None:
    """Pending relationship requests (with invitation links) and the last apply's outcome."""
    from .reconcile import Options, open_store, opened
    from .status import read_status, render_status

    state_url, partner = _checked_store(state_url, partner)
    options = Options(state_dir=state_dir, state_url=state_url, partner=partner)
    with opened(open_store(options)) as store:
        click.echo(render_status(read_status(store), output), nl=False)


@cli.group("state")
def state_group() -> None:
    """The controller's records in a PostgreSQL database (--state-url): schema and transfers."""


def _database_options(function: Any) -> Any:
    return _state_url_option(_state_option(_lock_timeout_option(function)))


def _database(state_dir: Path, state_url: str | None, partner: str | None) -> Any:
    from .reconcile import Options

    state_url, partner = _checked_store(state_url, partner)
    if not state_url:
        raise click.UsageError(_("give --state-url (or RECONCILE_STATE_URL)"))
    return Options(state_dir=state_dir, state_url=state_url, partner=partner)


@state_group.command()
@_state_url_option
def migrate(state_url: str | None, partner: str | None) -> None:
    """Create or upgrade the controller's tables (also done on first use)."""
    from .pgstore import SCHEMA_VERSION, connect, migrate, redact_url

    options = _database(Path("state"), state_url, partner)
    with connect(options.state_url) as conn:
        found = migrate(conn, options.state_url)
    where = redact_url(options.state_url)
    if found == SCHEMA_VERSION:
        click.echo(_("{}: schema version {}, up to date.").format(where, found))
    else:
        click.echo(_("{}: schema version {} -> {}.").format(where, found, SCHEMA_VERSION))


@state_group.command("export")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@_database_options
def export_state(
    directory: Path,
    state_dir: Path,
    state_url: str | None,
    partner: str | None,
    lock_timeout: float,
) -> None:
    """Copy the records from the database into DIRECTORY (the state directory's files)."""
    from .reconcile import open_store, opened
    from .records import FileStore
    from .transfer import copy_records

    options = _database(state_dir, state_url, partner)
    target = FileStore(directory)
    with opened(open_store(options)) as source, source.lock(timeout=lock_timeout):
        copied = copy_records(source, target, target_name=str(directory))
    click.echo(_("Exported the records and {} journal entries to {}.").format(copied, directory))


@state_group.command("import")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@_database_options
def import_state(
    directory: Path,
    state_dir: Path,
    state_url: str | None,
    partner: str | None,
    lock_timeout: float,
) -> None:
    """Copy the records of state directory DIRECTORY into the database (which must hold none
    for this partner yet)."""
    from dataclasses import replace

    from .reconcile import open_store, opened
    from .records import FileStore
    from .transfer import copy_records

    options = _database(directory, state_url, partner)
    source = FileStore(directory)
    recorded = source.load().partner_id
    if options.partner is None and recorded:
        options = replace(options, partner=recorded)
    with opened(open_store(options)) as target, target.lock(timeout=lock_timeout):
        copied = copy_records(source, target, target_name=getattr(target, "where", ""))
    click.echo(_("Imported the records and {} journal entries of {}.").format(copied, directory))


@cli.group()
def world() -> None:
    """Act on the local provider's simulated world (state/world.json)."""


@world.command()
@click.argument("customer_id")
@click.option("--name", help=_("The customer's name, when the world does not know it yet."))
@_state_option
@_state_url_option
def accept(
    customer_id: str, name: str | None, state_dir: Path, state_url: str | None, partner: str | None
) -> None:
    """Simulate CUSTOMER_ID's admin accepting the relationship invitation."""
    from .providers.local import LocalProvider
    from .reconcile import Options, open_store, opened

    customer_id = _guid(customer_id, "CUSTOMER_ID")
    state_url, partner = _checked_store(state_url, partner)
    if not name:  # the name the invitation was sent with, from wherever the records are
        options = Options(state_dir=state_dir, state_url=state_url, partner=partner)
        with opened(open_store(options)) as store:
            pending = store.load().pending_by_id.get(customer_id)  # type: ignore[call-overload]
        name = pending.name if pending else None
    with closing(LocalProvider(state_dir)) as provider:
        provider.accept_invitation(customer_id, name)
    click.echo(
        _("{} accepted the invitation: the relationship is now reseller.").format(customer_id)
    )


def _guid(value: str, hint: str) -> str:
    from .ids import normalize_guid

    try:
        return normalize_guid(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from exc


@world.command("init")
@click.option("--partner-id", help=_("The partner's tenant id (default: a new GUID)."))
@click.option("--name", default="Example Partner", show_default=True, help=_("The partner's name."))
@click.option("--force", is_flag=True, help=_("Replace a world that exists."))
@_state_option
def world_init(partner_id: str | None, name: str, force: bool, state_dir: Path) -> None:
    """Write an empty local world (state/world.json): a partner with no customers."""
    import uuid

    from .current import Partner
    from .providers.local import init_world

    new_id = _guid(partner_id, "--partner-id") if partner_id else str(uuid.uuid4())
    partner = Partner(id=new_id, name=name)
    path = init_world(state_dir, partner, force=force)
    click.echo(_("wrote {}: partner {} ({}), no customers").format(path, name, partner.id))


@world.command("add-customer")
@click.argument("customer_id")
@click.option("--name", required=True, help=_("The customer's name."))
@click.option("--domain", help=_("The customer's domain (contoso.onmicrosoft.com)."))
@click.option(
    "--relationship",
    type=click.Choice(("reseller", "none")),
    default="reseller",
    show_default=True,
    help=_("none: a former customer, to try a relationship request."),
)
@_state_option
def world_add_customer(
    customer_id: str, name: str, domain: str | None, relationship: str, state_dir: Path
) -> None:
    """Add a customer to the local world, with no subscriptions."""
    from .current import Customer
    from .providers.local import LocalProvider, add_customer

    customer = Customer(
        id=_guid(customer_id, "CUSTOMER_ID"),
        name=name,
        domain=domain,
        relationship=relationship,
    )
    with closing(LocalProvider(state_dir)) as provider:
        provider.change(lambda w: add_customer(w, customer))
    click.echo(_("added customer {} ({})").format(name, customer.id))


@world.command("add-subscription")
@click.argument("customer_id")
@click.option("--id", "subscription_id", help=_("The subscription's id (default: a new GUID)."))
@click.option("--offer", help=_("The offer (product) id, e.g. CFQ7TTC0LH18."))
@click.option("--name", help=_("The subscription's friendly name."))
@click.option(
    "--quantity",
    type=click.IntRange(min=0, max=1_000_000),  # current.MAX_QUANTITY, the world's own bound
    default=1,
    show_default=True,
)
@click.option(
    "--status",
    type=click.Choice(("active", "suspended", "deleted", "expired", "pending", "disabled")),
    default="active",
    show_default=True,
)
@_state_option
def world_add_subscription(
    customer_id: str,
    subscription_id: str | None,
    offer: str | None,
    name: str | None,
    quantity: int,
    status: str,
    state_dir: Path,
) -> None:
    """Add a subscription to a customer of the local world."""
    import uuid

    from .current import Subscription
    from .providers.local import LocalProvider, add_subscription

    customer_id = _guid(customer_id, "CUSTOMER_ID")
    subscription = Subscription(
        id=_guid(subscription_id, "--id") if subscription_id else str(uuid.uuid4()),
        offer=offer,
        name=name,
        quantity=quantity,
        status=status,
    )
    with closing(LocalProvider(state_dir)) as provider:
        provider.change(lambda w: add_subscription(w, customer_id, subscription))
    click.echo(_("added subscription {} to customer {}").format(subscription.id, customer_id))


_DURATION_UNITS = {"y": 365 * 24, "w": 7 * 24, "d": 24, "h": 1}


def parse_duration(text: str) -> timedelta:
    """``8d``, ``1y``, ``36h``, ``1y2w``: years of 365 days, weeks, days, hours."""
    import re

    parts = re.findall(r"(\d+)([ywdh])", text.strip().lower())
    if not parts or "".join(n + u for n, u in parts) != text.strip().lower():
        raise click.BadParameter(
            _("{!r} is not a duration like 8d, 36h, 2w or 1y").format(text),
            param_hint="DURATION",
        )
    try:
        return timedelta(hours=sum(int(n) * _DURATION_UNITS[u] for n, u in parts))
    except (OverflowError, ValueError) as exc:  # beyond timedelta, or int() (4,300 digits)
        from .yamlload import short

        raise click.BadParameter(
            _("{} is longer than any duration the controller can count").format(short(text)),
            param_hint="DURATION",
        ) from exc


@world.command()
@click.argument("duration")
@_state_option
def advance(duration: str, state_dir: Path) -> None:
    """Move the world's clock forward by DURATION (8d, 36h, 2w, 1y): new-commerce terms that
    end meanwhile renew (auto-renewal on) or expire."""
    from .current import iso_utc
    from .providers.local import LocalProvider

    by = parse_duration(duration)
    with closing(LocalProvider(state_dir)) as provider:
        before, after = provider.advance(by)
    click.echo(_("The world's clock is now {}.").format(iso_utc(after.now)))
    for customer in after.customers:
        was = before.customers_by_id[customer.id].subscriptions_by_id
        for subscription in customer.subscriptions:
            old = was[subscription.id]
            what = subscription.name or subscription.offer or subscription.id
            if subscription.status != old.status:
                click.echo(
                    _("  {} ({}): {} -> {}").format(
                        what, customer.name, old.status, subscription.status
                    )
                )
            elif subscription.term_end != old.term_end and subscription.term_end is not None:
                click.echo(
                    _("  {} ({}): renewed until {}").format(
                        what, customer.name, subscription.term_end.date().isoformat()
                    )
                )


def _share_option(name: str, help_text: str) -> Any:
    """An emulator knob: a share of requests, 0 to 1."""
    return click.option(
        name, type=FiniteFloatRange(0, 1), default=0.0, show_default=True, help=help_text
    )


def _count_option(name: str, help_text: str) -> Any:
    """An emulator knob: a count, 0 (the default) turning it off."""
    return click.option(
        name, type=click.IntRange(min=0), default=0, show_default=True, help=help_text
    )


@cli.command()
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8400,
    show_default=True,
    help=_("Port on 127.0.0.1 (0: any free port)."),
)
@_state_option
@click.option(
    "--latency",
    type=FiniteFloatRange(min=0, max=WAIT_MAX),
    default=0.0,
    show_default=True,
    help=_("Seconds each answer takes at least (the emulator's own work included)."),
)
@_share_option("--throttle", _("Share of requests answered 429 with Retry-After."))
@_share_option("--server-errors", _("Share of requests answered 503."))
@_share_option(
    "--lost-responses", _("Share of changes made but answered 504 (retries are de-duplicated).")
)
@click.option(
    "--page-size",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help=_("Customers per page of the customer list."),
)
@_count_option(
    "--subscription-page-size",
    _("Subscriptions per page of a customer's subscription list (0: one page)."),
)
@_count_option(
    "--slow-changes",
    _(
        "Answer quantity changes 202 Accepted and show them only after this many reads of the "
        "customer (0: at once)."
    ),
)
@click.option(
    "--token",
    envvar="PARTNER_CENTER_EMULATOR_TOKEN",
    help=_("The only bearer token accepted (default: any)."),
)
def emulator(
    port: int,
    state_dir: Path,
    latency: float,
    throttle: float,
    server_errors: float,
    lost_responses: float,
    page_size: int,
    subscription_page_size: int,
    slow_changes: int,
    token: str | None,
) -> None:
    """Serve the Partner Center API on 127.0.0.1 from the local world file."""
    from .emulator import Knobs, make_server
    from .providers.local import read_world, world_path

    read_world(world_path(state_dir))  # a clear error now rather than on the first request
    knobs = Knobs(
        latency=latency,
        throttle=throttle,
        server_errors=server_errors,
        lost_responses=lost_responses,
        page_size=page_size,
        subscription_page_size=subscription_page_size,
        slow_changes=slow_changes,
        token=token,
    )
    server = make_server(state_dir, port=port, knobs=knobs)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    click.echo(
        _("Partner Center emulator on {} (world: {}); Ctrl-C stops it").format(
            url, world_path(state_dir)
        ),
        err=True,
    )
    signal.signal(signal.SIGTERM, lambda *_args: sys.exit(0))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _lines(message: str) -> list[str]:
    """An error's lines: split at newlines only (``splitlines`` would also split at U+0085 and
    other separators that untrusted text may carry; ``printable`` shows those escaped)."""
    return [line for line in message.split("\n") if line]


def commands(command: click.Command) -> list[click.Command]:
    """``command`` and every subcommand under it."""
    found = [command]
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            found += commands(sub)
    return found


def take_lang_everywhere(command: click.Command) -> None:
    """``reconcile status --lang zh-TW`` as well as ``reconcile --lang zh-TW status``."""
    for each in commands(command):
        if not any(p.name == "lang" for p in each.params):
            each.params.append(click.Option(_LANG_DECLS, **_LANG_ATTRS))


def translate_help(command: click.Command) -> None:
    """Commands' help comes from their docstrings, which ``_()`` cannot wrap: translated here,
    once (the catalogue has them: ``scripts/l10n.py`` extracts them from this tree)."""
    for each in commands(command):
        if each.help and not getattr(each, "_translated", False):
            each.help = _(each.help)
            each._translated = True  # type: ignore[attr-defined]


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (``entry.main`` sets the language first); returns the exit code."""
    from .untrusted import SafeFormatter, printable

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter("%(message)s"))  # names in log lines shown escaped
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    logging.getLogger("httpx").setLevel(logging.WARNING)  # no per-request lines
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    translate_help(cli)
    take_lang_everywhere(cli)
    try:
        code = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="reconcile",
            standalone_mode=False,
        )
    except click.ClickException as exc:
        exc.show()
        return EXIT_ERROR
    except click.exceptions.Abort:
        click.echo(_("Aborted."), err=True)
        return EXIT_ERROR
    except SpecError as exc:  # as compilers do, and as the contract says: FILE:LINE: message
        for problem in exc.problems:
            click.echo(printable(problem), err=True)
        return EXIT_ERROR
    except ReconcileError as exc:
        for line in _lines(shown(str(exc))) or [type(exc).__name__]:
            click.echo(_("error: {}").format(printable(line)), err=True)
        return EXIT_ERROR
    except OSError as exc:  # a file the boundary did not expect: still one line, no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        reason = exc.strerror or type(exc).__name__
        click.echo(_("error: {}").format(printable(f"{where}{reason}")), err=True)
        return EXIT_ERROR
    except KeyboardInterrupt:
        click.echo(_("Interrupted."), err=True)
        return 130
    return code if isinstance(code, int) else EXIT_OK


if __name__ == "__main__":
    from .entry import main as entry_main

    sys.exit(entry_main())
