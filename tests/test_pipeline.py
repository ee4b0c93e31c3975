"""The running pipeline end to end: `fh sim` -> venue workers -> shared memory -> aggregator -> NBBO,
with every fault the simulator injects. Real processes on loopback; the supervisor is `fh run`."""
import glob
import json
import os
import signal
import subprocess
import time

import pytest

from shm.layout import Reason, Status
from shm.nbbo_reader import NbboReader, VenueStatusEvent
from shm.reader import BookEvent, StatusEvent, VenueReader
from shm.segment import SegmentError
from tools.replay import replay

from pipeline import FH, REPO, VENUE_SYMBOLS, Pipeline, free_base_port, last_books, wait_for, warm_kernels

STARTUP_S = 240  # a cold numba cache compiles for minutes on a 2-core box
RECOVER_S = 30


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    with Pipeline(tmp_path_factory.mktemp("pipeline"), f"fhpipe{os.getpid()}").serving() as running:
        wait_for(lambda: all_valid(running), STARTUP_S, "every venue book and NBBO valid")
        yield running


@pytest.fixture(autouse=True)
def recovered_first(request):
    """A test on the shared pipeline starts from every book and NBBO valid: a test that failed half-way
    does not leave its fault to the next one (it fails here, saying the pipeline did not recover)."""
    if "pipeline" in request.fixturenames:
        recovers(request.getfixturevalue("pipeline"))


def reader(pipeline: Pipeline, venue: str) -> VenueReader | None:
    try:
        return VenueReader(venue, prefix=pipeline.prefix)
    except SegmentError:
        return None


def all_valid(pipeline: Pipeline) -> bool:
    for venue in VENUE_SYMBOLS:
        venue_reader = reader(pipeline, venue)
        if venue_reader is None:
            return False
        with venue_reader:
            if not all(venue_reader.book(i.index).valid for i in venue_reader.instruments):
                return False
    try:
        with NbboReader(prefix=pipeline.prefix) as nbbo:
            return all(nbbo.quote(i.index).valid and len(nbbo.included(i.index)) == sum(
                i.symbol in symbols for symbols in VENUE_SYMBOLS.values()) for i in nbbo.instruments)
    except SegmentError:
        return False


class Events:
    """Everything a venue ring and the NBBO ring publish from now on."""

    def __init__(self, pipeline: Pipeline, venue: str):
        self.venue_reader = VenueReader(venue, prefix=pipeline.prefix)
        self.nbbo = NbboReader(prefix=pipeline.prefix)
        self.venue = venue
        self.cursors = (self.venue_reader.events(), self.nbbo.events())
        self.seen: list = []

    def poll(self) -> list:
        """Every record seen so far, after reading what arrived."""
        for cursor in self.cursors:
            self.seen.extend(cursor.poll())
        return self.seen

    def until(self, predicate, what: str, timeout_s: float = RECOVER_S):
        return wait_for(lambda: [e for e in self.poll() if predicate(e)], timeout_s, what, every_s=0.01)

    def book_status(self, status: Status, symbol: str | None = None):
        return self.until(lambda e: isinstance(e, StatusEvent) and e.status == status and e.instrument is not None
                          and (symbol is None or e.instrument.symbol == symbol), f"{self.venue} {status.name}")

    def nbbo_status(self, status: Status, symbol: str):
        return self.until(lambda e: isinstance(e, VenueStatusEvent) and e.status == status and e.venue == self.venue
                          and e.instrument.symbol == symbol, f"NBBO {status.name} {self.venue} {symbol}")

    def close(self):
        self.venue_reader.close()
        self.nbbo.close()


def counters(pipeline: Pipeline, venue: str) -> dict:
    with VenueReader(venue, prefix=pipeline.prefix) as venue_reader:
        return venue_reader.totals()


def recovers(pipeline: Pipeline) -> None:
    wait_for(lambda: all_valid(pipeline), RECOVER_S, "every book and NBBO valid again")


