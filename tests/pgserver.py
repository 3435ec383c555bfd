"""A throwaway PostgreSQL server for the tests: initdb and postgres from the installed binaries
in a temporary directory, on a free port, with its unix socket there too (as the ``postgres`` or
``nobody`` user when the tests run as root, since initdb refuses root).

The server is a child of the test process and is told to shut down when that process dies
(``PR_SET_PDEATHSIG``), so a test run that is killed outright leaves no server behind."""

from __future__ import annotations

import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

USER = "reconcile"


def find_binaries() -> Path | None:
    """The directory holding initdb and pg_ctl: on PATH, or Debian's versioned directory."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_user() -> list[str]:
    """The command prefix that runs the server as someone other than root."""
    if os.geteuid() != 0:
        return []
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return ["runuser", "-u", name, "--"]
    raise RuntimeError("running as root, and neither a postgres nor a nobody user exists")


def start() -> tuple[str, Callable[[], None]]:
    """Start a server; returns the URL of its ``postgres`` database and the function that stops
    it and removes its directory. Raises RuntimeError with the server's log when it fails."""
    binaries = find_binaries()
    if binaries is None:
        raise RuntimeError("no PostgreSQL binaries (initdb) on PATH or in /usr/lib/postgresql")
    root = Path(tempfile.mkdtemp(prefix="reconcile-pg-"))
    prefix = _as_user()
    if prefix:
        user = pwd.getpwnam(prefix[2])
        os.chown(root, user.pw_uid, user.pw_gid)
    data, log, port = root / "data", root / "server.log", _free_port()

    def run(*args: str) -> None:
        result = subprocess.run(
            [*prefix, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            server_log = log.read_text() if log.exists() else ""
            raise RuntimeError(f"{args[0]} failed: {result.stderr}{result.stdout}{server_log}")

    server: subprocess.Popen[bytes] | None = None

    def stop() -> None:
        if server is not None and server.poll() is None:
            subprocess.run(
                [*prefix, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                capture_output=True,
                timeout=60,
                check=False,
            )
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(root, ignore_errors=True)

    try:
        run(str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", USER, "--no-sync")
        options = ["-k", str(root), "-p", str(port), "-c", "listen_addresses=127.0.0.1"]
        with open(log, "wb") as output:
            server = subprocess.Popen(
                [*prefix, str(binaries / "postgres"), "-D", str(data), *options, "-c", "fsync=off"],
                stdout=output,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # a plain prctl: safe between fork and exec
            )
        _wait_until_ready(binaries, root, port, server, log)
    except BaseException:
        stop()
        raise
    return f"postgresql://{USER}@127.0.0.1:{port}/postgres", stop


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the test process dies (runuser passes it on to
    the server, which then shuts down)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def _wait_until_ready(
    binaries: Path, root: Path, port: int, server: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"postgres exited: {log.read_text()}")
        ready = subprocess.run(
            [str(binaries / "pg_isready"), "-q", "-h", str(root), "-p", str(port)], check=False
        )
        if ready.returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"postgres did not start within 60 s: {log.read_text()}")


def database_url(server_url: str, name: str) -> str:
    return server_url.rsplit("/", 1)[0] + "/" + name
