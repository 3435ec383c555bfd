"""Every state reader tolerates damage: one line naming the file, never a traceback, never a
change to the state, and never after acting. Each test shows the damage first; a hypothesis
fuzz test then throws random bytes at every state file through the real command."""

from __future__ import annotations

import gc
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, store_env
from helpers import PARTNER, run, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.cli import main
from controller.errors import PermanentProviderError, StateError
from controller.providers.local import read_world
from controller.providers.partnercenter import PartnerCenterProvider, Settings
from controller.records import FileStore
from controller.watch import PassResult, Watcher, WatchSettings

CONTOSO = "36b8a5ac-453b-4f02-9061-e10e8bddc18a"


def one_line_error(result, fragment: str) -> None:  # type: ignore[no-untyped-def]
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and fragment in errors[0], result.stderr


# --- applied.json: damaged, it made every apply act and then crash -------------------------


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"\xff\xfe{", "applied.json: document: Invalid JSON"),
        (b'["x"]', "applied.json: document: Input should be an object"),
        (b'{"a": 5}', "applied.json: a: Input should be an object"),
        (b'{"a": {"b": 5}}', "applied.json: a.b: Input should be a valid string"),
    ],
    ids=["not UTF-8", "a list", "wrong value", "wrong leaf"],
)
def test_a_damaged_applied_json_stops_the_apply_before_it_acts(
    example: Path, content: bytes, fragment: str
) -> None:
    (example / "state" / "applied.json").write_bytes(content)
    before = snapshot(example / "state")
    result = run("--yes", cwd=example)
    one_line_error(result, fragment)
    assert "delete it" in result.stderr
    assert snapshot(example / "state") == before  # nothing was done
    (example / "state" / "applied.json").unlink()  # as the message says: then it works again
    assert run("--yes", cwd=example).returncode == 0
    json.loads((example / "state" / "applied.json").read_text())


def test_an_applied_json_that_is_a_directory_is_one_line(example: Path) -> None:
    (example / "state" / "applied.json").mkdir()
    one_line_error(run("--dry-run", cwd=example), "applied.json: Is a directory")


# --- the journal in `status` ---------------------------------------------------------------


def test_status_skips_damaged_journal_lines_and_names_them_in_one_warning(example: Path) -> None:
    good = {"event": "run_started", "run": "r1", "time": "2026-01-01T00:00:00Z", "actions": 1}
    lines = [
        b"5",
        b'{"event": 5, "run": "x"}',
        b"\xff\xfe not UTF-8",
        json.dumps(good).encode(),
        b'{"event": "run_started", "run": "r2", "actions": "many"}',
        b'{"event": "action_applied", "run": "r1", "id": "a1", "type": "suspend_subscription"}',
        b'{"event": "action_sta',  # torn by a kill
    ]
    (example / "state" / "journal.jsonl").write_bytes(b"\n".join(lines))
    result = run("status", cwd=example)
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert "Last apply r1" in result.stdout and "applied 1 of 1" in result.stdout
    [warning] = result.stderr.splitlines()
    assert warning == "state/journal.jsonl: skipped 4 damaged lines (the first is line 1)"


def test_an_entry_appended_after_a_torn_line_starts_a_line_of_its_own(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.journal_path.write_text('{"event": "run_started", "run": "r"}\n{"event": "act')
    store.append_journal({"event": "run_started", "run": "next"})
    assert [e["run"] for e in store.read_journal()] == ["r", "next"]


# --- the records in PostgreSQL: rows edited by hand -----------------------------------------


def edit_rows(url: str, statement: str, *params: object) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement, params)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("snapshot_json", "fragment"),
    [
        ('["x"]', f"reconcile_applied: {CONTOSO}: Input should be a valid dictionary"),
        ('{"b": 5}', f"reconcile_applied: {CONTOSO}.b: Input should be a valid string"),
    ],
    ids=["a list", "wrong leaf"],
)
def test_a_damaged_applied_row_stops_the_apply_before_it_acts(
    example: Path, pg_url: str, snapshot_json: str, fragment: str
) -> None:
    env = store_env(example, pg_url)
    assert run("--yes", cwd=example, env=env).returncode == 0
    edit_rows(
        pg_url,
        "UPDATE reconcile_applied SET snapshot = %s WHERE customer_id = %s",
        snapshot_json,
        CONTOSO,
    )
    edit_quantity = (example / "specs" / "customers" / "contoso.yaml").read_text()
    (example / "specs" / "customers" / "contoso.yaml").write_text(
        edit_quantity.replace("quantity: 30 ", "quantity: 31 ", 1)
    )
    before = snapshot(example / "state")
    one_line_error(run("--yes", cwd=example, env=env), fragment)
    assert snapshot(example / "state") == before  # nothing was done
    edit_rows(pg_url, "DELETE FROM reconcile_applied")  # as the message says: then it works
    assert run("--yes", cwd=example, env=env).returncode == 0


