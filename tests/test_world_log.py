"""The local world's change log (``world.changes.jsonl``): each batch appended as one line and
fsynced; replayed over ``world.json`` by every reader; folded into ``world.json`` (compaction)
past its bound, on close, when the emulator is quiet, and by the next writer after a kill; a
torn last line ignored; a log of another ``world.json`` ignored; a damaged or hostile log one
line naming the file and line. Kills at the exact moments that matter run in real processes."""

from __future__ import annotations

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
from controller.errors import StateError
from controller.providers import local
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


def test_a_log_of_another_world_json_is_ignored(tmp_path: Path) -> None:
    """Left by a compaction killed before it removed the log (its changes are in the file), or
    world.json replaced since (an edit, a checkout): never replayed over a newer world."""
    state = seeded(tmp_path)
    LocalProvider(state).update_quantity(gid(1), gid(101), 5)
    log = (state / "world.changes.jsonl").read_bytes()
    compacted = LocalProvider(state)
    compacted.update_quantity(gid(2), gid(102), 6)  # first write: whole, the log removed
    (state / "world.changes.jsonl").write_bytes(log)  # ... as if the removal never happened
    assert quantities(state) == changed(c1=5, c2=6)
    path = state / "world.json"
    path.write_text(path.read_text().replace('"quantity": 5', '"quantity": 9'))  # a later edit
    assert quantities(state)[1] == 9


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
elif moment == "mid-compaction":  # world.json replaced, killed before the log is removed
    local.remove_log = kill
provider.update_quantity(gid(2), gid(102), 6)
print("reported 2", flush=True)
if moment == "mid-compaction":
    provider.close()
kill()  # before compaction: the log holds the changes
"""


@pytest.mark.parametrize("moment", ["mid-append", "before-compaction", "mid-compaction"])
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
