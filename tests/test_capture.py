import json
import multiprocessing
import os
import signal
import time

import pytest

import procs
from feedhandler.capture import (FORMAT_VERSION, CaptureError, CaptureReader, CaptureWriter, FrameKind,
                                 RotatingCaptureWriter, rest_payload, split_rest)
from tools import cli

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
    assert header["format"] == FORMAT_VERSION == 2 and header["venue"] == "binance" and header["host"]
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


def test_a_capture_never_replaces_or_follows_an_existing_file(tmp_path):
    existing = tmp_path / "a.fhcap"
    existing.write_bytes(b"an earlier recording")
    with pytest.raises(FileExistsError):
        CaptureWriter(existing, "binance")
    assert existing.read_bytes() == b"an earlier recording"
    victim = tmp_path / "victim"
    victim.write_bytes(b"not yours")
    (tmp_path / "link.fhcap").symlink_to(victim)
    with pytest.raises(FileExistsError):
        CaptureWriter(tmp_path / "link.fhcap", "binance")
    assert victim.read_bytes() == b"not yours"
    assert os.stat(write(tmp_path / "new.fhcap")).st_mode & 0o777 == 0o600


def test_restarts_in_the_same_second_or_after_a_clock_step_back_get_new_files(tmp_path, monkeypatch):
    frozen = time.gmtime(1_700_000_000)
    monkeypatch.setattr(time, "gmtime", lambda *_: frozen)  # every writer opens in the same UTC second
    paths = []
    for run in range(3):  # three worker lives, each starting its own numbering
        with RotatingCaptureWriter(tmp_path, "kraken", compress=False) as writer:
            writer.append(FrameKind.WS_RECV, 1, run, b"life %d" % run)
        paths += writer.paths
    assert len(set(paths)) == 3
    assert [[f.payload for f in CaptureReader(p).frames()] for p in sorted(paths)] == \
        [[b"life 0"], [b"life 1"], [b"life 2"]]


def _flip(path, offset, mask):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ mask]))


# block header fields: magic 0, codec 4, frames 8, stored 12, raw 16, crc 20, first ts 24, last ts 32
@pytest.mark.parametrize("field", [8, 12, 16], ids=["frames", "stored", "raw"])
def test_a_flipped_block_length_is_refused_without_allocating_it(tmp_path, field):
    import tracemalloc

    path = write(tmp_path / "a.fhcap", block_bytes=64)
    first = CaptureReader(path).blocks[0]
    _flip(path, first.offset + field + 3, 0x40)  # the length's top byte: a gigabyte more
    tracemalloc.start()
    try:
        reader = CaptureReader(path)
        frames = as_tuples(reader)
        report = reader.verify()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20
    assert frames == [] and report["frames"] == 0
    assert any(f"block header at offset {first.offset}" in problem for problem in report["problems"])


def test_frames_of_an_unknown_kind_are_skipped_and_counted(tmp_path):
    frames = FRAMES[:3] + [(99, 1, 3_500, b"from a newer fh")] + FRAMES[3:]
    reader = CaptureReader(write(tmp_path / "a.fhcap", frames=frames))
    assert as_tuples(reader) == FRAMES
    report = reader.verify()
    assert report["frames"] == len(FRAMES) and report["unknown_frames"] == 1
    assert any("unknown kind 99" in problem for problem in report["problems"])


def test_format_1_files_still_read(tmp_path):
    import json
    import struct
    import zlib

    header = json.dumps({"format": 1, "venue": "binance", "config": {}}).encode()
    raw = b"".join(struct.pack("<BxHIq", kind, conn, len(payload), ts) + payload for kind, conn, ts, payload in FRAMES)
    block = struct.pack("<4sB3xIIIIqq", b"FHBK", 0, len(FRAMES), len(raw), len(raw), zlib.crc32(raw), 1_000, 7_000)
    path = tmp_path / "v1.fhcap"
    path.write_bytes(b"FHCAP01\n" + struct.pack("<I", len(header)) + header + struct.pack("<I", zlib.crc32(header))
                     + block + raw)
    reader = CaptureReader(path)
    assert as_tuples(reader) == FRAMES and reader.problems == []


