"""`fh metrics`: Prometheus exposition and health checks read from shared memory and sink stats."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from feedhandler.feed_kernels import KIND_BBO, KIND_FUNDING, KIND_LIQUIDATION, KIND_OPEN_INTEREST, publish_stats
from feedhandler.publish import output_of
from feedhandler.venues.binance import BinanceFeed
from feedhandler.instruments import Instrument
from shm.histogram import HIST_WORDS, record_many
from shm.latency import LatencyWriter
from shm.layout import BOOK_TS_PUBLISH, FIELD_MARK, Reason, Side
from shm.segment import InstrumentSpec, SegmentWriter
from tests.pipeline import wait_for
from tools.metrics import Collector, make_server

BTC = Instrument("binance", "BTCUSDT", "BTC", "USDT", 8, 8)
SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? -?[0-9.e+-]+$')


@pytest.fixture
def binance(shm_prefix):
    """A Binance feed with one valid book in shared memory."""
    writer = SegmentWriter.create(shm_prefix, "binance", [BTC.spec(1024)], depth=5, ring_slots=1024)
    feed = BinanceFeed([BTC], writer, capacity=1024)
    depth = b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":11,"u":11,' \
            b'"b":[["100.00","2.0"]],"a":[]}}'
    feed.on_frame(depth, time.time_ns())
    feed.books_to_resync()
    feed.on_snapshot("BTCUSDT", b'{"lastUpdateId": 11, "bids": [["99.00", "1.0"]], "asks": [["101.00", "1.0"]]}',
                     time.time_ns())
    writer.heartbeat()
    yield feed
    writer.close()


def _samples(text: str) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if not line.startswith("#")}


def test_every_line_of_the_exposition_is_a_comment_or_a_well_formed_sample(binance, shm_prefix):
    text = Collector(shm_prefix).metrics()
    bad = [line for line in text.splitlines() if not line.startswith("# ") and not SAMPLE.match(line)]
    assert not bad and text.endswith("\n")


def test_venue_counters_and_book_validity_come_from_shared_memory(binance, shm_prefix):
    samples = _samples(Collector(shm_prefix).metrics())
    assert samples['fh_venue_up{venue="binance"}'] == 1
    assert samples['fh_frames_total{venue="binance"}'] == 1
    assert samples['fh_book_valid{venue="binance",symbol="BTC-USDT"}'] == 1
    assert samples['fh_book_gaps_total{venue="binance",symbol="BTC-USDT"}'] == 0


def test_derivatives_record_counters_are_exported_per_venue(shm_prefix):
    writer = SegmentWriter.create(shm_prefix, "binance_usdm", [InstrumentSpec("BTCUSDT", "BTC-USDT-PERP", 1, 3, 64)],
                                  depth=5, ring_slots=64)
    out = output_of(writer, np.zeros((3, HIST_WORDS), np.int64))
    published = {KIND_BBO: 3, KIND_FUNDING: 2, KIND_OPEN_INTEREST: 1, KIND_LIQUIDATION: 4}
    words = (np.int64(650000), np.int64(1), np.int64(Side.SELL), np.int64(Side.BUY), np.int64(FIELD_MARK))
    for kind, count in published.items():
        for _ in range(count):
            publish_stats(kind, np.int64(0), np.int64(0), np.int64(1), np.int64(2), words, out)
    writer.heartbeat()
    try:
        samples = _samples(Collector(shm_prefix).metrics())
    finally:
        writer.close()
    exported = {name: samples[f'fh_{name}_total{{venue="binance_usdm"}}']
                for name in ("bbos", "fundings", "open_interests", "liquidations")}
    assert exported == {"bbos": 3, "fundings": 2, "open_interests": 1, "liquidations": 4}


def test_a_book_stamped_ahead_of_the_wall_clock_ages_from_zero_on_the_monotonic_clock(binance, shm_prefix):
    """The wall clock stepped back an hour after the book's last publish: its age is not an hour below
    zero (which no staleness alert would ever see), it starts at zero and grows."""
    binance.writer.books[0, BOOK_TS_PUBLISH] = time.time_ns() + 3600 * 10**9
    collector = Collector(shm_prefix)

    def age() -> float:
        return _samples(collector.metrics())['fh_book_age_seconds{venue="binance",symbol="BTC-USDT"}']
    assert 0 <= age() < 1
    wait_for(lambda: age() >= 0.05, 10, "the age growing on CLOCK_MONOTONIC")


def test_latency_histograms_are_exported_as_summaries(shm_prefix):
    writer = LatencyWriter(shm_prefix, "binance", [("publish", "binance")])
    try:
        record_many(writer.hists[0], np.arange(1, 1001) * 1000)  # 1..1000 µs
        samples = _samples(Collector(shm_prefix).metrics())
        assert samples['fh_latency_seconds_count{hop="publish",label="binance"}'] == 1000
        assert samples['fh_latency_seconds{quantile="0.5",hop="publish",label="binance"}'] == pytest.approx(500e-6,
                                                                                                            rel=2e-3)
    finally:
        writer.close(unlink=True)


def test_sink_counters_and_lag_come_from_the_sink_stats_file(shm_prefix, tmp_path):
    stats = tmp_path / "kafka.stats.json"
    stats.write_text(json.dumps({"sink": "kafka", "sent": 10, "acked": 8, "lag": 2, "up": 1}))
    samples = _samples(Collector(shm_prefix, [stats]).metrics())
    assert samples['fh_sink_acked_total{sink="kafka"}'] == 8
    assert samples['fh_sink_lag_records{sink="kafka"}'] == 2


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def served(shm_prefix):
    collector = Collector(shm_prefix)
    server = make_server(collector, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    collector.close()


def test_healthz_is_200_while_every_book_is_valid_and_503_when_one_is_not(binance, served):
    status, body = _get(f"{served}/healthz")
    assert status == 200 and json.loads(body)["venues"]["binance"]["books"]["BTC-USDT"]["valid"]
    binance._invalidate(0, Reason.SEQUENCE_GAP, time.time_ns())
    assert _get(f"{served}/healthz")[0] == 503
    assert _get(f"{served}/healthz/binance/BTC-USDT")[0] == 503


def test_healthz_of_an_unknown_venue_or_book_is_404(binance, served):
    assert _get(f"{served}/healthz/kraken")[0] == 404
    assert _get(f"{served}/healthz/binance/ETH-USDT")[0] == 404
    assert _get(f"{served}/healthz/binance")[0] == 200


def test_metrics_is_served_in_the_prometheus_text_format(binance, served):
    with urllib.request.urlopen(f"{served}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert 'fh_book_valid{venue="binance",symbol="BTC-USDT"} 1' in response.read().decode()


def test_fh_metrics_serves_until_sigterm_and_says_unhealthy_with_no_venue_naming_the_prefixes_there(shm_prefix,
                                                                                                     tmp_path):
    with SegmentWriter.create("fhother", "binance", [BTC.spec(64)], depth=5, ring_slots=64, directory=str(tmp_path)):
        process = subprocess.Popen([sys.executable, "-m", "tools.cli", "metrics", "--prefix", shm_prefix, "--port", "0"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, "FH_SHM_DIR": str(tmp_path)})
    nothing = (f"no venue segments under {tmp_path}/{shm_prefix}.*; prefixes there: fhother (1 segment); "
               f"choose one with --prefix P")
    try:
        url = json.loads(process.stdout.readline())["url"]
        status, body = _get(f"{url}/healthz")
        assert status == 503 and json.loads(body) == {"ok": False, "venues": {}, "error": nothing}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert (f"nothing under {tmp_path}/{shm_prefix}.*; prefixes there: fhother (1 segment); choose one with "
                f"--prefix P; serving anyway") in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