def test_every_venue_book_and_the_nbbo_become_valid(pipeline):
    with NbboReader(prefix=pipeline.prefix) as nbbo:
        assert sorted(i.symbol for i in nbbo.instruments) == [
            "BTC-USD", "BTC-USD-PERP", "BTC-USDT", "BTC-USDT-PERP", "ETH-USD", "ETH-USDT", "ETH-USDT-PERP",
            "SOL-USDT-PERP"]
        assert [set(nbbo.included(symbol)) for symbol in ("BTC-USDT-PERP", "BTC-USD-PERP", "ETH-USDT-PERP",
                                                          "SOL-USDT-PERP")] == [
            {"binance_usdm", "okx"}, {"binance_coinm"}, {"okx"}, {"bybit_linear"}]
        perpetual = nbbo.instrument("BTC-USDT-PERP")  # BTC on USD-M, contracts of 0.01 BTC on OKX: summed in BTC
        assert (perpetual.size_ccy, perpetual.qty_dec) == ("BTC", 4)
        quote = nbbo.quote("BTC-USDT")
        assert set(nbbo.included("BTC-USDT")) == {"binance", "coinbase", "kraken"}
        assert quote.bid_px > 0 and quote.ask_px > 0 and quote.bid_qty > 0 and quote.ask_qty > 0
        assert quote.instrument.px_dec == 2  # the finest of binance 2, coinbase 2, kraken 1


def test_binance_dropped_diff_is_a_gap_that_resyncs_and_leaves_then_rejoins_the_nbbo(pipeline):
    before = counters(pipeline, "binance")
    events = Events(pipeline, "binance")
    pipeline.fault("binance", "drop", symbol="BTCUSDT")
    events.book_status(Status.GAP, "BTC-USDT")
    events.book_status(Status.BOOK_INVALID, "BTC-USDT")
    excluded = events.nbbo_status(Status.VENUE_EXCLUDED, "BTC-USDT")
    assert excluded[0].reason == Reason.SEQUENCE_GAP
    events.book_status(Status.BOOK_VALID, "BTC-USDT")
    events.nbbo_status(Status.VENUE_RESTORED, "BTC-USDT")
    events.close()
    after = counters(pipeline, "binance")
    assert after["gaps"] == before["gaps"] + 1 and after["resyncs"] == before["resyncs"] + 1
    recovers(pipeline)


@pytest.mark.parametrize("venue, symbol, wire", [("binance_usdm", "BTC-USDT-PERP", "BTCUSDT"),
                                                 ("binance_coinm", "BTC-USD-PERP", "BTCUSD_PERP"),
                                                 ("okx", "ETH-USDT-PERP", "ETH-USDT-SWAP")])
def test_a_dropped_perpetual_update_breaks_its_chain_and_the_book_resyncs(pipeline, venue, symbol, wire):
    """Binance futures: the next diff's pu is not the last u (a REST resync); OKX: the next update's
    prevSeqId is not the last seqId (a resubscribe for a fresh snapshot)."""
    before = counters(pipeline, venue)
    events = Events(pipeline, venue)
    pipeline.fault(venue, "drop", symbol=wire)
    events.book_status(Status.GAP, symbol)
    excluded = events.nbbo_status(Status.VENUE_EXCLUDED, symbol)
    assert excluded[0].reason == Reason.SEQUENCE_GAP
    events.book_status(Status.BOOK_VALID, symbol)
    events.nbbo_status(Status.VENUE_RESTORED, symbol)
    events.close()
    after = counters(pipeline, venue)
    assert after["gaps"] == before["gaps"] + 1 and after["resyncs"] == before["resyncs"] + 1
    recovers(pipeline)


def served(pipeline: Pipeline, venue: str, kind: str) -> int:
    return pipeline.sim_stats(venue)["served"].get(kind, 0)


def frames_after(pipeline: Pipeline, venue: str, more: int) -> None:
    """Wait until the venue's worker decoded `more` frames beyond what it has now."""
    start = counters(pipeline, venue)["frames"]
    wait_for(lambda: counters(pipeline, venue)["frames"] >= start + more, RECOVER_S, f"{more} more {venue} frames")


