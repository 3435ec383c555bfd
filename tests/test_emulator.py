"""The emulator: the same rules as the local world, over HTTP, with a bad day's faults; and the
client converging through them. Secrets never leave the environment."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from conftest import TOKEN, StateStore, start_emulator
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
    status, error, _ = emulator.handle("PATCH", path, stale, {**resource, "quantity": 30})
    assert (status, error["code"], error["description"]) == (400, 2055, "Etag is no longer valid")
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
    assert len(ids) == 6 == len(set(ids))


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


def test_a_seeded_emulator_meets_the_same_faults_in_any_order_of_requests(example: Path) -> None:
    """Concurrent requests arrive in any order; a seeded run must still be reproducible."""
    knobs = Knobs(throttle=0.3, server_errors=0.3, seed=3, token=TOKEN)
    headers = {"authorization": f"Bearer {TOKEN}"}
    targets = [f"/v1/customers?size={n}" for n in range(1, 13)] * 3

    def statuses(order: list[str]) -> dict[tuple[str, int], int]:
        emulator, seen = Emulator(example / "state", knobs), dict[str, int]()
        answers = {}
        for target in order:
            seen[target] = seen.get(target, 0) + 1
            answers[(target, seen[target])] = emulator.handle("GET", target, headers, None)[0]
        return answers

    forward = statuses(targets)
    assert statuses(list(reversed(targets))) == forward
    assert {429, 503, 200} <= set(forward.values())


def test_secrets_never_appear_in_output_or_state(example: Path, state_store: StateStore) -> None:
    state_store.use(example)
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
    assert "run_started" in state_store.rows() or state_store.kind == "file"
    assert TOKEN not in state_store.rows()


def test_the_emulator_command_serves_until_stopped(example: Path) -> None:
    import signal
    import subprocess

    from helpers import RECONCILE

    process = subprocess.Popen(
        [RECONCILE, "emulator", "--port", "0", "--page-size", "2"]
        + ["--subscription-page-size", "1", "--slow-changes", "2"],
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


# --- the service as it is today: new commerce, Azure, its codes and bodies ----------------------


def nce_world(tmp_path: Path) -> Path:
    """A world with a legacy, three new-commerce (one add-on, one suspended by the partner) and
    an Azure plan with active Azure subscriptions, and open reservations."""
    from helpers import DAY, NOW, azure_plan, customer, nce, sub, world

    from controller.providers.local import render_world

    state = tmp_path / "state"
    state.mkdir()
    current = world(
        customer(
            1,
            sub(10, quantity=4),
            nce(11, quantity=5, cancel_until=NOW + DAY, refundable=2),
            nce(12, parent=11),
            nce(13, "suspended", suspended_by="partner", auto_renew=None),
            azure_plan(14, active=2),
            reservations=3,
        ),
        now=NOW,
    )
    (state / "world.json").write_text(render_world(current))
    return state


def test_new_commerce_items_carry_the_service_fields_and_no_etag(tmp_path: Path) -> None:
    from helpers import gid

    emulator = Emulator(nce_world(tmp_path))
    status, body, _ = emulator.handle("GET", f"/v1/customers/{gid(1)}/subscriptions", AUTH, None)
    items = {item["id"]: item for item in body["items"]}
    legacy, window, addon, suspended, plan = (items[gid(n)] for n in (10, 11, 12, 13, 14))
    assert "etag" in legacy["attributes"] and "productType" not in legacy
    assert window["productType"]["id"] == "OnlineServicesNCE" and "etag" not in window["attributes"]
    assert window["commitmentEndDate"].endswith("Z") and window["autoRenewEnabled"] is True
    assert window["refundOptions"] == [{"type": "Full", "expiresAt": "2026-03-02T12:00:00Z"}]
    assert window["refundableQuantity"]["totalQuantity"] == 2
    assert addon["parentSubscriptionId"] == gid(11) and addon["refundOptions"] == []
    assert suspended["suspensionReasons"] == ["CustomerCancellation"]
    assert "autoRenewEnabled" not in suspended  # unknown in the world: not shown
    assert plan["productType"] == {"id": "Azure", "displayName": "Azure"}


def test_the_client_sees_through_the_emulator_what_the_local_world_holds(tmp_path: Path) -> None:
    from controller.providers.local import LocalProvider
    from controller.providers.partnercenter import PartnerCenterProvider

    state = nce_world(tmp_path)
    stop, env = start_emulator(state, Knobs(token=TOKEN, page_size=1, subscription_page_size=2))
    try:
        provider = PartnerCenterProvider.from_env(env)
        observed = provider.observe()
    finally:
        stop()
    local = LocalProvider(state).observe()
    assert [c.model_dump() for c in observed.customers] == [c.model_dump() for c in local.customers]
    assert observed.now == local.now  # the service's clock (Date) is the world's own
    assert observed.customers[0].azure_reservations_open == 3  # entitlements route
    assert observed.customers[0].subscriptions[4].azure_subscriptions_active == 2


def test_reservations_are_counted_the_same_with_or_without_azure(tmp_path: Path) -> None:
    from helpers import customer, nce, world

    from controller.providers.local import render_world
    from controller.providers.partnercenter import PartnerCenterProvider

    state = tmp_path / "state"
    state.mkdir()
    current = world(customer(1, nce(11), reservations=2), customer(2, reservations=1))
    (state / "world.json").write_text(render_world(current))
    stop, env = start_emulator(state, Knobs(token=TOKEN))
    try:
        observed = PartnerCenterProvider.from_env(env).observe()
    finally:
        stop()
    assert [c.azure_reservations_open for c in observed.customers] == [2, 1]
    assert [len(c.subscriptions) for c in observed.customers] == [1, 0]  # never listed


def loopback_client(env: dict[str, str]):  # type: ignore[no-untyped-def]
    from controller.providers.partnercenter import PartnerCenterProvider, Polling, Settings

    return PartnerCenterProvider(
        Settings.from_env(env), lambda: TOKEN, polling=Polling(attempts=20, interval=0.01)
    )


def test_cancel_and_auto_renewal_through_the_emulator_follow_the_rules(tmp_path: Path) -> None:
    import pytest
    from helpers import gid

    from controller.errors import PermanentProviderError

    state = nce_world(tmp_path)
    stop, env = start_emulator(state, Knobs(token=TOKEN))
    try:
        provider = loopback_client(env)
        with pytest.raises(PermanentProviderError) as alone:
            provider.set_auto_renew(gid(1), gid(12), False)  # an add-on follows its base
        provider.set_auto_renew(gid(1), gid(11), False)  # the base: its add-on with it
        after_renewal = read_world(state / "world.json").customers[0].subscriptions_by_id
        provider.reactivate_subscription(gid(1), gid(13))  # auto-renewal left as it was
        provider.cancel_subscription(gid(1), gid(11))  # inside its window
        with pytest.raises(PermanentProviderError) as caught:
            provider.cancel_subscription(gid(1), gid(13))  # past it
    finally:
        stop()
    assert alone.value.code == "addon_follows_base"
    assert after_renewal[gid(12)].auto_renew is False
    subscriptions = read_world(state / "world.json").customers[0].subscriptions_by_id
    assert subscriptions[gid(11)].status == subscriptions[gid(12)].status == "deleted"
    assert subscriptions[gid(13)].auto_renew is None and "HTTP 400" in str(caught.value)


def test_suspending_new_commerce_through_the_emulator_turns_auto_renewal_off(
    tmp_path: Path,
) -> None:
    """Partner Center turns a new-commerce subscription's auto-renewal off when it is suspended
    and leaves it off when it is reactivated (learn.microsoft.com/partner-center/
    create-a-new-subscription, "Suspend a subscription"): the client sees it so."""
    from helpers import gid

    state = nce_world(tmp_path)
    stop, env = start_emulator(state, Knobs(token=TOKEN))
    try:
        provider = loopback_client(env)
        provider.suspend_subscription(gid(1), gid(11))
        suspended = provider.observe().customers[0].subscriptions_by_id
        provider.reactivate_subscription(gid(1), gid(11))
        back = provider.observe().customers[0].subscriptions_by_id
    finally:
        stop()
    assert (suspended[gid(11)].status, suspended[gid(11)].auto_renew) == ("suspended", False)
    assert suspended[gid(12)].auto_renew is False  # its add-on with it
    assert (back[gid(11)].status, back[gid(11)].auto_renew) == ("active", False)


def test_a_patch_without_auto_renewal_turns_it_off_so_the_client_sends_the_whole_resource(
    tmp_path: Path,
) -> None:
    """Partner Center: a PATCH whose body lacks ``autoRenewEnabled`` turns auto-renewal off
    (learn.microsoft.com/partner-center/developer/update-a-subscription-by-id); the emulator
    does the same, and the client, which PATCHes the whole resource as read, keeps it on."""
    from helpers import gid

    state = nce_world(tmp_path)
    emulator = Emulator(state)
    path = f"/v1/customers/{gid(1)}/subscriptions/{gid(11)}"
    status, body, _ = emulator.handle("PATCH", path, AUTH, {"quantity": 6})
    assert (status, body["quantity"], body["autoRenewEnabled"]) == (200, 6, False)
    emulator.handle("PATCH", path, AUTH, {"autoRenewEnabled": True})
    stop, env = start_emulator(state, Knobs(token=TOKEN))
    try:
        provider = loopback_client(env)
        provider.update_quantity(gid(1), gid(11), 7)
        after = provider.observe().customers[0].subscriptions_by_id[gid(11)]
    finally:
        stop()
    assert (after.quantity, after.auto_renew) == (7, True)


def test_a_slow_quantity_change_is_answered_202_and_awaited(tmp_path: Path) -> None:
    from helpers import gid

    state = nce_world(tmp_path)
    emulator = Emulator(state, Knobs(slow_changes=2))
    path = f"/v1/customers/{gid(1)}/subscriptions/{gid(10)}"
    _, resource, _ = emulator.handle("GET", path, AUTH, None)
    headers = {**AUTH, "if-match": resource["attributes"]["etag"]}
    status, body, extra = emulator.handle("PATCH", path, headers, {**resource, "quantity": 9})
    assert (status, body) == (202, None) and extra["Location"].endswith(gid(10))
    assert emulator.handle("GET", path, AUTH, None)[1]["quantity"] == 4  # not yet
    assert emulator.handle("GET", path, AUTH, None)[1]["quantity"] == 9
    stop, env = start_emulator(state, Knobs(token=TOKEN, slow_changes=3))
    try:
        loopback_client(env).update_quantity(gid(1), gid(10), 6)
    finally:
        stop()
    assert read_world(state / "world.json").customers[0].subscriptions_by_id[gid(10)].quantity == 6


def test_throttling_answers_the_documented_body(example: Path) -> None:
    emulator = Emulator(example / "state", Knobs(throttle=1.0, retry_after=57))
    status, body, headers = emulator.handle("GET", "/v1/customers", AUTH, None)
    assert (status, headers) == (429, {"Retry-After": "57"})
    message = "Rate limit is exceeded. Try again in 57 seconds."
    assert body == {"statusCode": 429, "message": message}


def test_the_service_codes_come_with_the_service_statuses() -> None:
    from controller.emulator import _refused
    from controller.errors import PermanentProviderError

    def answer(code: str) -> tuple[int, object]:
        status, body, _ = _refused(PermanentProviderError("x", code=code))
        return status, body["code"]

    assert answer("900115") == (403, 900115)
    assert answer("800090") == (400, 800090)
    assert answer("900117") == (400, 900117)
    assert answer("20002") == (403, 20002)
    assert answer("20003") == (404, 20003)  # an unknown subscription
    assert answer("900263") == (403, 900263)  # cancelling a legacy subscription


def test_bodies_start_with_the_byte_order_mark_and_responses_do_not_wait_for_nagle(
    example: Path,
) -> None:
    import socket

    import httpx

    from controller.emulator import make_server

    nodelay: list[int] = []
    for bom in (True, False):
        server = make_server(example / "state", knobs=Knobs(bom=bom))

        class Probe(server.RequestHandlerClass):  # type: ignore[name-defined,misc]
            def setup(self) -> None:
                super().setup()
                option = self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                nodelay.append(option)

        server.RequestHandlerClass = Probe
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/v1/customers"
            content = httpx.get(url, headers={"Authorization": "Bearer t"}).content
        finally:
            server.shutdown()
            server.server_close()
        assert content.startswith(b"\xef\xbb\xbf") is bom
    assert nodelay == [1, 1]


def test_the_emulator_answers_section_7_refusals_with_the_service_codes(tmp_path: Path) -> None:
    """Over HTTP, with the service's status and body: an Azure plan with active Azure
    subscriptions is not suspended (403, 900115, the documented description); a new-commerce
    decrease beyond the refundable seats (400, 800090); a suspended subscription's quantity
    (400, 800091); and through the client, each becomes a sentence a person can act on."""
    import pytest
    from helpers import gid

    from controller.errors import PermanentProviderError

    state = nce_world(tmp_path)
    emulator = Emulator(state)
    plan = f"/v1/customers/{gid(1)}/subscriptions/{gid(14)}"
    _, resource, _ = emulator.handle("GET", plan, AUTH, None)
    headers = {**AUTH, "if-match": resource["attributes"]["etag"]}
    status, body, _ = emulator.handle("PATCH", plan, headers, {**resource, "status": "suspended"})
    assert (status, body["code"], body["source"]) == (403, 900115, "PartnerFD")
    assert body["description"].startswith("Azure plan can't be moved to suspended state")
    window = f"/v1/customers/{gid(1)}/subscriptions/{gid(11)}"
    _, resource, _ = emulator.handle("GET", window, AUTH, None)
    status, body, _ = emulator.handle("PATCH", window, AUTH, {**resource, "quantity": 2})
    assert (status, body["code"]) == (400, 800090)  # 3 fewer, 2 refundable
    stop, env = start_emulator(state, Knobs(token=TOKEN))
    refusals = {}
    try:
        provider = loopback_client(env)
        for name, call in {
            "900115": lambda: provider.suspend_subscription(gid(1), gid(14)),
            "800090": lambda: provider.update_quantity(gid(1), gid(11), 2),
            "800091": lambda: provider.update_quantity(gid(1), gid(13), 3),
        }.items():
            with pytest.raises(PermanentProviderError) as caught:
                call()
            refusals[name] = caught.value
    finally:
        stop()
    assert {name: error.code for name, error in refusals.items()} == {
        "900115": "900115",
        "800090": "800090",
        "800091": "800091",
    }
    assert "disable or cancel them in the Azure portal first" in str(refusals["900115"])
    assert "by no more than its refundable quantity" in str(refusals["800090"])
    assert "reactivate it first" in str(refusals["800091"])
    unchanged = read_world(state / "world.json").customers[0].subscriptions_by_id
    assert (unchanged[gid(14)].status, unchanged[gid(11)].quantity) == ("active", 5)