def test_retention_deletes_the_oldest_files_of_the_venue_only(tmp_path):
    def recording(name, age_s, size=3_000):
        path = tmp_path / name
        with CaptureWriter(path, name.split("-")[0], compress=False) as writer:
            writer.append(FrameKind.WS_RECV, 1, 0, b"x" * size)
        os.utime(path, (time.time() - age_s, time.time() - age_s))
        return path

    ancient = recording("kraken-20200101T000000Z-0000.fhcap", age_s=10 * 86400)
    old = recording("kraken-20200102T000000Z-0000.fhcap", age_s=3 * 3600)
    recent = recording("kraken-20200103T000000Z-0000.fhcap", age_s=60)
    other_venue = recording("binance-20200101T000000Z-0000.fhcap", age_s=10 * 86400)
    not_a_capture = tmp_path / "kraken-notes.txt"
    not_a_capture.write_text("keep")
    with RotatingCaptureWriter(tmp_path, "kraken", max_total_bytes=15_000, max_age_s=86400, compress=False) as writer:
        writer.append(FrameKind.WS_RECV, 1, 0, b"y" * 3_000)  # opening a file applies the retention
        assert not ancient.exists() and old.exists()  # too old; the rest is under 15 kB
        writer.append(FrameKind.WS_RECV, 1, 1, b"y" * 6_000)
        writer.flush()
        assert writer.prune() == [str(old)]  # the oldest, to get back under 15 kB (the current file counts)
    assert recent.exists() and other_venue.exists() and not_a_capture.exists()
    assert os.path.exists(writer.paths[0])


def test_a_failed_write_drops_capturing_without_raising_and_a_new_file_follows(tmp_path):
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=procs.recorder_past_a_file_size_limit, args=(str(tmp_path), 20_000, results))
    child.start()
    report = results.get(timeout=120)
    child.join(timeout=30)
    assert child.exitcode == 0
    assert report["errors"] == 1 and report["stopped_at"] > 10
    assert not report["retried_early"] and report["resumed"]
    first, second = report["paths"]
    assert os.path.getsize(first) <= 20_000
    kept = [int(f.payload[:8]) for f in CaptureReader(first).frames()]
    assert kept == list(range(len(kept))) and 0 < len(kept) < report["stopped_at"]  # whole blocks, then the cut
    assert [f.payload for f in CaptureReader(second).frames()] == [b"after"]


def test_capture_keys_are_checked_when_the_config_loads():
    from feedhandler.config import ConfigError, parse_config

    def run(**keys):
        return parse_config({"run": keys, "venues": {"kraken": {"symbols": ["BTC-USD"]}}})
    defaults = run()
    assert (defaults.capture_on_error, defaults.capture_max_bytes, defaults.capture_max_age_s) == ("drop", 0, 0.0)
    chosen = run(capture_on_error="fail", capture_max_bytes=1 << 30, capture_max_age_s=86400)
    assert (chosen.capture_on_error, chosen.capture_max_bytes, chosen.capture_max_age_s) == ("fail", 1 << 30, 86400.0)
    for key, value in [("capture_on_error", "ignore"), ("capture_max_bytes", -1), ("capture_max_age_s", float("nan"))]:
        with pytest.raises(ConfigError, match=f"run.{key}"):
            run(**{key: value})


def test_capture_info_shows_iso_utc_times_sizes_and_a_table_of_frames_by_kind(tmp_path, capsys):
    path = write(tmp_path / "a.fhcap", block_bytes=64)
    assert cli.main(["capture", "info", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    fields = {line.split(None, 1)[0]: line.split(None, 1)[1] for line in lines[:12] if line.strip()}
    assert fields["size"] == f"{path.stat().st_size:,} bytes"
    assert (fields["venue"], fields["config"]) == ("binance", '{"symbols": ["BTCUSDT"]}')
    assert lines[6:9] == ["first frame  1970-01-01T00:00:00.000001000Z", "last frame   1970-01-01T00:00:00.000007000Z",
                          "span         0.000 s"]
    table = lines[lines.index("kind        frames"):]
    assert table[1:8] == ["ws_recv     2", "ws_sent     1", "rest        1", "connect     1", "disconnect  1",
                          "marker      1", "total       7"]
    assert table[9:] == ["problems: 0"]


def test_capture_info_json_is_one_object_with_times_in_ns(tmp_path, capsys):
    path = write(tmp_path / "a.fhcap", block_bytes=64)
    assert cli.main(["capture", "info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["first_ns"], info["last_ns"], info["frames"], info["size_bytes"]) == (1_000, 7_000, 7,
                                                                                       path.stat().st_size)
    assert info["by_kind"] == {"ws_recv": 2, "ws_sent": 1, "rest": 1, "connect": 1, "disconnect": 1, "marker": 1}
