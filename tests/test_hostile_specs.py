"""Hostile specs (CONTRACT section 8): spec files arrive through pull requests and CI runs
``validate`` and ``--dry-run`` on them, so each attack is refused in one line, in bounded time and
memory. Every case here was an attack that worked before: minutes and gigabytes for an alias bomb,
RecursionError for deep nesting, a 100 MB line for a bad GUID, a hang on a FIFO, a customer planned
for removal because its file sat behind a directory symlink."""

from __future__ import annotations

import os
import resource
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import RECONCILE, gid, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller import spec as spec_module
from controller.errors import SpecError
from controller.spec import load_specs
from controller.specfiles import find_spec_files
from controller.yamlload import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES, node_bound

GOOD = f"customers:\n  - id: {gid(1)}\n    name: Contoso\n"


def _bomb() -> str:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        text += f"{name}: &{name} [{','.join(['*' + previous] * 9)}]\n"
    return text


def _anchor_reuse() -> str:
    """A valid-looking 300 KB file naming 5,000 customers with one anchored name."""
    text = f"customers:\n  - id: {gid(1)}\n    name: &n Contoso Ltd with a long name\n"
    return text + "".join(f"  - id: {gid(n)}\n    name: *n\n" for n in range(2, 5000))


def _quantity(value: str) -> str:
    return GOOD + f"    subscriptions:\n      - id: {gid(11)}\n        quantity: {value}\n"


