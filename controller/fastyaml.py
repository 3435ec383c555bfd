"""A faster reader for plain spec files, with exactly PyYAML's meaning, or none at all.

Parsing is most of a cold dry run, and PyYAML (even with libyaml's C parser) builds every node in
Python. yaml-rs reads the same text in about a tenth of the time, but it reads YAML 1.2, and spec
files are YAML 1.1 as PyYAML reads them (``yes`` is true, ``010`` is 8, ``1:30`` is 90,
``2026-01-01`` is a date). So ``fast_load`` takes only what both read alike, and declines
(returns ``DECLINED``) everything else, which ``yamlload`` then reads with PyYAML as before:

- text declined before parsing: anything outside printable text, tabs and carriage returns;
  anchors and aliases, tags, directives, document markers, merge keys, complex keys, block
  scalars, flow mappings and flow sequences other than ``[]``, backslashes (escapes), infinities
  and NaN, indentation of 12 columns or more (which bounds the nesting well below
  ``yamlload.MAX_DEPTH``), and numbers that YAML 1.1 reads differently (leading zeros, ``0o``,
  ``0x``, ``0b``, underscores);
- results declined after parsing: floats, keys that are not strings, integers beyond 64 bits,
  and every string that PyYAML's own implicit resolvers (the same regular expressions) would
  read as anything but a string were it written plain;
- and any error: PyYAML reads the file again and reports it, with its line.

All of PyYAML's limits (``yamlload``) thus still hold: what they refuse is always declined here.
tests/test_fastyaml.py compares both readers over every spec text of the tests and examples.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

import orjson

from .yamlload import SpecLoader

try:
    import yaml_rs
except ImportError:  # pragma: no cover - an installation without it reads with PyYAML only
    yaml_rs = None  # type: ignore[assignment]

DECLINED: Final = object()

# Printable ASCII and line feeds, less the indicators of what spec files do not need or what the
# two YAMLs read apart: anchors, aliases, tags, directives, complex keys, block scalars, flow
# collections, escapes.
_PLAIN_ASCII = bytes(c for c in range(32, 127) if chr(c) not in "&*!%?|>{[\\") + b"\n"
# Non-ASCII text: printable characters only (no NEL, line or paragraph separator, byte order
# mark, control character or surrogate), without those indicators.
_NOT_PLAIN = re.compile(
    r"[&*!%?|>{\\]"
    r"|[^\n -~\u00a1-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
)
_FLOW = re.compile(r"\[(?!\])")  # a flow sequence, but for the empty one
# Merge keys, document markers, and indentation deeper than spec files need: block collections
# nest only by indenting (every second level at least one column deeper), so this bounds how
# deep yaml-rs may nest, far below MAX_DEPTH (yaml-rs itself has no bound, and crashes at 100,000
# levels).
_DECLINED_PARTS = ("<<", "---", "...", "\n" + " " * 12)
# A whole value that is a number YAML 1.1 reads otherwise than YAML 1.2, or not at all: leading
# zeros (octal), 0o 0x 0b, underscores (and so more characters than its digits).
_APART_NUMBER = r"[-+]?(?:0[0-9_]+|0[oOxXbB][0-9a-fA-F_]*|[0-9]+_[0-9_]*) *(?:#.*)?$"
# After a key, after a dash, on a line of its own (each starting with a fixed text, which the
# regular expression engine finds fast).
_NUMBER_AFTER = tuple(re.compile(p + _APART_NUMBER, re.MULTILINE) for p in (r": +", r"- +"))
# (Possessive: backing off the indentation a space at a time, on every line, cost more than the
# rest of this check.)
_NUMBER_LINE = re.compile(r"\n *+" + _APART_NUMBER, re.MULTILINE)
_NUMBER_FIRST = re.compile(r" *" + _APART_NUMBER, re.MULTILINE)  # on the first line
_COMPACT = re.compile(r"- +-(?: |$)", re.MULTILINE)  # "- - x": nesting without indentation


def _declined_text(text: str) -> bool:
    """Whether ``text`` holds anything ``fast_load`` leaves to PyYAML (found without parsing:
    the deep nesting that yaml-rs cannot bound must never reach it)."""
    if text.isascii():
        rest = text.encode("ascii").translate(None, _PLAIN_ASCII)
        if rest and (rest.strip(b"[") or _FLOW.search(text)):
            return True
    elif _NOT_PLAIN.search(text) or _FLOW.search(text):
        return True
    if any(part in text for part in _DECLINED_PARTS):
        return True
    if "- " in text and _COMPACT.search(text):
        return True
    if any(number.search(text) for number in _NUMBER_AFTER):  # (cheaper than looking for hints)
        return True
    return _NUMBER_FIRST.match(text) is not None or _NUMBER_LINE.search(text) is not None


# Keys and values of spec files that start as a resolver's text does ("n" as null, "o" as on):
# strings, as no resolver matches them whole (checked below), but each would be tried against
# every resolver, and they are on nearly every line (half of the time of this check).
_COMMON_WORDS = ("name", "offer", "offboarding", "nce")


def _resolved_pattern() -> re.Pattern[bytes]:
    """A JSON string that PyYAML's implicit resolvers (the same expressions, anchored by the
    quotes instead of ^ and $) read as anything but a string, were it written plain."""
    patterns = set()
    for resolvers in SpecLoader.yaml_implicit_resolvers.values():
        for _tag, regexp in resolvers:
            pattern = regexp.pattern.strip()
            if not (pattern.startswith("^") and pattern.endswith("$")):  # pragma: no cover
                raise AssertionError(f"an implicit resolver of another shape: {pattern}")
            patterns.add(pattern[1:-1])
    firsts = re.escape("".join(sorted(k for k in SpecLoader.yaml_implicit_resolvers if k)))
    alternatives = "|".join(f"(?:{p})" for p in sorted(patterns))
    resolved = re.compile(alternatives, re.VERBOSE)
    if any(resolved.fullmatch(word) for word in _COMMON_WORDS):  # pragma: no cover
        raise AssertionError("a common word of spec files that a resolver reads")
    common = "|".join(_COMMON_WORDS)
    # The look-aheads let most strings fail at once: their first character is none that a
    # resolver starts with, they start like a GUID (eight hexadecimal digits and a dash, which
    # no resolver matches: timestamps have their dash fifth, numbers have none but a sign), or
    # they are a word that spec files hold on every line and that no resolver matches.
    return re.compile(
        f'"(?=[{firsts}"])(?![0-9a-fA-F]{{8}}-|(?:{common})")(?:{alternatives})"'.encode(),
        re.VERBOSE,
    )


_RESOLVED = _resolved_pattern()
# A float, which orjson writes with a point or an exponent (and infinities and NaN as null, so
# those are declined from the text): after a key, in a list, first in a list.
_FLOATS = tuple(re.compile(p + rb"-?[0-9]+[.eE]") for p in (b":", b",", rb"\["))
_INFINITE = re.compile(r"\.(?:inf|Inf|INF|nan|NaN|NAN)")


def fast_load(text: str) -> Any:
    """The document of ``text`` as PyYAML's ``SpecLoader`` reads it, or ``DECLINED``."""
    loaded = fast_load_many([text])[0]
    return DECLINED if loaded is DECLINED else loaded[0]


