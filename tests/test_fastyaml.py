"""The fast YAML reader reads every spec text exactly as PyYAML does, or leaves it to PyYAML:
over every spec text of the tests and the examples, over texts YAML 1.1 and 1.2 read apart, and
over random documents."""

from __future__ import annotations

import ast
import string
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from controller import fastyaml, yamlload
from controller.errors import SpecError
from controller.fastyaml import DECLINED, fast_load
from controller.yamlload import SpecLoader, load_yaml

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(fastyaml.yaml_rs is None, reason="yaml-rs is not installed")


def typed(value: Any) -> Any:
    """``value`` with every scalar's type kept, so that True and 1 compare unequal."""
    if isinstance(value, dict):
        return {typed(k): typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return (type(value).__name__, value)


def pyyaml(text: str) -> Any:
    """What PyYAML's spec loader reads, or the class of what it raises."""
    try:
        return typed(yaml.load(text, Loader=SpecLoader))  # noqa: S506 - a safe loader
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        return type(exc)


def assert_same_or_declined(text: str) -> bool:
    """True when the fast reader took ``text`` (and read it as PyYAML does)."""
    fast = fast_load(text)
    if fast is DECLINED:
        return False
    assert typed(fast) == pyyaml(text), text
    return True


def corpus() -> list[str]:
    """Every YAML file of the repository, and every string in the tests that looks like a spec."""
    texts = [
        p.read_text(encoding="utf-8", errors="replace")
        for folder in ("examples", "specs", "tests")
        for p in sorted((ROOT / folder).rglob("*.y*ml"))
    ]
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
            if is_text and ":" in node.value and len(node.value) < 200_000:
                texts.append(node.value)
    return texts


def test_every_spec_text_of_the_tests_and_examples_reads_the_same() -> None:
    texts = corpus()
    taken = sum(assert_same_or_declined(t) for t in texts)
    assert len(texts) > 300 and taken > 100  # the corpus is large, and most of it plain


# What YAML 1.1 (PyYAML) and YAML 1.2 (yaml-rs) read apart, and what spec files refuse.
APART = [
    "a: yes",
    "a: No",
    "a: on",
    "a: off",
    "a: 010",
    "a:\n  010\n",
    "a:\n  - 0o17\n",
    "010: a",
    "a: 0o17",
    "a: 0x1F",
    "a: 0X1F",
    "a: 0b101",
    "a: 1_000",
    "a: 1:30",
    "a: 12e3",
    "a: 1e-3",
    "a: +.5",
    "a: 2026-01-01",
    "a: 2001-12-14t21:59:43.10-05:00",
    "a: =",
    "a: &x 1\nb: *x",
    "a: !!str 5",
    "<<: {a: 1}",
    "a: 1\na: 2",
    "{a: 1, a: 2}",
    "- a\n---\n- b",
    "%YAML 1.1\n---\na: 1",
    "? a\n: b",
    "- :",
    ": a",
    "a: |\n  x\n",
    "a: >\n  x\n",
    'a: "x\\ty"',
    "a:\tb",
    "a: b\r\nc: d",
    "a: b\x85c",
    "a: b\u2028c",
    "\ufeffa: 1",
    "a: 123456789012345678901234567890123456789",
    "- " * 40 + "a",
    "a:\n" + "".join("  " * i + "- \n" for i in range(40)),
    "[" * 40 + "]" * 40,
    "1: a",
    "a: [1, [2]]",
    "yes: 1",
    "'yes': 1",
    "a: 1.5",
    "a: .inf",
]


@pytest.mark.parametrize("text", APART)
def test_what_the_two_yamls_read_apart_is_left_to_pyyaml(text: str) -> None:
    assert fast_load(text) is DECLINED


def test_plain_spec_files_are_read_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    text = (
        "customers:\n  - id: 0026df03-de6a-453d-8c70-f4631e57cc6a\n    name: Customer 1\n"
        "    subscriptions: []\n    protected: true\n"
    )
    read: list[str] = []
    original = fastyaml.yaml_rs.loads  # type: ignore[union-attr]
    monkeypatch.setattr(
        fastyaml.yaml_rs, "loads", lambda t, **kw: read.append(t) or original(t, **kw)
    )
    assert load_yaml(text, "x.yaml") == yaml.load(text, Loader=SpecLoader)  # noqa: S506
    assert read == [text]


def test_an_error_is_reported_by_pyyaml_with_its_line() -> None:
    with pytest.raises(SpecError) as caught:
        load_yaml("customers:\n  - id: a\n    name: b: c\n", "x.yaml")
    assert caught.value.problems[0].line == 3


SCALARS = st.one_of(
    st.sampled_from(
        [
            "yes",
            "no",
            "on",
            "off",
            "y",
            "n",
            "true",
            "False",
            "~",
            "null",
            "",
            "0",
            "-0",
            "00",
            "010",
            "0o7",
            "0x1f",
            "+1",
            "-1",
            "1_0",
            "1:2",
            "1.5",
            ".5",
            "1e3",
            "1.0e+3",
            ".inf",
            ".NaN",
            "2026-01-01",
            "2026-1-1",
            "=",
            "<<",
            "a#b",
            "a # b",
            "a:b",
            "- a",
            "'q'",
            '"q"',
            "x y",
            "0026df03-de6a-453d-8c70-f4631e57cc6a",
            "٣",
            "é",
            "12:30:45",
        ]
    ),
    st.text(alphabet=string.printable, max_size=8),
    st.integers(min_value=-(10**25), max_value=10**25).map(str),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(SCALARS, SCALARS, st.booleans()), min_size=1, max_size=6))
