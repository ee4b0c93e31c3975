"""The venue worker: one process per venue. Connects, captures, decodes into shared memory, and keeps
every book in sync for as long as it runs. It knows no venue: everything venue-specific comes from
the venue's `Venue` (feedhandler.venues): its plan (URLs and subscribe messages), its limits (the
pacing of messages and connections, the connection lifetime) and its feed, which decides what the
network must do (`feed.requests()`: REST snapshots, resubscriptions) without doing it.

Per received message: `ts_recv` at the socket read, the frame appended to the capture file, then
one `feed.on_frame` call (decode, sequence check, apply, publish). Everything else runs on timers in
the same event loop: the heartbeat in the segment header, the feed's requests (REST snapshots on a
thread pool under the weight budget; resubscriptions paced by the venue's message rate) and polls
(REST data the venue does not stream, such as open interest, under the same budget), the
liveness check, the rotation of connections that the venue closes after a lifetime, and the
capture's flush timer and retention. A capture write that fails never reaches decoding or liveness
(workers.recorder): it is counted (`capture_errors`), reported as a venue STATUS record
(CAPTURE_STOPPED, then CAPTURE_RESUMED) and, under `capture_on_error = "fail"`, stops the worker
with exit status 3.

Keepalive: a venue that wants a client message every `limits.client_ping_s` (its protocol's
`keepalive()`) gets it on each open connection, paced and captured like any other client message.
Liveness: a venue that promises heartbeats (`limits.heartbeat_s`) is dead after `stale_after_s`
without a message. A venue that does not (a book that does not change may send nothing for
minutes) is pinged after `stale_after_s` with nothing received, pings and pongs included, and
reconnected after as long again: a quiet book never causes a reconnect.
Rotation (venues with a connection lifetime, and on a shutdown notice): the successor connection
is opened and subscribed while the old one still runs; each book moves to it once one of its changes
lines up with the book, then the old one closes. No snapshot, no invalid period.
Connections reconnect forever with the shared capped, jittered backoff. SIGTERM / SIGINT:
connections closed, capture flushed, segment marked CLOSED (readers keep the last books, flagged
invalid).
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import asdict

from feedhandler.capture import FrameKind, RotatingCaptureWriter, rest_payload
from feedhandler.config import RunConfig, VenueConfig
from feedhandler.feed import HAND_OVER, HANDED_OVER, VenueFeed
from feedhandler.instrument_cache import DEFAULT_DIRECTORY, InstrumentCache, InstrumentCacheError, parse_metadata
from feedhandler.instruments import Instrument, split_symbol
from feedhandler.publish import VENUE_HOPS
from feedhandler.sync import SyncState
from feedhandler.venues import VENUES
from feedhandler.venues.base import ConnectionPlan, FetchSnapshot, Poll, Resubscribe
from feedhandler.warm import drive
from shm.latency import LatencyWriter
from shm.layout import Counter
from shm.reader import counter_totals
from shm.segment import SegmentError, SegmentWriter

from .lifecycle import Backoff, Pacer, Stop
from .notify import Notifier
from .process import apply_shm_access, compiled_first, new_loop, pin, set_title, setup_logging
from .recorder import Recorder
from .rest import RestClient, RestError
from .wsclient import WsConnection, open_connection

HOUSEKEEPING_S = 0.05
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.2, 30.0
HEALTHY_AFTER_S = 60.0  # a connection that lived this long starts its backoff over
ROTATION_OVERLAP_MAX_S = 30.0  # the old connection closes by then, books lined up or not
MAX_CONNECTION_IDS = 1 << 16  # capture frames carry a u16 connection id
REST_WEIGHT_UNPUBLISHED = 600  # requests per minute for a venue that publishes no REST weight budget
EXIT_CAPTURE_FAILED = 3  # capture_on_error = "fail" and a capture write failed
MAX_METADATA_PAGES = 100  # a venue paging its instruments past this is answering in circles


class WorkerError(Exception):
    """The worker cannot start (no instruments, unknown symbol, busy segment), with the reason."""


class Connection:
    """One planned connection's live state (what liveness, pacing and rotation need)."""

    def __init__(self, conn_id: int, plan: ConnectionPlan, pacer: Pacer):
        self.id = conn_id
        self.plan = plan
        self.pacer = pacer  # client messages on this connection (shared by all of them where the rate is per IP)
        self.ws: WsConnection | None = None
        self.opened = 0.0
        self.keepalive_at = 0.0  # when the venue's keepalive message was last due (or the connection opened)
        self.pinged = False
        self.connects = 0
        self.stale_closes = 0
        self.rotate = False  # a successor should replace it (lifetime reached, shutdown notice)

    @property
    def up(self) -> bool:
        return self.ws is not None and not self.ws.closed.done()


