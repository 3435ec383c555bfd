"""Reusing a dry run whose inputs are unchanged (``controller.planreuse``): replayed byte for byte
without importing the models, a real run whenever any input changed, never kept when the run is
not a pure function of its inputs, and never believed unless this machine's key signed it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import platformdirs
import pytest
from helpers import RECONCILE, run

from controller import planreuse, usercache

DRY_RUN = ("--dry-run", "--output", "json", "--detailed-exitcode")


def _entries() -> list[Path]:
    folder = Path(os.environ["XDG_CACHE_HOME"]) / "partner-reconciler" / planreuse.FOLDER
    return sorted(folder.glob("*.json")) if folder.exists() else []


def _no_cache() -> dict[str, str]:
    return {**os.environ, "PARTNER_RECONCILER_NO_CACHE": "1"}


def _settled(directory: Path) -> None:
    """Wait until the files just written are older than the racy window (git's racy rule)."""
    time.sleep(planreuse.RACY_NS / 1e9 + 0.05)


def _traced(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str, bool]:
    """Run ``reconcile`` under ``-X importtime``: exit code, stdout, stderr without the import
    lines, and whether pydantic was imported (a real run; a replay imports none of it)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", RECONCILE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    lines = done.stderr.splitlines(keepends=True)
    imports = [line for line in lines if line.startswith("import time:")]
    stderr = "".join(line for line in lines if not line.startswith("import time:"))
    return done.returncode, done.stdout, stderr, any(" pydantic" in line for line in imports)


def _recorded(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Real runs until one is kept (the first may compile byte code, which is not kept)."""
    _settled(cwd)
    for _attempt in range(3):
        code, out, err, real = _traced(*args, cwd=cwd, env=env)
        assert real
        if _entries():
            return code, out, err
    raise AssertionError("no dry run was kept")


def test_an_unchanged_dry_run_is_replayed_byte_for_byte_without_the_models(example: Path) -> None:
    secret = "client-secret-never-stored-7f3a"
    env = {**os.environ, "PARTNER_CENTER_CLIENT_SECRET": secret}  # in the key, as an HMAC only
    code, out, err = _recorded(*DRY_RUN, cwd=example, env=env)
    assert code == 2 and json.loads(out)["actions"]
    assert [e.stat().st_mode & 0o777 for e in _entries()] == [0o600]  # the user's alone
    assert not any(secret.encode() in e.read_bytes() for e in _entries())
    again = _traced(*DRY_RUN, cwd=example, env=env)
    assert again == (code, out, err, False)  # same output and exit code; pydantic not imported


def test_a_changed_spec_is_planned_again(example: Path) -> None:
    code, out, _err = _recorded(*DRY_RUN, cwd=example)
    spec = example / "specs" / "customers" / "contoso.yaml"
    spec.write_text(spec.read_text().replace("quantity: 30 ", "quantity: 31 "))
    changed, changed_out, _err2, real = _traced(*DRY_RUN, cwd=example)
    assert real and changed == code and changed_out != out
    assert changed_out == run(*DRY_RUN, cwd=example, env=_no_cache()).stdout  # as planned afresh


def test_every_kind_of_input_is_recorded_and_its_change_seen(
    example: Path, own_state_home: Path
) -> None:
    """Each change alone makes the kept inputs stale: specs (edited, added, removed), the
    world, the records, the state files a plan reads when they appear (applied snapshot,
    journal), the protection ledger, and the program's own code."""
    _recorded(*DRY_RUN, cwd=example)
    (entry_path,) = _entries()
    key = usercache.machine_key(entry_path.parent.parent)
    assert key is not None
    entry = planreuse.read_entry(str(entry_path), key)
    assert entry is not None and planreuse.unchanged(entry["inputs"])
    inputs = entry["inputs"]
    paths = {path for path, _stat in inputs}
    assert str(Path(planreuse.__file__).with_name("plan.py")) in paths  # code is an input
    specs, state = example / "specs", example / "state"
    ledger = next(p for p in paths if p.startswith(str(own_state_home)))  # read though absent
    changes = {
        "spec edited": lambda: (specs / "partner.yaml").write_text(
            (specs / "partner.yaml").read_text() + "\n"
        ),
        "spec added": lambda: (specs / "customers" / "new.yaml").write_text("customers: []\n"),
        "spec removed": lambda: (specs / "customers" / "new.yaml").unlink(),
        "world": lambda: os.utime(state / "world.json"),
        "world's change log": lambda: (state / "world.changes.jsonl").write_text(""),
        "records": lambda: (state / "records.json").write_bytes(
            (state / "records.json").read_bytes()
        ),
        "applied snapshot": lambda: (state / "applied.json").write_text("{}"),
        "journal": lambda: (state / "journal.jsonl").write_text(""),
        "protection ledger": lambda: (
            Path(ledger).parent.mkdir(parents=True, exist_ok=True),
            Path(ledger).write_text('{"protected": []}'),
        ),
    }
    for kind, change in changes.items():
        _settled(example)
        inputs = [[path, planreuse.file_stat(path)] for path, _stat in inputs]  # now current
        assert planreuse.unchanged(inputs), kind
        change()
        assert not planreuse.unchanged(inputs), kind


def test_the_key_holds_the_command_line_directory_environment_and_terminals(
    tmp_path: Path,
) -> None:
    class Stream:
        def __init__(self, tty: bool, encoding: str = "utf-8") -> None:
            self.tty, self.encoding, self.errors = tty, encoding, "strict"

        def isatty(self) -> bool:
            return self.tty

    streams = [Stream(False), Stream(False), Stream(False)]
    base = planreuse.key_material(DRY_RUN, {"LANG": "en_US.UTF-8"}, streams)  # type: ignore[arg-type]
    assert base == planreuse.key_material(DRY_RUN, {"LANG": "en_US.UTF-8"}, streams)  # type: ignore[arg-type]
    assert base == planreuse.key_material(DRY_RUN, {"LANG": "en_US.UTF-8", "OLDPWD": "/x"}, streams)  # type: ignore[arg-type]
    others = [
        planreuse.key_material(("--dry-run",), {"LANG": "en_US.UTF-8"}, streams),  # type: ignore[arg-type]
        planreuse.key_material(
            DRY_RUN,
            {"LANG": "en_US.UTF-8", "TERM": "dumb"},
            [Stream(False), Stream(True), Stream(False)],
        ),  # type: ignore[arg-type]
        planreuse.key_material(
            DRY_RUN,
            {"LANG": "en_US.UTF-8"},
            [Stream(False), Stream(False), Stream(False, "latin-1")],
        ),  # type: ignore[arg-type]
    ]
    for variable in (
        "LANGUAGE",
        "LC_ALL",
        "PARTNER_RECONCILER_ANYTHING",
        "RECONCILE_STATE_URL",
        "XDG_CACHE_HOME",
        "XDG_STATE_HOME",
        "HOME",
        "TZ",
        "NO_COLOR",
        "FORCE_COLOR",
        "COLUMNS",
        "TERM",
        "PYTHONIOENCODING",
    ):
        others.append(
            planreuse.key_material(DRY_RUN, {"LANG": "en_US.UTF-8", variable: "x"}, streams)  # type: ignore[arg-type]
        )
    here = os.getcwd()
    try:
        os.chdir(tmp_path)
        others.append(planreuse.key_material(DRY_RUN, {"LANG": "en_US.UTF-8"}, streams))  # type: ignore[arg-type]
    finally:
        os.chdir(here)
    assert len({base, *others}) == len(others) + 1


@pytest.mark.parametrize("flag", [["-X", "importtime"], ["-W", "error"], ["-O"]])
def test_the_key_holds_the_interpreters_flags(flag: list[str]) -> None:
    """``-X importtime`` and ``-W`` write to stderr, ``-O`` drops asserts: a run with other
    interpreter flags is another run."""
    code = (
        "import sys; from controller import planreuse; "
        "sys.stdout.write(planreuse.key_material(['--dry-run'], {}, []).hex())"
    )

    def material(*flags: str) -> str:
        run = subprocess.run([sys.executable, *flags, "-c", code], capture_output=True, text=True)
        return run.stdout

    assert material() == material()
    assert material() != material(*flag)


def test_runs_that_are_not_pure_are_never_kept(example: Path) -> None:
    """Output to a file, a world without a clock of its own (the wall clock), the cache turned
    off, a failing run: each stays a real run."""
    _settled(example)
    for args in ((*DRY_RUN, "--plan-out", "plan.json"), ("--dry-run", "--only", "nobody")):
        run(*args, cwd=example)
        run(*args, cwd=example)
        assert not _entries(), args
    run(*DRY_RUN, cwd=example, env=_no_cache())
    run(*DRY_RUN, cwd=example, env=_no_cache())
    assert not _entries()
    world = example / "state" / "world.json"
    document = json.loads(world.read_text())
    del document["now"]
    world.write_text(json.dumps(document))
    _settled(example)
    for _attempt in range(2):
        assert run(*DRY_RUN, cwd=example).returncode == 2
    assert not _entries()


def test_an_entry_not_signed_with_this_machines_key_is_not_believed(example: Path) -> None:
    _code, out, _err = _recorded(*DRY_RUN, cwd=example)
    (entry_path,) = _entries()
    tag, _newline, body = entry_path.read_bytes().partition(b"\n")
    forged = json.loads(body)
    forged["output"] = [[1, "forged\n"]]
    forged_body = json.dumps(forged).encode()
    entry_path.write_bytes(
        usercache.mac(b"another machine's key, 32 bytes", forged_body) + b"\n" + forged_body
    )
    code, again, _err2, real = _traced(*DRY_RUN, cwd=example)
    assert real and again == out and "forged" not in again


def test_what_a_run_does_beyond_reading_spoils_it(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    run_ = planreuse.Run.__new__(planreuse.Run)
    run_.directory = str(cache)
    recording = planreuse.Recording(run_)
    for event, args in (
        ("open", (str(cache / "specs-x.json"), "w", 0)),  # the caches may be written
        ("os.mkdir", (str(cache), 0o700, -1)),
        ("open", (str(tmp_path / "pkg" / "__pycache__" / "m.pyc.1"), None, os.O_WRONLY)),
        ("open", (str(tmp_path / "specs" / "a.yaml"), "r", 0)),
        ("os.scandir", (str(tmp_path / "specs"),)),
        ("os.chmod", (7, 0o644, -1)),  # a descriptor (of a file whose opening was seen)
    ):
        recording.see(event, args)
    assert recording.spoiled is None
    assert str(tmp_path / "specs" / "a.yaml") in recording.read
    for event, args in (
        ("open", (str(tmp_path / "plan.json"), "w", 0)),
        ("open", (str(tmp_path / "state" / "lock"), None, os.O_CREAT | os.O_RDWR)),
        ("os.rename", (str(tmp_path / "a"), str(tmp_path / "b"), -1, -1)),
        ("socket.connect", (None, ("127.0.0.1", 443))),
        ("subprocess.Popen", ("git", [], None, None)),
    ):
        spoiled = planreuse.Recording(run_)
        spoiled.see(event, args)
        assert spoiled.spoiled is not None, event


def test_racy_files_are_not_trusted() -> None:
    began = 10_000_000_000_000
    old = [1, 2, 3, began - 5_000_000_000 + 7, began - 5_000_000_000 + 7, 0o100644]
    recent = [1, 2, 3, began - 50_000_000, began - 50_000_000, 0o100644]
    coarse = [1, 2, 3, began - 1_000_000_000, began - 1_000_000_000, 0o100644]  # whole seconds
    assert not planreuse._racy(old, began) and not planreuse._racy(None, began)
    assert planreuse._racy(recent, began) and planreuse._racy(coarse, began)


def test_only_the_most_recent_entries_are_kept(tmp_path: Path) -> None:
    for n in range(planreuse.KEEP + 3):
        entry = tmp_path / f"{n:02d}.json"
        entry.write_text("x")
        os.utime(entry, ns=(n * 1_000_000_000, n * 1_000_000_000))
    planreuse._evict(str(tmp_path), keep=planreuse.KEEP)
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == [f"{n:02d}.json" for n in range(3, planreuse.KEEP + 3)]


def test_the_cache_directory_is_platformdirs_one(monkeypatch: pytest.MonkeyPatch) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("the rule is written out for Linux only")
    for value in ("/somewhere/cache", ""):
        monkeypatch.setenv("XDG_CACHE_HOME", value)
        assert usercache.cache_dir(os.environ) == platformdirs.user_cache_dir("partner-reconciler")


def test_writing_the_parse_cache_does_not_spoil_a_run_writing_elsewhere_does(
    tmp_path: Path,
) -> None:
    """Through the real audit hook: the parse cache's atomic write (mkstemp, fchmod, rename in
    the cache directory) leaves the run reusable; the same write anywhere else does not."""
    from controller.fsutil import atomic_write

    cache = tmp_path / "cache"
    (tmp_path / "specs.yaml").write_text("customers: []\n")
    run_ = planreuse.Run.__new__(planreuse.Run)
    run_.directory = str(cache)
    try:
        planreuse._recording = recording = planreuse.Recording(run_)
        planreuse._install_hook()
        atomic_write(cache / "specs-x.json", "{}")
        (tmp_path / "specs.yaml").read_text()
        assert recording.spoiled is None
        assert str(tmp_path / "specs.yaml") in recording.read
        atomic_write(tmp_path / "plan.json", "{}")
        assert recording.spoiled is not None
    finally:
        planreuse._recording = None


def test_a_replay_into_a_closed_pipe_stops_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Closed:
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def fileno(self) -> int:
            return 99

    moved: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "dup2", lambda a, b: moved.append((a, b)))
    monkeypatch.setattr(sys, "stdout", Closed())
    run_ = planreuse.Run.__new__(planreuse.Run)
    entry = {"output": [[1, "plan\n"]], "code": 0}
    monkeypatch.setattr(run_, "read", lambda: entry, raising=False)
    monkeypatch.setattr(run_, "path", str(tmp_path / "entry.json"), raising=False)
    assert run_.replay() == 1
    assert [b for _a, b in moved] == [99]  # stdout now goes nowhere: no traceback at exit


def test_ctrl_c_during_a_replay_says_interrupted_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from controller import entry

    class Interrupted:
        def replay(self) -> int | None:
            raise KeyboardInterrupt

    monkeypatch.setattr(planreuse, "start", lambda args, environ: Interrupted())
    assert entry.main(["--dry-run"]) == 130
    assert capsys.readouterr().err == "Interrupted.\n"
