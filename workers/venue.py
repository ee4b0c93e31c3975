"""The venue worker: one process per venue. Connects, captures, decodes into shared memory, and keeps
every book in sync for as long as it runs.

Per received message: `ts_recv` at the socket read, the frame appended to the capture file, then
one `feed.on_frame` call (decode, sequence check, apply, publish). Everything else runs on timers in
the same event loop: the heartbeat in the segment header, the resync of invalid books (Binance REST
snapshots on a thread pool under the weight budget; Kraken and Coinbase resubscriptions), the
stale-connection watchdog and Binance's 24 h rotation. Connections reconnect forever with capped,
jittered exponential backoff. SIGTERM / SIGINT: connections closed, capture flushed, segment
marked CLOSED (readers keep the last books, flagged invalid).
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import asdict

from feedhandler.capture import FrameKind, RotatingCaptureWriter, rest_payload
from feedhandler.config import ADAPTERS, RunConfig, VenueConfig
from feedhandler.feed import BinanceFeed, CoinbaseFeed, KrakenFeed, VenueFeed
from feedhandler.instrument_cache import DEFAULT_DIRECTORY, InstrumentCache, InstrumentCacheError, parse_metadata
from feedhandler.instruments import Instrument
from feedhandler.publish import VENUE_HOPS
from feedhandler.venues import binance, coinbase, kraken
from feedhandler.sync import SyncState
from feedhandler.venues.adapter import ConnectionPlan
from shm.latency import LatencyWriter
from shm.reader import counter_totals
from shm.segment import SegmentError, SegmentWriter

from .notify import Notifier
from .process import new_loop, pin, set_title, setup_logging, stop_on_signals
from .rest import RestClient, RestError
from .wsclient import WsConnection, open_connection

FEEDS = {"binance": BinanceFeed, "coinbase": CoinbaseFeed, "kraken": KrakenFeed}
HOUSEKEEPING_S = 0.05
SNAPSHOT_TIMEOUT_S = 20.0
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.2, 30.0
BINANCE_ROTATE_S = 23.5 * 3600  # ahead of the 24 h cut, at a moment of our choosing
SUBSCRIBE_GAP_S = {"binance": 0.25, "coinbase": 0.05, "kraken": 0.05}  # under each venue's message rate


class WorkerError(Exception):
    """The worker cannot start (no instruments, unknown symbol, busy segment), with the reason."""


def backoff_s(attempt: int, rng: random.Random) -> float:
    """Capped exponential backoff with full jitter over its upper half."""
    ceiling = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** min(attempt, 16))
    return ceiling * (0.5 + 0.5 * rng.random())


class Connection:
    """One planned connection's live state (what the watchdog and resubscriptions need)."""

    def __init__(self, conn_id: int, plan: ConnectionPlan):
        self.id = conn_id
        self.plan = plan
        self.ws: WsConnection | None = None
        self.last_frame = 0.0  # monotonic s
        self.opened = 0.0
        self.connects = 0
        self.stale_closes = 0


