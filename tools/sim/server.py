"""`fh sim`: Binance, Coinbase Advanced Trade and Kraken v2 served on loopback, so the real venue
workers run against it unmodified (only base URLs change).

Each venue gets a WebSocket port (picows) and a REST port (plain HTTP/1.1), with the live paths and
message shapes. Markets are synthetic (`Market` per venue and symbol, all following one reference
mid per BASE-QUOTE with a small drifting offset per venue, so the NBBO changes venue), or a capture
replayed frame by frame. Faults are injected per venue, on a schedule or on demand through
`GET <rest>/_sim/fault?kind=...` (see `FAULTS`).
"""
from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlparse

import numpy as np
from picows import WSListener, WSMsgType, WSTransport, ws_create_server

from feedhandler.capture import CaptureReader, FrameKind, split_rest
from feedhandler.instruments import Instrument
from feedhandler.sim_market import Market
from feedhandler.venues.binance import BinanceEncoder
from feedhandler.venues.coinbase import CoinbaseAdvancedEncoder
from feedhandler.venues.kraken import KrakenV2Encoder

FAULTS = {  # kind: what it does (arguments from the query string)
    "drop": "the next book diff of `symbol` (default: every symbol) is not sent: a sequence gap",
    "duplicate": "the next book diff of `symbol` is sent twice",
    "disconnect": "every connection is cut (TCP reset, no close frame)",
    "close": "server-initiated close (Binance sends serverShutdown first)",
    "bad_checksum": "Kraken: the next book update of `symbol` carries a wrong checksum",
    "malformed": "a truncated JSON frame is sent to every connection",
    "stall": "no data and no heartbeats for `seconds`",
    "burst": "the market runs at `rate` steps/s per symbol for `seconds`",
    "slow_rest": "the next `count` REST responses wait `seconds`",
    "rest_429": "the next `count` REST requests get 429 Too Many Requests (Retry-After: 1)",
}
MALFORMED = b'{"stream":"x@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"X","U":'


REFERENCE_MIDS = {"BTC": 100_000, "ETH": 3_500, "SOL": 180}  # quote units, any quote
DEFAULT_INSTRUMENTS = {  # venue symbols as each venue spells them (Kraken: v2 names)
    "binance": [Instrument("binance", "BTCUSDT", "BTC", "USDT", 2, 5),
                Instrument("binance", "ETHUSDT", "ETH", "USDT", 2, 4)],
    "coinbase": [Instrument("coinbase", "BTC-USD", "BTC", "USD", 2, 8),
                 Instrument("coinbase", "ETH-USD", "ETH", "USD", 2, 8),
                 Instrument("coinbase", "BTC-USDT", "BTC", "USDT", 2, 8)],
    "kraken": [Instrument("kraken", "BTC/USD", "BTC", "USD", 1, 8), Instrument("kraken", "ETH/USD", "ETH", "USD", 2, 8),
               Instrument("kraken", "BTC/USDT", "BTC", "USDT", 1, 8)],
}


@dataclass
class Faults:
    """Pending faults of one venue; the market loop and the servers consume them."""

    drop: dict[str, int] = field(default_factory=dict)  # symbol or "*" -> diffs to drop
    duplicate: dict[str, int] = field(default_factory=dict)
    bad_checksum: dict[str, int] = field(default_factory=dict)
    stall_until: float = 0.0
    burst_rate: float = 0.0
    burst_until: float = 0.0
    slow_rest_s: float = 0.0
    slow_rest_count: int = 0
    rest_429: int = 0
    injected: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def take(pending: dict[str, int], symbol: str) -> bool:
        for key in (symbol, "*"):
            if pending.get(key, 0) > 0:
                pending[key] -= 1
                return True
        return False