class VenueWorker:
    def __init__(self, config: VenueConfig, run: RunConfig, log: logging.Logger | None = None):
        self.config = config
        self.run_config = run
        self.venue = VENUES[config.name]
        self.log = log or logging.getLogger(f"fh.venue.{config.name}")
        self.rest = RestClient(self.venue.limits.rest_weight_per_minute or REST_WEIGHT_UNPUBLISHED)
        self.rng = random.Random()
        self.capture: Recorder | None = None
        self._capture_recording = True  # as last reported in the segment
        self.writer: SegmentWriter | None = None
        self.latency: LatencyWriter | None = None
        self.feed: VenueFeed | None = None
        self.connections: list[Connection] = []
        limits = self.venue.limits
        self._connect_pacer = Pacer(limits.connections)
        self._ip_message_pacer = Pacer(limits.messages) if limits.messages.scope == "ip" else None
        self._snapshots: set[str] = set()  # symbols with a REST fetch in flight
        self._polling: set[str] = set()  # symbols with a REST poll in flight
        self._next_conn_id = 0
        self._stop = Stop()
        self.rotations = 0
        self.final_stats: dict = {}
        self.notifier = Notifier()

    @property
    def name(self) -> str:
        return self.config.name

    # ------------------------------------------------------------ start
    async def start(self) -> None:
        """Capture file, instruments, segment, feed, connection plan. Raises WorkerError when it
        cannot run."""
        run = self.run_config
        if run.capture_dir:
            try:
                files = RotatingCaptureWriter(run.capture_dir, self.name, max_total_bytes=run.capture_max_bytes,
                                              max_age_s=run.capture_max_age_s, config=asdict(self.config))
            except OSError as exc:
                raise WorkerError(f"run.capture_dir: {exc}") from None
            self.capture = Recorder(files, run.capture_on_error, self.log, on_fail=lambda: self._stop.set())
        instruments = await self._instruments()
        feed_class = self.venue.feed
        try:
            self.writer = SegmentWriter.create(run.prefix, self.name,
                                               [i.spec(feed_class.CAPACITY) for i in instruments],
                                               depth=self.config.depth, ring_slots=self.config.ring_slots)
        except SegmentError as exc:
            raise WorkerError(str(exc)) from None
        self.latency = LatencyWriter(run.prefix, self.name, [(hop, self.name) for hop in VENUE_HOPS])
        options = self.config.plan_options()
        self.feed = feed_class(instruments, self.writer, latency=self.latency.hists, options=options)
        plans = self.venue.plan(tuple(i.venue_symbol for i in instruments), options)
        self.connections = [self._connection(plan) for plan in plans]
        for connection in self.connections:
            self.feed.assign(connection.id, connection.plan.symbols)
        self.log.info("%s: %d books over %d connection(s), segment %s", self.name, len(instruments),
                      len(self.connections), self.writer.path)
        if self.capture is not None:
            self._capture_report()

    def _connection(self, plan: ConnectionPlan) -> Connection:
        """A connection under a connection id no live one uses."""
        used = {c.id for c in self.connections}
        while self._next_conn_id % MAX_CONNECTION_IDS in used:
            self._next_conn_id += 1
        conn_id = self._next_conn_id % MAX_CONNECTION_IDS
        self._next_conn_id += 1
        pacer = self._ip_message_pacer or Pacer(self.venue.limits.messages)
        return Connection(conn_id, plan, pacer)

    async def _instruments(self) -> list[Instrument]:
        """The configured symbols' instruments, named as the WebSocket names them: from the venue's
        metadata endpoint (kept in the cache and the capture), else from the cache; unknown symbols
        fail the start. A venue that lists markets apart (spot, swaps, futures) is asked for the
        configured symbols' market: one market per venue section."""
        urls = {self.venue.instruments_url(self.config.rest_url, split_symbol(s)[2]) for s in self.config.symbols}
        if len(urls) > 1:
            raise WorkerError(f"venues.{self.name}.symbols: {self.name} lists their markets apart "
                              f"({', '.join(sorted(urls))}); configure symbols of one market")
        url = urls.pop()
        cache = InstrumentCache(self.run_config.instrument_cache or DEFAULT_DIRECTORY)
        try:
            body, ts_recv = await self._metadata(url)
            instruments = cache.store(self.name, url, body, ts_recv)
        except (RestError, InstrumentCacheError) as exc:
            try:
                record = cache.record(self.name)
                if not record:
                    raise WorkerError(f"{self.name}: no instrument metadata ({exc}) and nothing cached") from None
                instruments = parse_metadata(self.name, record["body"])
            except InstrumentCacheError as bad:
                raise WorkerError(f"{self.name}: no instrument metadata ({exc}); cache: {bad}") from None
            self.log.warning("%s: metadata fetch failed (%s); using the copy cached at %s", self.name, exc,
                             time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record.get("fetched_ns", 0) / 1e9)))
            self._record(FrameKind.REST, 0, time.time_ns(),  # replays need the metadata the books were built on
                         rest_payload("GET", record.get("url", url), 200, record["body"].encode()))
        instruments = self.venue.protocol.wire_instruments(instruments, self.config.ws_url)
        by_symbol = {i.symbol: i for i in instruments}
        missing = [s for s in self.config.symbols if s not in by_symbol]
        if missing:
            raise WorkerError(f"venues.{self.name}.symbols: {', '.join(missing)} not listed by {self.name} "
                              f"({len(by_symbol)} instruments known)")
        chosen = [by_symbol[s] for s in self.config.symbols]
        wire: dict[str, str] = {}
        for instrument in chosen:
            if instrument.venue_symbol in wire:
                raise WorkerError(f"venues.{self.name}.symbols: {wire[instrument.venue_symbol]} and "
                                  f"{instrument.symbol} are one book on {self.name} ({instrument.venue_symbol})")
            wire[instrument.venue_symbol] = instrument.symbol
        return chosen

    async def _metadata(self, url: str) -> tuple[bytes, int]:
        """The metadata response at `url`, every page of it where the venue pages (each page captured),
        as one body, and when its last page arrived."""
        protocol, bodies, page = self.venue.protocol, [], url
        while page is not None:
            if len(bodies) >= MAX_METADATA_PAGES:
                raise InstrumentCacheError(f"{url}: more than {MAX_METADATA_PAGES} pages of metadata")
            response = await self.rest.get(page, weight=self.venue.limits.instruments_weight)
            self._record(FrameKind.REST, 0, response.ts_recv, rest_payload("GET", page, response.status,
                                                                             response.body))
            bodies.append(response.body)
            page = protocol.next_page(page, response.body)
        try:
            return protocol.merge_pages(bodies), response.ts_recv
        except ValueError as exc:
            raise InstrumentCacheError(f"{url}: {exc}") from None

    # ------------------------------------------------------------ run
    async def run(self, stop: Stop) -> None:
        self._stop = stop
        if self.capture is not None and self.capture.failure:  # failed during start()
            stop.set()
        tasks = [asyncio.create_task(self._keep(c)) for c in self.connections]
        tasks.append(asyncio.create_task(self._housekeeping()))
        if self.config.idle == "spin":
            tasks.append(asyncio.create_task(self._spin()))
        try:
            await stop.wait()
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

    async def _spin(self) -> None:
        """Busy-poll: the loop always has a ready callback, so it polls sockets without sleeping."""
        while True:
            await asyncio.sleep(0)

    def _record(self, kind: FrameKind, conn: int, ts_ns: int, payload: bytes) -> None:
        if self.capture is not None:
            self.capture.append(kind, conn, ts_ns, payload)

    # ------------------------------------------------------------ connections
    async def _keep(self, connection: Connection) -> None:
        """Keep one planned connection open forever: open, run until it closes, reconnect with
        backoff. A rotation replaces it by a successor that takes its place in `connections`."""
        backoff = Backoff(BACKOFF_FIRST_S, BACKOFF_MAX_S, self.rng)
        is_open = False
        while not self._stop():
            if not is_open and not await self._open(connection):
                await asyncio.sleep(backoff.failed())
                continue
            reason = await self._until_closed_or_rotated(connection)
            if self._stop():
                return  # the books keep their last state; the segment is marked CLOSED by run()
            if connection.rotate:
                successor = await self._rotate(connection)
                is_open, connection = successor is not connection, successor
                continue
            is_open = False
            self._closed(connection, reason)
            if time.monotonic() - connection.opened > HEALTHY_AFTER_S:
                backoff.succeeded()
            await asyncio.sleep(backoff.failed())

    async def _open(self, connection: Connection) -> bool:
        """Open and subscribe one connection, paced by the venue's connection rate; False on failure."""
        await asyncio.sleep(self._connect_pacer.reserve(time.monotonic()))
        plan = connection.plan
        try:
            connection.ws = await open_connection(self.config.client, plan.url, self._handler(connection))
        except Exception as exc:  # any failure to open (DNS, TCP, TLS, handshake) is retried
            self.log.warning("%s conn %d: connect failed (%s)", self.name, connection.id, exc,
                             extra={"conn": connection.id, "reason": "connect_failed"})
            return False
        now_ns = time.time_ns()
        connection.connects += 1
        connection.opened = connection.keepalive_at = time.monotonic()
        connection.pinged = connection.rotate = False
        self._record(FrameKind.CONNECT, connection.id, now_ns, plan.url.encode())
        self.feed.on_connect(connection.id, now_ns, plan.url)
        for message in plan.subscribe:
            await self._send(connection, message)
        return True

    def _closed(self, connection: Connection, reason: str) -> None:
        connection.ws.close()
        now_ns = time.time_ns()
        self._record(FrameKind.DISCONNECT, connection.id, now_ns, reason.encode())
        self.feed.on_disconnect(connection.id, now_ns)
        self.log.info("%s conn %d: %s", self.name, connection.id, reason,
                      extra={"conn": connection.id, "reason": "disconnected"})

    def _rotate_after_s(self) -> float | None:
        limits = self.venue.limits
        if self.config.rotate_after_s:
            return self.config.rotate_after_s
        if limits.lifetime_s:  # spread over the margin's second half, so connections do not rotate at once
            return limits.lifetime_s - limits.rotate_margin_s * (1 - 0.5 * self.rng.random())
        return None

    async def _until_closed_or_rotated(self, connection: Connection) -> str:
        """Wait until the connection closes (returns why), the worker stops, or a rotation is due."""
        lifetime = self._rotate_after_s()
        deadline = None if lifetime is None else connection.opened + lifetime
        while not connection.ws.closed.done() and not self._stop() and not connection.rotate:
            if deadline is not None and time.monotonic() >= deadline:
                connection.rotate = True
                break
            await asyncio.sleep(HOUSEKEEPING_S)
        if connection.ws.closed.done():
            connection.rotate = False  # too late to overlap: a plain reconnect
            return connection.ws.closed.result()
        return ""

    async def _rotate(self, old: Connection) -> Connection:
        """Open the successor of `old` while `old` still runs, move the books over as they line up,
        then close `old`. Returns the successor (or `old`, reconnected, if the successor failed)."""
        successor = self._connection(old.plan)
        if not await self._open(successor):
            self._closed(old, "rotation failed: successor did not open")
            return old
        self.connections[self.connections.index(old)] = successor
        self._mark(old, HAND_OVER + b" %d" % successor.id)
        started = time.monotonic()
        while self.feed.waiting_hand_over(old.id) and time.monotonic() - started < ROTATION_OVERLAP_MAX_S \
                and not old.ws.closed.done() and successor.up and not self._stop():
            await asyncio.sleep(HOUSEKEEPING_S)
        waiting = self.feed.waiting_hand_over(old.id)
        self._mark(old, HANDED_OVER + b" %d" % successor.id)
        self.rotations += 1
        self._closed(old, f"rotated to conn {successor.id} after {time.monotonic() - started:.2f} s overlap "
                          f"({waiting} quiet book(s) moved as they were)")
        return successor

    def _mark(self, connection: Connection, marker: bytes) -> None:
        """A rotation step: captured first, then done, so that a replay does the same."""
        now_ns = time.time_ns()
        self._record(FrameKind.MARKER, connection.id, now_ns, marker)
        self.feed.on_event(FrameKind.MARKER, marker, now_ns, connection.id)

    def _handler(self, connection: Connection):
        """The per-message path: capture, then decode into shared memory."""
        on_frame = self.feed.on_frame
        conn_id = connection.id
        capture = self.capture.append if self.capture is not None else None  # never raises (Recorder)
        shutdown_notice = self.venue.protocol.is_shutdown_notice
        recv = FrameKind.WS_RECV

        def on_message(payload: bytes, ts_recv: int) -> None:
            if capture is not None:
                capture(recv, conn_id, ts_recv, payload)
            on_frame(payload, ts_recv, conn_id)
            if shutdown_notice(payload):
                connection.rotate = True

        return on_message

    async def _send(self, connection: Connection, message: bytes) -> bool:
        """Send one client message after the venue's message rate allows it; False if the
        connection is down by then."""
        await asyncio.sleep(connection.pacer.reserve(time.monotonic()))
        if not connection.up:
            return False
        self._record(FrameKind.WS_SENT, connection.id, time.time_ns(), message)
        connection.ws.send(message)
        return True

    # ------------------------------------------------------------ timers
    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            self.writer.heartbeat()
            self.notifier.watchdog()
            now = time.monotonic()
            if self.capture is not None:
                self.capture.tick(now)
                self._capture_report()
            for connection in self.connections:
                if connection.up:
                    self._check_alive(connection, now)
                    if self._keepalive_due(connection, now):
                        asyncio.create_task(self._send(connection, self.venue.protocol.keepalive()))
            for request in self.feed.requests():
                if isinstance(request, FetchSnapshot):
                    if request.symbol not in self._snapshots:
                        self._snapshots.add(request.symbol)
                        asyncio.create_task(self._fetch_snapshot(request))
                elif isinstance(request, Resubscribe):
                    asyncio.create_task(self._resubscribe(request))
            for poll in self.feed.polls():
                if poll.symbol not in self._polling:
                    self._polling.add(poll.symbol)
                    asyncio.create_task(self._poll(poll))

    def _capture_report(self) -> None:
        """The capture's failures into the segment: the venue's `capture_errors` counter, and a
        STATUS record each time capturing stops or resumes."""
        self.writer.counters[-1, Counter.CAPTURE_ERRORS] = self.capture.errors
        if self.capture.recording != self._capture_recording:
            self._capture_recording = self.capture.recording
            self.feed.on_capture(self._capture_recording, time.time_ns())

    def _keepalive_due(self, connection: Connection, now: float) -> bool:
        """The venue wants a client message every `limits.client_ping_s` (an application-level ping):
        True when one is due on this connection now (and the next then counts from now)."""
        interval = self.venue.limits.client_ping_s
        if not interval or now - connection.keepalive_at < interval:
            return False
        connection.keepalive_at = now
        return True

    def _check_alive(self, connection: Connection, now: float) -> None:
        """Heartbeat venues: no message for stale_after_s: reconnect. Others: nothing received for
        stale_after_s: ping; still nothing after as long again: reconnect."""
        ws, stale = connection.ws, self.config.stale_after_s
        if self.venue.limits.heartbeat_s:
            idle, limit = now - ws.last_message, stale
        else:
            idle, limit = now - ws.last_activity, 2 * stale
            if idle < stale:
                connection.pinged = False
            elif not connection.pinged:
                connection.pinged = True
                ws.ping()
        if idle >= limit:
            connection.stale_closes += 1
            self.log.warning("%s conn %d: nothing received for %.1f s; reconnecting", self.name, connection.id, idle,
                             extra={"conn": connection.id, "reason": "stale"})
            ws.close()

    async def _fetch_snapshot(self, request: FetchSnapshot) -> None:
        symbol, rest = request.symbol, request.request
        try:
            response = await self.rest.get(rest.url, weight=rest.weight)
        except RestError as exc:
            self.log.warning("%s %s: snapshot failed: %s", self.name, symbol, exc,
                             extra={"symbol": symbol, "reason": "snapshot_failed"})
            self.feed.snapshot_failed(symbol)
            return
        finally:
            self._snapshots.discard(symbol)
        if self.feed.state(self.feed.index(symbol)) != SyncState.SNAPSHOT:
            self.log.info("%s %s: snapshot arrived after its connection dropped; not used", self.name, symbol)
            return  # not captured either: a replay must see exactly what the book saw
        self._record(FrameKind.REST, 0, response.ts_recv,
                     rest_payload(rest.method, rest.url, response.status, response.body))
        self.feed.on_rest(rest.url, response.body, response.ts_recv)

    async def _poll(self, poll: Poll) -> None:
        """A polled REST answer (open interest), captured and decoded; a failed poll waits for the next."""
        rest = poll.request
        try:
            response = await self.rest.get(rest.url, weight=rest.weight)
        except RestError as exc:
            self.log.warning("%s %s: poll failed: %s", self.name, poll.symbol, exc,
                             extra={"symbol": poll.symbol, "reason": "poll_failed"})
            return
        finally:
            self._polling.discard(poll.symbol)
        self._record(FrameKind.REST, 0, response.ts_recv, rest_payload(rest.method, rest.url, response.status,
                                                                       response.body))
        self.feed.on_rest(rest.url, response.body, response.ts_recv)

    async def _resubscribe(self, request: Resubscribe) -> None:
        connection = next((c for c in self.connections if c.id == request.conn), None)
        for message in request.messages:
            if connection is None or not await self._send(connection, message):
                for symbol in request.symbols:  # the reconnect subscribes them again
                    self.feed.snapshot_failed(symbol)
                return

    def stats(self) -> dict:
        totals = counter_totals(self.writer.counters)
        return {name: totals[name] for name in ("frames", "gaps", "resyncs", "decode_errors", "capture_errors")} | {
                "connects": sum(c.connects for c in self.connections),
                "stale_reconnects": sum(c.stale_closes for c in self.connections),
                "rotations": self.rotations,
                "rest_requests": self.rest.requests, "rest_throttled": self.rest.throttled}


