import multiprocessing
import os
import signal
import time

import numpy as np
import pytest

import procs
from shm.layout import BOOK_MAX_DEPTH, Header, State
from shm.segment import InstrumentSpec, Segment, SegmentError, SegmentWriter, segment_path

SPEC = [InstrumentSpec("BTCUSDT", "BTC-USDT", 2, 5, 5000), InstrumentSpec("ETHUSDT", "ETH-USDT", 2, 4, 5000)]
spawn = multiprocessing.get_context("spawn")


def make_writer(prefix, name="binance", depth=10, ring_slots=64):
    return SegmentWriter.create(prefix, name, SPEC, depth, ring_slots)


def test_writer_creates_a_file_named_prefix_dot_name_under_dev_shm(shm_prefix):
    with make_writer(shm_prefix):
        assert os.path.exists(f"/dev/shm/{shm_prefix}.binance")


def test_reader_sees_the_header_and_instrument_table(shm_prefix):
    with make_writer(shm_prefix, depth=20, ring_slots=256), Segment(shm_prefix, "binance") as segment:
        assert segment.name == "binance"
        assert segment.state == State.OPEN
        assert segment.writer_pid == os.getpid()
        assert (segment.geometry.n_instruments, segment.geometry.depth, segment.geometry.ring_slots) == (2, 20, 256)
        assert segment.instruments["symbol"].tolist() == [b"BTC-USDT", b"ETH-USDT"]
        assert segment.instruments["qty_dec"].tolist() == [5, 4]
        assert (segment.books[:, BOOK_MAX_DEPTH] == 20).all()


def test_reader_mapping_is_read_only(shm_prefix):
    with make_writer(shm_prefix), Segment(shm_prefix, "binance") as segment:
        with pytest.raises(ValueError, match="read-only"):
            segment.books[0, 0] = 1


def test_every_region_starts_on_a_cache_line(shm_prefix):
    with make_writer(shm_prefix, depth=7, ring_slots=32) as writer:
        g = writer.geometry
        assert all(offset % 64 == 0 for offset in (g.instruments_off, g.books_off, g.ring_off, g.counters_off))
        assert g.block_words * 8 % 64 == 0


def test_attaching_a_missing_segment_names_the_path(shm_prefix):
    with pytest.raises(SegmentError, match=f"no segment at /dev/shm/{shm_prefix}.kraken"):
        Segment(shm_prefix, "kraken")


@pytest.mark.parametrize("field, value, message", [
    (Header.MAGIC, 12345, "bad magic"),
    (Header.VERSION, 99, "layout version 99"),
    (Header.RING_OFF, 8, "RING_OFF"),
    (Header.DEPTH, 0, "corrupt header"),
])
def test_attach_rejects_a_header_it_cannot_trust(shm_prefix, field, value, message):
    with make_writer(shm_prefix) as writer:
        writer.header[field] = value
        with pytest.raises(SegmentError, match=message):
            Segment(shm_prefix, "binance")


def test_attach_rejects_a_file_of_the_wrong_size(shm_prefix):
    with make_writer(shm_prefix) as writer:
        with open(writer.path, "r+b") as f:
            f.truncate(writer.geometry.size + 4096)
        with pytest.raises(SegmentError, match="file is"):
            Segment(shm_prefix, "binance")


def test_attach_rejects_a_file_too_small_for_a_header(shm_prefix):
    path = segment_path(shm_prefix, "binance")
    with open(path, "wb") as f:
        f.write(b"x" * 100)
    with pytest.raises(SegmentError, match="too small"):
        Segment(shm_prefix, "binance")


def test_a_second_writer_is_refused_while_the_first_lives(shm_prefix):
    with make_writer(shm_prefix):
        with pytest.raises(SegmentError, match="owned by a live writer"):
            make_writer(shm_prefix)


def test_prefixes_keep_deployments_apart(shm_prefix):
    with make_writer(shm_prefix), make_writer(shm_prefix + "b"):
        assert Segment(shm_prefix + "b", "binance").state == State.OPEN
    os.unlink(segment_path(shm_prefix + "b", "binance"))


