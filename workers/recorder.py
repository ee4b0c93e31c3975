"""The venue worker's capture under its error policy (`[run] capture_on_error`), its flush timer and
its retention, so that a capture that cannot be written never stops decoding or liveness.

A failed write (disk full, file too large, I/O error) is never raised into the connection that
appended the frame: it is counted (`errors`), logged once with its errno and then, by policy,
- "drop": capturing stops (`recording` False) while the feed runs on; `tick` opens a NEW file
  after the shared backoff, and again after each failure, until one works;
- "fail": capturing stops and `failure` says why; the worker stops and exits non-zero, so that
  the supervisor restarts it.
Pending frames are written at least every `flush_s` (the worker's housekeeping calls `tick`), so
a crash loses at most that much; retention runs on every new file and every `prune_s`.
"""
from __future__ import annotations

import errno
import logging
import random
import time
from collections.abc import Callable

from feedhandler.capture import FrameKind, RotatingCaptureWriter

from .lifecycle import Backoff

FLUSH_S = 0.1
PRUNE_S = 10.0
RETRY_FIRST_S, RETRY_MAX_S = 1.0, 60.0


class Recorder:
    """A RotatingCaptureWriter that never raises into its callers (see the module docstring)."""

    def __init__(self, writer: RotatingCaptureWriter, policy: str, log: logging.Logger,
                 on_fail: Callable[[], None] = lambda: None, flush_s: float = FLUSH_S,
                 rng: random.Random | None = None):
        self.writer = writer
        self.policy = policy
        self.log = log
        self.on_fail = on_fail
        self.flush_s = flush_s
        self.backoff = Backoff(RETRY_FIRST_S, RETRY_MAX_S, rng)
        self.recording = True
        self.errors = 0
        self.failure = ""  # set under "fail": why the worker must stop
        self._retry_at = 0.0
        self._flushed_at = 0.0
        self._pruned_at = 0.0

    def append(self, kind: FrameKind, conn: int, ts_ns: int, payload: bytes) -> None:
        if self.recording:
            self._try(self.writer.append, kind, conn, ts_ns, payload)

    def tick(self, now: float) -> None:
        """The timers (monotonic `now`): flush what is pending, retention, the retry of a new file.
        The backoff starts over once a new file took a block."""
        if not self.recording:
            if not self.failure and now >= self._retry_at and self._try(self.writer.reopen):
                self.recording = True
                self.log.warning("%s: capturing again, to %s", self.writer.venue, self.writer.path,
                                 extra={"reason": "capture_resumed"})
            return
        if now - self._flushed_at >= self.flush_s and self.writer.pending:
            self._flushed_at = now
            if self._try(self.writer.flush):
                self.backoff.succeeded()
        if now - self._pruned_at >= PRUNE_S:
            self._pruned_at = now
            try:
                deleted = self.writer.prune()
            except OSError as exc:  # the directory itself: the next write reports it if it matters
                self.log.warning("%s: capture retention failed: %s", self.writer.venue, exc)
                deleted = []
            for path in deleted:
                self.log.info("%s: capture retention deleted %s", self.writer.venue, path)

    def close(self) -> None:
        if self.recording:
            self._try(self.writer.close)

    def _try(self, call, *args) -> bool:
        try:
            call(*args)
            return True
        except (OSError, ValueError) as exc:  # ValueError: a frame too large to capture
            self._failed(exc)
            return False

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        self.recording = False
        code = getattr(exc, "errno", None)
        name = errno.errorcode.get(code, "no errno") if code is not None else "no errno"
        if self.policy == "fail":
            self.failure = f"capture write failed ({name}: {exc}); capture_on_error = \"fail\""
            self.log.error("%s: %s: stopping", self.writer.venue, self.failure,
                           extra={"reason": "capture_failed", "errno": name})
            self.on_fail()
            return
        delay = self.backoff.failed()
        self._retry_at = time.monotonic() + delay
        self.log.error("%s: capture write failed (%s: %s); the feed goes on without capture, a new file "
                       "in %.1f s", self.writer.venue, name, exc, delay,
                       extra={"reason": "capture_failed", "errno": name})
