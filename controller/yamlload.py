"""Bounded YAML for spec files: spec files arrive through pull requests, and CI runs
``reconcile validate`` and ``--dry-run`` on them, so a hostile file must be refused in bounded
time and memory, with one line naming it.

The happy path keeps libyaml's C parser and composer (the fastest PyYAML has). The limits:

- size: at most ``MAX_FILE_BYTES`` a file (checked by the reader, ``specfiles.read_spec_bytes``);
- nodes: an upper bound of the node count is taken from the text before composing (a few
  ``str.count``), since a composed node costs about 300 bytes: refused above ``MAX_NODES``;
- depth: libyaml refuses 1,000 levels itself; the constructor refuses more than ``MAX_DEPTH``;
- aliases and anchors, merge keys (``<<``) and tags other than YAML's standard scalar and
  collection tags are refused outright: specs do not need them, and each was a way around a check
  (aliases expand exponentially, merge keys bypass the duplicate-key check, tags construct objects);
- numbers: at most ``MAX_NUMBER_CHARS`` characters (Python refuses to read 4,300 digits);
- messages echo values cut short (``short``), never a whole value.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from types import GeneratorType
from typing import Any

import yaml

from .errors import SpecError, SpecProblem
from .i18n import _

Path_ = tuple[str | int, ...]

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_NODES = 1_000_000
MAX_DEPTH = 32
MAX_NUMBER_CHARS = 32
ECHO_CHARS = 80

_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TAG = "tag:yaml.org,2002:"
_MERGE, _VALUE = _TAG + "merge", _TAG + "value"

_echo = reprlib.Repr()
_echo.maxstring = _echo.maxother = _echo.maxlong = ECHO_CHARS
_echo.maxlevel, _echo.maxlist, _echo.maxtuple, _echo.maxdict, _echo.maxset = 2, 4, 4, 4, 4


def short(value: Any) -> str:
    """``repr(value)`` cut to about ``ECHO_CHARS`` characters, at most two levels deep."""
    try:
        return _echo.repr(value)
    except ValueError:  # an int too long for repr: never built (MAX_NUMBER_CHARS), but be safe
        return f"<{type(value).__name__}>"


def cut(text: str, limit: int = ECHO_CHARS) -> str:
    """``text`` cut to ``limit`` characters, marking the cut, with control characters (line
    breaks included) escaped: one problem is one line."""
    if not text.isprintable():
        text = repr(text)[1:-1]
    return text if len(text) <= limit else text[: limit - 1] + "…"


class RefusedYAML(yaml.MarkedYAMLError):
    """Valid YAML that spec files do not allow (aliases, tags, merge keys, too deep, too long)."""


def _refuse(message: str, node: yaml.Node) -> RefusedYAML:
    return RefusedYAML(problem=message, problem_mark=node.start_mark)


# Every node but the root is introduced by an indicator: "- " (a block entry), ":" or "?" (a key
# and its value), "," "[" "{" (a flow entry; in a flow mapping, a key and its value).
_BLOCK_ENTRIES = tuple(f"-{c}" for c in " \t\r\n\x85\u2028\u2029")


def node_bound(text: str) -> int:
    """An upper bound of the number of nodes ``text`` composes to, computed without composing."""
    entries = sum(text.count(e) for e in _BLOCK_ENTRIES) + text.endswith("-")
    pairs = text.count(":") + text.count("?") + text.count(",") + text.count("{")
    return 1 + entries + 2 * pairs + text.count("[")


def small(text: str) -> bool:
    """Whether ``text`` is too short to compose to more than ``MAX_NODES`` nodes (each character
    adds at most two to ``node_bound``): it needs no counting."""
    return 2 * len(text) < MAX_NODES


class SpecLoader(_BaseLoader):
    """The safe loader (libyaml's C parser when present) with the limits of this module, refusing
    duplicate mapping keys too."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depths: dict[yaml.Node, int] = {}
        self._level = 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """PyYAML's ``BaseConstructor.construct_object`` with the checks of this module, written
        out rather than wrapped: it runs once a node, and a second call a node cost 15%."""
        if node in self.constructed_objects or node in self.recursive_objects:
            # The composer hands an alias over as the very node it names: seen twice, an alias.
            raise _refuse(_("aliases are not allowed in spec files"), node)
        if node.value.__class__ is list:  # a collection: remember how deep it sits
            self._depths[node] = self._level
        if deep:
            old_deep, self.deep_construct = self.deep_construct, True  # type: ignore[has-type]
        self.recursive_objects[node] = None
        data = self.yaml_constructors.get(node.tag, _refuse_tag)(self, node)
        if isinstance(data, GeneratorType):
            generator, data = data, next(data)
            if self.deep_construct:
                for _dummy in generator:
                    pass
            else:
                self.state_generators.append(generator)
        self.constructed_objects[node] = data
        del self.recursive_objects[node]
        if deep:
            self.deep_construct = old_deep
        return data

    def _children_level(self, node: yaml.Node) -> int:
        level = self._depths.get(node, 1) + 1
        if level > MAX_DEPTH:
            raise _refuse(_("nested deeper than {} levels").format(MAX_DEPTH), node)
        return level

    def construct_sequence(self, node: yaml.SequenceNode, deep: bool = False) -> list[Any]:
        saved, self._level = self._level, self._children_level(node)
        try:
            return super().construct_sequence(node, deep=deep)
        finally:
            self._level = saved

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        """PyYAML expands merge keys here; refused instead, as merged keys would escape the
        duplicate-key check. A ``=`` key stays plain text, as PyYAML's own version makes it."""
        for key_node, _value in node.value:
            if key_node.tag == _MERGE:
                raise _refuse(_("merge keys (<<) are not allowed in spec files"), key_node)
            if key_node.tag == _VALUE:
                key_node.tag = _TAG + "str"

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        saved, self._level = self._level, self._children_level(node)
        try:
            _check_keys(node)
            return super().construct_mapping(node, deep=deep)
        finally:
            self._level = saved


def _check_keys(node: yaml.MappingNode) -> None:
    # Compare the keys' scalar text: constructing each key twice would double the cost.
    keys = [k.value for k, _v in node.value if isinstance(k, yaml.ScalarNode)]
    if len(keys) == len(set(keys)):
        return
    seen: set[str] = set()
    for key_node, _value in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            continue  # a complex key (``? [a]``): a list of nodes, refused when constructed
        if key_node.value in seen:
            message = _("YAML syntax error: duplicate key {}").format(short(key_node.value))
            raise _refuse(message, key_node)
        seen.add(key_node.value)


def _refuse_tag(_loader: SpecLoader, node: yaml.Node) -> Any:
    raise _refuse(_("tag {} is not allowed in spec files").format(cut(str(node.tag))), node)


def _construct_int(loader: SpecLoader, node: yaml.ScalarNode) -> int:
    if len(node.value) > MAX_NUMBER_CHARS:
        raise _refuse(_("number longer than {} characters").format(MAX_NUMBER_CHARS), node)
    return loader.construct_yaml_int(node)


def _construct_timestamp(loader: SpecLoader, node: yaml.ScalarNode) -> Any:
    try:
        return loader.construct_yaml_timestamp(node)
    except ValueError as exc:  # 2026-13-45 looks like a date and is none
        raise _refuse(_("not a valid date: {}").format(short(node.value)), node) from exc


for _tag in ("set", "omap", "pairs"):  # standard, but of no use in a spec: refused
    SpecLoader.add_constructor(_TAG + _tag, _refuse_tag)
SpecLoader.add_constructor(_TAG + "int", _construct_int)
SpecLoader.add_constructor(_TAG + "timestamp", _construct_timestamp)
SpecLoader.add_constructor(_TAG + "value", SpecLoader.construct_yaml_str)  # a plain "=" is text


def load_yaml(text: str, name: str, *, fast: bool = True) -> Any:
    """The one document of ``text``, within this module's limits; SpecError (one line, with the
    line of the offending node) otherwise. ``fast=False``: the faster reader has declined it
    already (``fastyaml.fast_load_many``)."""
    if not small(text) and node_bound(text) > MAX_NODES:
        message = _("too many YAML nodes (the limit is {:,} a file): split it into several files")
        raise SpecError([SpecProblem(name, 1, "", message.format(MAX_NODES))])
    if fast:
        from .fastyaml import DECLINED, fast_load  # here: it builds on this module's loader

        document = fast_load(text)
        if document is not DECLINED:
            return document
    try:
        return yaml.load(text, Loader=SpecLoader)  # noqa: S506 - a safe loader
    except RefusedYAML as exc:
        mark = exc.problem_mark
        raise SpecError([SpecProblem(name, _line(mark), "", str(exc.problem))]) from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = cut(str(exc.problem or exc.context or "invalid YAML"), 200)
        message = _("YAML syntax error: {}").format(problem)
        raise SpecError([SpecProblem(name, _line(mark), "", message)]) from exc
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, at a position
        line = text.count("\n", 0, exc.position) + 1
        message = _("YAML syntax error: {}").format(cut(str(exc).splitlines()[0], 200))
        raise SpecError([SpecProblem(name, line, "", message)]) from exc
    except (yaml.YAMLError, ValueError, RecursionError) as exc:  # no mark to point at
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        message = _("YAML syntax error: {}").format(cut(first, 200))
        raise SpecError([SpecProblem(name, 1, "", message)]) from exc


def _line(mark: yaml.Mark | None) -> int:
    return mark.line + 1 if mark else 1


def locate_lines(text: str) -> dict[Path_, int]:
    """Map every key and list item path of a YAML document to its 1-based line.

    Used only on the error path, on a text that loaded within the limits: it composes the node
    tree, which is slower than a plain load. Iterative, and each node is visited once."""
    lines: dict[Path_, int] = {}
    root = yaml.compose(text, Loader=_BaseLoader)
    pending: list[tuple[yaml.Node, Path_]] = [(root, ())] if root is not None else []
    seen: set[int] = set()
    while pending:
        node, path = pending.pop()
        if id(node) in seen or len(path) > MAX_DEPTH:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    child = (*path, str(key_node.value))
                    lines.setdefault(child, key_node.start_mark.line + 1)
                    pending.append((value_node, child))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines[(*path, index)] = item.start_mark.line + 1
                pending.append((item, (*path, index)))
    return lines


def line_of(lines: Mapping[Path_, int], path: Path_) -> int:
    """The line of ``path``, or of its nearest located ancestor (a missing key: its parent)."""
    for end in range(len(path), 0, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return 1


def format_field(path: Path_) -> str:
    """``("customers", 0, "id")`` -> ``customers[0].id`` (keys cut short)."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{cut(str(part))}" if text else cut(str(part))
    return text