def test_random_spec_like_texts_read_the_same_or_are_left_to_pyyaml(
    pairs: list[tuple[str, str, bool]],
) -> None:
    lines = ["customers:"]
    for key, value, in_list in pairs:
        lines.append(f"  - {key}: {value}" if in_list else f"    {key}:\n      {value}")
    assert_same_or_declined("\n".join(lines) + "\n")
    assert_same_or_declined(yaml.safe_dump({k: v for k, v, _ in pairs}))


def assert_read_together_as_alone(texts: list[str]) -> None:
    """``fast_load_many`` checks its texts together: each is read (or declined) as alone."""
    together = fastyaml.fast_load_many(texts)
    assert len(together) == len(texts)
    for text, read in zip(texts, together, strict=True):
        alone = fast_load(text)
        if alone is DECLINED:
            assert read is DECLINED, text
        else:
            assert read is not DECLINED, text
            document, serialized = read
            assert typed(document) == typed(alone) and orjson.loads(serialized) == document


def test_every_spec_text_read_together_reads_as_alone() -> None:
    texts = corpus()
    plain = [t for t in texts if fast_load(t) is not DECLINED]
    assert_read_together_as_alone(texts)  # the corpus declines some: each checked again
    assert_read_together_as_alone(plain)  # none: all taken at once
    assert_read_together_as_alone(APART + plain)
    for text in APART:  # one declined text in a batch declines only itself
        assert_read_together_as_alone([*plain[:20], text, *plain[20:40]])
    # What only the start of a file may hold: a line of its own, indentation of 12 columns.
    starts = ["010\n", "            a: 1\n", "- - a\n", "[\n", "a: [\n"]
    assert_read_together_as_alone([t for s in starts for t in (s, plain[0], s)])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.tuples(SCALARS, SCALARS, st.booleans()), max_size=4), max_size=6))
def test_random_texts_read_together_read_as_alone(
    files: list[list[tuple[str, str, bool]]],
) -> None:
    texts = []
    for pairs in files:
        lines = [f"- {k}: {v}" if in_list else f"{k}:\n  {v}" for k, v, in_list in pairs]
        texts.append("\n".join(lines))  # without a last line break: the next text follows
    assert_read_together_as_alone(texts)


def test_limits_hold_on_the_fast_path_too(monkeypatch: pytest.MonkeyPatch) -> None:
    deep = "a:\n" + "".join("  " * i + "- b:\n" for i in range(1, yamlload.MAX_DEPTH + 2))
    with pytest.raises(SpecError, match="nested deeper"):
        load_yaml(deep, "x.yaml")
    with pytest.raises(SpecError, match="longer than"):
        load_yaml("a: " + "1" * 40 + "\n", "x.yaml")
