import multiprocessing

import numpy as np
import pytest

import procs
from tools.bench import shm as shm_bench
from shm import ring
from shm.layout import SLOT_ID, SLOT_KIND, SLOT_MISSED, SLOT_SEQ, SLOT_WORDS, Kind
from shm.segment import InstrumentSpec, SegmentWriter

SPEC = [InstrumentSpec("BTCUSDT", "BTC-USDT", 2, 5, 100)]


@pytest.fixture
def writer(shm_prefix):
    with SegmentWriter.create(shm_prefix, "binance", SPEC, 4, 8) as w:
        yield w


def publish(writer, update_id):
    return ring.publish_book(writer.ring, writer.ring_control, 0, update_id, 1, 2, 3, 100, 1, 101, 1, 5, 5)


def read_all(writer, cursor, batch=32):
    out = np.zeros((batch, SLOT_WORDS), np.int64)
    filled = ring.poll(writer.ring, writer.ring_control, cursor, out)
    return out[:filled]


def test_records_come_back_in_order_with_their_positions(writer):
    for update_id in (10, 11, 12):
        publish(writer, update_id)
    rows = read_all(writer, np.zeros(2, np.int64))
    assert rows[:, SLOT_ID].tolist() == [10, 11, 12]
    assert rows[:, SLOT_SEQ].tolist() == [1, 2, 3]


def test_an_unwritten_position_reads_empty(writer):
    out = np.zeros(SLOT_WORDS, np.int64)
    assert ring.read_record(writer.ring, writer.ring_control, 0, out) == ring.READ_EMPTY
    publish(writer, 1)
    assert ring.read_record(writer.ring, writer.ring_control, 1, out) == ring.READ_EMPTY


def test_poll_resumes_where_it_stopped(writer):
    cursor = np.zeros(2, np.int64)
    publish(writer, 1)
    assert read_all(writer, cursor)[:, SLOT_ID].tolist() == [1]
    assert len(read_all(writer, cursor)) == 0
    publish(writer, 2)
    assert read_all(writer, cursor)[:, SLOT_ID].tolist() == [2]


def test_a_lapped_reader_gets_a_gap_with_the_exact_count_then_live_records(writer):
    cursor = np.zeros(2, np.int64)
    for update_id in range(20):  # 20 records into 8 slots
        publish(writer, update_id)
    rows = read_all(writer, cursor)
    assert rows[0, SLOT_KIND] == Kind.READER_GAP
    assert rows[0, SLOT_MISSED] == 20
    assert cursor.tolist() == [20, 20]
    publish(writer, 99)
    assert read_all(writer, cursor)[:, SLOT_ID].tolist() == [99]


def test_the_writer_never_waits_for_a_reader(writer):
    for update_id in range(10_000):
        publish(writer, update_id)
    assert ring.write_position(writer.ring_control) == 10_000


def test_trade_and_status_records_carry_their_kind(writer):
    ring.publish_trade(writer.ring, writer.ring_control, 0, 555, 1, 2, 3, 100, 7, 1, 99, 5, 101, 6, 1, 42)
    ring.publish_status(writer.ring, writer.ring_control, 0, 3, 2, 1, 2, 3)
    rows = read_all(writer, np.zeros(2, np.int64))
    assert rows[:, SLOT_KIND].tolist() == [Kind.TRADE, Kind.STATUS]


def test_a_numba_reader_in_another_process_sees_every_publish(shm_prefix):
    spawn = multiprocessing.get_context("spawn")
    count = 50_000
    with SegmentWriter.create(shm_prefix, "binance", SPEC, 4, 65536) as writer:
        ready, results = spawn.Event(), spawn.Queue()
        child = spawn.Process(target=procs.ring_follower, args=(shm_prefix, "binance", count, ready, results))
        child.start()
        assert ready.wait(120)
        procs.publish_ids(writer.ring, writer.ring_control, count)
        read, bad, total = results.get(timeout=120)
        child.join(30)
    assert (read, bad, total) == (count, 0, count * (count - 1) // 2)


@pytest.mark.jit
def test_a_reader_spinning_on_the_slot_being_written_never_reports_a_false_lap():
    """Writer and reader pinned to two cores, one record every 2 us into a ring larger than the
    run: the reader races the writer on every slot. A lap reported here is a reader bug (this
    caught one: a slot read busy, then the count read after the commit, looked overwritten)."""
    latencies, lapped = shm_bench.hop("ring", 50_000)
    assert lapped == 0
    assert len(latencies) == 50_000
