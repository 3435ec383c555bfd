"""Finding and reading spec files: regular files inside the specs directory only.

Specs arrive through pull requests, so discovery trusts nothing it finds: a symlink that leads out
of the specs directory, a FIFO, a device or a socket is refused by name and never opened (a FIFO
would hang the run, ``/dev/zero`` would fill memory). Symlinks that stay inside are followed,
directories included (each real directory is walked once, so loops end), so that no customer is
ever planned for removal because its file sits behind one. Hidden files and folders (``.git``,
``.github``, editor swap files like ``.x.yaml.swp`` and locks like ``.#x.yaml``) and ``#...``
autosaves are ignored; backups like ``x.yaml~`` are not ``*.yaml`` files.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import ReconcileError, SpecError, SpecProblem
from .i18n import _
from .yamlload import MAX_FILE_BYTES

SUFFIXES = (".yaml", ".yml")


def _ignored(name: str) -> bool:
    return name.startswith((".", "#"))


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return _("a FIFO")
    if stat.S_ISSOCK(mode):
        return _("a socket")
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return _("a device")
    return _("not a regular file")


def _refusal(path: Path | str, message: str) -> SpecProblem:
    return SpecProblem(str(path), 1, "", message)


class _Walk:
    """One discovery: the files found and the problems met, walking each real folder once."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.files: list[tuple[tuple[str, ...], str]] = []  # as paths: no Path a file
        self.problems: list[SpecProblem] = []
        self.folders: list[tuple[Path, tuple[str, ...]]] = []
        self.linked: list[tuple[Path, tuple[str, ...]]] = []  # walked last: real paths win
        self._visited: set[tuple[int, int]] = set()

    def folder(self, folder: Path, parts: tuple[str, ...]) -> None:
        try:
            info = folder.stat()
            if (info.st_dev, info.st_ino) in self._visited:
                return
            self._visited.add((info.st_dev, info.st_ino))
            with os.scandir(folder) as found:
                entries = sorted(found, key=lambda e: e.name)
        except OSError as exc:
            self.problems.append(_refusal(folder, _("cannot read: {}").format(exc.strerror)))
            return
        for entry in entries:
            name = entry.name
            if _ignored(name):
                continue
            # The common cases from the directory entry alone (no system call a file).
            if entry.is_file(follow_symlinks=False):
                if name.endswith(SUFFIXES):
                    self.files.append(((*parts, name), entry.path))
            elif entry.is_dir(follow_symlinks=False):
                self.folders.append((Path(entry.path), (*parts, name)))
            else:  # a symlink, a FIFO, a device, a socket
                self.entry(Path(entry.path), (*parts, name), entry.is_symlink())

    def entry(self, path: Path, parts: tuple[str, ...], link: bool) -> None:
        if link:
            target = Path(os.path.realpath(path))
            outside = not target.is_relative_to(self.root)
            if outside and (path.name.endswith(SUFFIXES) or target.is_dir()):
                message = _("symlink to {} leads out of the specs directory: refused")
                self.problems.append(_refusal(path, message.format(target)))
                return
            if outside:  # not a spec file and not a folder of them: none of our business
                return
        try:
            mode = path.stat().st_mode if link else path.lstat().st_mode
        except OSError as exc:
            if path.name.endswith(SUFFIXES):
                self.problems.append(_refusal(path, _("cannot read: {}").format(exc.strerror)))
            return
        if stat.S_ISDIR(mode):
            (self.linked if link else self.folders).append((path, parts))
        elif path.name.endswith(SUFFIXES):
            if stat.S_ISREG(mode):
                self.files.append((parts, str(path)))
            else:
                message = _("{}, not a regular file: refused").format(_kind(mode))
                self.problems.append(_refusal(path, message))


def find_spec_files(specs_dir: Path) -> list[Path]:
    """Every ``*.yaml`` / ``*.yml`` file under ``specs_dir``, recursively, in sorted path order;
    SpecError naming each symlink out, FIFO, device or unreadable folder met on the way."""
    return [Path(path) for path in spec_file_paths(specs_dir)]


def spec_file_paths(specs_dir: Path) -> list[str]:
    """``find_spec_files`` as strings (a Path a file costs more than reading a small file)."""
    if not specs_dir.is_dir():
        raise ReconcileError(_("specs directory {} does not exist").format(specs_dir))
    walk = _Walk(specs_dir)
    walk.folders.append((specs_dir, ()))
    while walk.folders or walk.linked:
        walk.folder(*(walk.folders or walk.linked).pop())
    if walk.problems:
        raise SpecError(sorted(walk.problems, key=lambda p: p.file))
    return [path for _parts, path in sorted(walk.files)]


def read_spec_bytes(path: Path | str) -> bytes:
    """The bytes of one spec file: a regular file of at most ``MAX_FILE_BYTES``. Opened without
    blocking and checked again once open, so a file swapped for a FIFO cannot hang the run."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise SpecError([_refusal(path, _("cannot read: {}").format(exc.strerror))]) from exc
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            message = _("{}, not a regular file: refused").format(_kind(info.st_mode))
            raise SpecError([_refusal(path, message)])
        data = _read_at_most(descriptor, info.st_size, MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SpecError([_refusal(path, _("cannot read: {}").format(exc.strerror))]) from exc
    finally:
        os.close(descriptor)
    if len(data) > MAX_FILE_BYTES:
        message = _("larger than {} MiB, the limit for a spec file: split it into several files")
        raise SpecError([_refusal(path, message.format(MAX_FILE_BYTES // (1024 * 1024)))])
    return data


def _read_at_most(descriptor: int, size: int, limit: int) -> bytes:
    """Up to ``limit`` bytes; plain ``os.read`` calls, sized by the file's ``size`` (one call
    when it reads exactly that): a buffered file object costs more than the read itself for a
    small spec file."""
    parts = [os.read(descriptor, min(size + 1, limit))]
    total = len(parts[0])
    if total == size:  # all of it, and no more: at its end (no second call to find that out)
        return parts[0]
    while parts[-1] and total < limit:  # a file that grew since, or a short read
        parts.append(os.read(descriptor, min(limit - total, 1 << 16)))
        total += len(parts[-1])
    return b"".join(parts) if len(parts) > 1 else parts[0]
