"""What fh keeps in the shared-memory directory ($FH_SHM_DIR, else /dev/shm), told apart by name and
content, and the prefixes that hold it: for a tool that found nothing under the prefix it was given
(to name the ones that exist) and for `fh clean` (to know what each file is before it asks the
file's own liveness rule whether it may go).

Files are `<prefix>.<name>`: a segment (shm.segment's magic), a latency file `latency.<process>`
(shm.latency's magic), its writer's temporary `latency.<process>.<pid>.new`, or an instance lock
`lock.<role>` (workers.process: a pid and a newline). Anything else under a prefix is OTHER; the
directory's files without a '.' in their name or of no fh kind belong to someone else.
"""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass

from .latency import MAGIC as LATENCY_MAGIC, NAME_PREFIX as LATENCY_NAME
from .layout import MAGIC as SEGMENT_MAGIC
from .segment import DEFAULT_DIR

LOCK_NAME = "lock."  # instance locks are `<prefix>.lock.<role>` (workers.process.InstanceLock)
SEGMENT, LATENCY, TEMPORARY, LOCK, OTHER = "segment", "latency file", "temporary", "instance lock", "other"
_LOCK_TEXT = re.compile(rb"\d*\n?")
_TEMPORARY = re.compile(re.escape(LATENCY_NAME) + r".+\.(\d+)\.new")


@dataclass(frozen=True)
class ShmFile:
    path: str
    prefix: str
    name: str  # after `<prefix>.`
    kind: str  # SEGMENT, LATENCY, TEMPORARY, LOCK or OTHER
    uid: int  # the owner (lstat: a symbolic link's own)

    @property
    def temporary_pid(self) -> int:
        """The pid of the process a TEMPORARY belongs to (from its name)."""
        return int(_TEMPORARY.fullmatch(self.name).group(1))


def shm_dir(directory: str | None = None) -> str:
    """`directory`, else $FH_SHM_DIR, else /dev/shm: where segments live (as shm.segment.segment_path)."""
    return directory or os.environ.get("FH_SHM_DIR", DEFAULT_DIR)


def listing(prefix: str | None = None, directory: str | None = None) -> list[ShmFile]:
    """Every file under `prefix` (None: under every prefix that holds an fh file), sorted by path."""
    root = shm_dir(directory)
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    found = []
    for entry in names:
        head, dot, name = entry.partition(".")
        if prefix is not None:
            if not entry.startswith(prefix + ".") or entry == prefix + ".":
                continue
            head, name = prefix, entry[len(prefix) + 1:]
        elif not dot or not head or not name:
            continue
        path = os.path.join(root, entry)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        found.append(ShmFile(path, head, name, _kind(path, name, st), st.st_uid))
    if prefix is None:
        fh_prefixes = {f.prefix for f in found if f.kind != OTHER}
        found = [f for f in found if f.prefix in fh_prefixes]
    return found


def prefixes(directory: str | None = None) -> dict[str, dict[str, int]]:
    """The prefixes holding segments or latency files, with how many of each (instance locks alone
    do not count: their files stay after every run by design), sorted by prefix."""
    counts: dict[str, dict[str, int]] = {}
    for f in listing(None, directory):
        if f.kind in (SEGMENT, LATENCY):
            kinds = counts.setdefault(f.prefix, {})
            kinds[f.kind] = kinds.get(f.kind, 0) + 1
    return dict(sorted(counts.items()))


def describe_prefixes(directory: str | None = None) -> str:
    """The prefixes there are, for one line of text: `fh (4 segments, 3 latency files), fhtest
    (1 segment)`; empty when there are none."""
    return ", ".join(f"{prefix} (" + ", ".join(f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in kinds.items()) + ")"
                     for prefix, kinds in prefixes(directory).items())


def _kind(path: str, name: str, st: os.stat_result) -> str:
    if not stat.S_ISREG(st.st_mode):
        return OTHER
    if name.startswith(LATENCY_NAME) and _TEMPORARY.fullmatch(name):
        return TEMPORARY
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # gone meanwhile, replaced by a link, or not readable by us
        return OTHER
    try:
        head = os.pread(fd, 32, 0)
    finally:
        os.close(fd)
    if name.startswith(LOCK_NAME) and len(name) > len(LOCK_NAME):
        return LOCK if _LOCK_TEXT.fullmatch(head) else OTHER
    magic = int.from_bytes(head[:8], "little") if len(head) >= 8 else None
    if magic == SEGMENT_MAGIC:
        return SEGMENT
    if magic == LATENCY_MAGIC and name.startswith(LATENCY_NAME):
        return LATENCY
    return OTHER
