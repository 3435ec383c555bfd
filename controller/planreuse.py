"""Reusing a whole dry run whose inputs are unchanged, as make, git's index and Bazel's action
cache avoid work: ``reconcile --dry-run`` run again with the same command line, environment,
code, specs and state prints the previous run's output (stdout and stderr, byte for byte) and
exits with its exit code, without importing pydantic or the models (see README, "Performance at
scale").

- **Inputs** are recorded during the real run, not guessed: an audit hook (``sys.addaudithook``)
  sees every file opened (found or not) and every directory listed; to them are added the folder
  of each (a file added beside them changes its folder), and every module's source. Each is kept
  by its stat (device, inode, size, mtime, ctime, mode), as git's index keeps files. The command
  line, working directory, the environment variables that can shape the output, whether stdout
  and stderr are terminals and their encodings, Python and the program's version make the key.
- **Racy files** (git's rule): a file changed less than ``RACY_NS`` (2 s on a filesystem keeping
  whole seconds) before the run began could change again with the same stat, so a run that read
  one is not kept; a file changed during the run is not either.
- **Only a pure run is kept**: the command line must have said so (``allow``: a dry run of the
  local world and the file store, output to stdout only, not watching), and the run must have
  written nothing outside the cache directory, started no process, opened no socket, read no
  wall clock (``spoil``), and exited 0 or 2.
- **Kept** in the user's cache directory (``usercache``), authenticated with its HMAC key, the
  ``KEEP`` most recent entries. ``PARTNER_RECONCILER_NO_CACHE=1`` turns it off. A damaged,
  unauthenticated or other-format entry is a miss.

Standard library only (its json, not orjson: orjson imports dataclasses, inspect, uuid):
the hit path imports nothing else."""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from . import __version__
from .usercache import mac, machine_key, usable_cache_dir


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


FORMAT = 1
KEEP = 8  # entries kept: a few command lines, a few specs directories
MAX_OUTPUT = 64 << 20  # a larger output is not kept
RACY_NS = 100_000_000  # the filesystem clock may lag the process's clock by a tick (ms)
COARSE_RACY_NS = 2_000_000_000  # filesystems that keep whole (or even) seconds
FOLDER = "plans"
EXIT_CODES = (0, 2)  # a plan made and shown; errors are never reused
# The environment variables that can change the output: language, this program's own, where
# caches and state live, Python's I/O, colours and terminal size (click, rich).
ENVIRONMENT = (
    "LANG",  # and LANGUAGE
    "LC_",
    "PARTNER_RECONCILER_",
    "RECONCILE_",
    "PARTNER_CENTER_",
    "XDG_",
    "HOME",
    "TZ",
    "PYTHON",
    "NO_COLOR",
    "FORCE_COLOR",
    "CLICOLOR",
    "COLUMNS",
    "LINES",
    "TERM",
    "COLORTERM",
    "TTY_",
    "JUPYTER_",
)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# Audit events that change the filesystem (a path outside the cache directory spoils the run).
_CHANGES = frozenset(
    {
        "os.remove",
        "os.rename",
        "os.rmdir",
        "os.mkdir",
        "os.truncate",
        "os.chmod",
        "os.chown",
        "os.utime",
        "os.link",
        "os.symlink",
        "os.chflags",
        "os.setxattr",
        "os.removexattr",
        "shutil.copyfile",
        "shutil.copymode",
        "shutil.copystat",
        "shutil.copytree",
        "shutil.move",
        "shutil.rmtree",
    }
)
# Audit events of a world beyond the files: never in a reusable run.
_IMPURE = ("socket.", "subprocess.", "os.system", "os.exec", "os.spawn", "os.posix_spawn")
_IMPURE_EVENTS = frozenset({"os.fork", "os.forkpty", "os.kill", "os.killpg"})

Stat = list[int] | None


def file_stat(path: str) -> Stat:
    """What identifies a file's content without reading it (None: there is none)."""
    try:
        s = os.stat(path)
    except OSError:
        return None
    return [s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_mode]


