"""A real PostgreSQL server for the tests: started as a child process once per session, a fresh
database per test, stopped by its PID at the end."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
# A test server, thrown away at the end: durability costs time and proves nothing here (a
# transaction's visibility, which the store's semantics rest on, is the same without fsync).
FAST = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


def binaries() -> Path:
    """The newest installed PostgreSQL's bin directory (Debian keeps them versioned)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
    )
    if not found:
        pytest.fail("PostgreSQL is not installed: `make system-deps` (or `make test`) installs it")
    return found[-1].parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """One postgres process on 127.0.0.1:`port` with a data dir and socket dir of its own.

    initdb refuses to run as root, so as root the server's programs run as the `postgres` user
    (Popen's `user`, like `runuser -u postgres`), in a directory made for it (pytest's tmp dirs
    are 0700 root). The postmaster is this process's child, not pg_ctl's daemon: its PID is
    known without a pid file, stop() waits for it, and no zombie is left for init to reap."""

    def __init__(self) -> None:
        self.bin = binaries()
        self.root = Path(tempfile.mkdtemp(prefix="crossroads-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.user = "crossroads"
        self._names = itertools.count(1)
        self._process: subprocess.Popen[bytes] | None = None
        self.sockets.mkdir()
        self._user = "postgres" if os.geteuid() == 0 else None
        if self._user:
            shutil.chown(self.root, self._user, self._user)
            shutil.chown(self.sockets, self._user, self._user)
        result = subprocess.run(
            [
                str(self.bin / "initdb"),
                "--pgdata",
                str(self.data),
                "--username",
                self.user,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--no-sync",
            ],
            user=self._user,
            group=self._user,
            extra_groups=[] if self._user else None,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}): {result.stderr}")

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def url(self, dbname: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        settings = [
            "listen_addresses=127.0.0.1",
            f"port={self.port}",
            f"unix_socket_directories={self.sockets}",
            *FAST,
        ]
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [str(self.bin / "postgres"), "-D", str(self.data)]
                + [arg for setting in settings for arg in ("-c", setting)],
                user=self._user,
                group=self._user,
                extra_groups=[] if self._user else None,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                psycopg.connect(self.admin_url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"postgres did not start: {self.log.read_text()}") from None
                time.sleep(0.05)

    @property
    def pid(self) -> int | None:
        """The postmaster's PID; None when it is not running."""
        if self._process is None or self._process.poll() is not None:
            return None
        return self._process.pid

    def stop(self) -> None:
        """A fast shutdown (SIGINT: sessions are ended, nothing is waited for) by PID, then a
        kill if it does not end in time."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def create_database(self) -> str:
        """A new empty database; its URL."""
        name = f"test_{next(self._names)}"
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            # FILE_COPY: copying template1's few files beats WAL-logging every block of them.
            admin.execute(f"CREATE DATABASE {name} STRATEGY FILE_COPY")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """PostgreSQL for the whole session, started the first time a test asks for it."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()
        server.remove()


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """A fresh, empty database of its own for one test."""
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)