class VenueWorker:
    def __init__(self, config: VenueConfig, run: RunConfig, log: logging.Logger | None = None):
        self.config = config
        self.run_config = run
        self.venue = config.name
        self.log = log or logging.getLogger(f"fh.venue.{self.venue}")
        self.rest = RestClient()
        self.rng = random.Random()
        self.capture: RotatingCaptureWriter | None = None
        self.writer: SegmentWriter | None = None
        self.latency: LatencyWriter | None = None
        self.feed: VenueFeed | None = None
        self.connections: list[Connection] = []
        self._book_connection: dict[str, Connection] = {}
        self._book_index: dict[str, int] = {}
        self._snapshots: set[str] = set()  # Binance symbols with a REST fetch in flight
        self._req_id = 100
        self._stop = asyncio.Event()
        self.final_stats: dict = {}
        self.notifier = Notifier()

    # ------------------------------------------------------------ start
    async def start(self) -> None:
        """Capture file, instruments, segment, feed. Raises WorkerError when it cannot run."""
        run = self.run_config
        if run.capture_dir:
            self.capture = RotatingCaptureWriter(run.capture_dir, self.venue, config=asdict(self.config))
        instruments = await self._instruments()
        try:
            self.writer = SegmentWriter.create(run.prefix, self.venue,
                                               [i.spec(FEEDS[self.venue].CAPACITY) for i in instruments],
                                               depth=self.config.depth, ring_slots=self.config.ring_slots)
        except SegmentError as exc:
            raise WorkerError(str(exc)) from None
        self.latency = LatencyWriter(run.prefix, self.venue, [(hop, self.venue) for hop in VENUE_HOPS])
        feed_class = FEEDS[self.venue]
        self.feed = feed_class(instruments, self.writer, latency=self.latency.hists, depth=self.config.book_depth) \
            if feed_class is KrakenFeed else feed_class(instruments, self.writer, latency=self.latency.hists)
        symbols = [i.venue_symbol for i in instruments]
        plans = {"binance": lambda: binance.connection_plans(self.config.ws_url, symbols),
                 "kraken": lambda: kraken.connection_plans(self.config.ws_url, symbols, self.config.book_depth),
                 "coinbase": lambda: coinbase.connection_plans(self.config.ws_url, symbols)}[self.venue]()
        self.connections = [Connection(k, plan) for k, plan in enumerate(plans)]
        self._book_connection = {s: c for c in self.connections for s in c.plan.symbols}
        self._book_index = {s: k for k, s in enumerate(symbols)}
        self.log.info("%s: %d books over %d connection(s), segment %s", self.venue, len(instruments),
                      len(self.connections), self.writer.path)

    async def _instruments(self) -> list[Instrument]:
        """The configured symbols' instruments: from the venue's metadata endpoint (kept in the cache
        and the capture), else from the cache; unknown symbols fail the start."""
        adapter = ADAPTERS[self.venue]
        url = self.config.rest_url.rstrip("/") + adapter.instruments_path
        cache = InstrumentCache(self.run_config.instrument_cache or DEFAULT_DIRECTORY)
        try:
            response = await self.rest.get(url, weight=20)
            self._record(FrameKind.REST, 0, response.ts_recv, rest_payload("GET", url, response.status, response.body))
            instruments = cache.store(self.venue, url, response.body, response.ts_recv)
        except (RestError, InstrumentCacheError) as exc:
            try:
                record = cache.record(self.venue)
                if not record:
                    raise WorkerError(f"{self.venue}: no instrument metadata ({exc}) and nothing cached") from None
                instruments = parse_metadata(self.venue, record["body"])
            except InstrumentCacheError as bad:
                raise WorkerError(f"{self.venue}: no instrument metadata ({exc}); cache: {bad}") from None
            self.log.warning("%s: metadata fetch failed (%s); using the copy cached at %s", self.venue, exc,
                             time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record.get("fetched_ns", 0) / 1e9)))
            self._record(FrameKind.REST, 0, time.time_ns(),  # replays need the metadata the books were built on
                         rest_payload("GET", record.get("url", url), 200, record["body"].encode()))
        if self.venue == "kraken":
            instruments = kraken.v2_instruments(instruments)
        by_symbol = {i.symbol: i for i in instruments}
        missing = [s for s in self.config.symbols if s not in by_symbol]
        if missing:
            raise WorkerError(f"venues.{self.venue}.symbols: {', '.join(missing)} not listed by {self.venue} "
                              f"({len(by_symbol)} instruments known)")
        return [by_symbol[s] for s in self.config.symbols]

    # ------------------------------------------------------------ run
    async def run(self, stop: asyncio.Event, duration_s: float | None = None) -> None:
        self._stop = stop
        tasks = [asyncio.create_task(self._connect_forever(c)) for c in self.connections]
        tasks.append(asyncio.create_task(self._housekeeping()))
        if self.config.idle == "spin":
            tasks.append(asyncio.create_task(self._spin()))
        try:
            if duration_s:
                await asyncio.wait_for(stop.wait(), duration_s)
            else:
                await stop.wait()
        except asyncio.TimeoutError:
            pass
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.final_stats = self.stats()
            self.close()

    def close(self) -> None:
        for connection in self.connections:
            if connection.ws is not None:
                connection.ws.close()
        if self.capture is not None:
            self.capture.close()
        if self.writer is not None:
            self.writer.close()
        if self.latency is not None:
            self.latency.close()
        self.rest.close()

    async def _spin(self) -> None:
        """Busy-poll: the loop always has a ready callback, so it polls sockets without sleeping."""
        while True:
            await asyncio.sleep(0)

    def _record(self, kind: FrameKind, conn: int, ts_ns: int, payload: bytes) -> None:
        if self.capture is not None:
            self.capture.append(kind, conn, ts_ns, payload)

    async def _connect_forever(self, connection: Connection) -> None:
        attempt = 0
        plan = connection.plan
        while not self._stop.is_set():
            try:
                connection.ws = await open_connection(self.config.client, plan.url,
                                                      self._handler(connection))
            except Exception as exc:  # any failure to open (DNS, TCP, TLS, handshake) is retried
                delay = backoff_s(attempt, self.rng)
                self.log.warning("%s conn %d: connect failed (%s); retry in %.1f s", self.venue, connection.id,
                                 exc, delay, extra={"conn": connection.id, "reason": "connect_failed"})
                attempt += 1
                await asyncio.sleep(delay)
                continue
            now_ns = time.time_ns()
            connection.connects += 1
            connection.opened = connection.last_frame = time.monotonic()
            self._record(FrameKind.CONNECT, connection.id, now_ns, plan.url.encode())
            self.feed.on_connect(connection.id, now_ns)
            for message in plan.subscribe:
                self._send(connection, message)
                await asyncio.sleep(SUBSCRIBE_GAP_S[self.venue])
            reason = await self._until_closed(connection)
            connection.ws.close()
            now_ns = time.time_ns()
            self._record(FrameKind.DISCONNECT, connection.id, now_ns, reason.encode())
            self.feed.on_disconnect(connection.id, now_ns)
            self.log.info("%s conn %d: %s", self.venue, connection.id, reason,
                          extra={"conn": connection.id, "reason": "disconnected"})
            attempt = 0 if time.monotonic() - connection.opened > 60 else attempt + 1
            if not self._stop.is_set():
                await asyncio.sleep(backoff_s(attempt, self.rng) if attempt else 0.05)

    async def _until_closed(self, connection: Connection) -> str:
        lifetime = BINANCE_ROTATE_S + self.rng.uniform(0, 600) if self.venue == "binance" else None
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            done, _ = await asyncio.wait({connection.ws.closed, stop}, timeout=lifetime,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if connection.ws.closed in done:
            return connection.ws.closed.result()
        return "stopping" if self._stop.is_set() else "rotated (24 h limit)"

    def _handler(self, connection: Connection):
        """The per-message path: capture, then decode into shared memory."""
        on_frame = self.feed.on_frame
        conn_id = connection.id
        capture = self.capture.append if self.capture is not None else None
        shutdown_notice = binance.is_server_shutdown if self.venue == "binance" else None
        recv = FrameKind.WS_RECV
        clock = time.monotonic

        def on_message(payload: bytes, ts_recv: int) -> None:
            if capture is not None:
                capture(recv, conn_id, ts_recv, payload)
            on_frame(payload, ts_recv, conn_id)
            connection.last_frame = clock()
            if shutdown_notice is not None and shutdown_notice(payload):
                connection.ws.close()

        return on_message

    def _send(self, connection: Connection, message: bytes) -> None:
        self._record(FrameKind.WS_SENT, connection.id, time.time_ns(), message)
        connection.ws.send(message)

    # ------------------------------------------------------------ timers
    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            self.writer.heartbeat()
            self.notifier.watchdog()
            now = time.monotonic()
            for connection in self.connections:
                ws = connection.ws
                if ws is not None and not ws.closed.done() and now - connection.last_frame > self.config.stale_after_s:
                    connection.stale_closes += 1
                    self.log.warning("%s conn %d: no data for %.1f s; reconnecting", self.venue, connection.id,
                                     now - connection.last_frame, extra={"conn": connection.id, "reason": "stale"})
                    ws.close()
            self.feed.overdue_snapshots(SNAPSHOT_TIMEOUT_S)
            wanted = self.feed.books_to_resync()
            if not wanted:
                continue
            if self.venue == "binance":
                for symbol in wanted:
                    if symbol not in self._snapshots:
                        self._snapshots.add(symbol)
                        asyncio.create_task(self._binance_snapshot(symbol))
            else:
                self._resubscribe(wanted)

    async def _binance_snapshot(self, symbol: str) -> None:
        limit = self.config.snapshot_limit
        url = binance.snapshot_url(self.config.rest_url, symbol, limit)
        try:
            response = await self.rest.get(url, weight=binance.snapshot_weight(limit))
        except RestError as exc:
            self.log.warning("binance %s: snapshot failed: %s", symbol, exc,
                             extra={"symbol": symbol, "reason": "snapshot_failed"})
            self.feed.snapshot_failed(symbol)
            return
        finally:
            self._snapshots.discard(symbol)
        if self.feed.state(self._book_index[symbol]) != SyncState.SNAPSHOT:
            self.log.info("binance %s: snapshot arrived after its connection dropped; not used", symbol)
            return  # not captured either: a replay must see exactly what the book saw
        self._record(FrameKind.REST, 0, response.ts_recv, rest_payload("GET", url, response.status, response.body))
        self.feed.on_snapshot(symbol, response.body, response.ts_recv)

    def _resubscribe(self, symbols: list[str]) -> None:
        by_connection: dict[int, list[str]] = {}
        for symbol in symbols:
            by_connection.setdefault(self._book_connection[symbol].id, []).append(symbol)
        for conn_id, group in by_connection.items():
            connection = self.connections[conn_id]
            if connection.ws is None or connection.ws.closed.done():
                for symbol in group:  # the reconnect subscribes them again
                    self.feed.snapshot_failed(symbol)
                continue
            self._req_id += 2
            messages = kraken.resubscribe(group, self.config.book_depth, self._req_id) \
                if self.venue == "kraken" else coinbase.resubscribe(group)
            for message in messages:
                self._send(connection, message)

    def stats(self) -> dict:
        totals = counter_totals(self.writer.counters)
        return {name: totals[name] for name in ("frames", "gaps", "resyncs", "decode_errors")} | {
                "connects": sum(c.connects for c in self.connections),
                "stale_reconnects": sum(c.stale_closes for c in self.connections),
                "rest_requests": self.rest.requests, "rest_throttled": self.rest.throttled}


def main(config: RunConfig, venue: str, duration_s: float | None = None) -> int:
    """Process entry point (`fh worker VENUE -c CONFIG`)."""
    venue_config = config.venues[venue]
    log = setup_logging(f"fh.venue.{venue}", config, venue=venue)
    affinity = pin(venue_config.cpu)
    set_title(f"fh: venue {venue} [{config.prefix}]")
    loop = new_loop()
    asyncio.set_event_loop(loop)

    async def run() -> int:
        stop = asyncio.Event()
        stop_on_signals(stop)
        worker = VenueWorker(venue_config, config, log)
        try:
            await worker.start()
        except WorkerError as exc:
            log.error("%s", exc)
            worker.close()
            return 2
        log.info("%s: running on CPUs %s with %s (%s)", venue, affinity, venue_config.client, venue_config.idle)
        worker.notifier.ready(f"{venue}: {len(worker.connections)} connection(s) for {len(worker._book_index)} books")
        await worker.run(stop, duration_s)
        worker.notifier.stopping()
        log.info("%s: stopped: %s", venue, worker.final_stats)
        return 0

    try:
        return loop.run_until_complete(run())
    finally:
        loop.close()
