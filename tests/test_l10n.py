"""Translations: every message of the source is in the zh-TW catalogue, the compiled catalogue is
the one of the .po, and plans, help and errors read in Partner Center's own zh-TW terms while the
JSON plan stays as it is."""

from __future__ import annotations

import json
import os
import re
import string
import sys
from pathlib import Path

import pytest
from conftest import ROOT, Runner
from helpers import run

sys.path.insert(0, str(ROOT / "scripts"))
import l10n  # noqa: E402
from babel.messages.pofile import read_po  # noqa: E402


def zh_tw(domain: str = l10n.DOMAIN) -> object:
    with l10n.po_path("zh_TW", domain).open("rb") as file:
        return read_po(file, locale="zh_TW")


def fields(message: str) -> list[str]:
    """The placeholders of a message: {} fields (by position or name) and % conversions."""
    brace = [
        f"{n}" for _text, n, _spec, _conv in string.Formatter().parse(message) if n is not None
    ]
    named = sorted(n for n in brace if n and not n.isdigit())
    positional = len([n for n in brace if not n or n.isdigit()])
    percent = re.findall(r"%[sdgf]", message)
    return [*named, str(positional), *percent]


@pytest.mark.parametrize("domain", ["partner-reconciler", "click"])
def test_every_message_of_the_source_is_translated(domain: str) -> None:
    """Extracted from the source (and from the installed click, for its own words: "Usage:",
    "Error:") with Babel now, so a new message without a translation fails."""
    catalogue = zh_tw(domain)
    problems = []
    for message in l10n.templates()[domain]:
        if not message.id:
            continue
        translated = catalogue.get(message.id)  # type: ignore[attr-defined]
        strings = translated.string if translated is not None else None
        texts = strings if isinstance(strings, tuple | list) else [strings]
        if translated is None or not all(texts) or translated.fuzzy:
            problems.append(f"not translated: {message.id!r}")
            continue
        original = message.id if isinstance(message.id, str) else message.id[1]
        if any(fields(t) != fields(original) for t in texts):
            problems.append(f"placeholders differ: {message.id!r} -> {texts!r}")
    assert not problems, "\n".join(problems) + "\n(run python scripts/l10n.py and translate)"


@pytest.mark.parametrize("domain", ["partner-reconciler", "click"])
def test_the_compiled_catalogue_is_the_one_of_the_po(domain: str) -> None:
    mo = l10n.po_path("zh_TW", domain).with_suffix(".mo")
    assert mo.read_bytes() == l10n.compiled(zh_tw(domain)), "run python scripts/l10n.py"  # type: ignore[arg-type]


def test_clicks_own_words_are_translated_and_lang_goes_anywhere(example: Path) -> None:
    wrong = run("--lang", "zh-TW", "--max-stale", "many", cwd=example)
    assert wrong.returncode == 1
    assert "用法： reconcile" in wrong.stderr and "錯誤：'--max-stale' 的值無效" in wrong.stderr
    unknown = run("status", "--bogus", "--lang", "zh-TW", cwd=example)
    assert "錯誤：沒有 '--bogus' 這個選項。" in unknown.stderr
    after = run("status", "--lang", "zh-TW", cwd=example)  # --lang after the subcommand
    assert after.returncode == 0, after.stderr
    assert "待接受的關係要求" in after.stdout
    helped = run("world", "advance", "--help", "--lang", "zh-TW", cwd=example).stdout
    assert "顯示此說明並結束。" in helped and "\n選項:\n" in helped
    english = run("status", "--bogus", cwd=example, env={**os.environ, "LANGUAGE": "en"})
    assert "Error: No such option '--bogus'." in english.stderr


def test_the_catalogues_are_packaged() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"locale/*/LC_MESSAGES/*.mo"' in pyproject


def test_plans_read_in_partner_centers_zh_tw_terms(example: Path, reconcile: Runner) -> None:
    plan = reconcile("--lang", "zh-TW", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    for term in ("暫停訂閱", "移除經銷商關係", "要求建立關係", "客戶已從規格中移除", "計畫："):
        assert term in plan.stdout, term
    assert "suspend subscription" not in plan.stdout
    english = reconcile("--dry-run", "--output", "json").stdout
    chinese = reconcile("--lang", "zh-TW", "--dry-run", "--output", "json").stdout
    assert json.loads(chinese) == json.loads(english)  # field values are never translated


def test_the_language_comes_from_the_locale_too(example: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES")}
    for variable, value in (("LANG", "zh_TW.UTF-8"), ("LANGUAGE", "zh_TW:en"), ("LC_ALL", "zh-TW")):
        result = run("--dry-run", cwd=example, env={**env, variable: value})
        assert "暫停訂閱" in result.stdout, variable
    assert "suspend subscription" in run("--dry-run", cwd=example, env={**env, "LANG": "C"}).stdout


@pytest.mark.parametrize("args", [["--help"], ["world", "--help"], ["status", "--help"]])
def test_help_is_translated(example: Path, args: list[str]) -> None:
    result = run("--lang", "zh-TW", *args, cwd=example)
    assert result.returncode == 0, result.stderr
    assert re.search(r"[\u4e00-\u9fff]{4}", result.stdout), result.stdout


def test_errors_and_progress_are_translated(example: Path) -> None:
    refused = run("--lang", "zh-TW", "--max-removals", "0", cwd=example)
    assert refused.returncode == 1
    assert "錯誤：此計畫會移除 1 個經銷商關係，超過 --max-removals 0" in refused.stderr
    applied = run("--lang", "zh-TW", cwd=example)
    assert applied.returncode == 0, applied.stderr
    assert "正在套用 6 個動作" in applied.stderr
    assert "套用：已套用 6 個，共 6 個" in applied.stdout
    status = run("--lang", "zh-TW", "status", cwd=example)
    assert "待接受的關係要求" in status.stdout


def test_no_message_hides_in_an_f_string() -> None:
    """Babel does not look inside f-strings: a ``_()`` there would never reach the catalogue."""
    hidden = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "controller").rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if re.search(r"\{(_|ngettext|english)\(", line)
    ]
    assert not hidden, hidden
