"""systemd's notify protocol (sd_notify(3)), spoken directly: one datagram of newline-separated
KEY=VALUE lines to the unix socket named by $NOTIFY_SOCKET (a leading `@` is the abstract
namespace). A `Type=notify` unit is started once the process says READY=1, and with `WatchdogSec=`
it is restarted when WATCHDOG=1 stops arriving: the processes ping from their main loop, so a hung
loop, not just a dead process, gets restarted. Outside systemd every call does nothing."""
from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger("fh.notify")


class Notifier:
    """The notify socket and watchdog interval systemd gave this process, if any."""

    def __init__(self, environ: Mapping[str, str] = os.environ):
        address = environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]
        elif address and not address.startswith("/"):
            log.warning("NOTIFY_SOCKET=%s: only unix socket paths are supported; not notifying", address)
            address = ""
        self.address = address
        watchdog_usec = int(environ.get("WATCHDOG_USEC", "0") or 0)
        watchdog_pid = int(environ.get("WATCHDOG_PID", "0") or 0)
        for_us = watchdog_pid in (0, os.getpid())
        # ping at half the interval, as sd_watchdog_enabled(3) advises
        self.watchdog_interval_s = watchdog_usec / 2e6 if address and watchdog_usec and for_us else 0.0
        self._next_ping = 0.0
        self._socket: socket.socket | None = None

    @property
    def active(self) -> bool:
        return bool(self.address)

    def notify(self, **fields: str | int) -> bool:
        """Send KEY=VALUE lines (`notify(READY=1, STATUS="...")`); False when not under systemd or
        when the datagram could not be sent (systemd gone: never fatal to the caller)."""
        if not self.address:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto(message, self.address)
        except OSError as exc:
            log.warning("sd_notify %s: %s", self.address.replace("\0", "@"), exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify(READY=1, STATUS=status, MAINPID=os.getpid())

    def stopping(self, status: str = "stopping") -> bool:
        return self.notify(STOPPING=1, STATUS=status)

    def watchdog(self, now: float | None = None) -> bool:
        """WATCHDOG=1 when half the watchdog interval has passed since the last ping; call it from
        the main loop (cheap when not due)."""
        if not self.watchdog_interval_s:
            return False
        now = time.monotonic() if now is None else now
        if now < self._next_ping:
            return False
        self._next_ping = now + self.watchdog_interval_s
        return self.notify(WATCHDOG=1)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
