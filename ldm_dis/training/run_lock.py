"""One writer per run folder: an exclusive OS lock on ``<folder>/.lock``, held for the whole run.

    with hold_run_folder(cfg.run.dir, accelerator):              # a second process is refused at once
        ...
    with hold_run_folder(cache_entry, accelerator, wait=True):  # a second process waits its turn
        ...

The lock is ``fcntl.flock`` on an open file: the kernel drops it when the process ends, however it
ends (SIGKILL included), so a crash never leaves a stale lock behind. The holder writes its PID and
host into the file so that the refusal can say who holds the folder. Only the main process of an
Accelerate launch takes the lock; the others learn the outcome from it (one broadcast), so every
process stops, or waits, together. ``flock`` is local to a machine: on a network file system shared
by several machines it may not exclude a process on another host.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

from ldm_dis.errors import UserInputError

LOCK_FILE = ".lock"
WAIT_POLL_SECONDS = 2.0


class RunFolderBusy(UserInputError):
    """Another process is writing to the run folder."""


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return text or "an unknown process (it has not written its PID yet)"


def _try_lock(path: Path) -> tuple[Optional[int], str]:
    """(open descriptor holding the lock, "") or (None, who holds it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None, _holder(path)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    return fd, ""


def _release(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _share(value, accelerator):
    """The main process's ``value`` on every process (as it is on one process)."""
    if accelerator is None or accelerator.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value])[0]


@contextlib.contextmanager
def hold_run_folder(folder: str | Path, accelerator=None, wait: bool = False, what: str = "run.dir") -> Iterator[None]:
    """Hold ``folder``'s lock inside the block. Taken: go on. Held by another process: raise
    :class:`RunFolderBusy` naming the folder and the holder, or with ``wait`` poll until it is free."""
    folder = Path(folder)
    path = folder / LOCK_FILE
    main = accelerator is None or accelerator.is_main_process
    fd, announced = None, False
    while True:
        holder, failed = "", ""
        if main:
            try:
                fd, holder = _try_lock(path)
            except OSError as exc:
                failed = f"cannot create the lock file {path}: {exc.strerror or exc}"
        holder, failed = _share((holder, failed), accelerator)
        if failed:
            raise UserInputError(f"{what} {str(folder)!r}: {failed}")
        if not holder:
            break
        if not wait:
            raise RunFolderBusy(
                f"{what} {str(folder)!r} is in use by {holder} (lock {path}); only one process may write to a "
                "run folder: wait for that run to end, or choose another folder"
            )
        if main and not announced:
            print(f"waiting for {holder}, which holds {path}", file=sys.stderr, flush=True)
            announced = True
        time.sleep(WAIT_POLL_SECONDS)
    try:
        yield
    finally:
        if fd is not None:
            _release(fd)