def main(config: RunConfig, venue: str, duration_s: float | None = None) -> int:
    """Process entry point (`fh worker VENUE -c CONFIG`)."""
    venue_config = config.venues[venue]
    log = setup_logging(f"fh.venue.{venue}", config, venue=venue)
    apply_shm_access(config)
    affinity = pin(venue_config.cpu)
    set_title(f"fh: venue {venue} [{config.prefix}]")
    compiled_first(venue, log, lambda prefix: drive(VENUES[venue], prefix, private=True).close())
    loop = new_loop()
    asyncio.set_event_loop(loop)

    async def run() -> int:
        stop = Stop().on_signals()
        worker = VenueWorker(venue_config, config, log)
        starting, stopping = asyncio.ensure_future(worker.start()), asyncio.ensure_future(stop.wait())
        await asyncio.wait((starting, stopping), return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not starting.done():  # a stop does not wait for a slow venue to answer first
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            log.info("%s: stopped while starting", venue)
            worker.close()
            return 0
        try:
            starting.result()
        except WorkerError as exc:
            log.error("%s", exc)
            worker.close()
            return 2
        log.info("%s: running on CPUs %s with %s (%s)", venue, affinity, venue_config.client, venue_config.idle)
        worker.notifier.ready(f"{venue}: {len(worker.connections)} connection(s) for "
                              f"{len(worker.feed.instruments)} books")
        await worker.run(stop.expire_after(duration_s))  # the duration counts from the connections
        worker.notifier.stopping()
        log.info("%s: stopped: %s", venue, worker.final_stats)
        if worker.capture is not None and worker.capture.failure:
            log.error("%s: exiting with status %d: %s", venue, EXIT_CAPTURE_FAILED, worker.capture.failure)
            return EXIT_CAPTURE_FAILED
        return 0

    try:
        return loop.run_until_complete(run())
    finally:
        loop.close()
