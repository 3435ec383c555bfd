"""Names are untrusted text: a customer's name, a service's error message or a hand-made plan file
must not act on the terminal (escapes, bidi overrides) nor on a pull-request comment (HTML,
markdown). Each test shows the attack first."""

from __future__ import annotations

import json
import logging
import re
import sys
import unicodedata
from pathlib import Path

from helpers import customer, desired, records, run, sub, want, want_sub, world

from controller.document import ActionResult
from controller.plan import plan
from controller.render import Outcome, markdown, text
from controller.status import Status, render_status
from controller.untrusted import SafeFormatter, printable

# Erase the line and move up: printed raw, it rewrites what was shown before the "apply?" prompt.
REWRITE = "\x1b[2K\x1b[1A"
RLO = "\u202e"  # right-to-left override: "Contoso\u202eevil" reads backwards on screen
HOSTILE = f"Evil{REWRITE}Corp{RLO}dlrow\u2066x\u2069\x85\x07"
RAW = ("\x1b", "\u202e", "\u2066", "\u2069", "\x85", "\x07")


def _hostile_plan() -> object:
    current = world(
        customer(1, sub(11, name=HOSTILE), name=HOSTILE),  # to be removed
        customer(2, sub(21), name=HOSTILE),  # in the specs under another name: a warning
        customer(3, name=HOSTILE),  # protected, not in the specs: a warning naming it
    )
    return plan(
        desired(want(2, want_sub(21), name="Fine")),
        current,
        records(managed=(1, 2, 3), protected=(3,)),
    )


def test_the_attack_is_real_printed_raw_it_would_reach_the_terminal() -> None:
    assert all(ch in HOSTILE for ch in RAW)
    assert not any(ch in printable(HOSTILE) for ch in RAW)
    assert printable(HOSTILE) == ("Evil\\x1b[2K\\x1b[1ACorp\\u202edlrow\\u2066x\\u2069\\x85\\x07")


def test_text_plan_shows_control_and_bidi_characters_escaped() -> None:
    hostile = _hostile_plan()
    rendered = text.render_plan(hostile)  # type: ignore[arg-type]
    assert "Evil\\x1b[2K" in rendered  # the name is there, visibly
    assert not any(ch in rendered for ch in RAW)
    coloured = text.render_plan(hostile, colour=True)  # type: ignore[arg-type]
    assert "\x1b[2K" not in coloured and RLO not in coloured  # only our own colour codes


def test_text_outcome_and_progress_lines_escape_names_and_service_errors() -> None:
    hostile = _hostile_plan()
    results = tuple(
        ActionResult(id=a.id, status="failed", error=f"HTTP 400: {REWRITE}ok{RLO}")
        for a in hostile.actions  # type: ignore[attr-defined]
    )
    rendered = text.render_outcome(Outcome(hostile, results, hostile))  # type: ignore[arg-type]
    assert "HTTP 400: \\x1b[2K" in rendered
    assert not any(ch in rendered for ch in RAW)
    line = text.result_line(hostile.actions[0], results[0], hostile.names)  # type: ignore[attr-defined]
    assert not any(ch in line for ch in RAW)


def test_warnings_and_saved_plan_values_are_escaped() -> None:
    hostile = _hostile_plan()
    assert any(HOSTILE in w for w in hostile.warnings)  # type: ignore[attr-defined]
    action = hostile.actions[0].model_copy(  # type: ignore[attr-defined]
        update={"id": f"a1{REWRITE}", "reason": f"why{RLO}", "to": f"x{REWRITE}"}
    )
    forged = type(hostile)(fingerprint="f", actions=(action,), warnings=(f"w{REWRITE}",))
    for rendered in (text.render_plan(forged), markdown.render_plan(forged)):
        assert not any(ch in rendered for ch in RAW), rendered


def test_log_lines_are_escaped() -> None:
    record = logging.LogRecord("reconcile", logging.INFO, "x", 1, "%s", (HOSTILE,), None)
    assert not any(ch in SafeFormatter("%(message)s").format(record) for ch in RAW)


