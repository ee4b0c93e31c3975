"""Files fh creates where other local users can write (/dev/shm, shared state directories), made so
that nobody else can choose what they are: created exclusively, never through a symbolic link,
private to the owner (0600) unless a group of readers is named (0640, that group).

A planted symlink at a name fh is about to create (`O_EXCL | O_NOFOLLOW` fails on it instead of
writing through it as root) or a stale temporary from a crash (unlinked, which never follows a
link) cannot redirect a write. Replacement is write, fsync, rename, so a crash leaves the old file
or the new one, never a truncated one.
"""
from __future__ import annotations

import grp
import os

_CREATE = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def group_id(group: str) -> int:
    """The gid of group `group` (a name or a number); ValueError naming it when there is none."""
    try:
        return grp.getgrgid(int(group)).gr_gid if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ValueError(f"no group {group!r} on this host") from None


def create_exclusive(path: str, group: str = "") -> int:
    """A new file at `path`, open read-write: 0600, or 0640 and chgrp'd to `group` when one is named.
    FileExistsError when anything (a file, a symlink) is already there."""
    gid = group_id(group) if group else -1
    mode = 0o640 if group else 0o600
    fd = os.open(path, _CREATE, mode)
    try:
        if gid >= 0:
            os.fchown(fd, -1, gid)
        os.fchmod(fd, mode)  # exactly this, whatever the umask
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    return fd


def remove_stale(path: str) -> None:
    """Remove whatever a crashed writer left at `path` (the name itself: a symlink is not followed)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def replace_file(path: str | os.PathLike, data: bytes, group: str = "") -> None:
    """Make `data` the content of `path` atomically and durably, through `<path>.new` (0600, or
    0640 for `group`)."""
    path = os.fspath(path)
    temporary = f"{path}.new"
    remove_stale(temporary)
    fd = create_exclusive(temporary, group)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        remove_stale(temporary)
        raise
    directory = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)
