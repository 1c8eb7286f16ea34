"""The shared servers of a cluster on one machine, each a child process of ours: redis-server,
PostgreSQL and nginx round-robin over the workers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

from server.children import Child, ChildFailed, run_as

START_TIMEOUT_S = 60.0
NGINX = Path("/usr/sbin/nginx")
WORKER_HEADER = "X-Crossroads-Worker"  # nginx's answer header naming the worker (host:port)
POSTGRES_USER = "postgres"  # the OS user PostgreSQL runs as when we are root
# A throwaway server: durability costs time and proves nothing here (a transaction's visibility,
# which the store's semantics rest on, is the same without fsync).
POSTGRES_FAST = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


def free_port() -> int:
    """A port nothing listens on now (the server binding it later may, rarely, lose a race)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def listening(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def redis_binary() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if found is None:
        raise ChildFailed("redis-server is not installed: `make system-deps` installs it")
    return found


def postgres_binaries() -> Path:
    """The newest installed PostgreSQL's bin directory (Debian keeps them versioned)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
    )
    if not found:
        raise ChildFailed("PostgreSQL is not installed: `make system-deps` installs it")
    return found[-1].parent


class RedisProcess:
    """One redis-server on 127.0.0.1:`port` working in `root`, with nothing written to disk
    (`--save ''`, no AOF). stop() then start() brings it back on the same port, empty, as after
    a crash of a server without persistence."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        root.mkdir(parents=True, exist_ok=True)
        argv = [
            redis_binary(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(root),
            "--save", "",
            "--appendonly", "no",
            # No "protected mode" surprises, and no background thread saving anything.
            "--protected-mode", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        self.child = Child("redis-server", argv, log=root / "redis.log", cwd=root)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.child.pid

    def start(self) -> None:
        """Start it and wait until it answers PING."""
        self.child.start(self.answers, START_TIMEOUT_S)

    def answers(self) -> bool:
        # A PING by hand: only the distributed backend's own modules use the Redis client.
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM (it exits at once, with nothing to save), SIGKILL after 30 s."""
        self.child.stop()


class PostgresProcess:
    """One PostgreSQL server on 127.0.0.1:`port`: a data dir made by initdb under `root` (the
    first time), a socket dir of its own, trust authentication for `user` on loopback.

    initdb refuses to run as root, so as root the programs run as the `postgres` user, and
    `root` must be a directory it can reach: it is made and given to that user here, and every
    directory above it must let that user through (/tmp does; pytest's own tmp dirs are 0700
    root and do not). The
    postmaster is our child (`postgres -D`, not pg_ctl's daemon). stop() then start() brings it
    back with its data, as after an operator's restart."""

    def __init__(self, root: Path, port: int | None = None, user: str = "crossroads") -> None:
        self.bin = postgres_binaries()
        self.root = root
        self.data = root / "data"
        self.sockets = root / "sockets"
        self.port = port or free_port()
        self.user = user
        self.os_user = POSTGRES_USER if os.geteuid() == 0 else None
        self.sockets.mkdir(parents=True, exist_ok=True)
        if self.os_user:
            shutil.chown(root, self.os_user, self.os_user)
            shutil.chown(self.sockets, self.os_user, self.os_user)
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        settings = [
            "listen_addresses=127.0.0.1",
            f"port={self.port}",
            f"unix_socket_directories={self.sockets}",
            *POSTGRES_FAST,
        ]
        argv = [str(self.bin / "postgres"), "-D", str(self.data)]
        argv += [arg for setting in settings for arg in ("-c", setting)]
        # SIGINT is the fast shutdown: sessions are ended, nothing is waited for.
        self.child = Child(
            "postgres",
            argv,
            log=root / "postgres.log",
            cwd=root,
            user=self.os_user,
            stop_signal=signal.SIGINT,
        )

    def _initdb(self) -> None:
        initdb = [str(self.bin / "initdb"), "--pgdata", str(self.data), "--username", self.user]
        initdb += ["--auth", "trust", "--encoding", "UTF8", "--no-sync"]
        run_as(self.os_user, initdb, cwd=self.root)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    @property
    def pid(self) -> int | None:
        return self.child.pid

    def start(self) -> None:
        """Start it and wait until it accepts connections (pg_isready)."""
        self.child.start(self.answers, START_TIMEOUT_S)

    def answers(self) -> bool:
        probe = [str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        probe += ["-U", self.user, "-d", "postgres", "-t", "2"]
        return subprocess.run(probe, check=False, stdin=subprocess.DEVNULL).returncode == 0

    def create_database(self, name: str) -> str:
        """Create database `name` (it must not exist); its URL."""
        createdb = [str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port)]
        run_as(self.os_user, [*createdb, "-U", self.user, name], cwd=self.root)
        return self.url(name)

    def stop(self) -> None:
        self.child.stop()


def nginx_conf(port: int, workers: Sequence[str], root: Path) -> str:
    """nginx in the foreground (one process, so its PID is the whole of it), round-robin over
    `workers` (host:port) with no stickiness, every frame of an SSE stream passed on at once and
    long-lived streams never timed out by the proxy; all its files under `root`."""
    servers = "\n".join(f"        server {w} max_fails=1 fail_timeout=2s;" for w in workers)
    temp = "\n".join(
        f"    {kind}_temp_path {root}/{kind}_temp;"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""\
daemon off;
master_process off;
worker_processes 1;
error_log {root}/error.log warn;
pid {root}/nginx.pid;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
{temp}
    upstream crossroads {{
        # Round robin, the default: no ip_hash, no sticky cookie. Any worker serves any request.
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://crossroads;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;            # stream each SSE frame as it comes
            proxy_cache off;
            proxy_read_timeout 1h;          # far longer than [stream] heartbeat_s
            proxy_send_timeout 1h;
            client_max_body_size 32k;       # above [limits] max_body_bytes: the app's 413 shows
            # A worker that is gone (refused or timed-out connection): the request goes to the
            # next one. Not on a 503: that is the app's own answer (database away, memory).
            proxy_next_upstream error timeout;
            proxy_connect_timeout 2s;
            # Which worker answered, to see the round robin at work (and for the tests).
            add_header {WORKER_HEADER} $upstream_addr always;
        }}
        location = /metrics {{
            return 404;    # scrape each machine directly, not through the public door
        }}
    }}
}}
"""


class NginxProcess:
    """nginx on 127.0.0.1:`port` with the configuration `conf` (nginx_conf's, or a test's own),
    written to and running under `root`."""

    def __init__(self, root: Path, port: int, conf: str) -> None:
        if not NGINX.exists():
            raise ChildFailed(f"{NGINX} is missing: `make system-deps` installs it")
        self.root = root
        self.port = port
        root.mkdir(parents=True, exist_ok=True)
        self.conf = root / "nginx.conf"
        self.conf.write_text(conf, encoding="utf-8")
        argv = [str(NGINX), "-p", f"{root}/", "-c", str(self.conf), "-e", f"{root}/error.log"]
        # SIGQUIT is nginx's graceful stop; SIGTERM its fast one, which is what a stop is here.
        self.child = Child("nginx", argv, log=root / "stderr.log", cwd=root, stop_timeout_s=10)

    @classmethod
    def round_robin(
        cls, root: Path, workers: Sequence[str], port: int | None = None
    ) -> NginxProcess:
        """nginx in front of `workers` (host:port each), as nginx_conf says."""
        port = port or free_port()
        return cls(root, port, nginx_conf(port, workers, root))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.child.pid

    def start(self) -> None:
        self.child.start(lambda: listening(self.port), START_TIMEOUT_S)

    def stop(self) -> None:
        self.child.stop()
