"""systemd's notify protocol against real unix datagram sockets, and a real `fh sink` process
reporting READY, watchdog pings and STOPPING to one."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tools.services import free_port
from workers.notify import Notifier


@pytest.fixture
def listener(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(5)
    yield path, sock
    sock.close()


def fields(datagram: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in datagram.decode().splitlines())


def test_ready_sends_ready_status_and_the_main_pid(listener):
    path, sock = listener
    assert Notifier({"NOTIFY_SOCKET": path}).ready("3 books")
    assert fields(sock.recv(4096)) == {"READY": "1", "STATUS": "3 books", "MAINPID": str(os.getpid())}


def test_an_abstract_socket_address_starts_with_at():
    name = f"fh-test-notify-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).stopping()
        assert fields(sock.recv(4096))["STOPPING"] == "1"


def test_the_watchdog_is_pinged_at_half_its_interval(listener):
    path, sock = listener
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    assert notifier.watchdog_interval_s == 1.0
    assert [notifier.watchdog(now) for now in (10.0, 10.5, 10.99, 11.0)] == [True, False, False, True]
    assert [fields(sock.recv(4096)) for _ in range(2)] == [{"WATCHDOG": "1"}] * 2


def test_a_watchdog_meant_for_another_process_is_not_pinged(listener):
    path, _ = listener
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid() + 1)})
    assert notifier.watchdog_interval_s == 0 and not notifier.watchdog()


def test_outside_systemd_nothing_is_sent():
    notifier = Notifier({})
    assert not notifier.active and not notifier.ready("x") and not notifier.watchdog()


def test_a_socket_that_went_away_is_reported_not_raised(tmp_path):
    assert not Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")}).ready("x")


def test_a_sink_process_says_ready_pings_its_watchdog_and_says_stopping(listener, tmp_path, shm_prefix):
    path, sock = listener
    config = tmp_path / "fh.toml"
    config.write_text(f'[run]\nprefix = "{shm_prefix}"\n[venues.binance]\nsymbols = ["BTC-USDT"]\n'
                      f'[sinks.redis]\n'
                      f'url = "redis://127.0.0.1:{free_port()}/0"\nstate_dir = "{tmp_path / "state"}"\n')
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}
    process = subprocess.Popen([sys.executable, "-m", "tools.cli", "sink", "redis", "-c", str(config)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sock.settimeout(30)  # the interpreter starting on a busy machine
    try:
        received = [fields(sock.recv(4096))]
        assert received[0]["READY"] == "1" and received[0]["MAINPID"] == str(process.pid)
        started = time.monotonic()
        while len([r for r in received if "WATCHDOG" in r]) < 3:
            received.append(fields(sock.recv(4096)))
        assert time.monotonic() - started >= 0.3  # every 0.2 s, not every loop round
        process.send_signal(signal.SIGTERM)
        while "STOPPING" not in received[-1]:
            received.append(fields(sock.recv(4096)))
        assert process.wait(15) == 0
    finally:
        process.kill()
        process.wait()
