"""Process guard: runs one target command and takes its whole process group down with it.

Usage: ``python -I gaps/_guard.py FD [--grace SECONDS] -- COMMAND [ARG...]``
(``python -m gaps._guard`` works too).

FD is the guard's end of a socket pair whose other end the harness holds.  The guard:

1. raises its own soft open-file limit to at least ``TARGET_OPEN_FILES`` (4,096) where the
   hard limit allows, so that COMMAND inherits it: a target that runs out of descriptors
   under the harness's load would look like one that caps its connections;
2. starts COMMAND with the guard's cwd, env and stdio, as the leader of a new process group
   (its pgid is its pid), and asks the kernel to SIGKILL it should the guard die;
3. writes one JSON line to FD: ``{"pid": N, "open_files": [soft, hard]}`` (the open-file
   limits COMMAND started with; -1 for unlimited), or ``{"error": strerror, "errno": n,
   "filename": ...}`` and exits 127 when COMMAND cannot be started;
4. waits until COMMAND exits, or the harness is gone: EOF on FD (the harness died, even by
   SIGKILL, and the kernel closed its end) or the guard's parent changed;
5. when the harness is gone: SIGTERM to COMMAND's group, up to the grace period (default
   5 s) for COMMAND to exit, then SIGKILL to the group;
6. forwards SIGTERM, SIGINT and SIGHUP it receives itself to COMMAND's group;
7. once COMMAND has exited, SIGKILLs what is left of its group (background children) and
   exits with COMMAND's status: the same code, or the same signal re-raised, so the harness
   sees ``-N`` for a target killed by signal N.

The guard stays outside the group it watches, so the harness's group-wide SIGKILL (or a
SIGSTOP) reaches the target and all its children but never the guard.  It uses the standard
library only and is run with ``-I``, so a target's PYTHONPATH, PYTHONHOME or cwd cannot
break it.  It is single-threaded, which makes its ``preexec_fn`` safe.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

PR_SET_PDEATHSIG = 1
TARGET_OPEN_FILES = 4096  # the least soft open-file limit a target starts with, where allowed
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# How often the guard checks that the harness is still its parent, for the case where the
# harness died but a process it forked still holds the other end of the socket open.
PARENT_CHECK = 0.5
USAGE = "usage: _guard.py FD [--grace SECONDS] -- COMMAND [ARG...]"


def parse(args: list[str]) -> tuple[int, float, list[str]]:
    """FD, grace period and command from the guard's arguments; SystemExit(usage) if malformed."""
    if "--" not in args:
        raise SystemExit(USAGE)
    split = args.index("--")
    head, command = args[:split], args[split + 1 :]
    try:
        if len(head) == 1:
            return int(head[0]), 5.0, _nonempty(command)
        if len(head) == 3 and head[1] == "--grace":
            return int(head[0]), float(head[2]), _nonempty(command)
    except ValueError:
        pass
    raise SystemExit(USAGE)


def _nonempty(command: list[str]) -> list[str]:
    if not command:
        raise ValueError("no command")
    return command


def exited(child: subprocess.Popen[bytes]) -> bool:
    """Whether ``child`` has exited, without reaping it where the system allows.

    An unreaped child keeps its pid, and so its process group id, from being reused: killing
    the group before reaping can never hit an unrelated group.
    """
    if not hasattr(os, "waitid"):  # macOS: reaping is the only way to ask
        return child.poll() is not None
    return os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def readable(fds: list[int], timeout: float) -> set[int]:
    """Those of ``fds`` readable (or at their end) within ``timeout`` seconds.  poll, not
    select: the link's number is the harness's, which can be past select's 1,024 while
    the harness holds a thousand connections of a load check (the guard then died)."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return {fd for fd, _ in poller.poll(max(0.0, timeout) * 1000)}


def wait_exit(child: subprocess.Popen[bytes], pidfd: int | None, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``child`` to exit (unreaped); whether it did."""
    deadline = time.monotonic() + timeout
    while not exited(child):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if pidfd is not None:
            readable([pidfd], remaining)
        else:
            time.sleep(min(0.05, remaining))
    return True


def open_pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when ``pid`` exits; None where the kernel has none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def send(link: socket.socket, message: dict[str, object]) -> bool:
    """Write one JSON line to the harness; False if the harness is gone."""
    try:
        link.sendall(json.dumps(message).encode() + b"\n")
    except OSError:
        return False
    return True


def harness_gone(link: socket.socket, readable: bool, parent: int) -> bool:
    """Whether the harness died: EOF on the link, or the guard was reparented."""
    if os.getppid() != parent:
        return True
    if not readable:
        return False
    try:
        return not link.recv(4096)  # the harness never writes: anything readable is EOF
    except BlockingIOError:
        return False
    except OSError:
        return True


def die_with_guard() -> Callable[[], object] | None:
    """A ``preexec_fn`` making the kernel SIGKILL the target if the guard dies (Linux).

    Belt and braces, for a guard killed by SIGKILL itself.  libc is loaded here, before the
    fork; the child only makes the call.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (AttributeError, OSError):
        return None
    return lambda: prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def exit_like(status: int) -> int:
    """Exit as the target did: its exit code, or killed by the same signal."""
    if status >= 0:
        return status
    sig = -status
    with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler to reset
        signal.signal(sig, signal.SIG_DFL)
    # Re-raising SIGSEGV or SIGABRT must not write a core file of the guard itself.
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
    os.kill(os.getpid(), sig)
    return 128 + sig  # only reached if the signal did not end the guard


def raise_open_files(least: int) -> list[int]:
    """Raise this process's soft open-file limit (which the target inherits) to ``least``,
    or to the hard limit when that is lower; never lowers it.  The limits then, [soft, hard]
    (-1: unlimited)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = least if hard == resource.RLIM_INFINITY else min(least, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return [-1 if v == resource.RLIM_INFINITY else v
            for v in resource.getrlimit(resource.RLIMIT_NOFILE)]


def main(args: list[str] | None = None) -> int:
    """Run the guarded command as the module docstring describes; the status to exit with."""
    fd, grace, command = parse(sys.argv[1:] if args is None else args)
    link = socket.socket(fileno=fd)
    link.setblocking(False)
    parent = os.getppid()
    pgid: list[int] = []  # filled once the target runs; read by the signal handler

    def forward(signum: int, frame: object) -> None:
        for target in pgid:
            killpg(target, signum)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    open_files = raise_open_files(TARGET_OPEN_FILES)
    try:
        child = subprocess.Popen(command, process_group=0, preexec_fn=die_with_guard())
    except OSError as exc:
        send(link, {"error": exc.strerror or str(exc), "errno": exc.errno,
                    "filename": None if exc.filename is None else str(exc.filename)})
        return 127
    pgid.append(child.pid)
    pidfd = open_pidfd(child.pid)
    gone = not send(link, {"pid": child.pid, "open_files": open_files})
    while not gone and not exited(child):
        watch = [link.fileno()] if pidfd is None else [link.fileno(), pidfd]
        ready = readable(watch, PARENT_CHECK if pidfd is not None else 0.05)
        gone = harness_gone(link, link.fileno() in ready, parent)
    if gone:
        killpg(child.pid, signal.SIGTERM)
        wait_exit(child, pidfd, grace)
    # The target has exited (or is being killed): clear the rest of its group before reaping
    # it, while its pid still pins the group id.
    killpg(child.pid, signal.SIGKILL)
    status = child.wait()
    return exit_like(status)


if __name__ == "__main__":
    sys.exit(main())
