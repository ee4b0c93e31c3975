"""`fh top` as a user meets it: readable whole at 80 columns, quit with `q` or Ctrl-C without a
traceback, and a clear word (with the prefixes there are) when nothing is under its prefix."""
import fcntl
import io
import os
import pty
import select
import subprocess
import sys
import termios
import time

from rich.console import Console

from conftest import REPO
from shm.segment import InstrumentSpec, SegmentWriter
from tools.top import frame

FH = [sys.executable, "-m", "tools.cli"]
VENUES = "binance coinbase kraken"
NBBO = [["BTC-USDT", VENUES, "1.56789012", "100000.01", "100000.02", "0.5", "coinbase", "CROSSED",
         "binance:3ms coinbase:12ms kraken:stale"],
        ["ETH-USDT", "kraken", "12.12345678", "3500.12", "3500.13", "98.4321", VENUES, "", "binance:3ms"],
        ["BTC-USD", "coinbase kraken", "0.00012", "99999.99", "100000.00", "7.25", "kraken", "", "kraken:1ms"]]
NOTES = ["BTC-USDT CROSSED: bid 100000.01 on binance coinbase kraken > ask 100000.02 on coinbase: these "
         "venues' prices disagree (shown as they are)"]
VENUE_ROWS = [["coinbase", "open", "0.2s", "3/3", "1,234", "123456789", "12", "3", "0", "123.4", "5678.9"],
              ["binance", "REFUSED"] + ["-"] * 9]


def shown(width: int) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(frame("fhsim", NBBO, NOTES, VENUE_ROWS, width))
    return out.getvalue().splitlines()


def words(lines: list[str]) -> set[str]:
    return {word for line in lines for word in line.split()}


def test_at_80_columns_every_symbol_venue_price_and_size_shows_whole():
    lines = shown(80)
    assert max(map(len, lines)) <= 80
    for row in NBBO:
        assert set(row[:8]) - {""} <= words(lines) | {VENUES, "coinbase kraken"}, row
        assert any(line.startswith(row[0] + " ") for line in lines)
    assert set(VENUES.split()) <= words(lines)
    assert {"CROSSED", "123.4", "5678.9", "REFUSED"} <= words(lines)


def test_a_wider_terminal_also_shows_each_venues_quote_age_and_the_frame_totals():
    assert "kraken:stale" not in words(shown(80)) and "123456789" not in words(shown(80))
    wide = shown(160)
    assert max(map(len, wide)) <= 160
    assert {"kraken:stale", "123456789", "venue", "ages"} <= words(wide)
    assert any(VENUES in line for line in wide)  # room to list the venues on one line


def test_a_cross_is_explained_under_the_table():
    assert any(line.startswith("BTC-USDT CROSSED: bid 100000.01") for line in shown(80))


def a_venue_segment(prefix: str) -> SegmentWriter:
    writer = SegmentWriter.create(prefix, "kraken", [InstrumentSpec("BTC/USD", "BTC-USD", 1, 8, 16)], depth=4,
                                  ring_slots=16)
    writer.heartbeat()
    return writer


def top_in_a_terminal(prefix: str) -> tuple[subprocess.Popen, int]:
    """`fh top` in a session of its own whose controlling terminal is a pseudo-terminal (its stdin, stdout
    and stderr), as in a user's shell, once it has drawn a frame."""
    controller, terminal = pty.openpty()
    top = subprocess.Popen([*FH, "top", "--prefix", prefix, "--interval", "0.2"], cwd=REPO, stdin=terminal,
                           stdout=terminal, stderr=terminal, env={**os.environ, "COLUMNS": "80", "LINES": "40"},
                           start_new_session=True, preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(terminal)
    read_until(controller, top, b"venues")
    return top, controller


def read_until(controller: int, process: subprocess.Popen, wanted: bytes | None, timeout_s: float = 300) -> bytes:
    """What the terminal showed until `wanted` (None: until the process exited and the output ended)."""
    seen = b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if wanted is not None and wanted in seen:
            return seen
        if select.select([controller], [], [], 0.1)[0]:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal's other side closed: the process is gone
                chunk = b""
            if not chunk and wanted is None:
                return seen
            seen += chunk
        elif wanted is None and process.poll() is not None:
            return seen
    raise AssertionError(f"not seen in {timeout_s} s: {wanted!r}; the terminal showed {seen[-2000:]!r}")


def test_q_quits(shm_prefix):
    with a_venue_segment(shm_prefix):
        top, controller = top_in_a_terminal(shm_prefix)
        try:
            os.write(controller, b"q")
            assert top.wait(30) == 0
        finally:
            top.kill()
            os.close(controller)


def test_ctrl_c_quits_without_a_traceback(shm_prefix):
    with a_venue_segment(shm_prefix):
        top, controller = top_in_a_terminal(shm_prefix)
        try:
            os.write(controller, b"\x03")  # the terminal turns it into SIGINT, as for a user
            shown_after = read_until(controller, top, None, timeout_s=30)
            assert top.wait(30) == 0
        finally:
            top.kill()
            os.close(controller)
    assert b"Traceback" not in shown_after and b"KeyboardInterrupt" not in shown_after


def test_nothing_under_the_prefix_is_said_with_the_prefixes_there_are(tmp_path, monkeypatch):
    monkeypatch.setenv("FH_SHM_DIR", str(tmp_path))
    (tmp_path / "sem.not-a-segment").write_bytes(b"\0" * 4096)
    with a_venue_segment("fhsomewhere"):
        result = subprocess.run([*FH, "top", "--prefix", "fhnothing", "--once"], cwd=REPO, capture_output=True,
                                text=True, timeout=120)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == (f"fh top: nothing under {tmp_path}/fhnothing.*; prefixes there: fhsomewhere "
                                     f"(1 segment); choose one with --prefix P")