def key_material(
    args: Sequence[str], environ: Mapping[str, str], streams: Sequence[TextIO]
) -> bytes:
    """Everything besides files that the output of a run depends on."""
    material = {
        "format": FORMAT,
        "version": __version__,
        "package": os.path.dirname(os.path.abspath(__file__)),
        "python": [sys.version, sys.executable, sys.prefix, sys.path],
        # -X, -W, -O, -I ...: ``-X importtime`` and ``-W`` write to stderr, ``-O`` drops asserts
        "interpreter": [list(sys.flags), sys.warnoptions, sorted(sys._xoptions.items())],
        "argv": list(args),
        "cwd": os.getcwd(),
        "environment": sorted((k, v) for k, v in environ.items() if k.startswith(ENVIRONMENT)),
        "streams": [_describe(stream) for stream in streams],
        "uid": getattr(os, "getuid", lambda: None)(),
    }
    return _dumps(material)


def _describe(stream: TextIO) -> list[Any]:
    tty: bool | None
    size: tuple[int, ...] | None
    try:
        tty = stream.isatty()
        size = tuple(os.get_terminal_size(stream.fileno())) if tty else None
    except (AttributeError, ValueError, OSError):
        tty = size = None
    return [tty, size, getattr(stream, "encoding", None), getattr(stream, "errors", None)]


class Run:
    """One ``reconcile`` invocation that may be a reuse: ``replay`` it, else ``record`` it and
    ``finish`` it."""

    def __init__(
        self, args: Sequence[str], environ: Mapping[str, str], directory: str, key: bytes
    ) -> None:
        self.args = list(args)
        self.directory = directory
        self.key = key
        material = key_material(args, environ, _streams())
        self.name = hmac.new(key, material, "sha256").hexdigest()
        self.path = os.path.join(directory, FOLDER, self.name[:40] + ".json")

    def replay(self) -> int | None:
        """Print the kept output and return its exit code, if every input is unchanged."""
        entry = self.read()
        if entry is None:
            return None
        try:
            for stream, text in entry["output"]:
                target = sys.stdout if stream == 1 else sys.stderr
                target.write(text)
                target.flush()
        except BrokenPipeError:  # the reader left (``| head``): say nothing more, as Python advises
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        with contextlib.suppress(OSError):  # the most recently used are kept
            os.utime(self.path)
        return int(entry["code"])

    def read(self) -> dict[str, Any] | None:
        """The kept entry, if authentic, of this format and key, and all its inputs unchanged."""
        entry = read_entry(self.path, self.key)
        if entry is None or entry.get("name") != self.name:
            return None
        return entry if unchanged(entry["inputs"]) else None

    def record(self) -> None:
        """Watch this run: its inputs, its effects, its output."""
        global _recording
        _recording = Recording(self)
        _install_hook()
        sys.stdout = _Tee(sys.stdout, 1, _recording.output)
        sys.stderr = _Tee(sys.stderr, 2, _recording.output)

    def finish(self, code: int | None) -> None:
        """Stop watching; keep the run if it may be reused."""
        global _recording
        recording, _recording = _recording, None
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if isinstance(stream, _Tee):
                stream.flush()
                setattr(sys, name, stream.wrapped)
        if recording is None or recording.run is not self:
            return
        if recording.allowed and recording.spoiled is None and code in EXIT_CODES:
            with contextlib.suppress(OSError, ValueError):  # ValueError: not UTF-8
                self._keep(recording, code)

    def _keep(self, recording: Recording, code: int | None) -> None:
        output = recording.joined()
        if sum(len(text) for _stream, text in output) > MAX_OUTPUT:
            return
        inputs = recording.inputs()
        if inputs is None:  # racy: changed too recently (or during the run) to be trusted
            return
        entry = {"format": FORMAT, "name": self.name, "code": code}
        entry |= {"inputs": inputs, "output": output}
        body = _dumps(entry)
        _write(self.path, mac(self.key, body) + b"\n" + body)
        _evict(os.path.join(self.directory, FOLDER), keep=KEEP)


