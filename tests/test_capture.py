import multiprocessing
import os
import signal
import time

import pytest

import procs
from feedhandler.capture import (CaptureError, CaptureReader, CaptureWriter, FrameKind, RotatingCaptureWriter,
                                 rest_payload, split_rest)

FRAMES = [
    (FrameKind.CONNECT, 1, 1_000, b"wss://stream.binance.com:9443/stream"),
    (FrameKind.WS_SENT, 1, 2_000, b'{"method":"SUBSCRIBE"}'),
    (FrameKind.REST, 2, 3_000, rest_payload("GET", "https://api.binance.com/api/v3/depth", 200, b'{"x":1}')),
    (FrameKind.WS_RECV, 1, 4_000, b"\x00\x01binary\xff"),
    (FrameKind.WS_RECV, 1, 5_000, b""),
    (FrameKind.DISCONNECT, 1, 6_000, b"1006 abnormal closure"),
    (FrameKind.MARKER, 0, 7_000, b"snapshot requested"),
]


def write(path, frames=FRAMES, **options):
    with CaptureWriter(path, "binance", config={"symbols": ["BTCUSDT"]}, **options) as writer:
        for frame in frames:
            writer.append(*frame)
    return path


def as_tuples(reader, **kwargs):
    return [(f.kind, f.conn, f.ts_ns, f.payload) for f in reader.frames(**kwargs)]


@pytest.mark.parametrize("compress", [True, False], ids=["zstd", "plain"])
def test_frames_come_back_exactly_in_order(tmp_path, compress):
    reader = CaptureReader(write(tmp_path / "a.fhcap", compress=compress, block_bytes=64))
    assert as_tuples(reader) == FRAMES
    assert len(reader.blocks) > 1
    assert reader.problems == []


def test_header_names_venue_host_clock_and_config(tmp_path):
    header = CaptureReader(write(tmp_path / "a.fhcap")).header
    assert header["format"] == 1 and header["venue"] == "binance" and header["host"]
    assert header["config"] == {"symbols": ["BTCUSDT"]}
    assert {"realtime_ns", "monotonic_ns", "clocksource"} <= set(header["clock"])


def test_rest_frames_keep_method_url_status_and_body():
    assert split_rest(rest_payload("GET", "https://x/y?a=1", 429, b"{}")) == ("GET", "https://x/y?a=1", 429, b"{}")


def test_reading_from_a_time_skips_earlier_frames(tmp_path):
    reader = CaptureReader(write(tmp_path / "a.fhcap", block_bytes=64))
    assert [f.ts_ns for f in reader.frames(start_ns=4_500)] == [5_000, 6_000, 7_000]


def test_a_file_cut_inside_a_block_reads_up_to_the_last_whole_block(tmp_path):
    path = write(tmp_path / "a.fhcap", block_bytes=64)
    reader = CaptureReader(path)
    last = reader.blocks[-1]
    os.truncate(path, last.offset + 50)
    cut = CaptureReader(path)
    assert as_tuples(cut) == FRAMES[:len(FRAMES) - last.frames]
    assert any("torn tail" in problem for problem in cut.problems)


def test_a_corrupt_block_is_reported_and_skipped(tmp_path):
    path = write(tmp_path / "a.fhcap", block_bytes=64, compress=False)
    block = CaptureReader(path).blocks[1]
    with open(path, "r+b") as f:
        f.seek(block.offset + 45)
        byte = f.read(1)
        f.seek(block.offset + 45)
        f.write(bytes([byte[0] ^ 0xFF]))
    reader = CaptureReader(path)
    report = reader.verify()
    assert report["bad_blocks"] == 1 and report["frames"] == len(FRAMES) - block.frames
    assert any("checksum" in problem for problem in report["problems"])


def test_a_file_that_is_not_a_capture_is_refused(tmp_path):
    path = tmp_path / "x.fhcap"
    path.write_bytes(b"hello world, definitely not a capture")
    with pytest.raises(CaptureError, match="not an fh capture"):
        CaptureReader(path)


def test_after_kill_9_the_file_reads_back_a_prefix_of_what_was_written(tmp_path):
    path = tmp_path / "killed.fhcap"
    child = multiprocessing.get_context("spawn").Process(target=procs.capture_forever, args=(str(path),))
    child.start()
    deadline = time.monotonic() + 60
    while (not path.exists() or path.stat().st_size < 200_000) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    reader = CaptureReader(path)
    numbers = [frame.ts_ns for frame in reader.frames()]
    assert len(numbers) > 1000
    assert numbers == list(range(len(numbers)))
    assert all(frame.payload == b'{"n":%d}' % frame.ts_ns for frame in reader.frames())


def test_rotation_starts_a_new_file_past_the_size_limit(tmp_path):
    with RotatingCaptureWriter(tmp_path, "kraken", max_bytes=2_000, block_bytes=256, compress=False) as writer:
        for k in range(200):
            writer.append(FrameKind.WS_RECV, 1, k, b"x" * 40)
    assert len(writer.paths) > 2
    assert all(os.path.basename(p).startswith("kraken-") for p in writer.paths)
    timestamps = [f.ts_ns for path in writer.paths for f in CaptureReader(path).frames()]
    assert timestamps == list(range(200))