class StepFault:
    """Whether one step's book diff is dropped or duplicated, taken from the pending faults only
    when the step has a diff (a step that changed nothing must not use up a fault)."""

    def __init__(self, faults: Faults, symbol: str):
        self._faults, self._symbol = faults, symbol
        self._decided: tuple[bool, int] | None = None

    def decide(self) -> tuple[bool, int]:
        """(drop, times to send); the same answer for every session of the step."""
        if self._decided is None:
            self._decided = (Faults.take(self._faults.drop, self._symbol),
                             2 if Faults.take(self._faults.duplicate, self._symbol) else 1)
        return self._decided


class Reference:
    """The shared mid of one BASE-QUOTE (in 1e-8 quote units) and each venue's offset from it."""

    def __init__(self, mid: float, rng: np.random.Generator):
        self.rng = rng
        self.mid = int(mid * 1e8)
        self.offsets: dict[str, int] = {}

    def advance(self) -> None:
        self.mid += int(self.rng.normal(0, self.mid * 3e-6))
        for venue in self.offsets:  # bounded drift of each venue's offset: leadership changes venue
            self.offsets[venue] = int(np.clip(self.offsets[venue] + self.rng.normal(0, self.mid * 1e-6),
                                              -self.mid * 3e-6, self.mid * 3e-6))

    def target(self, venue: str, px_dec: int) -> int:
        return (self.mid + self.offsets.setdefault(venue, 0)) // 10 ** (8 - px_dec)