def test_status_skips_damaged_journal_rows_in_one_warning(example: Path, pg_url: str) -> None:
    env = store_env(example, pg_url)
    good = {"event": "run_started", "run": "r1", "time": "2026-01-01T00:00:00Z", "actions": 1}
    for entry in (good, {"event": 5}, {"event": "run_finished", "run": "r1", "applied": 1}, []):
        edit_rows(
            pg_url,
            "INSERT INTO reconcile_journal (partner, entry) VALUES (%s, %s)",
            PARTNER,
            json.dumps(entry),
        )
    edit_rows(
        pg_url,
        'UPDATE reconcile_journal SET entry = entry || \'{"actions": "many"}\' '
        "WHERE entry->>'run' = 'r1' AND entry->>'event' = 'run_finished'",
    )
    result = run("status", cwd=example, env=env)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "Last apply r1" in result.stdout
    [warning] = result.stderr.splitlines()
    assert warning.endswith("reconcile_journal: skipped 3 damaged entries"), warning


@pytest.mark.parametrize(
    ("statement", "fragment"),
    [
        ("INSERT INTO reconcile_managed VALUES (%s, 'not-a-guid')", "invalid records: managed.4"),
        (
            f"INSERT INTO reconcile_offboarding VALUES (%s, '{CONTOSO}', 'bogus')",
            f"invalid records: offboarding.{CONTOSO}: Input should be",
        ),
    ],
    ids=["managed", "offboarding"],
)
def test_an_invalid_records_row_is_one_line(
    example: Path, pg_url: str, statement: str, fragment: str
) -> None:
    env = store_env(example, pg_url)
    edit_rows(pg_url, statement, PARTNER)
    for command in (["--dry-run"], ["status"]):
        one_line_error(run(*command, cwd=example, env=env), fragment)


# --- records, world, state directory ------------------------------------------------------


@pytest.mark.parametrize("name", ["records.json", "world.json"])
def test_non_utf8_records_and_world_are_one_line(example: Path, name: str) -> None:
    path = example / "state" / name
    path.write_bytes(path.read_bytes().replace(b"0e1ef465", b"0e1e\xff465"))
    one_line_error(run("--dry-run", cwd=example), f"state/{name}: ")


def test_a_state_directory_that_is_a_file_is_one_line(example: Path) -> None:
    for command in (["--dry-run"], ["--yes"], ["status"]):
        result = run(*command, "--state", "specs/partner.yaml", cwd=example)
        one_line_error(result, "specs/partner.yaml")


def test_an_os_error_nobody_expected_is_still_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], example: Path
) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", "state/world.json")

    monkeypatch.setattr("controller.reconcile.make_plan", refuse)
    monkeypatch.chdir(example)
    assert main(["--dry-run"]) == 1
    gc.enable()
    assert capsys.readouterr().err == "error: state/world.json: Permission denied\n"


# --- duplicate ids in the observed state ---------------------------------------------------


def test_duplicate_customer_or_subscription_ids_in_the_world_are_refused(example: Path) -> None:
    path = example / "state" / "world.json"
    document = json.loads(path.read_text())
    twice = {**document, "customers": [*document["customers"], document["customers"][0]]}
    path.write_text(json.dumps(twice))
    with pytest.raises(StateError, match=f"customer {CONTOSO} is listed twice"):
        read_world(path)  # before: the second silently replaced the first
    one_line_error(run("--dry-run", cwd=example), f"customer {CONTOSO} is listed twice")
    contoso = document["customers"][0]
    contoso["subscriptions"].append(contoso["subscriptions"][0])
    path.write_text(json.dumps(document))
    one_line_error(run("--dry-run", cwd=example), "lists subscription")


def test_partner_center_listing_a_customer_twice_is_refused() -> None:
    raw = {"id": CONTOSO, "companyProfile": {"companyName": "Contoso"}}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/customers":
            return httpx.Response(200, json={"items": [raw, raw]})
        return httpx.Response(200, json={"items": []})

    provider = PartnerCenterProvider(
        Settings(base_url="https://pc.test", tenant_id=PARTNER),
        lambda: "token",
        transport=httpx.MockTransport(handler),
    )
    with pytest.raises(PermanentProviderError, match=f"customer {CONTOSO} is listed twice"):
        provider.observe()


# --- watch mode survives any error of one pass ---------------------------------------------


