"""Per-hop latency histograms: the HDR-style encoding, the shared-memory files, and what the writers
record on the way (venue feed, aggregator, sink runner), and `fh latency` on top."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO
from feedhandler.venues.binance import BinanceFeed
from feedhandler.instruments import Instrument
from feedhandler.publish import LAT_DECODE, LAT_EXCHANGE, LAT_PUBLISH
from shm.histogram import COUNTS, H_MAX, H_MIN, H_NEGATIVE, H_OVERFLOW, HIGHEST, HIST_WORDS, difference, record, \
    record_many, slot_bounds, summary
from shm.latency import LatencyWriter, read_latency
from shm.segment import SegmentWriter
from tools import cli, latency
from tools.importers.cryptofeed import import_recordings

BTC = Instrument("binance", "BTCUSDT", "BTC", "USDT", 8, 8)


def _row() -> np.ndarray:
    return np.zeros(HIST_WORDS, np.int64)


def test_every_value_lands_in_a_slot_at_most_a_thousandth_of_it_wide():
    low, high = slot_bounds()
    assert (low[1:] == high[:-1] + 1).all()  # the slots tile 0..HIGHEST without holes or overlaps
    assert high[-1] == HIGHEST
    wide = low >= 2048
    assert ((high - low + 1)[wide] / low[wide] <= 1 / 1024).all()
    values = np.random.default_rng(7).integers(0, HIGHEST + 1, 200_000)
    row = _row()
    record_many(row, values)
    slots = np.repeat(np.arange(len(low)), row[COUNTS:])
    assert (low[slots] <= np.sort(values)).all() and (np.sort(values) <= high[slots]).all()


def test_percentiles_are_exact_to_three_significant_digits():
    values = np.random.default_rng(1).lognormal(10, 1.5, 100_000).astype(np.int64)
    row = _row()
    record_many(row, values)
    figures = summary(row, (50, 99, 99.9))
    for p in (50, 99, 99.9):
        exact = np.percentile(values, p, method="inverted_cdf")
        assert exact <= figures[f"p{p:g}_ns"] <= exact * (1 + 1 / 1024) + 1
    assert figures["count"] == len(values) and figures["max_ns"] == values.max()


def test_negative_values_count_as_zero_and_are_reported():
    row = _row()
    record(row, -5_000)
    record(row, 3)
    assert row[H_NEGATIVE] == 1 and row[H_MIN] == -5_000 and row[COUNTS] == 1
    assert summary(row)["negative"] == 1


def test_values_beyond_the_range_land_in_the_last_slot_and_are_counted():
    row = _row()
    record(row, HIGHEST * 4)
    assert row[H_OVERFLOW] == 1 and row[-1] == 1 and row[H_MAX] == HIGHEST * 4


def test_the_difference_of_two_copies_is_the_histogram_of_what_came_in_between():
    row = _row()
    record_many(row, np.full(1000, 5_000_000))  # an old burst: 5 ms
    before = row.copy()
    record_many(row, np.arange(1_000, 2_000))  # this interval: 1-2 µs
    interval = summary(difference(row, before))
    assert interval["count"] == 1000 and 1_995 <= interval["max_ns"] <= 2_000 and interval["min_ns"] == 1_000
    assert 1_495 <= interval["p50_ns"] <= 1_500


def test_an_empty_histogram_has_no_percentiles():
    assert summary(_row())["p99_ns"] is None


def test_a_latency_file_is_read_back_by_another_reader_with_its_names(shm_prefix):
    writer = LatencyWriter(shm_prefix, "binance", [("decode", "binance"), ("publish", "binance")])
    try:
        record(writer.hists[writer.row("publish", "binance")], 1500)
        (decode, publish) = read_latency(shm_prefix)
        assert (decode.hop, decode.label, decode.process, decode.pid) == ("decode", "binance", "binance", os.getpid())
        assert summary(publish.counts)["count"] == 1 and summary(decode.counts)["count"] == 0
    finally:
        writer.close(unlink=True)


def test_a_latency_row_must_name_a_known_hop(shm_prefix):
    with pytest.raises(ValueError, match="hop must be one of"):
        LatencyWriter(shm_prefix, "x", [("wire", "binance")])


def _depth(update_id: int, event_ms: int, qty: int) -> bytes:
    return (f'{{"stream":"btcusdt@depth@100ms","data":{{"e":"depthUpdate","E":{event_ms},"s":"BTCUSDT",'
            f'"U":{update_id},"u":{update_id},"b":[["100.00","{qty}.0"]],"a":[]}}}}').encode()


def _bridged_binance_feed(shm_prefix: str, rows: np.ndarray) -> BinanceFeed:
    writer = SegmentWriter.create(shm_prefix, "binance", [BTC.spec(1024)], depth=5, ring_slots=1024)
    feed = BinanceFeed([BTC], writer, capacity=1024, latency=rows)
    feed.on_frame(_depth(11, time.time_ns() // 1_000_000, 1), time.time_ns())  # buffered until the snapshot
    assert feed.books_to_resync() == ["BTCUSDT"]
    feed.on_snapshot("BTCUSDT", b'{"lastUpdateId": 11, "bids": [["99.00", "1.0"]], "asks": [["101.00", "1.0"]]}',
                     time.time_ns())
    return feed


def test_the_venue_feed_records_exchange_decode_and_publish_hops_per_frame(shm_prefix):
    rows = np.zeros((3, HIST_WORDS), np.int64)
    feed = _bridged_binance_feed(shm_prefix, rows)  # its first frames also timed the compiler
    try:
        before = rows.copy()
        for k in range(20):
            feed.on_frame(_depth(12 + k, time.time_ns() // 1_000_000 - 5, k + 2), time.time_ns())
        hops = [summary(difference(row, old)) for row, old in zip(rows, before)]
        assert [hop["count"] for hop in hops] == [20, 20, 20]
        assert hops[LAT_EXCHANGE]["p50_ns"] >= 4_000_000  # the frames say they are ~5 ms old
        assert 0 <= hops[LAT_DECODE]["min_ns"] <= hops[LAT_DECODE]["max_ns"] < 1_000_000_000
        assert 0 <= hops[LAT_PUBLISH]["min_ns"] <= hops[LAT_PUBLISH]["max_ns"] < 1_000_000_000
    finally:
        feed.writer.close(unlink=True)


def test_fh_latency_prints_every_hop_of_every_process_as_json(shm_prefix, capsys):
    venue = LatencyWriter(shm_prefix, "kraken", [("exchange", "kraken"), ("publish", "kraken")])
    sink = LatencyWriter(shm_prefix, "sink-redis", [("sink", "redis")])
    try:
        record_many(venue.hists[1], np.arange(1000, 2000))
        record(sink.hists[0], 2_000_000)
        assert cli.main(["latency", "--prefix", shm_prefix, "--json"]) == 0
        hops = json.loads(capsys.readouterr().out)["hops"]
        assert [(h["hop"], h["label"], h["count"]) for h in hops] == [
            ("exchange", "kraken", 0), ("publish", "kraken", 1000), ("sink", "redis", 1)]
        assert 1495 <= hops[1]["p50_ns"] <= 1500 and hops[2]["p99_ns"] >= 2_000_000
        assert cli.main(["latency", "--prefix", shm_prefix, "--hop", "sink"]) == 0
        text = capsys.readouterr().out
        assert "sink" in text and "kraken" not in text
    finally:
        venue.close(unlink=True)
        sink.close(unlink=True)


def test_fh_latency_draws_the_percentile_curves(shm_prefix, tmp_path):
    pytest.importorskip("matplotlib", reason="fh latency --png needs matplotlib (the plot extra)")
    writer = LatencyWriter(shm_prefix, "binance", [("publish", "binance")])
    try:
        record_many(writer.hists[0], np.random.default_rng(3).integers(1_000, 50_000, 10_000))
        png = tmp_path / "latency.png"
        assert cli.main(["latency", "--prefix", shm_prefix, "--png", str(png)]) == 0
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        writer.close(unlink=True)


def test_fh_latency_over_a_capture_reports_the_processing_hops(captures, tmp_path):
    capture = tmp_path / "binance.fhcap"
    import_recordings([str(captures / "binance-spot-2021" / "BINANCE")], str(capture))
    rows = latency.over_capture(str(capture))
    assert [row["hop"] for row in rows] == ["decode", "publish"]
    assert all(row["count"] > 0 and row["p99_ns"] is not None for row in rows)


def test_fh_latency_watch_ends_on_ctrl_c_with_exit_0_and_no_traceback(shm_prefix):
    writer = LatencyWriter(shm_prefix, "binance", [("publish", "binance")])
    try:
        watch = subprocess.Popen([sys.executable, "-m", "tools.cli", "latency", "--prefix", shm_prefix, "--watch", "0.2"],
                                 cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            while "publish" not in (line := watch.stdout.readline()):  # a refresh drawn: it is in its loop
                assert line, f"fh latency --watch ended: {watch.stderr.read()}"
            watch.send_signal(signal.SIGINT)
            _, stderr = watch.communicate(timeout=60)
        finally:
            watch.kill()
    finally:
        writer.close(unlink=True)
    assert watch.returncode == 0 and "Traceback" not in stderr, stderr