def test_binance_duplicated_diff_is_ignored(pipeline):
    before, sent = counters(pipeline, "binance"), served(pipeline, "binance", "duplicate")
    pipeline.fault("binance", "duplicate", symbol="ETHUSDT")
    wait_for(lambda: served(pipeline, "binance", "duplicate") > sent, RECOVER_S, "the duplicate sent")
    frames_after(pipeline, "binance", 20)  # the worker has read past it
    assert counters(pipeline, "binance")["gaps"] == before["gaps"]
    recovers(pipeline)


def test_coinbase_sequence_gap_resubscribes_the_books_of_that_connection(pipeline):
    before = counters(pipeline, "coinbase")
    events = Events(pipeline, "coinbase")
    pipeline.fault("coinbase", "drop", symbol="ETH-USD")
    events.book_status(Status.GAP)
    excluded = events.nbbo_status(Status.VENUE_EXCLUDED, "BTC-USD")
    assert excluded[0].reason == Reason.SEQUENCE_GAP
    events.nbbo_status(Status.VENUE_RESTORED, "BTC-USD")
    events.close()
    assert counters(pipeline, "coinbase")["gaps"] > before["gaps"]
    recovers(pipeline)


@pytest.mark.parametrize("kind", ["bad_checksum", "drop"])
def test_kraken_checksum_mismatch_resubscribes_that_book_only(pipeline, kind):
    before = counters(pipeline, "kraken")
    events = Events(pipeline, "kraken")
    # one dropped diff can heal (the next one rewrites the same levels): five leave the book different
    pipeline.fault("kraken", kind, symbol="ETH/USD", count=5 if kind == "drop" else 1)
    invalid = events.book_status(Status.BOOK_INVALID, "ETH-USD")
    assert invalid[0].reason == Reason.CHECKSUM
    events.nbbo_status(Status.VENUE_RESTORED, "ETH-USD")
    events.book_status(Status.BOOK_VALID, "ETH-USD")
    assert not [e for e in events.seen if isinstance(e, StatusEvent) and e.status == Status.BOOK_INVALID
                and e.instrument.symbol != "ETH-USD"]
    events.close()
    assert counters(pipeline, "kraken")["checksum_fail"] > before["checksum_fail"]
    recovers(pipeline)


def test_malformed_frames_are_counted_and_the_workers_carry_on(pipeline):
    before = {venue: counters(pipeline, venue)["decode_errors"] for venue in VENUE_SYMBOLS}
    pids = {venue: pipeline.worker_pid(venue) for venue in VENUE_SYMBOLS}
    for venue in VENUE_SYMBOLS:
        pipeline.fault(venue, "malformed")
    wait_for(lambda: all(counters(pipeline, v)["decode_errors"] > before[v] for v in VENUE_SYMBOLS), 10,
             "decode errors counted")
    assert {venue: pipeline.worker_pid(venue) for venue in VENUE_SYMBOLS} == pids
    recovers(pipeline)


@pytest.mark.parametrize("kind", ["disconnect", "close"])
def test_a_dropped_connection_invalidates_its_books_and_reconnects(pipeline, kind):
    events = Events(pipeline, "coinbase")
    pipeline.fault("coinbase", kind)
    events.until(lambda e: isinstance(e, StatusEvent) and e.status == Status.DISCONNECT, "DISCONNECT")
    invalid = events.book_status(Status.BOOK_INVALID, "BTC-USD")
    assert invalid[0].reason == Reason.DISCONNECTED
    events.until(lambda e: isinstance(e, StatusEvent) and e.status == Status.CONNECT, "CONNECT")
    events.nbbo_status(Status.VENUE_RESTORED, "BTC-USD")
    events.close()
    recovers(pipeline)


