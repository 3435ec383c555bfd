"""The parse cache: used only while a file's content is unchanged, never trusted over it."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import gid

from controller import spec as spec_module
from controller.errors import SpecError
from controller.spec import SpecCache, load_specs


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

    def counting(source):  # type: ignore[no-untyped-def]
        parsed.append(Path(source.name).name)
        return original(source)

    monkeypatch.setattr(spec_module, "_parse", counting)
    return parsed


def test_unchanged_files_come_from_the_cache(specs: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cache = tmp_path / "state" / ".cache" / "specs.json"
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