def fast_load_many(texts: Sequence[str]) -> list[Any]:
    """For each text, its document as PyYAML's ``SpecLoader`` reads it and that document as
    JSON, or ``DECLINED``.

    The checks run once over all the texts together, each separated from the next by a line
    break (a regular expression costs as much to start as to scan a small file): every check is
    of one line at most, so what declines one text declines them all together, and only then
    is each text checked again on its own."""
    if yaml_rs is None:
        return [DECLINED] * len(texts)
    readable = [True] * len(texts)
    # ASCII texts apart from the others, which need the slower check of every character.
    ascii_texts = [text.isascii() for text in texts]
    for kind in (True, False):
        group = [n for n, text_is_ascii in enumerate(ascii_texts) if text_is_ascii is kind]
        if group and _declined_texts("\n".join(texts[n] for n in group)):
            for n in group:
                readable[n] = not _declined_texts(texts[n])
    loaded: list[Any] = []
    for text, plain in zip(texts, readable, strict=True):
        try:
            document = yaml_rs.loads(text, parse_datetime=False) if plain else DECLINED
            # Checked as JSON, in C: orjson refuses keys that are not strings and integers
            # beyond 64 bits, and every string is then a quoted run of the text searched below.
            loaded.append(DECLINED if document is DECLINED else (document, orjson.dumps(document)))
        except Exception:  # noqa: BLE001 - any error: PyYAML reads it again and says what it is
            loaded.append(DECLINED)
    # The same for the documents, as JSON separated by line breaks (which no check matches).
    if _declined_json(b"\n".join(item[1] for item in loaded if item is not DECLINED)):
        loaded = [
            DECLINED if item is DECLINED or _declined_json(item[1]) else item for item in loaded
        ]
    return loaded


def _declined_texts(text: str) -> bool:
    return _declined_text(text) or _INFINITE.search(text) is not None


def _declined_json(serialized: bytes) -> bool:
    return _RESOLVED.search(serialized) is not None or any(f.search(serialized) for f in _FLOATS)