def test_binance_server_shutdown_moves_to_a_new_connection(pipeline):
    """The notice starts a rotation; this fault closes the old connection at once, so a book either
    lines up on the new connection or, if changes fell between the two, resyncs by REST."""
    events = Events(pipeline, "binance")
    pipeline.fault("binance", "close")
    events.until(lambda e: isinstance(e, StatusEvent) and e.status == Status.CONNECT, "CONNECT")
    events.close()
    recovers(pipeline)


def test_a_stalled_feed_leaves_the_nbbo_then_the_watchdog_reconnects(pipeline):
    events = Events(pipeline, "kraken")
    pipeline.fault("kraken", "stall", seconds=4)
    excluded = events.nbbo_status(Status.VENUE_EXCLUDED, "BTC-USD")
    assert excluded[0].reason in (Reason.STALE, Reason.DISCONNECTED)
    events.until(lambda e: isinstance(e, StatusEvent) and e.status == Status.DISCONNECT, "watchdog reconnect")
    events.nbbo_status(Status.VENUE_RESTORED, "BTC-USD")
    events.close()
    recovers(pipeline)


def test_a_quiet_binance_connection_is_kept_alive_by_pings_not_reconnected(pipeline):
    """Binance sends nothing while a book does not change: silence longer than twice stale_after_s
    (2 s) costs a ping, never a reconnect (Kraken and Coinbase promise heartbeats; Binance does not)."""
    events = Events(pipeline, "binance")
    stalled_at = time.time_ns()
    pipeline.fault("binance", "stall", seconds=6)

    def resumed_after_the_stall():
        stamps = [stalled_at] + [e.ts_recv for e in events.poll() if isinstance(e, BookEvent)]
        return any(later - earlier >= 5_000_000_000 for earlier, later in zip(stamps, stamps[1:]))
    wait_for(resumed_after_the_stall, RECOVER_S, "binance changes resuming after the stall", every_s=0.01)
    assert not [e for e in events.seen if isinstance(e, StatusEvent) and e.status == Status.DISCONNECT]
    events.close()


def test_rest_429_and_slow_snapshots_delay_but_do_not_stop_a_binance_resync(pipeline):
    pipeline.fault("binance", "rest_429", count=1)
    pipeline.fault("binance", "slow_rest", seconds=1.5, count=1)
    events = Events(pipeline, "binance")
    pipeline.fault("binance", "drop", symbol="ETHUSDT")
    events.book_status(Status.BOOK_INVALID, "ETH-USDT")
    events.book_status(Status.BOOK_VALID, "ETH-USDT")
    events.close()
    recovers(pipeline)


def test_a_burst_is_absorbed_without_gaps(pipeline):
    before = counters(pipeline, "coinbase")
    pipeline.fault("coinbase", "burst", rate=1000, seconds=2)
    frames_after(pipeline, "coinbase", 1000)
    assert counters(pipeline, "coinbase")["gaps"] == before["gaps"]
    recovers(pipeline)


def test_a_killed_worker_is_restarted_and_readers_never_see_its_stale_books_as_valid(pipeline):
    pid = pipeline.worker_pid("kraken")
    assert pid > 0  # never os.kill(0 or -1, ...): that signals every process we may signal
    watcher = VenueReader("kraken", prefix=pipeline.prefix)
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    while True:  # from the moment it is dead, none of its books reads valid
        dead = not watcher.segment.writer_alive(watcher.stale_after_s)
        books = [watcher.book(instrument.index) for instrument in watcher.instruments]
        for book in books:
            if book.valid:
                assert not dead, "a dead writer's book was reported valid"
                assert book.bids[0, 0] < book.asks[0, 0]
        if dead:
            break
        assert time.monotonic() - killed_at < 1.0, "the writer's death went unnoticed for a second"
    wait_for(lambda: pipeline.worker_pid("kraken") not in (0, pid), 30, "the supervisor to restart kraken")
    wait_for(lambda: watcher.replaced, 60, "the new writer to replace the segment")
    watcher.close()
    recovers(pipeline)


