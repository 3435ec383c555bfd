"""The user's cache directory and its HMAC key, shared by the caches kept there (parse cache,
observation cache, reused dry runs). Standard library only: a dry run that is reused imports this
and nothing heavier.

Specs and the state directory come from a repository that pull requests change, so the caches
never live there: they live in the user's cache directory (``$XDG_CACHE_HOME`` or ``~/.cache``,
under ``partner-reconciler/``), and every file is authenticated with an HMAC key kept beside it
(``specs-cache.key``, mode 0600, made on first use, never written anywhere else), so that a cache
file brought in from elsewhere (a shared CI cache, a copy) is not believed.
``PARTNER_RECONCILER_CACHE_DIR`` moves the directory; ``PARTNER_RECONCILER_NO_CACHE=1`` turns
every cache off."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import stat
import sys
from collections.abc import Mapping

DIR_VARIABLE = "PARTNER_RECONCILER_CACHE_DIR"
OFF_VARIABLE = "PARTNER_RECONCILER_NO_CACHE"
KEY_FILE = "specs-cache.key"  # its historical name: the parse cache came first
KEY_BYTES = 32
APP = "partner-reconciler"


def cache_off(environ: Mapping[str, str]) -> bool:
    """Whether the environment turns the caches off."""
    return environ.get(OFF_VARIABLE, "").strip() not in ("", "0")


def cache_dir(environ: Mapping[str, str]) -> str:
    """The user's cache directory of this program (absolute). Raises RuntimeError or KeyError
    when there is no home directory to find it in."""
    if environ.get(DIR_VARIABLE):
        return os.path.abspath(environ[DIR_VARIABLE])
    if sys.platform.startswith("linux"):
        # platformdirs' rule on Linux, without importing it (a reused run imports nothing more):
        # $XDG_CACHE_HOME when set, else ~/.cache, from the process's environment as
        # platformdirs reads it. A test compares the two.
        base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.expanduser("~/.cache")
        if base.startswith("~"):
            raise RuntimeError("no home directory")
        return os.path.join(base, APP)
    import platformdirs  # the platform's own place elsewhere

    return platformdirs.user_cache_dir(APP)


def usable_cache_dir(environ: Mapping[str, str]) -> str | None:
    """The cache directory, or None: the caches are turned off, or there is no home directory
    to find it in (then there is no cache)."""
    if cache_off(environ):
        return None
    try:
        return cache_dir(environ)
    except (RuntimeError, KeyError):
        return None


def machine_key(directory: str | os.PathLike[str]) -> bytes | None:
    """The HMAC key of this cache directory, made on first use; None when it cannot be had
    safely (not ours, readable by others, not a regular file): then there is no cache."""
    path = os.path.join(directory, KEY_FILE)
    with contextlib.suppress(FileExistsError):
        os.makedirs(directory, mode=0o700, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(os.urandom(KEY_BYTES))  # as secrets.token_bytes, without importing it
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(descriptor, "rb") as file:
        info = os.fstat(file.fileno())
        safe = stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid()
        if not safe or info.st_mode & 0o077:
            return None
        key = file.read(KEY_BYTES + 1)
    return key if len(key) == KEY_BYTES else None


def mac(key: bytes, body: bytes) -> bytes:
    """The authentication line of a cache file's ``body``."""
    return hmac.new(key, body, hashlib.sha256).hexdigest().encode()