def _write(path: str, data: bytes) -> None:
    """Replace ``path`` at once (a reader sees the old entry or the new one), without fsync: an
    entry lost or torn by a crash fails its HMAC and is a miss, so durability buys nothing."""
    import tempfile  # the real run only

    descriptor, temporary = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")  # 0600
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def read_entry(path: str, key: bytes) -> dict[str, Any] | None:
    """An entry, if authenticated with ``key`` and of this format; else None."""
    try:
        with open(path, "rb") as file:
            data = file.read()
        tag, _newline, body = data.partition(b"\n")
        if not hmac.compare_digest(tag, mac(key, body)):
            return None
        entry = json.loads(body)
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("format") != FORMAT:
        return None
    if not isinstance(entry.get("inputs"), list) or not isinstance(entry.get("output"), list):
        return None
    return entry


def unchanged(inputs: list[list[Any]]) -> bool:
    """Whether every input has the stat it had when the entry was kept."""
    stat = file_stat
    return all(stat(path) == kept for path, kept in inputs)


def _streams() -> list[TextIO]:
    return [sys.stdin, sys.stdout, sys.stderr]


def _evict(folder: str, *, keep: int) -> None:
    """Keep the ``keep`` most recently used entries."""
    entries = []
    for item in os.scandir(folder):
        with contextlib.suppress(OSError):
            entries.append((item.stat().st_mtime_ns, item.path))
    for _mtime, path in sorted(entries, reverse=True)[keep:]:
        with contextlib.suppress(OSError):
            os.remove(path)


def start(args: Sequence[str], environ: Mapping[str, str]) -> Run | None:
    """A run to replay or record, or None: not a dry run, or the cache is off or unusable."""
    if "--dry-run" not in args or "--watch" in args:
        return None  # watch mode is never reused: nor recorded (its output would pile up)
    directory = usable_cache_dir(environ)
    if directory is None:
        return None
    try:
        key = machine_key(directory)
    except OSError:
        return None
    if key is None:
        return None
    try:
        os.makedirs(os.path.join(directory, FOLDER), mode=0o700, exist_ok=True)
        return Run(args, environ, directory, key)
    except (OSError, ValueError):
        return None


