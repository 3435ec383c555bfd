"""The local world's change log (``world.changes.jsonl``): each batch appended as one line and
fsynced; replayed over ``world.json`` by every reader; folded into ``world.json`` (compaction)
past its bound, on close, when the emulator is quiet, and by the next writer after a kill; a
torn last line ignored; a log of another ``world.json`` ignored when a compaction left it (its
``folded_into`` line names the file) or the file lacks none of its changes, and refused when
the file was replaced while the log held changes it lacks; a damaged or hostile log one line
naming the file and line. Kills at the exact moments that matter run in real processes."""

from __future__ import annotations

import errno
import hashlib
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import PARTNER, gid, run
from test_world_file import AUTH, CUSTOMERS, seeded

from controller.emulator import Emulator
from controller.errors import PermanentProviderError, StateError
from controller.providers import local, worldlog
from controller.providers.local import LocalProvider, read_world

ROOT = Path(__file__).resolve().parent.parent


def changed(**quantities: int) -> dict[int, int]:
    """Every customer's quantity: 1, but those given (``c1=5``: customer 1's is 5)."""
    return {c: quantities.get(f"c{c}", 1) for c in range(CUSTOMERS)}


def quantities(state: Path) -> dict[int, int]:
    found = read_world(state / "world.json").customers_by_id
    return {c: found[gid(c)].subscriptions_by_id[gid(100 + c)].quantity for c in range(CUSTOMERS)}


def in_file(state: Path) -> dict[int, int]:
    """The quantities world.json alone holds (as a program reading only the file sees them)."""
    document = json.loads((state / "world.json").read_text())
    return {n: document["customers"][n]["subscriptions"][0]["quantity"] for n in range(CUSTOMERS)}


def log_lines(state: Path) -> list[bytes]:
    return (state / "world.changes.jsonl").read_bytes().splitlines(keepends=True)


def test_changes_are_appended_to_the_log_and_every_reader_sees_them(tmp_path: Path) -> None:
    state = seeded(tmp_path)
    provider = LocalProvider(state)
    provider.update_quantity(gid(1), gid(101), 5)
    provider.update_quantity(gid(2), gid(102), 6)
    assert in_file(state)[1] == 1  # world.json is not rewritten for a change
    header, *batches = log_lines(state)
    assert set(json.loads(header)) == {"format", "world_sha256"}
    lines = [[c["id"] for c in json.loads(line)["customers"]] for line in batches]
    assert lines == [[gid(1)], [gid(2)]]  # one line per batch: only what it changed
    assert quantities(state) == changed(c1=5, c2=6)


def test_close_folds_the_log_into_world_json(tmp_path: Path) -> None:
    state = seeded(tmp_path)
    provider = LocalProvider(state)
    provider.update_quantity(gid(1), gid(101), 5)
    provider.close()
    assert not (state / "world.changes.jsonl").exists()
    assert in_file(state)[1] == 5 and quantities(state)[1] == 5
    provider.update_quantity(gid(2), gid(102), 6)  # it goes on, in a new log
    assert quantities(state) == changed(c1=5, c2=6)


