"""A server started as a child process: in the foreground, waited for until it answers, stopped by
its PID."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

POLL_S = 0.05
# prctl(PR_SET_PDEATHSIG): the kernel sends the child this signal when its parent dies.
_PR_SET_PDEATHSIG = 1


class ChildFailed(RuntimeError):
    """A child did not start (it exited, or did not answer in time); the message names it and
    ends with the tail of its log."""


def _find_prctl() -> Callable[..., int] | None:
    # Looked up once in the parent: the child between fork and exec must not load libraries.
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: the parent's own stop() is the only guard
        return None
    return prctl


_PRCTL = _find_prctl()


def _die_with_parent() -> None:
    """Run in the child between fork and exec: if the process that started it dies without
    stopping it (a test run killed, a terminal closed), the kernel kills it too, so no server is
    left behind."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


class Child:
    """One server process of ours: `argv` run in the foreground (never daemonized, so its PID is
    known without a pid file and stop() can wait for it), output appended to `log`, in a
    session of its own (a Ctrl-C in the terminal reaches our program, which then stops the
    children in order, not every process at once). `user` runs it as another user (PostgreSQL
    refuses to run as root). It can be started again after a stop, with the same arguments."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log: Path,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
        stop_timeout_s: float = 30.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self.user = user
        self.stop_signal = stop_signal
        self.stop_timeout_s = stop_timeout_s
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, ready: Callable[[], bool], timeout_s: float = 30.0) -> None:
        """Start it and wait until `ready()` holds; a child that exits first or does not get
        ready in time is stopped and ChildFailed raised with the end of its log."""
        self.launch()
        self.wait_ready(ready, timeout_s)

    def launch(self) -> None:
        """Start it without waiting (wait_ready then waits): several children start at once.

        Started from the main thread, it is also tied to our life (see _die_with_parent): the
        kernel ties that to the thread that forked, and a worker thread of a pool may end long
        before we do, so a child launched from any other thread is not tied."""
        if self.pid is not None:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        on_main_thread = threading.current_thread() is threading.main_thread()
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                user=self.user,
                group=self.user,
                extra_groups=[] if self.user else None,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=_die_with_parent if on_main_thread else None,
            )

    def wait_ready(self, ready: Callable[[], bool], timeout_s: float = 30.0) -> None:
        """Wait until `ready()` holds while the child runs (see start)."""
        deadline = time.monotonic() + timeout_s
        while not ready():
            process = self._process
            if process is None or process.poll() is not None:
                code = None if process is None else process.returncode
                self.stop()
                raise ChildFailed(
                    f"{self.name} exited (code {code}) before it was ready{self.tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise ChildFailed(f"{self.name} was not ready within {timeout_s:g} s{self.tail()}")
            time.sleep(POLL_S)

    @property
    def pid(self) -> int | None:
        """Its PID while it runs; None before start, after stop or once it has exited."""
        if self._process is None or self._process.poll() is not None:
            return None
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """How it ended (negative: the signal that ended it); None while it runs."""
        return None if self._process is None else self._process.poll()

    def signal(self, sig: signal.Signals) -> None:
        """Send `sig` to it by PID (SIGKILL, SIGSTOP, SIGCONT, SIGTERM...), if it still runs."""
        if self.pid is not None and self._process is not None:
            self._process.send_signal(sig)

    def wait(self, timeout_s: float) -> int:
        """Wait for it to end by itself; its return code (subprocess.TimeoutExpired if not)."""
        if self._process is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._process.wait(timeout_s)

    def stop(self) -> None:
        """Its own stop signal by PID, then SIGKILL if it has not ended in time; always reaped.
        A stopped (SIGSTOP) child is continued first, or it could not act on the signal."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(self.stop_signal)
            with_continue(process)
            try:
                process.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def tail(self, lines: int = 20) -> str:
        """The end of its log, for an error message."""
        try:
            with self.log.open("rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - 8192))
                text = log.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "; its log ends:\n" + "\n".join(text.splitlines()[-lines:])


def with_continue(process: subprocess.Popen[bytes]) -> None:
    """SIGCONT, harmless to a running process, needed by one a test paused with SIGSTOP."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGCONT)


def run_as(user: str | None, argv: Sequence[str], cwd: Path, timeout_s: float = 60.0) -> str:
    """Run a short command (initdb, createdb) to its end as `user`; its output, or ChildFailed
    with that output when it fails."""
    result = subprocess.run(
        list(argv),
        user=user,
        group=user,
        extra_groups=[] if user else None,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if result.returncode != 0:
        raise ChildFailed(f"{argv[0]} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout
