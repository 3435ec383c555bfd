"""The parse cache: validated spec files kept between runs, so that unchanged specs are not parsed
again (see README, "Performance at scale").

Specs and the state directory come from a repository that pull requests change, so the cache never
does: it lives in the user's cache directory (``$XDG_CACHE_HOME`` or ``~/.cache``, under
``partner-reconciler/``), one file per specs directory (keyed by its absolute path), and each file
is authenticated with an HMAC key kept beside it (``specs-cache.key``, mode 0600, made on first use,
never written anywhere else), so that a cache file brought in from elsewhere (a shared CI cache, a
copy) is not believed. An entry serves only while the spec file's sha256 matches, and what it
serves is validated and checked exactly as a freshly parsed file is (``spec._cached``). A cache
that is missing, damaged, unauthenticated or of another shape is ignored and rebuilt, never
trusted.

``PARTNER_RECONCILER_CACHE_DIR`` moves the cache (default: platformdirs' user cache directory);
``PARTNER_RECONCILER_NO_CACHE=1`` turns it off.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
from collections.abc import Mapping
from pathlib import Path

import orjson
import pydantic

from . import __version__
from .fsutil import atomic_write
from .usercache import mac, machine_key, usable_cache_dir


def cache_file(specs_dir: Path, environ: Mapping[str, str]) -> Path | None:
    """Where the parse cache of ``specs_dir`` lives, or None when it is turned off."""
    base = usable_cache_dir(environ)
    if base is None:
        return None
    digest = hashlib.sha256(os.fsencode(specs_dir.resolve())).hexdigest()[:32]
    return Path(base) / f"specs-{digest}.json"


class SpecCache:
    """Spec files as read (each the JSON of its document) by path and content hash. Written
    only for specs large enough for parsing to matter.

    The file: its HMAC, a line of JSON (version, specs directory), then a line a spec file:
    its path (a JSON string), its sha256 and its document as JSON, separated by tabs (which JSON
    text never holds unescaped). Read back, an entry is one ``bytes``, not a tree of dicts (a
    tenth of the memory at 50,000 files), validated straight from it; written, it is copied as it
    was, with no JSON in JSON to escape and unescape."""

    VERSION = f"4/{__version__}/pydantic {pydantic.VERSION}"
    MIN_BYTES = 256 * 1024

    def __init__(self, path: Path | None, specs_dir: Path | None = None) -> None:
        self.path = path
        self._specs_dir = str(specs_dir.resolve()) if specs_dir is not None else ""
        self._key: bytes | None = None
        self._old: dict[str, bytes] = {}  # path -> its line, as read
        self._new: dict[str, bytes] = {}  # path -> its line, to write
        self._bytes = 0
        self._changed = False
        if path is not None:
            try:
                self._key = machine_key(path.parent)
                self._old = self._read(path) if self._key else {}
            except (OSError, ValueError):  # any damage just means no cache
                self._old = {}

    def _header(self) -> bytes:
        return orjson.dumps({"version": self.VERSION, "specs_dir": self._specs_dir}) + b"\n"

    def _read(self, path: Path) -> dict[str, bytes]:
        assert self._key is not None
        tag, _newline, body = path.read_bytes().partition(b"\n")
        if not hmac.compare_digest(tag, mac(self._key, body)):
            return {}
        header = self._header()
        if not body.startswith(header):  # another version, another specs directory
            return {}
        lines = body[len(header) :].split(b"\n")
        if lines.pop() != b"":
            raise ValueError("a cache file that does not end with a line break")
        entries = {}
        for line in lines:
            name = orjson.loads(line[: line.index(b"\t")])  # ValueError: damaged
            if not isinstance(name, str):
                raise ValueError("a cache entry without a path")
            entries[name] = line + b"\n"
        return entries

    def get(self, name: str, digest: str) -> bytes | None:
        """The cached document (JSON) of ``name`` while its sha256 is ``digest``."""
        line = self._old.get(name)
        if line is None:
            return None
        _name, found, document = line.split(b"\t", 2)
        if found != digest.encode():
            return None
        self._new[name] = line  # as it was
        return document

    def put(self, name: str, digest: str, document: bytes) -> None:
        """Keep ``document``, the JSON of ``name``'s document, while its sha256 is ``digest``."""
        # Joined into one new bytes: orjson's own can hold four times their length.
        self._new[name] = b"".join(
            (orjson.dumps(name), b"\t", digest.encode(), b"\t", document, b"\n")
        )
        self._changed = True

    def drop(self, name: str) -> None:
        """Forget ``name``: its cached form did not pass the checks."""
        self._new.pop(name, None)
        self._changed = True

    def count(self, size: int) -> None:
        self._bytes += size

    def save(self) -> None:
        changed = self._changed or self._new.keys() != self._old.keys()
        if self.path is None or self._key is None or not changed or self._bytes < self.MIN_BYTES:
            return
        body = [self._header(), *self._new.values()]
        signer = hmac.new(self._key, None, hashlib.sha256)  # as usercache.mac, over the parts
        for part in body:
            signer.update(part)
        with contextlib.suppress(OSError):  # a cache not written costs time, never correctness
            atomic_write(self.path, b"".join((signer.hexdigest().encode(), b"\n", *body)))