# name -> (file text, what the one line says after FILE:LINE)
HOSTILE_TEXT: dict[str, tuple[Callable[[], str], str]] = {
    "alias bomb": (_bomb, ":1: aliases are not allowed in spec files"),
    "anchor reuse": (_anchor_reuse, ":3: aliases are not allowed in spec files"),
    "recursive alias": (lambda: "customers: &a [*a]\n", ":1: aliases are not allowed"),
    "1000 levels": (lambda: "customers: " + "[" * 1000 + "]" * 1000, ":1: YAML syntax error"),
    "990 levels": (lambda: "customers: " + "[" * 990 + "]" * 990, ":1: nested deeper than 32"),
    "990 block levels": (
        lambda: "".join(" " * i + "k:\n" for i in range(990)),
        f":{MAX_DEPTH}: nested deeper than 32 levels",
    ),
    "huge file": (lambda: "# " + "x" * MAX_FILE_BYTES, ":1: larger than 16 MiB"),
    "huge bad GUID": (
        lambda: f"customers:\n  - id: {'x' * (MAX_FILE_BYTES - 100)}\n    name: A\n",
        ":2: customers[0].id: must be a GUID like 7d3c1a52-0b0e-4c1e-9f5e-2a1c3b4d5e6f, got 'xxx",
    ),
    "many nodes": (
        lambda: "customers: [" + ",".join(["a"] * (MAX_NODES // 2)) + "]\n",
        ":1: too many YAML nodes (the limit is 1,000,000 a file)",
    ),
    "python tag": (
        lambda: "customers: !!python/object/apply:os.system [echo hi]\n",
        ":1: tag tag:yaml.org,2002:python/object/apply:os.system is not allowed in spec files",
    ),
    "custom tag": (lambda: "customers: !foo [1]\n", ":1: tag !foo is not allowed in spec files"),
    "set tag": (lambda: "customers: !!set {a}\n", ":1: tag tag:yaml.org,2002:set is not allowed"),
    "merge key": (
        lambda: f"customers:\n  - &c {{id: {gid(1)}, name: A}}\n  - <<: *c\n    name: B\n",
        ":3: merge keys (<<) are not allowed in spec files",
    ),
    "merge key, no alias": (
        lambda: "partner:\n  <<: {name: A}\n  name: B\n",
        ":2: merge keys (<<) are not allowed in spec files",
    ),
    "endless number": (lambda: _quantity("9" * 100_000), ":6: number longer than 32"),
    "not a date": (
        lambda: f"customers:\n  - id: {gid(1)}\n    name: 2026-13-45\n",
        ":3: not a valid date: '2026-13-45'",
    ),
}


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def only_problem(specs: Path) -> str:
    with pytest.raises(SpecError) as caught:
        load_specs(specs)
    [problem] = caught.value.problems
    return str(problem)


@pytest.mark.parametrize("case", sorted(HOSTILE_TEXT))
def test_hostile_yaml_is_refused_in_one_short_line(tmp_path: Path, case: str) -> None:
    make, expected = HOSTILE_TEXT[case]
    path = write(tmp_path, "a.yaml", make())
    line = only_problem(tmp_path)
    assert line.startswith(f"{path}{expected}"), line
    assert "\n" not in line and len(line) < 300 + len(str(path))


@pytest.mark.parametrize("case", sorted(HOSTILE_TEXT))
def test_a_hostile_file_among_plain_ones_read_together_is_refused_alone(
    tmp_path: Path, case: str
) -> None:
    """Spec files are read in batches, their texts checked together: one hostile file among
    them gives its own one line, and the plain ones around it load as before."""
    for n in range(40):
        write(tmp_path, f"c{n:02d}.yaml", f"customers:\n  - id: {gid(100 + n)}\n    name: C{n}\n")
    make, expected = HOSTILE_TEXT[case]
    path = write(tmp_path, "c19a.yaml", make())
    line = only_problem(tmp_path)
    assert line.startswith(f"{path}{expected}"), line
    path.unlink()
    assert len(load_specs(tmp_path).customers) == 40


def test_the_node_bound_is_an_upper_bound_and_tight_for_a_normal_spec() -> None:
    import yaml

    def count(node: yaml.Node) -> int:
        if isinstance(node, yaml.MappingNode):
            return 1 + sum(count(k) + count(v) for k, v in node.value)
        if isinstance(node, yaml.SequenceNode):
            return 1 + sum(count(item) for item in node.value)
        return 1

    normal = GOOD + f"    subscriptions:\n      - id: {gid(11)}\n        quantity: 3\n"
    for text in (normal, "[a, b: c, {d, e: f}, [g]]", "? - a\n: - b\n", "- - - x\n-\n"):
        composed = count(yaml.compose(text, Loader=yaml.CSafeLoader))
        assert composed <= node_bound(text), text
    assert node_bound(normal) == count(yaml.compose(normal, Loader=yaml.CSafeLoader))


# --- discovery ----------------------------------------------------------------------------------


def test_a_symlink_out_of_the_specs_directory_is_refused_naming_it(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    write(specs, "a.yaml", GOOD)
    write(tmp_path, "secret.yaml", "customers: []\n")
    (specs / "b.yaml").symlink_to(tmp_path / "secret.yaml")
    (specs / "zero.yaml").symlink_to("/dev/zero")
    (specs / "shared").symlink_to(tmp_path)  # a folder out: it could hold specs
    (specs / "notes.txt").symlink_to("/etc/hostname")  # not a spec file: not our business
    with pytest.raises(SpecError) as caught:
        load_specs(specs)
    assert [str(p) for p in caught.value.problems] == [
        f"{specs / 'b.yaml'}:1: symlink to {tmp_path / 'secret.yaml'} leads out of the specs "
        "directory: refused",
        f"{specs / 'shared'}:1: symlink to {tmp_path} leads out of the specs directory: refused",
        f"{specs / 'zero.yaml'}:1: symlink to /dev/zero leads out of the specs directory: refused",
    ]


def test_a_fifo_is_refused_without_being_opened(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD)
    os.mkfifo(tmp_path / "b.yaml")
    (tmp_path / "c.yaml").symlink_to(tmp_path / "b.yaml")  # inside, but still a FIFO
    with pytest.raises(SpecError) as caught:
        load_specs(tmp_path)  # would hang on open() before
    assert [str(p) for p in caught.value.problems] == [
        f"{tmp_path / 'b.yaml'}:1: a FIFO, not a regular file: refused",
        f"{tmp_path / 'c.yaml'}:1: a FIFO, not a regular file: refused",
    ]


def test_reading_refuses_what_is_not_a_regular_file_even_if_swapped_in(tmp_path: Path) -> None:
    from controller.specfiles import read_spec_bytes

    os.mkfifo(tmp_path / "swapped.yaml")
    with pytest.raises(SpecError, match="a FIFO, not a regular file: refused"):
        read_spec_bytes(tmp_path / "swapped.yaml")


def test_symlinks_that_stay_inside_are_followed_once(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    write(specs, ".shared/c1.yaml", GOOD)  # hidden: only reachable through the link
    (specs / "team").symlink_to(".shared")
    write(specs, "real/c2.yaml", GOOD.replace(gid(1), gid(2)))
    (specs / "again").symlink_to("real")  # the same folder twice: walked once, by its real path
    (specs / "loop").symlink_to(".")  # a loop ends
    (specs / "c3.yaml").symlink_to("real/c2.yaml.in")
    write(specs, "real/c2.yaml.in", GOOD.replace(gid(1), gid(3)))
    assert find_spec_files(specs) == [
        specs / "c3.yaml",
        specs / "real/c2.yaml",
        specs / "team/c1.yaml",
    ]
    assert sorted(load_specs(specs).customers) == [gid(1), gid(2), gid(3)]


def test_editor_files_hidden_files_and_folders_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD)
    for name in (".#a.yaml", "a.yaml~", "#a.yaml#", ".a.yaml.swp", ".hidden.yaml"):
        write(tmp_path, name, "not: [valid")
    write(tmp_path, ".git/x.yaml", "not: [valid")
    write(tmp_path, ".github/workflows/ci.yml", "on: push\njobs: {}\n")
    assert find_spec_files(tmp_path) == [tmp_path / "a.yaml"]


def test_an_unreadable_folder_is_an_error_not_an_absence(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads every folder")
    write(tmp_path, "team/a.yaml", GOOD)
    (tmp_path / "team").chmod(0)
    try:
        assert "cannot read" in only_problem(tmp_path)
    finally:
        (tmp_path / "team").chmod(0o755)


# --- the real command, under a memory cap and a time limit -----------------------------------

MEMORY_CAP = 1024**3
TIME_LIMIT = 20.0


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def _plant(specs: Path, case: str) -> str:
    """Put the hostile ``case`` into ``specs``; returns the name the refusal must start with."""
    if case in HOSTILE_TEXT:
        write(specs, "pr.yaml", HOSTILE_TEXT[case][0]())
        return str(specs / "pr.yaml") + ":"
    if case == "FIFO":
        os.mkfifo(specs / "pr.yaml")
    elif case == "/dev/zero symlink":
        (specs / "pr.yaml").symlink_to("/dev/zero")
    elif case == "symlink out":
        (specs / "pr.yaml").symlink_to("/etc/passwd")
    elif case == "folder symlink out":
        target = specs.parent / "elsewhere"
        (specs / "customers").rename(target)  # every customer's file now sits behind the link
        (specs / "customers").symlink_to(target)
        return str(specs / "customers") + ":1: symlink to"
    return str(specs / "pr.yaml") + ":1: "


SUBPROCESS_CASES = [
    "alias bomb",
    "anchor reuse",
    "1000 levels",
    "990 levels",
    "huge file",
    "huge bad GUID",
    "many nodes",
    "python tag",
    "custom tag",
    "merge key",
    "FIFO",
    "/dev/zero symlink",
    "symlink out",
    "folder symlink out",
]


@pytest.mark.parametrize("case", SUBPROCESS_CASES)
def test_validate_and_dry_run_refuse_hostile_specs_in_bounded_time_and_memory(
    example: Path, case: str
) -> None:
    specs = example / "specs"
    where = _plant(specs, case)
    for command in (["validate"], ["--dry-run"]):
        started = time.monotonic()
        result = subprocess.run(
            [RECONCILE, *command, "--specs", str(specs)],
            cwd=example,
            capture_output=True,
            text=True,
            timeout=TIME_LIMIT,
            preexec_fn=_capped,  # noqa: PLW1509 - a memory cap for the child only
            check=False,
        )
        assert time.monotonic() - started < TIME_LIMIT
        assert result.returncode == 1, (command, result.stderr[:500])
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1, (command, result.stderr[:2000])
        assert lines[0].startswith(where) and len(lines[0]) < 400, lines[0][:500]
        assert "Traceback" not in result.stderr


# --- fuzz ----------------------------------------------------------------------------------------

YAMLISH = st.text(alphabet="[]{}:,-?!&*<>|#'\"\n\t abcx019.@%=~", max_size=200)
FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _load_one(raw: bytes) -> None:
    try:
        source = spec_module._decode(raw, "fuzz.yaml")
        spec_module._parse(source)
    except SpecError as exc:
        assert exc.problems
        for problem in exc.problems:
            line = str(problem)
            assert line.startswith("fuzz.yaml:") and "\n" not in line, line
            assert problem.line >= 1


@FUZZ
@given(YAMLISH)
def test_fuzz_yaml_like_text_gives_only_spec_errors(text: str) -> None:
    _load_one(text.encode())


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_fuzz_random_bytes_give_only_spec_errors(raw: bytes) -> None:
    _load_one(raw)


@FUZZ
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=20,
    )
)
def test_fuzz_yaml_documents_of_any_shape_give_only_spec_errors(document: object) -> None:
    import yaml

    _load_one(yaml.safe_dump({"customers": document}).encode())


# --- bounds ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1000001", "99999999999999999999999999"])
def test_a_quantity_above_a_million_is_a_spec_error(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, "a.yaml", _quantity(value))
    assert only_problem(tmp_path) == (
        f"{path}:6: customers[0].subscriptions[0].quantity: must be <= 1,000,000, got {value}"
    )


def test_a_million_is_still_a_quantity(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", _quantity("1000000"))
    assert load_specs(tmp_path).customers[gid(1)].subscriptions[0].quantity == 1_000_000  # type: ignore[index]


def test_a_hand_edited_world_with_a_huge_quantity_is_one_line(example: Path) -> None:
    world = example / "state" / "world.json"
    text = world.read_text()
    assert '"quantity": 120' in text
    world.write_text(text.replace('"quantity": 120', '"quantity": 99999999999999999999999999', 1))
    result = run("--dry-run", cwd=example)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert (
        line.startswith(f"error: {Path('state') / 'world.json'}: customers.") and "quantity" in line
    )
    assert "1000000" in line


def test_a_hand_edited_world_with_a_huge_refundable_quantity_is_one_line(example: Path) -> None:
    """Every count of the world is bounded like the quantity, not only the quantity."""
    world = example / "state" / "world.json"
    text = world.read_text()
    assert '"refundable_quantity": 0' in text
    huge = '"refundable_quantity": ' + "9" * 30
    world.write_text(text.replace('"refundable_quantity": 0', huge, 1))
    result = run("--dry-run", cwd=example)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "refundable_quantity" in line and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "text",
    [
        "customers: [" + ",".join(["1"] * 200_000) + "]\n",
        "customers:\n  - {" + ", ".join(f"k{n}: 1" for n in range(100_000)) + "}\n",
        "customers:\n  - id: x\n    subscriptions: [" + ",".join(["1"] * 100_000) + "]\n",
    ],
    ids=["a list of numbers", "a mapping of unknown keys", "a list inside a list"],
)
def test_a_file_of_countless_mistakes_reports_the_first_fifty(tmp_path: Path, text: str) -> None:
    write(tmp_path, "a.yaml", text)
    started = time.monotonic()
    with pytest.raises(SpecError) as caught:
        load_specs(tmp_path)
    assert time.monotonic() - started < 10
    problems = [str(p) for p in caught.value.problems]
    assert len(problems) == 51
    assert problems[-1].endswith("more problems in this file")
    assert "customers[0]" in problems[0]
