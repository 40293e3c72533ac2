"""A PostgreSQL server for the store tests: $TESSERA_TEST_POSTGRES, or one started here.

CI (``.ci/run``) starts a throwaway cluster and exports ``TESSERA_TEST_POSTGRES``.
Without it, a throwaway cluster is made with the server binaries (``initdb``,
``pg_ctl``) in a temporary directory, on a free loopback port, and removed at
the end. Without the binaries the PostgreSQL tests fail: they are required.
Each test gets a fresh schema of that server, named in its DSN.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tessera.node.launcher import free_port as launcher_free_port

ENV = "TESSERA_TEST_POSTGRES"
INSTALL_HINT = (
    "the PostgreSQL store tests need a PostgreSQL server: install it "
    "(Debian/Ubuntu: `apt-get install -y postgresql`; the tests then start a throwaway "
    f"one with its initdb and pg_ctl) or set {ENV}=postgresql://user@host:port/db"
)


def _server_bin() -> Path | None:
    """The directory of ``pg_ctl`` and ``initdb``: on the PATH, else Debian's newest."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    found = glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")
    found.sort(key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    return launcher_free_port()  # reserved: parallel workers never get the same


def _start_cluster(bin_dir: Path, root: Path) -> tuple[str, list[str]]:
    """initdb and pg_ctl start in ``root``; the DSN and the prefix that runs the server's user."""
    # initdb refuses to run as root: run the server as nobody then
    as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(root, "nobody")
    data = root / "data"
    run = {"cwd": root, "check": True, "capture_output": True, "text": True}
    subprocess.run(
        [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "tessera", "--auth=trust",
         "-E", "UTF8", "--no-sync"],
        **run,
    )  # fmt: skip
    port = _free_port()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root}"
    subprocess.run(
        [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w",
         "-o", options, "start"],
        **run,
    )  # fmt: skip
    return f"postgresql://tessera@127.0.0.1:{port}/postgres", as_user


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The DSN of a PostgreSQL server where the tests may create schemas."""
    if os.environ.get(ENV):
        yield os.environ[ENV]
        return
    bin_dir = _server_bin()
    if bin_dir is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    root = Path(tempfile.mkdtemp(prefix="tessera-pg-"))
    try:
        try:
            dsn, as_user = _start_cluster(bin_dir, root)
        except subprocess.CalledProcessError as exc:
            log = (root / "log").read_text() if (root / "log").exists() else ""
            pytest.fail(f"could not start PostgreSQL ({exc.cmd}): {exc.stderr}{log}")
        try:
            yield dsn
        finally:
            subprocess.run(
                [*as_user, str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-m", "fast",
                 "-w", "stop"],
                cwd=root, capture_output=True, check=False,
            )  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)


def schema_dsn(base: str, schema: str) -> str:
    """``base`` with its search path set to ``schema``."""
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


def new_schema(server: str) -> str:
    """A fresh, empty schema on ``server``; the DSN that uses it."""
    name = f"t_{uuid.uuid4().hex}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(server, autocommit=True, connect_timeout=5) as db:
                db.execute(f"CREATE SCHEMA {name}")
            return schema_dsn(server, name)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def postgres_dsn(postgres_server: str) -> str:
    """A DSN of its own for one test (a fresh schema)."""
    return new_schema(postgres_server)


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a store lives, for each implementation: an SQLite path or a DSN."""
    if request.param == "sqlite":
        return str(tmp_path / "store.sqlite")
    dsn: str = request.getfixturevalue("postgres_dsn")
    return dsn