def served_to_a_worker_again_from(tmp_path, capture: str, expected: dict) -> None:
    """`fh sim --replay` serves the capture; a fresh kraken worker ends with the same books."""
    base, prefix = free_base_port(), f"fhresim{os.getpid()}"
    config = tmp_path / "resim.toml"
    config.write_text(f'[run]\nprefix = "{prefix}"\ninstrument_cache = "{tmp_path / "resim-instruments"}"\n'
                      f'[venues.kraken]\nsymbols = {json.dumps(VENUE_SYMBOLS["kraken"])}\n'
                      f'ws_url = "ws://127.0.0.1:{base + 4}/v2"\nrest_url = "http://127.0.0.1:{base + 5}"\n')
    sim = subprocess.Popen(FH + ["sim", "--replay", capture, "--speed", "0", "--port", str(base)], cwd=REPO,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        sim.stdout.readline()
        subprocess.run(FH + ["worker", "kraken", "-c", str(config), "--duration", "5"], cwd=REPO, check=True,
                       capture_output=True, timeout=60)
        assert last_books(prefix, "kraken") == expected
    finally:
        sim.terminate()
        sim.wait(10)
        for path in glob.glob(f"/dev/shm/{prefix}.*"):
            os.unlink(path)


def test_run_prints_the_make_run_summary_and_its_captures_replay_to_the_same_books(tmp_path):
    short = Pipeline(tmp_path, f"fhsum{os.getpid()}")
    short.start(duration_s=3)
    try:
        output = short.run.communicate(timeout=STARTUP_S)[0]
        books = {venue: last_books(short.prefix, venue) for venue in VENUE_SYMBOLS}
    finally:
        short.stop()
    for venue, live in books.items():
        paths = sorted(glob.glob(str(tmp_path / "captures" / f"{venue}-*.fhcap")))
        replayed = replay(paths, shm_prefix=f"fhrep{os.getpid()}", depth=10)["books"]
        assert {key: (book["bids"], book["asks"]) for key, book in replayed.items()} == live
    served_to_a_worker_again_from(tmp_path, glob.glob(str(tmp_path / "captures" / "kraken-*.fhcap"))[0],
                                  expected=books["kraken"])
    summary = json.loads(output.strip().splitlines()[-1])
    assert short.run.returncode == 0  # every venue had a valid book
    assert set(summary) == {"duration_s", "venues", "records", "nbbo_updates", "symbols", "sinks"}
    assert summary["sinks"] == {}
    assert set(summary["records"]) == {"funding", "open_interest", "liquidation", "bbo"}
    assert summary["duration_s"] >= 3 and summary["nbbo_updates"] > 0
    assert summary["symbols"] == sorted({symbol for symbols in VENUE_SYMBOLS.values() for symbol in symbols})
    for venue, figures in summary["venues"].items():
        assert figures["books"] == len(VENUE_SYMBOLS[venue]) and figures["frames"] > 0
        assert set(figures) == {"frames", "valid_books", "books", "book_updates", "gaps", "resyncs"}


def test_a_run_for_a_duration_exits_1_naming_the_venue_that_had_no_valid_book(tmp_path):
    """Kraken's instruments come from the simulator, but its WebSocket URL is one where nothing listens:
    its worker runs, its segment is up, and it never has a valid book. The summary is printed all the same."""
    base, prefix = free_base_port(), f"fhsilent{os.getpid()}"
    nowhere = f"ws://127.0.0.1:{base}/v2"  # binance's port of the simulator, which serves kraken only
    config = tmp_path / "silent.toml"
    config.write_text(f'[run]\nprefix = "{prefix}"\ncapture_dir = "{tmp_path / "captures"}"\n'
                      f'instrument_cache = "{tmp_path / "instruments"}"\n'
                      f'[venues.kraken]\nsymbols = {json.dumps(VENUE_SYMBOLS["kraken"])}\nws_url = "{nowhere}"\n'
                      f'rest_url = "http://127.0.0.1:{base + 5}"\n')
    warm_kernels()
    sim = subprocess.Popen(FH + ["sim", "--venues", "kraken", "--port", str(base)], cwd=REPO, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL)
    try:
        sim.stdout.readline()  # listening
        run = subprocess.run(FH + ["run", "-c", str(config), "--duration", "1", "--json"], cwd=REPO,
                             capture_output=True, text=True, timeout=STARTUP_S)
    finally:
        sim.terminate()
        sim.wait(10)
        for path in glob.glob(f"/dev/shm/{prefix}.*"):
            os.unlink(path)
    assert run.returncode == 1, run.stderr[-4000:]
    kraken = json.loads(run.stdout.strip().splitlines()[-1])["venues"]["kraken"]
    assert kraken["books"] == len(VENUE_SYMBOLS["kraken"])  # the worker was up
    assert kraken["frames"] == kraken["valid_books"] == kraken["book_updates"] == 0
    assert run.stderr.splitlines()[-1] == (
        f"fh run: no valid book during the run from kraken (kraken: no frame from {nowhere}); its worker's log lines "
        f"above say why (is the venue reachable? `fh plan -c {config}` lists what it asks)")


@pytest.mark.redis
def test_the_run_summary_gives_each_sinks_final_figures_once_it_drained_the_rings(tmp_path, service):
    server, state = service("redis"), tmp_path / "sinks"
    short = Pipeline(tmp_path, f"fhsumsink{os.getpid()}",
                     extra_config=f'\n[sinks.redis]\nurl = "{server.url}"\nstate_dir = "{state}"\n')
    short.start(duration_s=3)
    try:
        output = short.run.communicate(timeout=STARTUP_S)[0]
    finally:
        short.stop()
    figures = json.loads(output.strip().splitlines()[-1])["sinks"]["redis"]
    assert figures == json.loads((state / "redis.stats.json").read_text())  # what the sink wrote as it stopped
    assert figures["lag"] == 0 and figures["acked"] > 0


def test_top_shows_the_nbbo_and_every_venue_whole_in_80_columns(pipeline):
    shown = subprocess.run(FH + ["top", "--prefix", pipeline.prefix, "--once", "--interval", "0.5"], cwd=REPO,
                           capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "80"})
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert max(map(len, lines)) <= 80, shown.stdout
    words = {word for line in lines for word in line.split()}
    assert {"BTC-USD", "BTC-USDT", "ETH-USD", "ETH-USDT", "binance", "coinbase", "kraken"} <= words, shown.stdout