def test_a_log_past_its_bound_is_folded_in_by_the_next_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bound: as long as world.json (here; at least 1 MiB in use)."""
    monkeypatch.setattr(local, "COMPACT_AFTER_BYTES", 1)
    state = seeded(tmp_path)
    provider = LocalProvider(state)
    sizes = []
    for n in range(1, 40):
        provider.update_quantity(gid(n % CUSTOMERS), gid(100 + n % CUSTOMERS), n + 1)
        log = state / "world.changes.jsonl"
        sizes.append(log.stat().st_size if log.exists() else 0)  # 0: folded in by this batch
        assert sizes[-1] <= (state / "world.json").stat().st_size + 1024
    assert any(later < earlier for earlier, later in zip(sizes, sizes[1:], strict=False))
    assert quantities(state) == {n % CUSTOMERS: n + 1 for n in range(1, 40)}


def test_the_emulator_folds_the_log_in_once_changes_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("controller.emulator.COMPACT_WHEN_QUIET", 0.2)
    state = seeded(tmp_path)
    emulator = Emulator(state)
    status, body, _ = emulator.handle("GET", f"/v1/customers/{gid(1)}/subscriptions", AUTH, None)
    etag = body["items"][0]["attributes"]["etag"]
    target = f"/v1/customers/{gid(1)}/subscriptions/{gid(101)}"
    status, _, _ = emulator.handle("PATCH", target, {**AUTH, "if-match": etag}, {"quantity": 4})
    assert status == 200 and (state / "world.changes.jsonl").exists()
    deadline = time.monotonic() + 10
    while (state / "world.changes.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not (state / "world.changes.jsonl").exists()
    assert in_file(state)[1] == 4  # the file a person opens holds the change


def test_a_torn_last_line_is_ignored_and_the_next_writer_folds_the_log_in(tmp_path: Path) -> None:
    state = seeded(tmp_path)
    LocalProvider(state).update_quantity(gid(1), gid(101), 5)
    whole = log_lines(state)[-1]
    torn = whole.replace(b'"quantity": 5', b'"quantity": 7')[: len(whole) // 2]
    with open(state / "world.changes.jsonl", "ab") as log:
        log.write(torn)  # a kill in the middle of an append: that batch was never reported
    assert quantities(state)[1] == 5
    provider = LocalProvider(state)
    provider.update_quantity(gid(2), gid(102), 6)  # its first write: the whole world
    assert not (state / "world.changes.jsonl").exists()
    assert in_file(state) == changed(c1=5, c2=6)


def test_a_log_of_another_world_json_whose_changes_that_file_holds_is_ignored(
    tmp_path: Path,
) -> None:
    """Left by a compaction of an earlier version (no folded_into line) killed before it removed
    the log: world.json holds every customer as the log left it, so nothing is lost. An edit
    of another customer since loses nothing either; one of a customer the log changed does."""
    state = seeded(tmp_path)
    LocalProvider(state).update_quantity(gid(1), gid(101), 5)
    log = (state / "world.changes.jsonl").read_bytes()
    LocalProvider(state).update_quantity(gid(2), gid(102), 6)  # first write: whole, log removed
    (state / "world.changes.jsonl").write_bytes(log)  # ... as if the removal never happened
    assert quantities(state) == changed(c1=5, c2=6)
    path = state / "world.json"
    path.write_text(path.read_text().replace('"Customer 2"', '"Renamed"'))  # a later edit
    assert read_world(path).customers_by_id[gid(2)].name == "Renamed"
    path.write_text(path.read_text().replace('"quantity": 5', '"quantity": 9'))
    with pytest.raises(StateError, match=f"lacks the log's changes to 1 customer \\({gid(1)}\\)"):
        read_world(path)


def test_a_compactions_leftover_is_ignored_and_the_next_writer_removes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compaction appends a line naming the world.json it writes before it writes it: a log
    ending with that line beside that file is known for a leftover, even when the file holds a
    newer change than the log (a batch written whole), which comparing customers cannot tell."""
    state = seeded(tmp_path)
    provider = LocalProvider(state)
    provider.update_quantity(gid(1), gid(101), 5)  # in the log
    monkeypatch.setattr(provider, "_change_line", lambda world: None)  # (past the log's bound)
    monkeypatch.setattr(local, "remove_log", lambda path: None)  # a kill before the removal
    provider.update_quantity(gid(1), gid(101), 6)  # written whole
    monkeypatch.undo()
    *_, last = log_lines(state)
    world_sha256 = hashlib.sha256((state / "world.json").read_bytes()).hexdigest()
    assert json.loads(last) == {"folded_into": world_sha256}
    assert in_file(state)[1] == 6 and quantities(state) == changed(c1=6)
    LocalProvider(state).update_quantity(gid(2), gid(102), 7)  # first write: whole, log removed
    assert not (state / "world.changes.jsonl").exists()
    assert in_file(state) == changed(c1=6, c2=7)