def test_status_escapes_names_links_and_journaled_errors() -> None:
    pending = {
        "customer_id": "00000000-0000-4000-8000-000000000001",
        "name": HOSTILE,
        "requested_at": "2026-01-01T00:00:00Z",
        "invitation_url": f"https://x/{REWRITE}",
    }
    from controller.records import PendingRequest
    from controller.status import LastApply

    run_ = LastApply("r", "t", "t", 1, 0, 1, 0, (f"a1 suspend: {REWRITE}",))
    rendered = render_status(Status((PendingRequest(**pending),), run_), "text")
    assert "Evil\\x1b[2K" in rendered and not any(ch in rendered for ch in RAW)


def test_every_control_format_and_separator_character_is_escaped() -> None:
    """The pattern in ``untrusted`` lists the ranges of Unicode's Cc, Cf, Zl, Zp and Cs
    categories; this checks it against the Unicode database, character by character."""
    unsafe = {"Cc", "Cf", "Zl", "Zp", "Cs"}
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        expected = unicodedata.category(char) in unsafe and char not in "\u200c\u200d"
        assert (printable(char) != char) == expected, hex(code)


def test_markdown_comment_cannot_be_hidden_or_reformatted_by_a_name() -> None:
    current = world(
        customer(1, sub(11, name="x | y `z`"), name="Evil <!-- hide everything after"),
        customer(2, sub(21), name="[click](https://evil.example) **now** @team"),
    )
    hostile = plan(desired(want(3)), current, records(managed=(1,)))
    rendered = markdown.render_plan(hostile)
    assert rendered.count("<!--") == 1  # only the comment's own marker
    assert "Evil &lt;\\!-- hide everything after" in rendered
    assert "x \\| y \\`z\\`" in rendered  # a table cell stays one cell
    assert "\\[click\\](https://evil.example) \\*\\*now\\*\\* \\@team" in rendered
    rows = [line for line in rendered.splitlines() if re.match(r"\| a\d", line)]
    assert rows
    for row in rows:
        assert len(re.findall(r"(?<!\\)\|", row)) == 8  # seven cells, no more


def test_markdown_warnings_and_errors_are_escaped_too() -> None:
    current = world(customer(2, sub(21), name="<!-- in Partner Center"))
    hostile = plan(desired(want(2, want_sub(21), name="Fine")), current, records(managed=(2,)))
    assert hostile.warnings
    failed = (ActionResult(id="a1", status="failed", error="<script>\n# heading"),)
    rendered = markdown.render_outcome(Outcome(hostile, failed, hostile))
    assert rendered.count("<!--") == 1 and "<script>" not in rendered
    assert "\n# heading" not in rendered


def test_cli_dry_run_escapes_hostile_names_in_text_and_markdown(example: Path) -> None:
    world_file = example / "state" / "world.json"
    document = json.loads(world_file.read_text())
    for entry in document["customers"]:
        entry["name"] = f"{entry['name']}{REWRITE}<!--{RLO}"
    world_file.write_text(json.dumps(document))
    for output in ("text", "markdown"):
        result = run("--dry-run", "--output", output, cwd=example)
        assert result.returncode == 0, result.stderr
        assert "Fabrikam Inc" in result.stdout
        assert not any(ch in result.stdout + result.stderr for ch in RAW)
    markdown_out = run("--dry-run", "--output", "markdown", cwd=example).stdout
    assert markdown_out.count("<!--") == 1


def test_import_keeps_a_hostile_name_inside_its_comment() -> None:
    """A name is written as a comment in an imported spec file: a line break in it would end
    the comment and write YAML of the attacker's choosing (here, an extra customer)."""
    import yaml

    from controller.importer import render_customer

    injected = "Evil\ncustomers:\n  - id: 00000000-0000-4000-8000-000000000009\n    name: X"
    hostile = customer(1, sub(11, name=f"Pro\r\n  - id: {injected}"), name=injected)
    document = yaml.safe_load(render_customer(hostile, schema_ref="spec.schema.json"))
    [listed] = document["customers"]
    assert listed["name"] == injected and [s["id"] for s in listed["subscriptions"]] == [
        "00000000-0000-4000-8000-000000000011"
    ]
