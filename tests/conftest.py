from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pgserver
import pytest
from helpers import PARTNER, run

from controller.emulator import Knobs, make_server

ROOT = Path(__file__).resolve().parent.parent
SUBCOMMANDS = {"validate", "schema", "status", "world", "emulator"}
TOKEN = "test-bearer-token-5f1c2e"  # must never show up in any output or state file

Runner = Callable[..., subprocess.CompletedProcess[str]]


def pytest_configure(config: pytest.Config) -> None:
    """The tests read English, whatever the machine's locale, unless a test asks for another
    language: here and in every command they run."""
    from controller.i18n import set_language

    os.environ["LANGUAGE"] = "en"
    set_language("en")


@pytest.fixture(autouse=True)
def own_token_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MSAL's token cache and the parse cache of every test (and of the commands it runs) in a
    folder of its own, never the user's cache directory."""
    monkeypatch.delenv("PARTNER_RECONCILER_CACHE_DIR", raising=False)
    monkeypatch.delenv("PARTNER_RECONCILER_NO_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(autouse=True)
def own_state_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Each test its own $XDG_STATE_HOME (the protection ledger lives there), inherited by the
    ``reconcile`` processes it starts: no test sees what another one protected."""
    home = tmp_path_factory.mktemp("state-home")
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home


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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server for the whole session: ``RECONCILE_TEST_PG_URL``, or one started from
    the installed binaries and stopped at the end. In CI a server that cannot start fails the
    tests that need it; elsewhere they are skipped."""
    given = os.environ.get("RECONCILE_TEST_PG_URL")
    if given:
        yield given
        return
    try:
        url, stop = pgserver.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"PostgreSQL could not be started: {exc}")
        pytest.skip(f"PostgreSQL could not be started: {exc}")
    try:
        yield url
    finally:
        stop()


@pytest.fixture
def pg_url(postgres_server: str) -> str:
    """The URL of a new, empty database of its own for one test."""
    import uuid

    import psycopg

    name = f"test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return pgserver.database_url(postgres_server, name)


def language() -> dict[str, str]:
    """The language a test asks for now (LANGUAGE, set with monkeypatch), for runners whose
    environment was made earlier."""
    return {"LANGUAGE": os.environ["LANGUAGE"]}


def store_env(example: Path, pg_url: str) -> dict[str, str]:
    """The environment of a run whose records are in PostgreSQL, with the example's records
    moved there (``reconcile state import``)."""
    env = {**os.environ, "RECONCILE_STATE_URL": pg_url}
    moved = run("state", "import", "state", cwd=example, env=env)
    assert moved.returncode == 0, moved.stderr
    return env


@pytest.fixture(params=["local", "partner-center", "local+postgres"])
def reconcile(request: pytest.FixtureRequest, example: Path) -> Iterator[Runner]:
    """Runs the real ``reconcile`` command in ``example``: with the local provider; with the
    Partner Center provider talking HTTP to the emulator (small pages, so paging is exercised);
    or with the local provider and the records in PostgreSQL (``runner.store``)."""
    if request.param == "local":
        yield lambda *args, **kw: run(*args, cwd=example, **kw)
        return
    if request.param == "local+postgres":
        env = store_env(example, request.getfixturevalue("pg_url"))

        def in_postgres(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
            return run(*args, cwd=example, env={**env, **language(), **kw.pop("env", {})}, **kw)

        in_postgres.store = "postgres"  # type: ignore[attr-defined]
        in_postgres.state_url = env["RECONCILE_STATE_URL"]  # type: ignore[attr-defined]
        yield in_postgres
        return
    stop, env = start_emulator(example / "state", Knobs(page_size=2, token=TOKEN))

    def runner(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        provider = [] if args and args[0] in SUBCOMMANDS else ["--provider", "partner-center"]
        return run(*provider, *args, cwd=example, env={**env, **language()}, **kw)  # type: ignore[arg-type]

    runner.provider = "partner-center"  # type: ignore[attr-defined]
    try:
        yield runner
    finally:
        stop()


class StateStore:
    """Where the ``reconcile`` commands of one test keep their records: the state folder
    (``file``), or a PostgreSQL database of the test's own (``postgres``), named to every
    command the test starts through ``RECONCILE_STATE_URL`` in the environment."""

    def __init__(self, kind: str, url: str | None = None) -> None:
        self.kind = kind
        self.url = url
        self._opened: dict[Path, Any] = {}

    def use(self, directory: Path) -> None:
        """Move ``directory``'s state/ records into the database (``reconcile state import``);
        the file store keeps them where they are."""
        if self.url is not None:
            moved = run("state", "import", "state", cwd=directory)
            assert moved.returncode == 0, moved.stderr

    def open(self, directory: Path) -> Any:
        """The store of ``directory``'s commands, opened in this process (once per test)."""
        if directory not in self._opened:
            from controller.records import FileStore

            self._opened[directory] = (
                FileStore(directory / "state")
                if self.url is None
                else _postgres_store(self.url, directory)
            )
        return self._opened[directory]

    def rows(self) -> str:
        """Every row of the controller's tables in the database, as text ("" for the file
        store), to show that something (a secret) is not among them."""
        if self.url is None:
            return ""
        import psycopg

        with psycopg.connect(self.url) as conn:
            tables = conn.execute(
                "SELECT tablename FROM pg_tables WHERE tablename LIKE 'reconcile%%'"
            ).fetchall()
            return "\n".join(
                str(row)
                for (table,) in tables
                for row in conn.execute(f"SELECT t::text FROM {table} t").fetchall()
            )

    def close(self) -> None:
        for store in self._opened.values():
            close = getattr(store, "close", None)
            if close is not None:
                close()


def _postgres_store(url: str, directory: Path) -> Any:
    """The PostgreSQL store of the partner of ``directory``'s world."""
    from controller.pgstore import PostgresStore
    from controller.providers.local import read_world, world_path

    path = world_path(directory / "state")
    return PostgresStore(url, read_world(path).partner.id if path.exists() else PARTNER)


@pytest.fixture(params=["file", "postgres"])
def state_store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Each test that uses it runs twice: with the records in the state folder, and in a
    PostgreSQL database of its own (every ``reconcile`` it starts inherits the URL)."""
    if request.param == "file":
        store = StateStore("file")
    else:
        url = request.getfixturevalue("pg_url")
        monkeypatch.setenv("RECONCILE_STATE_URL", url)
        store = StateStore("postgres", url)
    try:
        yield store
    finally:
        store.close()


def records_store(example: Path, reconcile: Runner) -> Any:
    """The store that ``reconcile`` keeps its records in, opened in this process."""
    url = getattr(reconcile, "state_url", None)
    if url is None:
        from controller.records import FileStore

        return FileStore(example / "state")
    from controller.pgstore import PostgresStore

    return PostgresStore(url, PARTNER)
