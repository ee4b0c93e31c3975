"""The `fh` commands as a user runs them: figures printed, keys present; timings never asserted."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest

from conftest import REPO
from shm.reader import VenueReader
from shm.segment import SegmentError

FH = [sys.executable, "-m", "tools.cli"]


def fh(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*FH, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_bench_book_json_has_the_documented_keys():
    result = fh("bench", "book", "--json", "--levels", "20000", "--diffs", "2000")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    for key in ("ns_per_level", "diff40_p50_ns", "diff40_p99_ns"):
        assert isinstance(figures[key], float) and figures[key] > 0
    assert figures["crossed_after_diffs"] is False


def test_bench_shm_json_has_the_documented_keys():
    result = fh("bench", "shm", "--json", "--samples", "2000", "--records", "100000")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    for key in ("ring_hop_p50_ns", "ring_hop_p99_ns", "seqlock_hop_p50_ns", "seqlock_hop_p99_ns",
                "ring_records_per_s"):
        assert isinstance(figures[key], float) and figures[key] > 0


def test_bench_decode_json_has_a_figure_per_venue():
    result = fh("bench", "decode", "--json", "--frames", "500")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    for venue in ("binance", "binance_usdm", "coinbase", "kraken", "okx", "bybit_linear"):
        assert set(figures[venue]) == {"p50_ns", "p99_ns", "msgs_per_s"}
        assert figures[venue]["msgs_per_s"] > 0


def test_bench_replay_json_counts_frames(captures, tmp_path):
    from tools.importers.cryptofeed import import_recordings
    capture = tmp_path / "b.fhcap"
    import_recordings([str(captures / "binance-spot-2021" / "BINANCE")], str(capture))
    result = fh("bench", "replay", str(capture), "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["frames"] == 265 + 5 and figures["msgs_per_s"] > 0  # WebSocket messages + REST responses


def test_bench_book_replays_a_captures_book_changes_per_book_with_each_instruments_tick(captures, tmp_path):
    from tools.importers.cryptofeed import import_recordings
    capture = tmp_path / "b.fhcap"
    import_recordings([str(captures / "binance-spot-2021" / "BINANCE")], str(capture))
    result = fh("bench", "book", "--capture", str(capture), "--json", "--rounds", "1", "--unit-tick")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    # 4 snapshots of up to 1,000 levels a side, then the diffs that bridge and follow them
    assert figures["venue"] == "binance" and figures["levels"] > figures["snapshot_levels"] > 4000
    assert figures["ns_per_level"] > 0 and figures["unit_tick"]["ns_per_level"] > 0
    nkn = figures["books"]["NKN-USDT"]
    assert nkn["tick_units"] == 10_000  # 0.0001 at Binance's 8 decimals: the ladder steps by ticks
    assert nkn["off_grid_levels"] > 0  # levels from before the tick change, kept exactly in the run
    assert sum(book["levels"] for book in figures["books"].values()) == figures["levels"]


@pytest.mark.clickhouse
def test_bench_query_answers_a_day_of_one_symbol_alike_from_trades_and_from_the_bars_view():
    result = fh("bench", "query", "--json", "--trades", "20000", "--repeats", "2")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["rows"] == 9 * 20000 and figures["symbol_rows"] == 3 * 20000
    assert figures["ohlcv_1m_from_trades"]["result_rows"] == figures["ohlcv_1m_from_bars"]["result_rows"] == 1440
    assert figures["day_by_venue_from_trades"]["result_rows"] == 3
    assert figures["bars_view_matches_trades"] is True
    for query in ("ohlcv_1m_from_trades", "ohlcv_1m_from_bars", "day_by_venue_from_trades"):
        assert figures[query]["p50_ms"] > 0


def test_version_is_the_one_setup_py_declares():
    declared = re.search(r'version="([^"]+)"', (REPO / "setup.py").read_text()).group(1)
    result = fh("--version")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"fh {declared}\n", "")


@pytest.mark.parametrize("flag", ["--levels", "--rounds"])
def test_bench_rejects_a_non_positive_count(flag):
    result = fh("bench", "book", flag, "0")
    assert result.returncode == 2
    assert f"{flag} must be > 0" in result.stderr


@contextmanager
def demo_running(prefix: str, duration_s: float):
    """`fh demo` publishing under `prefix` for `duration_s` (the process), once its segment can be read."""
    demo = subprocess.Popen([*FH, "demo", "--prefix", prefix, "--duration", str(duration_s), "--rate", "100"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                VenueReader("demo", prefix=prefix).close()
                break
            except SegmentError:
                assert time.monotonic() < deadline and demo.poll() is None, "fh demo did not start"
                time.sleep(0.1)
        yield demo
    finally:
        demo.wait(120)


def test_demo_names_the_segment_it_publishes_in_the_shared_memory_directory_in_use(tmp_path, shm_prefix):
    result = subprocess.run([*FH, "demo", "--prefix", shm_prefix, "--duration", "0.2"], cwd=REPO, text=True,
                            capture_output=True, env={**os.environ, "FH_SHM_DIR": str(tmp_path)}, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"fh demo: publishing to {tmp_path}/{shm_prefix}.demo for 0.2 s" in result.stderr.splitlines()


def test_an_interrupted_command_says_so_in_one_line_without_a_traceback(shm_prefix):
    with demo_running(shm_prefix, 120) as demo:
        demo.send_signal(signal.SIGINT)
        _, stderr = demo.communicate(timeout=60)
    assert demo.returncode == 130 and stderr.splitlines()[-1] == "fh demo: interrupted", stderr
    assert "Traceback" not in stderr


def test_replay_reports_a_missing_file_or_a_bad_speed_without_a_traceback(captures, tmp_path):
    from tools.importers.cryptofeed import import_recordings
    missing = fh("replay", str(tmp_path / "nope.fhcap"))
    assert missing.returncode == 2 and "No such file" in missing.stderr and "Traceback" not in missing.stderr
    capture = tmp_path / "k.fhcap"
    import_recordings([str(captures / "kraken-v1-2021" / "KRAKEN")], str(capture))
    bad_speed = fh("replay", str(capture), "--speed", "fast")
    assert bad_speed.returncode == 2 and "--speed must be" in bad_speed.stderr


def test_sim_on_a_taken_port_exits_non_zero_naming_it_and_prints_no_urls():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = fh("sim", "--venues", "binance", "--port", str(port), "--duration", "1", timeout=120)
    assert result.returncode == 2
    assert result.stderr == (f"fh: binance: cannot listen on 127.0.0.1:{port} (Address already in use); use --port N "
                             f"(venue k listens on N+2k and N+2k+1)\n")
    assert result.stdout == ""


def test_make_run_on_a_taken_simulator_port_fails_at_once_with_the_simulators_reason(tmp_path):
    """`make run` starts `fh sim` first: with port 18700 (configs/sim.toml's) taken it exits non-zero
    showing the simulator's one-line reason and hint, before compiling anything or starting `fh run`."""
    stamp, bin_dir = tmp_path / "installed-stamp", tmp_path / "bin"
    stamp.touch()  # newer than setup.py: make installs nothing
    bin_dir.mkdir()
    (bin_dir / "fh").write_text(f'#!/bin/sh\nexec {sys.executable} -m tools.cli "$@"\n')
    (bin_dir / "fh").chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)  # the venv make would otherwise create
    with socket.socket() as taken:
        try:
            taken.bind(("127.0.0.1", 18700))
            taken.listen()
        except OSError:
            pass  # taken already: all the same to make run
        result = subprocess.run(["make", "-s", "run", f"RUN_STAMP={stamp}", f"BIN={bin_dir}"], cwd=REPO,
                                capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "cannot listen on 127.0.0.1:18700" in result.stderr and "use --port N" in result.stderr
    assert "make run: fh sim did not start" in result.stderr
    assert "Traceback" not in result.stderr and "warmup" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize("argv", [["replay", "{dir}"], ["capture", "info", "{dir}"], ["plan", "-c", "{dir}"]])
def test_a_directory_where_a_file_belongs_is_one_line_naming_it(argv, tmp_path):
    result = fh(*(arg.format(dir=tmp_path) for arg in argv), timeout=120)
    assert result.returncode == 2
    assert result.stderr == f"fh: {tmp_path}: Is a directory\n"


def test_latency_with_nothing_under_the_prefix_exits_1_naming_the_prefixes_there(tmp_path):
    from shm.segment import InstrumentSpec, SegmentWriter
    env = {**os.environ, "FH_SHM_DIR": str(tmp_path)}
    spec = [InstrumentSpec("BTCUSDT", "BTC-USDT", 2, 5, 64)]
    with SegmentWriter.create("fhother", "binance", spec, depth=5, ring_slots=64, directory=str(tmp_path)):
        shown = subprocess.run([*FH, "latency", "--prefix", "fhnone"], cwd=REPO, env=env, capture_output=True,
                               text=True, timeout=120)
        as_json = subprocess.run([*FH, "latency", "--prefix", "fhnone", "--json"], cwd=REPO, env=env,
                                 capture_output=True, text=True, timeout=120)
    assert shown.returncode == 1 and shown.stdout == ""
    assert shown.stderr == (f"fh latency: no latency histograms under {tmp_path}/fhnone.latency.*; prefixes there: "
                            f"fhother (1 segment); choose one with --prefix P\n")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["hops"] == [] and as_json.stderr == shown.stderr


def test_metrics_on_a_taken_port_is_one_line_with_the_hint():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = fh("metrics", "--port", str(port), timeout=120)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (f"fh metrics: cannot listen on 127.0.0.1:{port} (Address already in "
                                              f"use); use --port N (0: any free port)")
    assert "Traceback" not in result.stderr
