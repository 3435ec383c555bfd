from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import PARTNER, run

from controller.emulator import Knobs, make_server

ROOT = Path(__file__).resolve().parent.parent
SUBCOMMANDS = {"validate", "schema", "status", "world", "emulator"}
TOKEN = "test-bearer-token-5f1c2e"  # must never show up in any output or state file

Runner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A copy of the shipped example (specs/ and state/) in a temporary directory."""
    shutil.copytree(ROOT / "specs", tmp_path / "specs")
    shutil.copytree(ROOT / "state", tmp_path / "state")
    return tmp_path


def start_emulator(state_dir: Path, knobs: Knobs) -> tuple[Callable[[], None], dict[str, str]]:
    """An emulator on loopback serving ``state_dir``'s world; returns its stop and the
    environment that points the partner-center provider at it."""
    server = make_server(state_dir, knobs=knobs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    env = {
        **os.environ,
        "PARTNER_CENTER_BASE_URL": f"http://127.0.0.1:{server.server_address[1]}",
        "PARTNER_CENTER_TENANT_ID": PARTNER,
        "PARTNER_CENTER_ACCESS_TOKEN": TOKEN,
    }
    return stop, env


@pytest.fixture(params=["local", "partner-center"])
def reconcile(request: pytest.FixtureRequest, example: Path) -> Iterator[Runner]:
    """Runs the real ``reconcile`` command in ``example``, with the local provider, or with the
    Partner Center provider talking HTTP to the emulator (small pages, so paging is exercised)."""
    if request.param == "local":
        yield lambda *args, **kw: run(*args, cwd=example, **kw)
        return
    stop, env = start_emulator(example / "state", Knobs(page_size=2, token=TOKEN))

    def runner(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        provider = [] if args and args[0] in SUBCOMMANDS else ["--provider", "partner-center"]
        return run(*provider, *args, cwd=example, env=env, **kw)  # type: ignore[arg-type]

    runner.provider = "partner-center"  # type: ignore[attr-defined]
    try:
        yield runner
    finally:
        stop()
