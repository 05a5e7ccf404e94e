"""Start control-plane processes detached from the CLI, and stop them again by pid.

A process is only ever signalled while ``/proc/<pid>/cmdline`` still names the binary it was started
from, so a recycled pid is never killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

STOP_TIMEOUT_S = 10.0
EXEC_TIMEOUT_S = 2.0
POLL_S = 0.1


def start(
    name: str, argv: list[str], directory: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session, logging to ``logs/<name>.log`` and recording ``pids/<name>.pid``;
    ``env`` replaces the environment when given."""
    (directory / "logs").mkdir(parents=True, exist_ok=True)
    (directory / "pids").mkdir(parents=True, exist_ok=True)
    with (directory / "logs" / f"{name}.log").open("ab") as log:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=directory,
            env=env,
            start_new_session=True,
        )
    (directory / "pids" / f"{name}.pid").write_text(f"{child.pid}\n")
    _wait_for_exec(child, Path(argv[0]))
    return child


def _wait_for_exec(child: subprocess.Popen[bytes], binary: Path) -> None:
    """Wait until the kernel shows ``binary`` in the child's cmdline.

    Popen returns as soon as exec closes the close-on-exec pipe, a moment before the new program's
    arguments are visible in /proc, so an immediate liveness check could see an empty cmdline.
    """
    deadline = time.monotonic() + EXEC_TIMEOUT_S
    while time.monotonic() < deadline and child.poll() is None and not is_running(child.pid, binary):
        time.sleep(0.005)


def read_pid(directory: Path, name: str) -> int | None:
    """The pid recorded for ``name``, or None."""
    try:
        return int((directory / "pids" / f"{name}.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def is_running(pid: int, binary: Path) -> bool:
    """Whether ``pid`` is alive (not a zombie) and still runs ``binary``."""
    if not Path("/proc/self").is_dir():  # no procfs (macOS): trust the pid file
        return _signal_alive(pid)
    proc = Path(f"/proc/{pid}")
    try:
        argv0 = (proc / "cmdline").read_bytes().split(b"\0", 1)[0].decode()
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and Path(argv0) == binary


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (0 if unknown)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def stop(pid: int, binary: Path, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM ``pid`` if it still runs ``binary``; SIGKILL it if it has not exited after ``timeout_s``."""
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, timeout_s)):
        if not is_running(pid, binary):
            break
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and is_running(pid, binary):
            _reap(pid)
            time.sleep(POLL_S)
    _reap(pid)


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our own child (started in this Python process)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _signal_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