class Recording:
    """What the audit hook saw of one real run."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.began_ns = time.time_ns()
        self.cache = run.directory + os.sep
        self.read: set[str] = set()  # files opened (found or not) and folders listed
        self.listed: set[str] = set()
        self.output: list[tuple[int, str]] = []
        self.allowed = False  # the command line says it is a pure dry run (``allow``)
        self.spoiled: str | None = None  # why it may not be reused

    def see(self, event: str, args: tuple[Any, ...]) -> None:
        if args and isinstance(args[0], int):
            return  # a file descriptor (fchmod, fdopen, scandir): its opening was seen before
        if event == "open":
            path, mode, flags = args
            path = _absolute(path)
            writes = (mode is not None and any(c in mode for c in "wax+")) or (
                mode is None and flags & _WRITE_FLAGS
            )
            if self.cached(path) or _compiled(path):
                return
            if writes:
                self.spoil(f"writes {path}")
            elif not path.startswith(("/proc/", "/dev/", "/sys/")):
                self.read.add(path)
        elif event in ("os.listdir", "os.scandir"):
            path = _absolute(args[0] if args[0] is not None else ".")
            self.read.add(path)
            self.listed.add(path)
        elif event in _CHANGES:
            path = _absolute(args[0])
            if not (self.cached(path) or _compiled(path)):
                self.spoil(f"{event} {path}")
        elif event.startswith(_IMPURE) or event in _IMPURE_EVENTS:
            self.spoil(event)

    def cached(self, path: str) -> bool:
        """Whether ``path`` is in the cache directory (the caches are not inputs)."""
        return (path + os.sep).startswith(self.cache)

    def spoil(self, reason: str) -> None:
        if self.spoiled is None:
            self.spoiled = reason

    def joined(self) -> list[tuple[int, str]]:
        """The output, consecutive writes to one stream joined."""
        joined: list[tuple[int, str]] = []
        for stream, text in self.output:
            if joined and joined[-1][0] == stream:
                joined[-1] = (stream, joined[-1][1] + text)
            else:
                joined.append((stream, text))
        return joined

    def inputs(self) -> list[tuple[str, Stat]] | None:
        """Every input with its stat now, or None if one changed too recently to be trusted."""
        # The folder of each file read, too: a file added beside it (a journal, a spec) shows
        # there. Not the folders of listed folders, nor the working directory: /tmp changes.
        opened = self.read - self.listed
        paths = self.read | set(_module_files())
        paths |= {os.path.dirname(p) for p in opened}
        inputs = []
        for path in sorted(paths):
            if self.cached(path):
                continue
            stat = file_stat(path)
            if _racy(stat, self.began_ns):
                return None
            inputs.append((path, stat))
        return inputs


def _absolute(path: Any) -> str:
    """An audited path as an absolute string (TypeError for a descriptor: see ``_audit``)."""
    return os.path.abspath(os.fsdecode(path))


def _racy(stat: Stat, began_ns: int) -> bool:
    """Whether a file's stat could stay the same through a change (git's racy rule)."""
    if stat is None:
        return False
    changed = max(stat[3], stat[4])
    coarse = stat[3] % 1_000_000_000 == 0 and stat[4] % 1_000_000_000 == 0
    return changed >= began_ns - (COARSE_RACY_NS if coarse else RACY_NS)


def _compiled(path: str) -> bool:
    """Python's own byte-code cache, written as modules are imported: not this run's doing."""
    return f"{os.sep}__pycache__" in path


def _module_files() -> Iterable[str]:
    """The source of every module loaded (code is an input too: an edit changes the output)."""
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str):
            yield os.path.abspath(path)


_recording: Recording | None = None
_hooked = False


def _install_hook() -> None:
    global _hooked
    if not _hooked:  # once per process: an audit hook cannot be removed, only idle
        sys.addaudithook(_audit)
        _hooked = True


def _audit(event: str, args: tuple[Any, ...]) -> None:
    recording = _recording
    if recording is not None:
        try:
            recording.see(event, args)
        except Exception:  # an event not understood (a descriptor, odd arguments): not kept
            recording.spoil(f"{event} not understood")


def allow() -> None:
    """The command line asks for a pure dry run (local world, file store, stdout only): it may
    be kept, if nothing else spoils it."""
    if _recording is not None:
        _recording.allowed = True


def spoil(reason: str) -> None:
    """Something the inputs do not capture shapes this run (the wall clock): do not keep it."""
    if _recording is not None:
        _recording.spoil(reason)


class _Tee:
    """A text stream that passes everything on and keeps a copy (text, or bytes written to its
    ``buffer``, decoded as the stream would encode text)."""

    def __init__(self, wrapped: TextIO, number: int, output: list[tuple[int, str]]) -> None:
        self.wrapped = wrapped
        self.number = number
        self.output = output

    def write(self, text: str) -> int:
        written = self.wrapped.write(text)
        self.output.append((self.number, text))
        return written

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    @property
    def buffer(self) -> Any:
        return _TeeBuffer(self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


class _TeeBuffer:
    """The binary side of a ``_Tee``: bytes are kept as the text they encode."""

    def __init__(self, tee: _Tee) -> None:
        self.tee = tee

    def write(self, data: bytes) -> int:
        self.tee.wrapped.flush()
        written = self.tee.wrapped.buffer.write(data)
        encoding = self.tee.wrapped.encoding or "utf-8"
        try:
            text = bytes(data).decode(encoding)
        except UnicodeDecodeError:
            spoil("bytes that do not decode")
        else:
            self.tee.output.append((self.tee.number, text))
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tee.wrapped.buffer, name)
