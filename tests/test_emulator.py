"""The emulator: the same rules as the local world, over HTTP, with a bad day's faults; and the
client converging through them. Secrets never leave the environment."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import TOKEN, start_emulator
from helpers import PARTNER, run, snapshot

from controller.emulator import Emulator, Knobs, etag_of
from controller.providers.local import read_world

CONTOSO = "36b8a5ac-453b-4f02-9061-e10e8bddc18a"
BASIC = "354ec307-e470-40d2-9563-5fed10cb4044"
AUTH = {"authorization": "Bearer t"}


def test_requests_need_a_bearer_token(example: Path) -> None:
    emulator = Emulator(example / "state", Knobs(token="right"))
    assert emulator.handle("GET", "/v1/customers", {}, None)[0] == 401
    assert (
        emulator.handle("GET", "/v1/customers", {"authorization": "Bearer wrong"}, None)[0] == 401
    )
    assert (
        emulator.handle("GET", "/v1/customers", {"authorization": "Bearer right"}, None)[0] == 200
    )


def test_the_emulator_refuses_what_the_rules_refuse(example: Path) -> None:
    emulator = Emulator(example / "state")
    status, body, _ = emulator.handle(
        "PATCH", f"/v1/customers/{CONTOSO}", AUTH, {"relationshipToPartner": "none"}
    )
    assert status == 400 and body["code"] == "active_subscriptions"
    northwind = "3b9c8398-289a-4913-861d-2dafb70bf03c"
    status, body, _ = emulator.handle("GET", f"/v1/customers/{northwind}/subscriptions", AUTH, None)
    assert (status, body["code"]) == (403, 20002)
    status, body, _ = emulator.handle(
        "PATCH", f"/v1/customers/{northwind}", AUTH, {"relationshipToPartner": "none"}
    )
    assert (status, body["code"]) == (400, 3000)


def test_a_patch_needs_the_current_etag_and_a_retry_is_not_applied_twice(example: Path) -> None:
    emulator = Emulator(example / "state")
    path = f"/v1/customers/{CONTOSO}/subscriptions/{BASIC}"
    _, resource, _ = emulator.handle("GET", path, AUTH, None)
    stale = {**AUTH, "if-match": "nope", "ms-requestid": "r0"}
    assert emulator.handle("PATCH", path, stale, {**resource, "quantity": 30})[0] == 412
    fresh = {**AUTH, "if-match": resource["attributes"]["etag"], "ms-requestid": "r1"}
    first = emulator.handle("PATCH", path, fresh, {**resource, "quantity": 30})
    again = emulator.handle("PATCH", path, fresh, {**resource, "quantity": 30})  # same request id
    assert first == again and first[0] == 200
    world = read_world(example / "state" / "world.json")
    subscription = world.customers_by_id[CONTOSO].subscriptions_by_id[BASIC]
    assert subscription.quantity == 30 and first[1]["attributes"]["etag"] == etag_of(subscription)


def test_customer_list_pages(example: Path) -> None:
    emulator = Emulator(example / "state", Knobs(page_size=2))
    ids, headers = [], dict(AUTH)
    target = "/v1/customers?size=500"
    while True:
        status, body, _ = emulator.handle("GET", target, headers, None)
        assert status == 200
        ids += [c["id"] for c in body["items"]]
        following = body["links"].get("next")
        if not following:
            break
        target = "/v1" + following["uri"]
        headers = {**AUTH, **{h["key"].lower(): h["value"] for h in following["headers"]}}
    assert len(ids) == 5 == len(set(ids))


def test_the_client_converges_through_throttling_server_errors_and_lost_responses(
    tmp_path: Path,
) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from generate import generate

    generate(tmp_path, customers=12, subscriptions=3, remove=0.5, drift=0.5, seed=5)
    knobs = Knobs(
        throttle=0.15,
        server_errors=0.1,
        lost_responses=0.2,
        retry_after=0,
        page_size=5,
        seed=11,
        token=TOKEN,
    )
    stop, env = start_emulator(tmp_path / "state", knobs)
    try:
        args = ["--provider", "partner-center", "--allow-mass-removal", "--rate-limit", "0"]
        applied = run(*args, "--output", "json", cwd=tmp_path, env=env)
        assert applied.returncode == 0, applied.stderr
        assert {r["status"] for r in json.loads(applied.stdout)["results"]} == {"applied"}
        check = run(*args, "--dry-run", "--detailed-exitcode", cwd=tmp_path, env=env)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        stop()
    world = read_world(tmp_path / "state" / "world.json")
    for customer in world.customers:
        if customer.relationship == "none":
            assert all(s.status != "active" for s in customer.subscriptions)


def test_secrets_never_appear_in_output_or_state(example: Path) -> None:
    stop, env = start_emulator(example / "state", Knobs(token="another-token"))  # so 401s happen
    try:
        refused = run("--provider", "partner-center", "--dry-run", cwd=example, env=env)
        assert refused.returncode == 1 and "401" in refused.stderr
    finally:
        stop()
    stop, env = start_emulator(example / "state", Knobs(token=TOKEN))
    try:
        outputs = [
            run("--provider", "partner-center", *a, cwd=example, env=env)
            for a in (["--dry-run", "--output", "json"], ["--output", "markdown"], [])
        ]
        outputs.append(run("status", "--output", "json", cwd=example, env=env))
    finally:
        stop()
    for result in [refused, *outputs]:
        assert TOKEN not in result.stdout + result.stderr
    for content in snapshot(example / "state").values():
        assert TOKEN.encode() not in content


def test_the_emulator_command_serves_until_stopped(example: Path) -> None:
    import signal
    import subprocess

    from helpers import RECONCILE

    process = subprocess.Popen(
        [RECONCILE, "emulator", "--port", "0", "--page-size", "2"],
        cwd=example,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert "Partner Center emulator on http://127.0.0.1:" in line
        url = line.split(" on ")[1].split()[0]
        env = {
            "PARTNER_CENTER_BASE_URL": url,
            "PARTNER_CENTER_TENANT_ID": PARTNER,
            "PARTNER_CENTER_ACCESS_TOKEN": "x",
            "PATH": "/usr/bin:/bin",
        }
        result = run("--provider", "partner-center", "--dry-run", cwd=example, env=env)
        assert result.returncode == 0 and "1 to remove" in result.stdout
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