class Session(WSListener):
    """One client connection; what it subscribed to and its per-connection protocol state."""

    def __init__(self, venue: VenueSim, path: str):
        self.venue = venue
        self.path = path
        self.transport: WSTransport | None = None
        self.books: dict[str, object] = {}  # venue symbol -> encoder or stream prefix
        self.trades: set[str] = set()
        self.heartbeats = False
        self.sequence = itertools.count()  # Coinbase: one sequence_num per connection
        self.opened = time.monotonic()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.venue.sessions.add(self)
        self.venue.on_connect(self)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.venue.sessions.discard(self)

    def on_ws_frame(self, transport: WSTransport, frame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
            self.venue.on_message(self, frame.get_payload_as_bytes())

    def send(self, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.send(WSMsgType.TEXT, payload)


class VenueSim:
    """One venue: its markets, its sessions, its faults. Subclasses speak the venue's protocol."""

    name = ""

    def __init__(self, instruments: list[Instrument], references: dict[str, Reference], seed: int,
                 rate: float, depth: int = 200):
        self.instruments = {inst.venue_symbol: inst for inst in instruments}
        self.references = references
        self.rate = rate  # market steps per second per symbol
        self.faults = Faults()
        self.sessions: set[Session] = set()
        self.markets = {}
        for k, (symbol, inst) in enumerate(self.instruments.items()):
            mid = references[inst.symbol].target(self.name, inst.px_dec)
            self.markets[symbol] = Market(mid, seed=seed * 1000 + k, max_levels=depth,
                                          mean_lots=max(1, 10 ** inst.qty_dec // 2))
        self.steps = 0
        self.frames_sent = 0

    # ------------------------------------------------------------ market
    def current_rate(self, now: float) -> float:
        return self.faults.burst_rate if now < self.faults.burst_until else self.rate

    def step(self, symbol: str, ts_ns: int) -> None:
        inst = self.instruments[symbol]
        market = self.markets[symbol]
        step = market.step(self.references[inst.symbol].target(self.name, inst.px_dec))
        self.steps += 1
        self.publish(symbol, market, step, ts_ns, StepFault(self.faults, symbol))

    def publish(self, symbol: str, market: Market, step, ts_ns: int, fault: StepFault) -> None:
        raise NotImplementedError

    def heartbeat(self, ts_ns: int) -> None:
        """Once a second, venues that send heartbeats do."""

    def send(self, session: Session, payload: bytes, repeat: int = 1) -> None:
        for _ in range(repeat):
            session.send(payload)
            self.frames_sent += 1

    # ------------------------------------------------------------ protocol
    def on_connect(self, session: Session) -> None:
        pass

    def on_message(self, session: Session, payload: bytes) -> None:
        pass

    def rest(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        return 404, {}, b'{"error":"not found"}'

    def metadata(self) -> bytes:
        raise NotImplementedError

    # ------------------------------------------------------------ faults
    def inject(self, kind: str, symbol: str = "*", seconds: float = 2.0, rate: float = 0.0, count: int = 1) -> None:
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULTS)}")
        faults, now = self.faults, time.monotonic()
        faults.injected[kind] = faults.injected.get(kind, 0) + 1
        if kind in ("drop", "duplicate", "bad_checksum"):
            pending = getattr(faults, kind)
            pending[symbol] = pending.get(symbol, 0) + count
        elif kind == "stall":
            faults.stall_until = now + seconds
        elif kind == "burst":
            faults.burst_rate, faults.burst_until = rate or 10 * self.rate, now + seconds
        elif kind == "slow_rest":
            faults.slow_rest_s, faults.slow_rest_count = seconds, count
        elif kind == "rest_429":
            faults.rest_429 += count
        elif kind == "malformed":
            for session in list(self.sessions):
                self.send(session, MALFORMED)
        elif kind == "disconnect":
            for session in list(self.sessions):
                session.transport.disconnect(graceful=False)
        elif kind == "close":
            self.close_all()

    def close_all(self) -> None:
        for session in list(self.sessions):
            session.transport.send_close()
            session.transport.disconnect()


class BinanceSim(VenueSim):
    name = "binance"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.encoders = {s: BinanceEncoder(s, i.px_dec, i.qty_dec) for s, i in self.instruments.items()}
        self.weight_window = (0, 0)  # (minute, weight used)

    def on_connect(self, session: Session) -> None:
        streams = parse_qs(urlparse(session.path).query).get("streams", [""])[0].split("/")
        for stream in filter(None, streams):
            name, _, channel = stream.partition("@")
            symbol = name.upper()
            if symbol in self.instruments:
                if channel.startswith("depth"):
                    session.books[symbol] = f'{{"stream":"{stream}"'.encode()
                elif channel == "trade":
                    session.trades.add(symbol)

    def on_message(self, session: Session, payload: bytes) -> None:
        try:
            request = json.loads(payload)
            session.send(json.dumps({"result": None, "id": request.get("id")}).encode())
        except (ValueError, AttributeError):
            session.send(b'{"code":2,"msg":"Invalid JSON"}')

    def publish(self, symbol, market, step, ts_ns, fault) -> None:
        frames = self.encoders[symbol].frames(market, step, ts_ns)
        for session in list(self.sessions):
            if symbol not in session.books:
                continue
            for frame in frames:
                if b'@trade"' in frame[:40]:
                    if symbol in session.trades:
                        self.send(session, frame)
                    continue
                drop, repeat = fault.decide()
                if not drop:
                    self.send(session, frame, repeat)

    def close_all(self) -> None:
        notice = json.dumps({"stream": "!serverShutdown",
                             "data": {"e": "serverShutdown", "E": time.time_ns() // 1_000_000}}).encode()
        for session in list(self.sessions):
            session.send(notice)
        super().close_all()

    def metadata(self) -> bytes:
        return json.dumps({"symbols": [
            {"symbol": s, "status": "TRADING", "baseAsset": i.base, "quoteAsset": i.quote,
             "quoteAssetPrecision": i.px_dec, "baseAssetPrecision": i.qty_dec}
            for s, i in self.instruments.items()]}).encode()

    def rest(self, path, query):
        if path == "/api/v3/exchangeInfo":
            return 200, {}, self.metadata()
        if path == "/api/v3/depth":
            symbol = query.get("symbol", "")
            if symbol not in self.instruments:
                return 400, {}, b'{"code":-1121,"msg":"Invalid symbol."}'
            limit = int(query.get("limit", "100"))
            minute = int(time.time() // 60)
            used = (self.weight_window[1] if self.weight_window[0] == minute else 0) + (250 if limit > 1000 else 50)
            self.weight_window = (minute, used)
            headers = {"X-MBX-USED-WEIGHT-1M": str(used)}
            if used > 6000:
                return 429, {**headers, "Retry-After": "1"}, b'{"code":-1003,"msg":"Too many requests"}'
            return 200, headers, self.encoders[symbol].snapshot(self.markets[symbol], depth=min(limit, 5000))
        return super().rest(path, query)


class KrakenSim(VenueSim):
    name = "kraken"

    def on_message(self, session: Session, payload: bytes) -> None:
        try:
            request = json.loads(payload)
            method, params, req_id = request["method"], request.get("params", {}), request.get("req_id")
        except (ValueError, KeyError, TypeError):
            session.send(b'{"error":"Malformed request","method":"unknown","success":false}')
            return
        if method == "ping":
            session.send(json.dumps({"method": "pong", "req_id": req_id}).encode())
            return
        channel = params.get("channel")
        for symbol in params.get("symbol", []):
            result = {"channel": channel, "symbol": symbol}
            if symbol not in self.instruments:
                session.send(json.dumps({"error": f"Currency pair not supported {symbol}", "method": method,
                                         "req_id": req_id, "success": False, "symbol": symbol}).encode())
                continue
            if channel == "book":
                result["depth"] = int(params.get("depth", 10))
            if method == "subscribe":
                session.send(json.dumps({"method": method, "result": {**result, "snapshot": True}, "success": True,
                                         "req_id": req_id}).encode())
                if channel == "book":
                    inst = self.instruments[symbol]
                    encoder = KrakenV2Encoder(symbol, inst.px_dec, inst.qty_dec, result["depth"])
                    session.books[symbol] = encoder
                    self.send(session, encoder.snapshot(self.markets[symbol]))
                elif channel == "trade":
                    session.trades.add(symbol)
            elif method == "unsubscribe":
                (session.books.pop(symbol, None) if channel == "book" else session.trades.discard(symbol))
                session.send(json.dumps({"method": method, "result": result, "success": True,
                                         "req_id": req_id}).encode())

    def publish(self, symbol, market, step, ts_ns, fault) -> None:
        for session in list(self.sessions):
            encoder = session.books.get(symbol)
            if encoder is None:
                continue
            for frame in encoder.frames(market, step, ts_ns):
                if frame.startswith(b'{"channel":"trade"'):
                    if symbol in session.trades:
                        self.send(session, frame)
                    continue
                drop, repeat = fault.decide()
                if drop:
                    continue
                if Faults.take(self.faults.bad_checksum, symbol):
                    head, _, crc = frame.rpartition(b'"checksum":')
                    frame = head + b'"checksum":' + str((int(crc.rstrip(b"}]")) + 1) % 2**32).encode() + b"}]}"
                self.send(session, frame, repeat)

    def heartbeat(self, ts_ns: int) -> None:
        for session in list(self.sessions):
            if session.books or session.trades:
                self.send(session, b'{"channel":"heartbeat"}')

    def metadata(self) -> bytes:
        legacy = {"BTC": "XBT"}
        return json.dumps({"error": [], "result": {
            f"{i.base}{i.quote}": {"altname": f"{i.base}{i.quote}",
                                   "wsname": f"{legacy.get(i.base, i.base)}/{i.quote}",
                                   "base": i.base, "quote": i.quote, "pair_decimals": i.px_dec,
                                   "lot_decimals": i.qty_dec, "status": "online"}
            for i in self.instruments.values()}}).encode()

    def rest(self, path, query):
        if path == "/0/public/AssetPairs":
            return 200, {}, self.metadata()
        return super().rest(path, query)


class CoinbaseSim(VenueSim):
    name = "coinbase"
    L2_PER_CONNECTION = 16

    def on_message(self, session: Session, payload: bytes) -> None:
        try:
            request = json.loads(payload)
            kind, channel = request["type"], request["channel"]
            products = list(request.get("product_ids", []))
        except (ValueError, KeyError, TypeError):
            session.send(b'{"type":"error","message":"Failed to parse message"}')
            return
        ts_ns = time.time_ns()
        if channel == "heartbeats":
            session.heartbeats = kind == "subscribe"
        elif kind == "unsubscribe":
            for product in products:
                (session.books.pop(product, None) if channel == "level2" else session.trades.discard(product))
        elif channel == "level2":
            unknown = [p for p in products if p not in self.instruments]
            if unknown or len(set(session.books) | set(products)) > self.L2_PER_CONNECTION:
                reason = "too many L2 streams requested in a single session" if not unknown else \
                    f"Failed to subscribe: unknown products {unknown}"
                session.send(json.dumps({"type": "error", "message": reason}).encode())
                return
            for product in products:
                inst = self.instruments[product]
                encoder = CoinbaseAdvancedEncoder(product, inst.px_dec, inst.qty_dec, session.sequence)
                session.books[product] = encoder
                self.send(session, encoder.snapshot(self.markets[product], ts_ns))
        elif channel == "market_trades":
            session.trades.update(p for p in products if p in self.instruments)
        self._subscriptions(session, ts_ns)

    def _subscriptions(self, session: Session, ts_ns: int) -> None:
        current = {"level2": sorted(session.books), "market_trades": sorted(session.trades)}
        if session.heartbeats:
            current["heartbeats"] = ["heartbeats"]
        session.send(json.dumps({"channel": "subscriptions", "client_id": "", "timestamp": "",
                                 "sequence_num": next(session.sequence),
                                 "events": [{"subscriptions": current}]}).encode())

    def publish(self, symbol, market, step, ts_ns, fault) -> None:
        for session in list(self.sessions):
            encoder = session.books.get(symbol)
            if encoder is None:
                continue
            for frame in encoder.frames(market, step, ts_ns, trades=symbol in session.trades):
                if not frame.startswith(b'{"channel":"l2_data"'):
                    self.send(session, frame)
                    continue
                drop, repeat = fault.decide()
                if not drop:  # a dropped message's sequence_num is spent: the client sees the gap
                    self.send(session, frame, repeat)

    def heartbeat(self, ts_ns: int) -> None:
        for session in list(self.sessions):
            if session.heartbeats:
                self.send(session, json.dumps({
                    "channel": "heartbeats", "client_id": "", "timestamp": "", "sequence_num": next(session.sequence),
                    "events": [{"current_time": "", "heartbeat_counter": ts_ns // 1_000_000_000}]}).encode())

    def metadata(self) -> bytes:
        return json.dumps({"products": [
            {"product_id": p, "base_currency_id": i.base, "quote_currency_id": i.quote,
             "quote_increment": f"{10.0 ** -i.px_dec:.{i.px_dec}f}" if i.px_dec else "1",
             "base_increment": f"{10.0 ** -i.qty_dec:.{i.qty_dec}f}" if i.qty_dec else "1", "status": "online"}
            for p, i in self.instruments.items()]}).encode()

    def rest(self, path, query):
        if path == "/api/v3/brokerage/market/products":
            return 200, {}, self.metadata()
        return super().rest(path, query)


SIMS = {"binance": BinanceSim, "coinbase": CoinbaseSim, "kraken": KrakenSim}
PORT_ORDER = ("binance", "coinbase", "kraken")  # venue k: WS base + 2k, REST base + 2k + 1, whatever runs


class ReplaySim(VenueSim):
    """A capture served as it was received: every WS_RECV frame, in order, to whoever connects
    (at the recorded pace times `speed`, or as fast as possible when speed is 0); REST answered with
    the captured responses of the same path."""

    def __init__(self, path: str, speed: float):
        self.reader = CaptureReader(path)
        self.name = self.reader.header["venue"]
        self.speed = speed
        self.faults = Faults()
        self.sessions = set()
        self.responses: dict[str, list[bytes]] = {}
        for frame in self.reader.frames():
            if frame.kind == FrameKind.REST:
                _, url, _, body = split_rest(frame.payload)
                self.responses.setdefault(urlparse(url).path, []).append(body)
        self.frames_sent = 0
        self.steps = 0

    def on_connect(self, session: Session) -> None:
        asyncio.get_running_loop().create_task(self._play(session))

    async def _play(self, session: Session) -> None:
        started, first = time.monotonic(), None
        for frame in self.reader.frames():
            if frame.kind != FrameKind.WS_RECV:
                continue
            first = frame.ts_ns if first is None else first
            if self.speed > 0:
                delay = started + (frame.ts_ns - first) / 1e9 / self.speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            if session.transport is None or session.transport.is_disconnected:
                return
            self.send(session, frame.payload)

    def rest(self, path, query):
        bodies = self.responses.get(path)
        if not bodies:
            return 404, {}, b'{"error":"not in the capture"}'
        return 200, {}, bodies.pop(0) if len(bodies) > 1 else bodies[0]


@dataclass(frozen=True)
class Ports:
    ws: int
    rest: int


class Simulator:
    """All simulated venues of one run, their servers and their shared market clock."""

    def __init__(self, venues: dict[str, VenueSim], host: str = "127.0.0.1", base_port: int = 18700):
        self.venues = venues
        self.host = host
        self.ports = {name: Ports(base_port + 2 * PORT_ORDER.index(name), base_port + 2 * PORT_ORDER.index(name) + 1)
                      for name in venues}
        self._servers: list[asyncio.AbstractServer] = []
        self.schedule: list[tuple[float, str, dict]] = []  # (at seconds, venue, fault arguments)

    @classmethod
    def synthetic(cls, venues: list[str], rate: float = 20.0, seed: int = 7, **kwargs) -> Simulator:
        rng = np.random.default_rng(seed)
        references = {}
        for venue in venues:
            for inst in DEFAULT_INSTRUMENTS[venue]:
                references.setdefault(inst.symbol, Reference(REFERENCE_MIDS[inst.base], rng))
        return cls({v: SIMS[v](DEFAULT_INSTRUMENTS[v], references, seed + k, rate) for k, v in enumerate(venues)},
                   **kwargs)

    def urls(self) -> dict[str, dict[str, str]]:
        """The base URLs a venue worker is configured with to use this simulator."""
        paths = {"kraken": "/v2"}
        return {name: {"ws_url": f"ws://{self.host}:{p.ws}{paths.get(name, '')}",
                       "rest_url": f"http://{self.host}:{p.rest}"} for name, p in self.ports.items()}

    async def start(self) -> None:
        for name, venue in self.venues.items():
            ports = self.ports[name]
            self._servers.append(await ws_create_server(
                lambda request, venue=venue: Session(venue, request.path.decode()), self.host, ports.ws,
                max_frame_size=64 << 20, websocket_handshake_timeout=5))
            self._servers.append(await asyncio.start_server(
                lambda r, w, venue=venue: self._http(venue, r, w), self.host, ports.rest))

    async def run(self, duration: float | None = None) -> None:
        await self.start()
        loop_started = time.monotonic()
        tasks = [asyncio.create_task(self._heartbeats()), asyncio.create_task(self._faults(loop_started)),
                 asyncio.create_task(self._references())]
        tasks += [asyncio.create_task(self._market(v)) for v in self.venues.values() if not isinstance(v, ReplaySim)]
        try:
            await asyncio.sleep(duration) if duration else await asyncio.Event().wait()
        finally:
            for task in tasks:
                task.cancel()
            await self.stop()

    async def stop(self) -> None:
        for venue in self.venues.values():
            for session in list(venue.sessions):
                session.transport.disconnect(graceful=False)
        for server in self._servers:
            server.close()
        self._servers.clear()

    async def _market(self, venue: VenueSim) -> None:
        """Steps each symbol at the venue's rate (bursts faster); nothing moves while stalled."""
        symbols = list(venue.markets)
        done, started, paced_rate = 0, time.monotonic(), 0.0
        while True:
            await asyncio.sleep(0.001)
            now = time.monotonic()
            rate = venue.current_rate(now) * len(symbols)
            if now < venue.faults.stall_until or rate != paced_rate or done > 1_000_000:
                started, done, paced_rate = now, 0, rate  # pacing starts over at every change of rate
                continue
            due = min(int((now - started) * rate) - done, 5000)
            ts_ns = time.time_ns()
            for k in range(max(0, due)):
                venue.step(symbols[(done + k) % len(symbols)], ts_ns)
            done += max(0, due)

    async def _references(self) -> None:
        """The shared reference prices move on wall time, whatever each venue's rate."""
        references = {id(r): r for v in self.venues.values() for r in getattr(v, "references", {}).values()}
        while True:
            await asyncio.sleep(0.1)
            for reference in references.values():
                reference.advance()

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for venue in self.venues.values():
                if now >= venue.faults.stall_until:
                    venue.heartbeat(time.time_ns())

    async def _faults(self, started: float) -> None:
        for at, venue, arguments in sorted(self.schedule, key=lambda item: item[0]):
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            self.venues[venue].inject(**arguments)

    async def _http(self, venue: VenueSim, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            target = request.split(b" ", 2)[1].decode()
            parsed = urlparse(target)
            query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
            status, headers, body = await self._respond(venue, parsed.path, query)
            head = [f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}", "Content-Type: application/json",
                    f"Content-Length: {len(body)}", "Connection: close"]
            head += [f"{k}: {v}" for k, v in headers.items()]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, IndexError, UnicodeDecodeError):
            pass
        finally:
            writer.close()

    async def _respond(self, venue: VenueSim, path: str, query: dict[str, str]) -> tuple[int, dict, bytes]:
        if path == "/_sim/fault":
            try:
                venue.inject(query.get("kind", ""), query.get("symbol", "*"), float(query.get("seconds", 2)),
                             float(query.get("rate", 0)), int(query.get("count", 1)))
            except ValueError as exc:
                return 400, {}, json.dumps({"error": str(exc)}).encode()
            return 200, {}, json.dumps({"injected": venue.faults.injected}).encode()
        if path == "/_sim/stats":
            return 200, {}, json.dumps({"steps": venue.steps, "frames_sent": venue.frames_sent,
                                        "sessions": len(venue.sessions), "injected": venue.faults.injected}).encode()
        faults = venue.faults
        if faults.rest_429 > 0:
            faults.rest_429 -= 1
            return 429, {"Retry-After": "1"}, b'{"code":-1003,"msg":"Too many requests"}'
        if faults.slow_rest_count > 0:
            faults.slow_rest_count -= 1
            await asyncio.sleep(faults.slow_rest_s)
        return venue.rest(path, query)


def parse_fault(text: str) -> tuple[float, str, dict]:
    """`venue:kind[:key=value,...]@seconds`, e.g. `binance:drop@5`, `kraken:stall:seconds=3@10`."""
    spec, _, at = text.rpartition("@")
    parts = spec.split(":")
    if len(parts) < 2 or not at:
        raise ValueError(f"fault {text!r}: expected venue:kind[:key=value,...]@seconds")
    venue, kind = parts[0], parts[1]
    if kind not in FAULTS:
        raise ValueError(f"fault {text!r}: unknown kind {kind!r}; known: {', '.join(FAULTS)}")
    arguments: dict = {"kind": kind}
    for pair in filter(None, ",".join(parts[2:]).split(",")):
        key, _, value = pair.partition("=")
        if key not in ("symbol", "seconds", "rate", "count"):
            raise ValueError(f"fault {text!r}: unknown argument {key!r}")
        arguments[key] = value if key == "symbol" else (int(value) if key == "count" else float(value))
    return float(at), venue, arguments
