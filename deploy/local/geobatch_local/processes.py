"""Child processes that never outlive the driver.

Every child runs in its own session (so a signal to it reaches its whole process group) and
asks the kernel for SIGKILL when the driver dies (``PR_SET_PDEATHSIG``), so even a driver
killed with SIGKILL leaves nothing behind. ``Supervisor.stop_all`` is the orderly path:
SIGTERM to each group, then SIGKILL after a timeout.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
import time
from typing import IO, Mapping, Sequence

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child between fork and exec."""
    os.setsid()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:
        # Not Linux: the orderly stop_all path still applies.
        pass


def spawn(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    stdout: IO[bytes] | int | None = None,
    stderr: IO[bytes] | int | None = None,
) -> subprocess.Popen[bytes]:
    """Starts `argv` in a new process group that dies with this process."""
    return subprocess.Popen(
        list(argv),
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        preexec_fn=_die_with_parent,
    )


def signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    """Sends `sig` to the process group of `process`, ignoring one that already exited."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def terminate(process: subprocess.Popen[bytes], timeout_secs: float) -> int:
    """SIGTERM, then SIGKILL after `timeout_secs`; returns the exit status."""
    if process.poll() is None:
        signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=timeout_secs)
        except subprocess.TimeoutExpired:
            signal_group(process, signal.SIGKILL)
            process.wait()
    # Reap anything else left in the group.
    signal_group(process, signal.SIGKILL)
    return process.returncode


class Supervisor:
    """The long-running children of one driver (emulator, controller), stopped in reverse."""

    def __init__(self) -> None:
        self._children: list[tuple[str, subprocess.Popen[bytes], float]] = []
        self._lock = threading.Lock()

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        log: IO[bytes] | None = None,
        stop_timeout_secs: float = 10.0,
        stdout: IO[bytes] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Starts a child; its stderr (and stdout, unless given apart) goes to `log`."""
        process = spawn(argv, env=env, stdout=stdout or log, stderr=log)
        with self._lock:
            self._children.append((name, process, stop_timeout_secs))
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> int:
        with self._lock:
            entry = next((c for c in self._children if c[1] is process), None)
            if entry is not None:
                self._children.remove(entry)
        timeout = entry[2] if entry else 10.0
        return terminate(process, timeout)

    def stop_all(self) -> None:
        with self._lock:
            children = list(reversed(self._children))
            self._children.clear()
        for _name, process, timeout in children:
            terminate(process, timeout)


class Interrupted(Exception):
    """Raised in the main thread on SIGINT or SIGTERM so `finally` blocks clean up."""


def raise_on_termination_signals() -> None:
    """Turns SIGINT and SIGTERM into `Interrupted`; a second signal during clean-up is ignored."""

    def handler(signum: int, _frame: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def wait_until(predicate, timeout_secs: float, interval_secs: float = 0.5) -> bool:
    """Polls `predicate` until it is true or `timeout_secs` pass; returns the last answer."""
    deadline = time.monotonic() + timeout_secs
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_secs)