def test_a_worker_starts_from_the_instrument_cache_when_the_metadata_endpoint_is_down(pipeline, tmp_path):
    dead_port = pipeline.rest_port("kraken") + 6000  # nothing listens there
    prefix = f"fhcache{os.getpid()}"
    config = tmp_path / "cached.toml"
    config.write_text(f'[run]\nprefix = "{prefix}"\ncapture_dir = "{tmp_path / "captures"}"\n'
                      f'instrument_cache = "{pipeline.workdir / "instruments"}"\n'
                      f'[venues.kraken]\nsymbols = ["BTC-USD"]\nws_url = "ws://127.0.0.1:{pipeline.base + 4}/v2"\n'
                      f'rest_url = "http://127.0.0.1:{dead_port}"\n')
    worker = subprocess.Popen(FH + ["worker", "kraken", "-c", str(config), "--duration", "6"], cwd=REPO,
                              stderr=subprocess.PIPE, text=True)
    try:
        def valid():
            try:
                with VenueReader("kraken", prefix=prefix) as cached:
                    return cached.book("BTC-USD").valid
            except SegmentError:
                return False
        wait_for(valid, 30, "the kraken book from cached instruments")
        _, stderr = worker.communicate(timeout=30)
    finally:
        worker.kill()
        for path in glob.glob(f"/dev/shm/{prefix}.*"):
            os.unlink(path)
    assert "using the copy cached" in stderr
    capture = glob.glob(str(tmp_path / "captures" / "kraken-*.fhcap"))
    assert replay(capture, shm_prefix=f"fhrep{os.getpid()}", depth=10)["books"]["kraken:BTC/USD"]["bids"]