@pytest.mark.parametrize("prefix, name", [("", "binance"), ("fh", "../etc"), ("fh", "a/b"), ("-x", "binance")])
def test_unsafe_names_are_refused(prefix, name):
    with pytest.raises(SegmentError, match="must be"):
        segment_path(prefix, name)


def test_clean_close_marks_the_segment_closed_and_keeps_the_books_readable(shm_prefix):
    writer = make_writer(shm_prefix)
    writer.books[1, 1] = 77
    writer.close()
    with Segment(shm_prefix, "binance") as segment:
        assert segment.state == State.CLOSED
        assert not segment.writer_alive()
        assert segment.books[1, 1] == 77


def test_a_dead_writers_segment_is_detected_and_replaced(shm_prefix):
    ready = spawn.Event()
    child = spawn.Process(target=procs.writer_that_waits, args=(shm_prefix, "binance", ready))
    child.start()
    try:
        assert ready.wait(60)
        old = Segment(shm_prefix, "binance")
        assert old.writer_alive()
        with pytest.raises(SegmentError, match="live writer"):
            make_writer(shm_prefix)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join()
    assert not old.writer_alive()
    with make_writer(shm_prefix) as writer:
        assert old.state == State.REPLACED
        assert Segment(shm_prefix, "binance").writer_pid == os.getpid() == writer.header[Header.WRITER_PID]


def test_a_stale_heartbeat_means_the_writer_is_not_alive(shm_prefix):
    with make_writer(shm_prefix) as writer, Segment(shm_prefix, "binance") as segment:
        writer.heartbeat(monotonic_ns=time.monotonic_ns() - 6 * 10**9)
        assert not segment.writer_alive(stale_after_s=5)
        writer.heartbeat()
        assert segment.writer_alive(stale_after_s=5)


def test_a_wall_clock_step_neither_ages_a_live_writer_nor_freshens_a_hung_one(shm_prefix):
    hour = 3600 * 10**9
    with make_writer(shm_prefix) as writer, Segment(shm_prefix, "binance") as segment:
        writer.heartbeat(now_ns=time.time_ns() - hour)  # the wall clock stepped forward an hour
        assert segment.writer_alive(stale_after_s=5) and segment.heartbeat_age_s() < 5
        writer.heartbeat(now_ns=time.time_ns() + hour, monotonic_ns=time.monotonic_ns() - 6 * 10**9)
        assert not segment.writer_alive(stale_after_s=5)  # a step back does not make a silent writer fresh


def test_a_reader_process_exiting_does_not_remove_the_segment(shm_prefix):
    with make_writer(shm_prefix) as writer:
        child = spawn.Process(target=procs.attach_and_exit, args=(shm_prefix, "binance"))
        child.start()
        child.join(60)
        assert child.exitcode == 0
        assert os.path.exists(writer.path)


def test_instrument_fields_are_validated(shm_prefix):
    with pytest.raises(SegmentError, match="1-32 bytes"):
        SegmentWriter.create(shm_prefix, "x", [InstrumentSpec("A" * 40, "A-B", 2, 2, 10)], 4, 16)
    with pytest.raises(SegmentError, match="px_dec"):
        SegmentWriter.create(shm_prefix, "x", [InstrumentSpec("AB", "A-B", 19, 2, 10)], 4, 16)
    with pytest.raises(ValueError, match="power of two"):
        SegmentWriter.create(shm_prefix, "x", SPEC, 4, 100)
    assert not os.path.exists(segment_path(shm_prefix, "x"))


def test_counters_have_a_row_per_instrument_and_one_for_the_venue(shm_prefix):
    with make_writer(shm_prefix) as writer:
        assert writer.counters.shape[0] == len(SPEC) + 1
        assert np.all(writer.counters == 0)


def test_closing_a_reader_keeps_arrays_a_caller_still_holds_readable(shm_prefix):
    with make_writer(shm_prefix) as writer:
        writer.books[0, 8] = 5
        segment = Segment(shm_prefix, "binance")
        books = segment.books
        segment.close()
        assert books[0, 8] == 5
