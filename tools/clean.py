"""`fh clean [--prefix P | --all]`: remove what fh processes that are gone left in the shared-memory
directory (segments stay after a run for readers; latency files and instance locks stay too), and
nothing a live process holds. Each kind is asked its own liveness rule: a segment or latency file
goes once no writer holds its liveness lock (shm.segment), an instance lock once no process holds
its flock (workers.process), a latency writer's temporary once the process its name gives is gone.
Another user's files, symbolic links and files of no fh kind are reported and left alone."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

from shm import latency, segment
from shm.files import remove_stale
from shm.inventory import LATENCY, LOCK, OTHER, SEGMENT, TEMPORARY, ShmFile, listing, shm_dir
from shm.layout import HEADER_BYTES, Header, State
from shm.segment import SegmentError
from workers.process import InstanceLockError, retire_lock

from .attached import nothing_under

CREATING_S = 10.0  # a segment still INITIALIZING this recently may be a writer's new one, lock not yet taken


@dataclass(frozen=True)
class Outcome:
    file: ShmFile
    removed: bool
    why: str


def clean(prefix: str | None, directory: str | None = None) -> list[Outcome]:
    """Remove what no live process holds under `prefix` (None: under every fh prefix); what was
    removed and what was kept, each with the reason."""
    return [_clean_one(f) for f in listing(prefix, directory)]


_RETIRE = {SEGMENT: (segment.retire, "no live writer"), LATENCY: (latency.retire, "no live writer"),
           LOCK: (retire_lock, "no process holds it")}


def _clean_one(f: ShmFile) -> Outcome:
    if f.uid != os.geteuid():
        return Outcome(f, False, f"owned by uid {f.uid}, not by this user: never touched")
    if f.kind == OTHER:
        return Outcome(f, False, "not an fh file (no fh name and content, or not a regular file): left alone")
    if f.kind == TEMPORARY:
        if _running(f.temporary_pid):
            return Outcome(f, False, f"temporary of pid {f.temporary_pid}, still running")
        remove_stale(f.path)
        return Outcome(f, True, f"temporary of pid {f.temporary_pid}, gone")
    if f.kind == SEGMENT and _being_created(f.path):
        return Outcome(f, False, "segment being created (or its writer died creating it): run again later")
    retire, why = _RETIRE[f.kind]
    try:
        retire(f.path)
    except (SegmentError, InstanceLockError) as exc:
        return Outcome(f, False, f"{f.kind}: {str(exc).removeprefix(f.path).lstrip(': ')}")
    except FileNotFoundError:
        return Outcome(f, True, f"{f.kind}: gone meanwhile")
    return Outcome(f, True, f"{f.kind}: {why}")


def _being_created(path: str) -> bool:
    """INITIALIZING (or too short for a header yet) and changed within CREATING_S: a writer may be
    between creating its file and taking its lock."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        head, changed = os.pread(fd, HEADER_BYTES, 0), os.fstat(fd).st_mtime
    finally:
        os.close(fd)
    state = int.from_bytes(head[Header.STATE * 8:(Header.STATE + 1) * 8], "little") if len(head) == HEADER_BYTES else 0
    return state == State.INITIALIZING and time.time() - changed < CREATING_S


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: running
        pass
    return True


def report(outcomes: list[Outcome], prefix: str | None) -> str:
    """One line per file, removed first, then a count; or what there is instead of `prefix`."""
    if not outcomes:
        return nothing_under(prefix, "nothing to clean") if prefix else f"no fh files in {shm_dir()}"
    lines = [f"{'removed' if o.removed else 'kept   '}  {o.file.path}  ({o.why})"
             for o in sorted(outcomes, key=lambda o: (not o.removed, o.file.path))]
    removed = sum(o.removed for o in outcomes)
    return "\n".join(lines + [f"{removed} removed, {len(outcomes) - removed} kept"])


def main(prefix: str, every: bool) -> int:
    """`fh clean`: exit 0 once every file was removed or kept for its reason."""
    target = None if every else prefix
    print(report(clean(target), target))
    return 0