def test_watch_reports_an_unexpected_error_of_one_pass_and_carries_on(example: Path) -> None:
    from controller.reconcile import Options

    emitted: list[str] = []
    settings_ = WatchSettings(example / "specs", Options(state_dir=example / "state"), True, 60)
    watcher = Watcher(
        settings_,
        emit=emitted.append,
        render_plan=lambda plan: "plan\n",
        render_outcome=lambda outcome: "outcome\n",
        render_error=lambda message: f"error: {message}\n",
    )
    real_pass = watcher._pass
    failures = iter([RuntimeError("a bug"), PermissionError(13, "Permission denied", "x")])

    def flaky(options: Options) -> PassResult:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return real_pass(options)

    watcher._pass = flaky  # type: ignore[method-assign]
    first, second, third = watcher.run_pass(), watcher.run_pass(), watcher.run_pass()
    assert not first.ok and first.error == "unexpected error: RuntimeError: a bug"
    assert not second.ok and second.error == "x: Permission denied"
    assert third.ok
    assert emitted == [f"error: {first.error}\n", f"error: {second.error}\n", "plan\n"]


# --- fuzz: random bytes in every state file, through the real command ----------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
CONTENT = st.one_of(
    st.binary(max_size=300),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    st.lists(JSON_VALUES.map(json.dumps), max_size=5).map(lambda ls: "\n".join(ls).encode()),
)
# Each state file, and the commands that read it (none of which may change the state).
READERS = {
    "world.json": [["--dry-run"]],
    "records.json": [["--dry-run"], ["status"]],
    "applied.json": [["--dry-run"]],
    "journal.jsonl": [["status"], ["status", "--output", "json"]],
    "plan.json": [["--plan", "plan.json", "--yes"]],
}


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(ROOT / "specs", directory / "specs")
    shutil.copytree(ROOT / "state", directory / "state")
    yield directory


@pytest.mark.parametrize("name", list(READERS))
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(content=CONTENT)
def test_random_bytes_in_a_state_file_are_one_line_errors_and_change_nothing(
    name: str,
    content: bytes,
    fuzz_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(fuzz_dir)
    monkeypatch.setenv("XDG_CACHE_HOME", str(fuzz_dir / "cache"))
    target = fuzz_dir / ("plan.json" if name == "plan.json" else f"state/{name}")
    original = target.read_bytes() if target.exists() else None
    target.write_bytes(content)
    before = snapshot(fuzz_dir / "state")
    try:
        for command in READERS[name]:
            code = main(command)  # anything but a ReconcileError or OSError would escape here
            gc.enable()  # a dry run turns the collector off for its short process
            err = capsys.readouterr().err
            assert code in (0, 1)
            assert "Traceback" not in err
            if code == 1:
                assert len([line for line in err.splitlines() if line.startswith("error")]) == 1
            assert snapshot(fuzz_dir / "state") == before
    finally:
        if original is None:
            target.unlink()
        else:
            target.write_bytes(original)


# --- the controller never writes a state file it could not read back ------------------------

LONE = "Contoso \ud800 Ltd"  # Python's json and YAML's "\ud800" accept it; pydantic refuses it


def test_a_lone_surrogate_in_a_name_never_makes_a_state_file_unreadable(tmp_path: Path) -> None:
    from controller.document import read_plan_file
    from controller.fsutil import atomic_write
    from controller.plan import Plan
    from controller.providers.local import LocalProvider, world_path
    from controller.records import PendingRequest, Records
    from controller.render import json as json_render

    store = FileStore(tmp_path)
    pending = PendingRequest(
        customer_id=CONTOSO, name=LONE, requested_at="t", invitation_url="https://x"
    )
    store.save(Records(pending=(pending,)))
    assert store.load().pending[0].name == "Contoso \ufffd Ltd"  # before: unreadable from then on
    world = read_world(ROOT / "state" / "world.json")
    renamed = world.model_copy(
        update={"customers": (world.customers[0].evolve(name=LONE), *world.customers[1:])}
    )
    LocalProvider(tmp_path).store_world(renamed)
    assert read_world(world_path(tmp_path)).customers[0].name == "Contoso \ufffd Ltd"
    atomic_write(tmp_path / "plan.json", json_render.render_plan(Plan("f", warnings=(LONE,))))
    assert read_plan_file(tmp_path / "plan.json").warnings == ("Contoso \ufffd Ltd",)
    emoji = json_render.render_plan(Plan("f", warnings=("\U0001f600",)))  # a pair stays a pair
    assert json.loads(emoji)["warnings"] == ["\U0001f600"]


def test_a_damaged_key_with_a_line_break_is_still_one_line() -> None:
    """Found by the random-bytes test above: applied.json {"\\n": null} gave two error lines."""
    from pydantic import BaseModel, ValidationError

    from controller.errors import validation_problem

    class Document(BaseModel):
        fields: dict[str, int]

    with pytest.raises(ValidationError) as caught:
        Document.model_validate({"fields": {"a\nb": None}})
    problem = validation_problem(caught.value)
    assert "\n" not in problem and "a\\nb" in problem
