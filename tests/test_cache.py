"""The parse cache: used only while a file's content is unchanged, never trusted over it."""

from __future__ import annotations

import hashlib
import hmac
import json
import tracemalloc
from pathlib import Path

import orjson
import pytest
from helpers import gid, run

from controller import spec as spec_module
from controller.errors import SpecError
from controller.spec import SpecCache, load_specs
from controller.speccache import cache_file


def write_customer(directory: Path, n: int, quantity: int = 1) -> Path:
    path = directory / f"c{n}.yaml"
    path.write_text(
        f"customers:\n  - id: {gid(n)}\n    name: C{n}\n    subscriptions:\n"
        f"      - id: {gid(n * 10)}\n        quantity: {quantity}\n"
    )
    return path


@pytest.fixture
def specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(SpecCache, "MIN_BYTES", 0)  # cache even these small files
    directory = tmp_path / "specs"
    directory.mkdir()
    for n in range(1, 4):
        write_customer(directory, n)
    return directory


def count_parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    parsed: list[str] = []
    original = spec_module._parse

    def counting(source, *args):  # type: ignore[no-untyped-def]
        parsed.append(Path(source.name).name)
        return original(source, *args)

    monkeypatch.setattr(spec_module, "_parse", counting)
    return parsed


def test_unchanged_files_come_from_the_cache(specs: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cache = tmp_path / "cache" / "specs.json"
    first = load_specs(specs, cache=cache)
    assert cache.exists()
    parsed = count_parses(monkeypatch)
    assert load_specs(specs, cache=cache) == first
    assert parsed == []
    write_customer(specs, 2, quantity=7)  # an edit: only that file is parsed again
    again = load_specs(specs, cache=cache)
    assert parsed == ["c2.yaml"]
    assert again.customers[gid(2)].subscriptions[0].quantity == 7  # type: ignore[index]


def test_a_damaged_or_foreign_cache_is_ignored(specs: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cache = tmp_path / "specs.json"
    expected = load_specs(specs, cache=cache)
    for damage in (b"{not json", b'{"version": "0/other", "files": {}}', b"[]"):
        cache.write_bytes(damage)
        parsed = count_parses(monkeypatch)
        assert load_specs(specs, cache=cache) == expected
        assert sorted(parsed) == ["c1.yaml", "c2.yaml", "c3.yaml"]
        monkeypatch.undo()
        monkeypatch.setattr(SpecCache, "MIN_BYTES", 0)


def test_a_cached_file_turned_invalid_reports_file_and_line(specs: Path, tmp_path: Path) -> None:
    cache = tmp_path / "specs.json"
    load_specs(specs, cache=cache)
    before = cache.read_bytes()
    (specs / "c3.yaml").write_text(
        (specs / "c3.yaml").read_text().replace("quantity: 1", "quantity: 0")
    )
    with pytest.raises(SpecError) as caught:
        load_specs(specs, cache=cache)
    assert str(caught.value).startswith(
        f"{specs / 'c3.yaml'}:6: customers[0].subscriptions[0].quantity"
    )
    assert cache.read_bytes() == before  # nothing is written when the specs are invalid


def test_small_specs_write_no_cache(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    write_customer(specs, 1)
    load_specs(specs, cache=tmp_path / "cache.json")
    assert not (tmp_path / "cache.json").exists()


def _plant_poisoned_cache(example: Path, target: Path) -> None:
    """What a pull request could commit: a cache entry whose sha256 matches ``target`` (so it is
    served instead of the file) but whose spec drops the customer."""
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    poisoned = {
        "version": SpecCache.VERSION,
        "files": {str(target.relative_to(example)): {"sha256": digest, "spec": {"customers": []}}},
    }
    cache = example / "state" / ".cache" / "specs.json"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(orjson.dumps(poisoned))


def test_a_cache_committed_to_the_checkout_has_no_effect(example: Path) -> None:
    contoso = example / "specs" / "customers" / "contoso.yaml"
    before = run("--dry-run", "--output", "json", cwd=example)
    _plant_poisoned_cache(example, contoso)
    after = run("--dry-run", "--output", "json", cwd=example)
    assert after.returncode == before.returncode == 0, after.stderr
    plan = json.loads(after.stdout)
    assert not [
        a
        for a in plan["actions"]
        if a["type"] == "remove_relationship"
        and a["customer_id"] == "36b8a5ac-453b-4f02-9061-e10e8bddc18a"
    ]
    assert plan == json.loads(before.stdout)


def _write_entry(cache: Path, specs: Path, name: str, spec: object, key: bytes) -> None:
    """A cache file holding one entry for ``name``, authenticated with ``key``."""
    path = specs / name
    digest = hashlib.sha256(path.read_bytes()).hexdigest().encode()
    header = orjson.dumps({"version": SpecCache.VERSION, "specs_dir": str(specs.resolve())})
    entry = b"\t".join((orjson.dumps(str(path)), digest, orjson.dumps(spec)))
    body = header + b"\n" + entry + b"\n"
    cache.write_bytes(hmac.new(key, body, hashlib.sha256).hexdigest().encode() + b"\n" + body)


def test_the_cache_lives_in_the_users_cache_directory_keyed_by_the_specs_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    here = cache_file(Path("specs"), {})
    assert here is not None and here.parent == tmp_path / "xdg" / "partner-reconciler"
    assert cache_file(tmp_path / "specs", {}) == here  # the absolute directory is the key
    assert cache_file(tmp_path / "other", {}) != here
    moved = cache_file(Path("specs"), {"PARTNER_RECONCILER_CACHE_DIR": "/var/cache/x"})
    assert moved is not None and moved.parent == Path("/var/cache/x")
    assert cache_file(Path("specs"), {"PARTNER_RECONCILER_NO_CACHE": "1"}) is None


def test_a_forged_entry_in_the_cache_directory_is_not_believed(specs: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "specs.json"
    expected = load_specs(specs, cache=cache)
    assert oct((cache.parent / "specs-cache.key").stat().st_mode & 0o777) == "0o600"
    _write_entry(cache, specs, "c2.yaml", {"customers": []}, key=b"not the machine's key" * 2)
    assert load_specs(specs, cache=cache) == expected


@pytest.mark.parametrize(
    "spec",
    [
        {"customers": []},  # stands for a changed parser: still believed, the MAC is right
        {"customers": [{"id": gid(2), "name": "C2", "subscriptions": [{"id": gid(20)}] * 2}]},
        {
            "customers": [
                {"id": gid(2), "name": "C2", "subscriptions": [{"id": gid(20), "quantity": 0}]}
            ]
        },
        {"customers": "not a list"},
        ["not", "a", "mapping"],
    ],
    ids=["authentic", "duplicate subscriptions", "out of bounds", "wrong type", "wrong shape"],
)
def test_a_cached_spec_passes_the_checks_of_a_parsed_one(
    specs: Path, tmp_path: Path, spec: object
) -> None:
    cache = tmp_path / "cache" / "specs.json"
    expected = load_specs(specs, cache=cache)
    key = (cache.parent / "specs-cache.key").read_bytes()
    _write_entry(cache, specs, "c2.yaml", spec, key)  # type: ignore[arg-type]
    loaded = load_specs(specs, cache=cache)
    if spec == {"customers": []}:  # authentic and valid: served (this is what the key is for)
        assert gid(2) not in loaded.customers
    else:  # fails a check: not served, the file is parsed
        assert loaded == expected


def test_a_key_others_can_read_means_no_cache(specs: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cache = tmp_path / "cache" / "specs.json"
    load_specs(specs, cache=cache)
    (cache.parent / "specs-cache.key").chmod(0o644)
    parsed = count_parses(monkeypatch)
    load_specs(specs, cache=cache)
    assert sorted(parsed) == ["c1.yaml", "c2.yaml", "c3.yaml"]


def test_an_entry_is_held_in_about_its_own_size() -> None:
    """50,000 entries are held at once: each costs its length, not orjson's buffer (which can
    hold four times as much)."""
    cache = SpecCache(None)
    document = orjson.dumps({"customers": [{"id": gid(n), "name": f"C{n}"} for n in range(8)]})
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for n in range(200):
        cache.put(f"specs/c{n}.yaml", hashlib.sha256(b"%d" % n).hexdigest(), document)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert held < 200 * (len(document) + 300)