def test_compactions_killed_one_after_another_still_leave_a_leftover(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A leftover's next writer marks the log again, then fails (a full disk; or is killed)
    before it replaces the file: the log ends with two such lines, one naming the file there."""
    state = seeded(tmp_path)
    provider = LocalProvider(state)
    provider.update_quantity(gid(1), gid(101), 5)
    monkeypatch.setattr(local, "remove_log", lambda path: None)
    provider.update_quantity(gid(2), gid(102), 6)
    provider.close()  # file replaced, log left
    monkeypatch.undo()

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(local, "atomic_write", full_disk)
    with pytest.raises(PermanentProviderError, match="No space left"):
        LocalProvider(state).update_quantity(gid(1), gid(101), 8)
    monkeypatch.undo()
    assert [set(json.loads(line)) for line in log_lines(state)[-2:]] == [{"folded_into"}] * 2
    assert quantities(state) == changed(c1=5, c2=6)
    LocalProvider(state).update_quantity(gid(1), gid(101), 8)
    assert not (state / "world.changes.jsonl").exists()
    assert in_file(state) == changed(c1=8, c2=6)


def test_a_log_of_no_changes_naming_another_world_json_is_ignored(tmp_path: Path) -> None:
    state = seeded(tmp_path)
    (state / "world.changes.jsonl").write_bytes(
        worldlog.header_line(worldlog.digest(b"another world"))
    )
    assert quantities(state) == changed()
    LocalProvider(state).update_quantity(gid(1), gid(101), 5)
    assert in_file(state) == changed(c1=5)  # and the next writer removed it
    assert not (state / "world.changes.jsonl").exists()


def specs_setting_quantity(directory: Path, quantity: int) -> Path:
    specs = directory / "specs"
    specs.mkdir()
    (specs / "c1.yaml").write_text(
        f"partner: {{id: {PARTNER}, prune: none}}\n"
        f"customers:\n  - id: {gid(1)}\n    name: Customer 1\n"
        f"    subscriptions: [{{id: '{gid(101)}', quantity: {quantity}}}]\n"
    )
    return specs


def test_world_json_replaced_while_the_log_holds_changes_is_refused_by_every_command(
    tmp_path: Path,
) -> None:
    """A killed apply left changes in the log; world.json was then replaced (a checkout, an
    edit of the file a person sees): reading it alone would drop them without a word. Dry run,
    apply, the world commands and the emulator refuse in one line naming both files and what
    to do, changing nothing; deleting the log (or restoring the file) lets them go on."""
    state = seeded(tmp_path)
    original = (state / "world.json").read_bytes()
    provider = LocalProvider(state)
    provider.update_quantity(gid(1), gid(101), 5)  # not folded in: a kill
    provider.update_quantity(gid(3), gid(103), 4)
    edited = original.replace(b'"Customer 2"', b'"Renamed"')
    (state / "world.json").write_bytes(edited)
    log = (state / "world.changes.jsonl").read_bytes()
    specs = specs_setting_quantity(tmp_path, 7)
    commands = {
        "dry run": ("--dry-run", "--specs", str(specs)),
        "apply": ("--specs", str(specs)),
        "world": ("world", "add-customer", gid(40), "--name", "Later"),
        "emulator": ("emulator", "--port", "0"),
    }
    for name, command in commands.items():
        result = run(*command, cwd=tmp_path)
        assert result.returncode == 1, (name, result.stderr)
        assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1, name
        assert result.stderr.startswith("error: state/world.changes.jsonl: "), name
        assert f"changes to 2 customers (the first: {gid(1)})" in result.stderr, name
        assert "state/world.json lacks the log's changes" in result.stderr, name
        assert (state / "world.json").read_bytes() == edited, name
        assert (state / "world.changes.jsonl").read_bytes() == log, name
    assert not (state / "records.json").exists() and not (state / "journal.jsonl").exists()
    (state / "world.json").write_bytes(original)  # restored: the log's changes count again
    assert quantities(state) == changed(c1=5, c3=4)
    (state / "world.json").write_bytes(edited)
    (state / "world.changes.jsonl").unlink()  # or dropped: the file is the world
    assert run("--specs", str(specs), cwd=tmp_path).returncode == 0
    assert quantities(state) == changed(c1=7)


def test_a_world_whose_log_someone_else_changed_is_read_again(tmp_path: Path) -> None:
    state = seeded(tmp_path)
    serving = LocalProvider(state)
    serving.update_quantity(gid(1), gid(101), 5)
    other = LocalProvider(state)
    other.update_quantity(gid(2), gid(102), 6)  # folds serving's log in, writes the file whole
    other.update_quantity(gid(3), gid(103), 7)  # and appends to a log of its own
    assert quantities(state) == changed(c1=5, c2=6, c3=7)
    assert {1: 5, 2: 6, 3: 7}.items() <= {
        c: serving.observe().customers_by_id[gid(c)].subscriptions[0].quantity
        for c in range(CUSTOMERS)
    }.items()
    serving.update_quantity(gid(4), gid(104), 8)
    assert quantities(state) == changed(c1=5, c2=6, c3=7, c4=8)


HOSTILE = {
    "not JSON": (b"{", "2: "),
    "an unknown key": (b'{"partner": {"id": "%s"}, "customers": [], "extra": 1}', "2: extra"),
    "a huge quantity": (
        b'{"partner": {"id": "%s"}, "customers": [{"id": "00000000-0000-4000-8000-000000000001",'
        b' "name": "C", "subscriptions": [{"id": "00000000-0000-4000-8000-000000000101",'
        b' "quantity": 99999999999}]}]}',
        "2: customers.0.subscriptions.0.quantity",
    ),
    "a subscription listed twice": (
        b'{"partner": {"id": "%s"}, "customers": [{"id": "00000000-0000-4000-8000-000000000001",'
        b' "name": "C", "subscriptions": [{"id": "00000000-0000-4000-8000-000000000101"},'
        b' {"id": "00000000-0000-4000-8000-000000000101"}]}]}',
        "2: customers.0: customer",
    ),
    "another partner": (
        b'{"partner": {"id": "11111111-1111-4111-8111-111111111111"}, "customers": []}',
        "2: partner.id: 11111111-1111-4111-8111-111111111111 is not the world's partner",
    ),
    "bytes that are not UTF-8": (b'{"partner": {"id": "%s", "name": "\xff"}}', "2: "),
    "a line too deep": (b"[" * 100_000 + b"]" * 100_000, "2: "),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_damaged_or_hostile_log_is_one_line_naming_the_file_and_line(
    tmp_path: Path, case: str
) -> None:
    state = seeded(tmp_path)
    LocalProvider(state).update_quantity(gid(1), gid(101), 5)
    line, expected = HOSTILE[case]
    with open(state / "world.changes.jsonl", "r+b") as log:
        header = log.readline()
        log.seek(0)
        log.truncate()
        log.write(header + (line.replace(b"%s", PARTNER.encode()) + b"\n"))
    with pytest.raises(StateError) as refused:
        read_world(state / "world.json")
    message = str(refused.value)
    assert message.startswith(f"{state / 'world.changes.jsonl'}:{expected}"), message
    assert "\n" not in message
    if case == "a huge quantity":  # the command: one line, exit 1, nothing written
        before = (state / "world.json").read_bytes()
        result = run("--dry-run", "--specs", str(ROOT / "specs"), cwd=tmp_path)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
        assert "world.changes.jsonl:2: customers.0.subscriptions.0.quantity" in result.stderr
        assert (state / "world.json").read_bytes() == before


def test_a_damaged_header_is_one_line_naming_line_1(tmp_path: Path) -> None:
    state = seeded(tmp_path)
    LocalProvider(state).update_quantity(gid(1), gid(101), 5)
    lines = log_lines(state)
    (state / "world.changes.jsonl").write_bytes(b'{"format": 2}\n' + b"".join(lines[1:]))
    with pytest.raises(StateError, match=r"world\.changes\.jsonl:1: format"):
        read_world(state / "world.json")


# --- kills at the moments that matter, in real processes --------------------------------------

SCRIPT = """
import os, signal, sys
from pathlib import Path
from controller.providers import local, worldlog
from controller.providers.local import LocalProvider

state, moment = Path(sys.argv[1]), sys.argv[2]
gid = lambda n: f"00000000-0000-4000-8000-{n:012d}"

def kill(*_args):
    os.kill(os.getpid(), signal.SIGKILL)

provider = LocalProvider(state)
provider.update_quantity(gid(1), gid(101), 5)
print("reported 1", flush=True)
if moment == "mid-append":  # half of the next batch written, then killed
    real_write = os.write
    def torn(fd, data):
        real_write(fd, bytes(data[: len(data) // 2]))
        kill()
    worldlog.os.write = torn
provider.update_quantity(gid(2), gid(102), 6)
print("reported 2", flush=True)
# Compaction (on close): the folded_into line, world.json replaced, the log removed.
if moment == "mid-folded-line":
    def torn_line(fd, data):
        os.write(fd, bytes(data[: len(data) // 2]))
        kill()
    worldlog._write_durably = torn_line
elif moment == "folded-line-written":  # killed before world.json is replaced
    local.atomic_write = kill
elif moment == "mid-compaction":  # world.json replaced, killed before the log is removed
    local.remove_log = kill
if moment != "before-compaction":
    provider.close()
kill()  # before compaction: the log holds the changes
"""


MOMENTS = [
    "mid-append",
    "before-compaction",
    "mid-folded-line",
    "folded-line-written",
    "mid-compaction",
]


@pytest.mark.parametrize("moment", MOMENTS)
def test_sigkill_around_the_log_loses_no_reported_change_and_doubles_none(
    tmp_path: Path, moment: str
) -> None:
    state = seeded(tmp_path)
    killed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), str(state), moment],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr
    reported = {int(line.split()[1]) for line in killed.stdout.splitlines()}
    after = quantities(state)  # readable, with what was reported
    assert {c: after[c] for c in reported} == {c: {1: 5, 2: 6}[c] for c in reported}
    if moment == "mid-append":
        assert reported == {1} and after[2] == 1  # the torn batch was never reported
        assert not log_lines(state)[-1].endswith(b"\n")
    else:
        assert reported == {1, 2}
    world_sha256 = hashlib.sha256((state / "world.json").read_bytes()).hexdigest()
    last = log_lines(state)[-1]
    if moment == "mid-folded-line":
        assert last.startswith(b'{"folded_into"') and not last.endswith(b"\n")
    if moment == "folded-line-written":  # the file is still the one the log applies to
        assert json.loads(last)["folded_into"] != world_sha256 and in_file(state)[1] == 1
    if moment == "mid-compaction":  # the file holds the changes; the log says so
        assert json.loads(last) == {"folded_into": world_sha256} and in_file(state) == after
    # The next run (another process) folds the log in and converges.
    result = run("world", "add-customer", gid(40), "--name", "Later", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (state / "world.changes.jsonl").exists()
    assert in_file(state) == after and quantities(state) == after
    assert gid(40) in read_world(state / "world.json").customers_by_id


def test_world_init_force_drops_the_log_of_the_world_it_replaces(tmp_path: Path) -> None:
    """A new empty world may have the very bytes the log was written against (same partner):
    the log goes with the world it completed, or it would come back over the new one."""
    from controller.current import Customer, Partner
    from controller.providers.local import add_customer, init_world

    state = tmp_path / "state"
    partner = Partner(id=PARTNER, name="Example Partner")
    init_world(state, partner, force=False)
    provider = LocalProvider(state)
    provider.change(lambda w: add_customer(w, Customer(id=gid(7), name="Added")))
    assert (state / "world.changes.jsonl").exists()
    init_world(state, partner, force=True)
    assert read_world(state / "world.json").customers == ()


def test_the_emulator_answers_500_naming_both_files_when_world_json_is_replaced_under_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("controller.emulator.COMPACT_WHEN_QUIET", 600)  # the log stays meanwhile
    state = seeded(tmp_path)
    original = (state / "world.json").read_bytes()
    emulator = Emulator(state)
    target = f"/v1/customers/{gid(1)}/subscriptions/{gid(101)}"
    status, body, _ = emulator.handle("GET", target, AUTH, None)
    etag = body["attributes"]["etag"]
    status, _, _ = emulator.handle("PATCH", target, {**AUTH, "if-match": etag}, {"quantity": 4})
    assert status == 200 and (state / "world.changes.jsonl").exists()
    (state / "world.json").write_bytes(original.replace(b'"Customer 2"', b'"Renamed"'))
    status, body, _ = emulator.handle("GET", "/v1/customers", AUTH, None)
    assert status == 500
    assert "world.json lacks the log's changes to 1 customer" in body["description"]
    (state / "world.changes.jsonl").unlink()  # the changes dropped: it serves the file
    status, body, _ = emulator.handle("GET", target, AUTH, None)
    assert status == 200 and body["quantity"] == 1
